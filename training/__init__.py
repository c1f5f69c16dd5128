"""Cross-validated training of micro-expression models from the dynamic-image cache."""
