"""The cache writer's fast paths (issue 22): attributes as h5py writes them, one checksummed
chunk per image."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from mer_di.pipeline.store import IMAGES, ClipRecord, to_attr
from mer_di.pipeline.writer import CacheWriter, write_new_attrs

ATTRS = {"text": "abc", "empty": "", "unicode": "é日本", "int": 3, "negative": -5,
         "numpy_int": np.int64(4), "float": 1.5, "flag": True, "off": False,
         "box": (0, 0, 640, 480), "list": ["a", 1], "notes": [], "none": None,
         "floats": [0.5, 1.5]}


def test_fast_attributes_are_those_h5py_writes(tmp_path):
    with h5py.File(tmp_path / "a.h5", "w") as f:
        slow, fast = f.create_group("slow"), f.create_group("fast")
        for k, v in ATTRS.items():
            slow.attrs[k] = to_attr(v)
        write_new_attrs(fast, ATTRS)
        assert list(fast.attrs) == list(slow.attrs)
        for k in ATTRS:
            a, b = slow.attrs.get_id(k), fast.attrs.get_id(k)
            assert a.get_type().equal(b.get_type()), k
            assert a.shape == b.shape, k
            want, got = slow.attrs[k], fast.attrs[k]
            assert type(got) is type(want) and np.array_equal(got, want), k


def test_each_image_is_one_checksummed_chunk(tmp_path):
    rng = np.random.default_rng(0)
    images = {name: rng.random((24, 20, 3), dtype=np.float32) for name in IMAGES[:3]}
    images[IMAGES[3]] = rng.integers(0, 255, (24, 20, 3), dtype=np.uint8)
    cache = tmp_path / "c.h5"
    with CacheWriter(cache) as writer:
        writer.add(ClipRecord("sub01", "EP01", images, {"onset": 1, "phases": list(images)}))
        writer.commit({})
    with h5py.File(cache, "r") as f:
        for name, image in images.items():
            ds = f["sub01/EP01"][name]
            assert ds.chunks == image.shape and ds.fletcher32 and ds.dtype == image.dtype
            np.testing.assert_array_equal(ds[()], image)
        assert f["sub01/EP01"].attrs["phases"] == '["full", "onset", "offset", "apex_frame"]'


def test_checksummed_chunks_are_the_bytes_h5py_writes(tmp_path):
    """A chunk written as stored, with our Fletcher-32, is the chunk h5py's filter makes:
    two files, one written by h5py's create_dataset and one by ours, are the same bytes."""
    from mer_di.pipeline.chunks import fletcher32, write_checksummed

    rng = np.random.default_rng(1)
    arrays = [rng.random((224, 224, 3), dtype=np.float32),
              rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
              rng.integers(0, 256, (7, 5, 1), dtype=np.uint8),  # an odd number of bytes
              rng.random((3, 9, 9, 3), dtype=np.float32),  # (2K+1, H, W, C) stacks
              np.full((361, 2), 255, np.uint8)]  # sums near their folding bound
    with h5py.File(tmp_path / "h5py.h5", "w") as theirs, \
            h5py.File(tmp_path / "ours.h5", "w") as ours:
        for i, a in enumerate(arrays):
            g1, g2 = theirs.create_group(f"sub{i}"), ours.create_group(f"sub{i}")
            g1.create_dataset("img", data=a, chunks=a.shape, fletcher32=True)
            write_checksummed(g2, "img", a)
    assert (tmp_path / "h5py.h5").read_bytes() == (tmp_path / "ours.h5").read_bytes()
    with h5py.File(tmp_path / "ours.h5", "r") as f:
        for i, a in enumerate(arrays):
            ds = f[f"sub{i}/img"]
            assert ds.chunks == a.shape and ds.fletcher32
            np.testing.assert_array_equal(ds[()], a)
            stored = ds.id.read_direct_chunk((0,) * a.ndim)[1]
            assert int(fletcher32(a.reshape(-1).view(np.uint8))) == int.from_bytes(
                stored[-4:], "little")


def test_damaged_checksummed_chunk_is_an_error_when_read(tmp_path):
    from mer_di.pipeline.chunks import write_checksummed

    a = np.arange(600, dtype=np.float32).reshape(10, 20, 3)
    path = tmp_path / "a.h5"
    with h5py.File(path, "w") as f:
        write_checksummed(f, "img", a)
        offset = f["img"].id.get_chunk_info(0).byte_offset
    blob = bytearray(path.read_bytes())
    blob[offset + 100] ^= 0x40
    path.write_bytes(bytes(blob))
    with h5py.File(path, "r") as f, pytest.raises(OSError):
        f["img"][()]


def _record(i: int) -> ClipRecord:
    images = {name: np.full((16, 16, 3), i, np.float32) for name in IMAGES[:3]}
    return ClipRecord("sub01", f"EP{i:02d}", images, {"onset": 1, "phases": list(images)})


def test_pages_go_to_disk_while_the_cache_grows(tmp_path, monkeypatch):
    """The temporary cache is synced in the background as it grows (the final fsync then
    has little left); a failed write-back is raised by the commit, and the old cache stays."""
    import os
    import threading

    synced = []
    monkeypatch.setattr(os, "fdatasync", lambda fd: synced.append(fd))
    cache = tmp_path / "c.h5"
    with CacheWriter(cache) as writer:
        writer._early.every = 1  # every clip
        for i in range(4):
            writer.add(_record(i))
        writer.commit({})
    assert len(synced) >= 1 and cache.exists()
    assert not [t for t in threading.enumerate() if t.name.startswith("mer-di-sync")]

    def broken(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", broken)
    before = cache.read_bytes()
    with pytest.raises(OSError, match="Input/output"), CacheWriter(cache) as writer:
        writer._early.every = 1
        for i in range(4):
            writer.add(_record(i))
        writer.commit({})
    assert cache.read_bytes() == before and not list(tmp_path.glob("c.h5.tmp-*"))
