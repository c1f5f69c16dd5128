"""Optical flow in the cache (issue 19.1): checked against OpenCV called directly, added to
an existing cache without touching its dynamic images, and read by the training side."""

from __future__ import annotations

import cv2
import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from mer_di.data_manifest import build_manifest
from mer_di.data_manifest.synth import generate_dataset
from mer_di.errors import CacheError
from mer_di.pipeline import build_flow, flow
from mer_di.pipeline.build import BuildOptions, build_cache
from mer_di.pipeline.cache_reader import open_cache
from mer_di.pipeline.cli import main as mer_prep
from mer_di.pipeline.store import FLOW_IMAGES
from mer_di.training.data import load_caches

SIZE = 32


@pytest.fixture(scope="module")
def casme(tmp_path_factory):
    return generate_dataset("casme2", tmp_path_factory.mktemp("f") / "casme2", subjects=2,
                            clips_per_class=1, frame_size=(40, 48), length=(6, 9), seed=2).root


def _datasets(cache) -> dict[str, bytes]:
    out = {}
    with h5py.File(cache, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()].tobytes())
                     if isinstance(obj, h5py.Dataset) else None)
    return out


def _strain(u, v):
    uy, ux = np.gradient(u.astype(np.float64))
    vy, vx = np.gradient(v.astype(np.float64))
    return np.sqrt(ux ** 2 + vy ** 2 + 0.5 * (uy + vx) ** 2)


@pytest.mark.parametrize("method", ["farneback", "dis"])
def test_flow_equals_opencv_called_directly_on_the_frames(casme, tmp_path, method):
    cache = tmp_path / "c.h5"
    build_cache("casme2", casme, cache, options=BuildOptions(size=SIZE, workers=2, flow=method))
    rows = {r.key: r for r in build_manifest("casme2", casme, classes="all").rows}
    checked = 0
    with open_cache(cache) as c:
        assert c.params["flow"] == method
        for clip in c:
            row, a = rows[clip.key], clip.attrs
            assert a["jpeg_reduce"] == 1  # whole-frame decoding: cv2.imread below is the same

            def grey(n, row=row):
                img = cv2.cvtColor(cv2.imread(str(row.frame_path(n))), cv2.COLOR_BGR2GRAY)
                return cv2.resize(img, (SIZE, SIZE), interpolation=cv2.INTER_AREA)

            images = c.images(clip, FLOW_IMAGES)
            pairs = {"flow_onset_apex": (row.onset, a["apex_used"]),
                     "flow_apex_offset": (a["apex_used"], row.offset)}
            for name, (n0, n1) in pairs.items():
                if n0 == n1:
                    assert name not in images
                    continue
                if method == "farneback":
                    s = flow.FLOW_SETTINGS["farneback"]
                    ref = cv2.calcOpticalFlowFarneback(grey(n0), grey(n1), None, s["pyr_scale"],
                                                       s["levels"], s["winsize"],
                                                       s["iterations"], s["poly_n"],
                                                       s["poly_sigma"], 0)
                else:
                    ref = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(
                        grey(n0), grey(n1), None)
                got = images[name]
                assert got.shape == (SIZE, SIZE, 3) and got.dtype == np.float32
                np.testing.assert_allclose(got[..., :2], ref, atol=1e-5)
                np.testing.assert_allclose(got[..., 2], _strain(ref[..., 0], ref[..., 1]),
                                           atol=1e-5)
                checked += 1
            assert set(clip.flow_phases) == set(images)
    assert checked >= 10


def test_strain_of_known_fields():
    y, x = np.mgrid[0:8, 0:8].astype(np.float32)
    stretch = np.dstack([0.1 * x, -0.2 * y])  # ux = 0.1, vy = -0.2, no shear
    np.testing.assert_allclose(flow.optical_strain(stretch), np.hypot(0.1, 0.2), rtol=1e-5)
    shear = np.dstack([0.3 * y, np.zeros_like(y)])  # uy = 0.3
    np.testing.assert_allclose(flow.optical_strain(shear), np.sqrt(0.5) * 0.3, rtol=1e-5)
    still = np.zeros((5, 1, 2), np.float32)  # a side of one pixel: derivative 0
    assert not flow.optical_strain(still).any()


def test_the_flow_direction_is_u_right_v_down():
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.integers(0, 255, (48, 48), dtype=np.uint8), (5, 5), 1.5)
    moved = np.roll(base, (1, 2), axis=(0, 1))  # content 2 px right, 1 px down
    for method in ("farneback", "dis"):
        u, v = flow.dense_flow(base, moved, method)[12:36, 12:36].reshape(-1, 2).mean(0)
        assert abs(u - 2) < 0.3 and abs(v - 1) < 0.3, (method, u, v)


