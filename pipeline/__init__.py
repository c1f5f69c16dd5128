"""Dynamic images of micro-expression clips into one HDF5 cache (no torch here)."""
