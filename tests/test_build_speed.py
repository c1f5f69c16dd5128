"""Issue 22's build changes leave the cache as it was: the writer thread and the limit on
OpenCV's threads change the time a build takes, never what it writes."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from mer_di.data_manifest.synth import generate_dataset
from mer_di.pipeline import build
from mer_di.pipeline.build import BuildOptions, build_cache


def _contents(cache: Path) -> dict[str, object]:
    """Every dataset's array and every group's attributes but the creation time."""
    out: dict[str, object] = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            out[name] = obj[()]
        else:
            out[name + "@"] = {k: v for k, v in obj.attrs.items() if k != "created"}

    with h5py.File(cache, "r") as f:
        f.visititems(visit)
        out["@"] = {k: v for k, v in f.attrs.items() if k not in ("created",)}
    return out


def _same(a: dict[str, object], b: dict[str, object]) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        if isinstance(value, dict):
            assert value.keys() == b[key].keys(), key
            for k, v in value.items():
                assert np.array_equal(v, b[key][k]), (key, k)
        else:
            np.testing.assert_array_equal(value, b[key], err_msg=key)


@pytest.mark.parametrize("switch", ["WRITER_THREAD", "OPENCV_THREADS_LIMITED"])
def test_the_build_writes_the_same_cache_either_way(tmp_path, monkeypatch, switch):
    root = generate_dataset("samm", tmp_path / "samm", subjects=2, clips_per_class=1,
                            frame_size=(320, 180), length=(8, 12), seed=5).root
    caches = {}
    for on in (True, False):
        monkeypatch.setattr(build, switch, on)
        caches[on] = tmp_path / f"{on}.h5"
        build_cache("samm", root, caches[on], options=BuildOptions(size=32, crop="haar",
                                                                    workers=2))
    _same(_contents(caches[True]), _contents(caches[False]))
