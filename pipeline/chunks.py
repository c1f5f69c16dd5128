"""One image, one HDF5 chunk, written as bytes with its Fletcher-32 checksum.

Each cache image is a dataset of one chunk with HDF5's Fletcher-32 filter (damaged pixels
are an error when read, by h5py or the HDF5 tools). h5py's ``create_dataset(data=...,
fletcher32=True)`` runs HDF5's filter pipeline while holding the GIL: it copies the image
into a filter buffer and sums it there, and every decoder thread that finishes a frame
meanwhile waits for the GIL. Here the checksum is computed by a Numba kernel (exactly
HDF5's ``H5_checksum_fletcher32``, without the GIL) and the chunk is written as it is
stored (``H5Dwrite_chunk``, the filter mask saying the filter ran): the same file bytes as
h5py's write (``tests/test_writer.py`` compares them), read back through the same filter.
"""

from __future__ import annotations

import h5py
import numba
import numpy as np

_U16 = np.uint32(0xFFFF)
_S16 = np.uint32(16)


@numba.njit(nogil=True, cache=True)
def fletcher32(data: np.ndarray) -> np.uint32:
    """HDF5's Fletcher-32 of a byte array [shape=(n,), uint8]: big-endian 16-bit words,
    sums folded every 360 words (``H5_checksum_fletcher32``, HDF5's H5checksum.c)."""
    n = data.size // 2
    sum1 = np.uint32(0)
    sum2 = np.uint32(0)
    i = 0
    while n:
        tlen = 360 if n > 360 else n
        n -= tlen
        for _ in range(tlen):
            sum1 += (np.uint32(data[i]) << np.uint32(8)) | np.uint32(data[i + 1])
            sum2 += sum1
            i += 2
        sum1 = (sum1 & _U16) + (sum1 >> _S16)
        sum2 = (sum2 & _U16) + (sum2 >> _S16)
    if data.size % 2:  # an odd last byte, as the high half of a word
        sum1 += np.uint32(data[i]) << np.uint32(8)
        sum2 += sum1
        sum1 = (sum1 & _U16) + (sum1 >> _S16)
        sum2 = (sum2 & _U16) + (sum2 >> _S16)
    sum1 = (sum1 & _U16) + (sum1 >> _S16)
    sum2 = (sum2 & _U16) + (sum2 >> _S16)
    return (sum2 << _S16) | sum1


_DCPL: dict[tuple[tuple[int, ...], np.dtype], h5py.h5p.PropDCID] = {}
_TYPES: dict[np.dtype, h5py.h5t.TypeID] = {}


def _dcpl(shape: tuple[int, ...], dtype: np.dtype) -> h5py.h5p.PropDCID:
    """The creation properties h5py's ``create_dataset(chunks=shape, fletcher32=True)``
    gives: one chunk of the whole shape, the Fletcher-32 filter, no time stamps."""
    key = (shape, dtype)
    dcpl = _DCPL.get(key)
    if dcpl is None:
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_chunk(shape)
        dcpl.set_fletcher32()
        dcpl.set_obj_track_times(False)
        _DCPL[key] = dcpl
    return dcpl


def write_checksummed(group: h5py.Group, name: str, image: np.ndarray) -> None:
    """Create dataset ``name`` in ``group`` holding ``image`` (any shape with no zero
    length, a numeric dtype) as one Fletcher-32-checksummed chunk."""
    image = np.ascontiguousarray(image)
    if image.ndim == 0 or image.size == 0:  # not a chunk: h5py's own path
        group.create_dataset(name, data=image)
        return
    tid = _TYPES.get(image.dtype)
    if tid is None:
        tid = _TYPES[image.dtype] = h5py.h5t.py_create(image.dtype, logical=True)
    raw = image.reshape(-1).view(np.uint8)
    chunk = np.empty(raw.size + 4, np.uint8)
    chunk[:-4] = raw
    # the filter stores the sum after the data, little-endian (UINT32ENCODE)
    chunk[-4:] = np.array([fletcher32(raw)], "<u4").view(np.uint8)
    space = h5py.h5s.create_simple(image.shape)
    dset = h5py.h5d.create(group.id, name.encode(), tid, space,
                           dcpl=_dcpl(image.shape, image.dtype))
    dset.write_direct_chunk((0,) * image.ndim, chunk, 0)
