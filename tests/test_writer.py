"""The cache writer's fast paths (issue 22): attributes as h5py writes them, one checksummed
chunk per image."""

from __future__ import annotations

import h5py
import numpy as np

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