def test_adding_flow_keeps_the_dynamic_images_and_says_how_many(casme, tmp_path):
    one_pass = tmp_path / "one.h5"
    build_cache("casme2", casme, one_pass, options=BuildOptions(size=SIZE, flow="dis"))
    cache = tmp_path / "c.h5"
    first = build_cache("casme2", casme, cache, options=BuildOptions(size=SIZE))
    assert first.flow == "none" and "optical flow" not in first.describe()
    before = _datasets(cache)
    with open_cache(cache) as c:  # a cache without flow reads as flow none
        assert c.params["flow"] == "none" and all(not k.flow_phases for k in c)
    added = build_cache("casme2", casme, cache, options=BuildOptions(size=SIZE, flow="dis"))
    assert added.built == 0 and added.frames == 0 and added.reused == first.total
    assert added.flowed == added.flow_added == first.total
    assert f"{first.total} clips got flow images ({first.total} of them added" in \
        added.describe()
    after = _datasets(cache)
    assert {k: v for k, v in after.items() if k.rsplit("/", 1)[1] not in FLOW_IMAGES} == before
    assert after == _datasets(one_pass)  # the same flow as a build that made it in one pass
    # no --flow: the cache's own is kept, nothing computed
    again = build_cache("casme2", casme, cache, options=BuildOptions(size=SIZE))
    assert again.flow == "dis" and again.flowed == 0 and _datasets(cache) == after
    # another method: only the flow is computed again
    other = build_cache("casme2", casme, cache, options=BuildOptions(size=SIZE,
                                                                      flow="farneback"))
    assert other.built == 0 and other.flow_added == first.total
    replaced = _datasets(cache)
    assert {k: v for k, v in replaced.items() if k.rsplit("/", 1)[1] not in FLOW_IMAGES} == \
        before
    assert replaced != after
    # --rebuild without --flow keeps the method (everything computed again)
    rebuilt = build_cache("casme2", casme, cache, options=BuildOptions(size=SIZE,
                                                                        rebuild=True))
    assert rebuilt.flow == "farneback" and rebuilt.built == rebuilt.flowed == first.total
    assert _datasets(cache) == replaced
    # --flow none drops it again, and the dynamic images stay
    build_cache("casme2", casme, cache, options=BuildOptions(size=SIZE, flow="none"))
    assert _datasets(cache) == before


def test_a_killed_flow_addition_resumes_from_its_parts(casme, tmp_path, monkeypatch):
    cache = tmp_path / "c.h5"
    total = build_cache("casme2", casme, cache, options=BuildOptions(size=SIZE)).total
    before = _datasets(cache)
    calls = []
    real = build_flow.compute_flow

    def dies_after_three(*args, **kwargs):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(build_flow, "compute_flow", dies_after_three)
    with pytest.raises(KeyboardInterrupt):
        build_cache("casme2", casme, cache, options=BuildOptions(size=SIZE, flow="dis"))
    assert _datasets(cache) == before  # the old cache untouched
    assert not list(tmp_path.glob("c.h5.tmp-*"))
    assert len(list((tmp_path / "c.h5.parts").glob("*.flow.part"))) == 3
    calls.clear()
    monkeypatch.setattr(build_flow, "compute_flow", lambda *a, **k: (calls.append(1),
                                                                     real(*a, **k))[1])
    done = build_cache("casme2", casme, cache, options=BuildOptions(size=SIZE, flow="dis"))
    assert len(calls) == total - 3 and done.flow_added == total
    assert not (tmp_path / "c.h5.parts").exists()


def test_tvl1_without_opencv_contrib_is_refused_clearly(casme, tmp_path, monkeypatch):
    monkeypatch.setattr(flow, "has_tvl1", lambda: False)
    with pytest.raises(CacheError, match="contrib.*cv2.optflow.*--flow dis"):
        build_cache("casme2", casme, tmp_path / "c.h5", options=BuildOptions(flow="tvl1"))
    assert not (tmp_path / "c.h5").exists()
    result = CliRunner().invoke(mer_prep, ["build-cache", "--dataset", "casme2", "--root",
                                           str(casme), "--out", str(tmp_path / "c.h5"),
                                           "--flow", "tvl1"])
    assert result.exit_code != 0 and "contrib" in result.output


def test_training_side_reads_the_flow_and_inspect_names_the_method(casme, tmp_path):
    cache = tmp_path / "c.h5"
    build_cache("casme2", casme, cache, options=BuildOptions(size=SIZE, flow="farneback"))
    clips = load_caches([cache], "five")
    assert clips.flow_phases == FLOW_IMAGES
    assert clips.flow["flow_onset_apex"].shape == (len(clips), SIZE, SIZE, 3)
    has, still = clips.has_flow["flow_onset_apex"], clips.still_flow["flow_onset_apex"]
    assert (has | still).all() and still.sum() == 1  # synth's clip whose apex is its onset
    assert not clips.flow["flow_onset_apex"][still].any()  # its flow is 0, exactly
    with open_cache(cache) as c:
        first = next(iter(c))
        np.testing.assert_array_equal(
            clips.flow["flow_onset_apex"][0], c.images(first, FLOW_IMAGES)["flow_onset_apex"])
    plain = tmp_path / "plain.h5"
    build_cache("casme2", casme, plain, options=BuildOptions(size=SIZE))
    assert load_caches([plain], "five").flow_phases == ()
    shown = CliRunner().invoke(mer_prep, ["inspect", str(cache)])
    assert shown.exit_code == 0 and "flow            farneback" in shown.output
    assert "flow_onset_apex" in shown.output
