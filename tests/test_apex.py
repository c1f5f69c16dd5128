"""Apex spotting (issue 12.3): the spotter on generated clips with a known apex, the build's
``--apex`` modes and what the cache records, ``mer-prep spot-apex``."""

from __future__ import annotations

import csv
import dataclasses
import io
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from mer_di.data_manifest import build_manifest
from mer_di.data_manifest.synth import generate_dataset
from mer_di.data_manifest.synth.faces import random_look
from mer_di.data_manifest.synth.plan import plan_clips
from mer_di.data_manifest.synth.registry import get_spec
from mer_di.data_manifest.synth.render import render_clip
from mer_di.errors import CacheError
from mer_di.pipeline.apex import motion_profile, spot_apex
from mer_di.pipeline.build import BuildOptions, build_cache
from mer_di.pipeline.cache_reader import open_cache
from mer_di.pipeline.cli import main as mer_prep


def _clips(dataset: str, n_subjects: int, noise: float = 1.0):
    """(frames onset..offset, true apex index) of generated clips of ``dataset``."""
    spec = get_spec(dataset)
    plan = plan_clips(spec, n_subjects, 1, spec.length, np.random.default_rng(3))
    for i, clip in enumerate(plan):
        if clip.apex in (clip.onset, clip.offset):
            continue
        look = random_look(np.random.default_rng([5, i]))
        look = dataclasses.replace(look, noise_sigma=look.noise_sigma * noise)
        frames = dict(render_clip(spec, spec.layouts[0], look, clip, (96, 96),
                                  np.random.default_rng([6, i])))
        stack = np.stack([frames[n] for n in range(clip.onset, clip.offset + 1)])
        yield stack, clip.apex - clip.onset


@pytest.mark.parametrize("dataset", ["casme2", "samm", "mmew"])
def test_spotter_finds_the_apex_of_generated_clips(dataset):
    errors = [abs(spot_apex(frames) - apex) / len(frames)
              for frames, apex in _clips(dataset, 2)]
    assert len(errors) >= 8
    assert np.median(errors) <= 0.10, errors


def test_spotter_on_a_single_bump_and_its_bounds():
    rng = np.random.default_rng(0)
    frames = np.repeat(rng.integers(0, 255, (1, 40, 40, 3), dtype=np.uint8), 12, axis=0)
    frames[7, 10:16, 10:16] = 255 - frames[7, 10:16, 10:16]  # one frame moved
    assert spot_apex(frames) == 7
    profile = motion_profile(frames)
    assert profile.shape == (12,) and profile[0] == 0
    static = np.repeat(frames[:1], 5, axis=0)
    assert 1 <= spot_apex(static) <= 3  # strictly inside: both phases keep two frames
    assert spot_apex(frames[:2]) == 1
    with pytest.raises(ValueError, match="apex spotting method"):
        motion_profile(frames, "nope")


@pytest.fixture(scope="module")
def casme(tmp_path_factory) -> Path:
    return generate_dataset("casme2", tmp_path_factory.mktemp("a") / "casme2", subjects=3,
                            clips_per_class=1, frame_size=(64, 72), length=(8, 14),
                            seed=11).root


def _sources(cache: Path) -> dict[str, tuple[str, tuple[str, ...]]]:
    with open_cache(cache) as c:
        return {clip.key: (clip.apex_source, clip.phases) for clip in c}


def test_build_apex_modes_and_what_the_cache_records(casme, tmp_path):
    rows = {r.key: r for r in build_manifest("casme2", casme).rows if r.full_ok}
    unusable = {k for k, r in rows.items() if not (r.onset_ok or r.offset_ok)}
    assert unusable  # the planted '/' and after-offset apexes

    auto = tmp_path / "auto.h5"
    build_cache("casme2", casme, auto, options=BuildOptions(size=32, workers=1))
    got = _sources(auto)
    assert {k for k, (s, _) in got.items() if s == "spotted"} == unusable
    assert all(got[k][1] == ("full", "onset", "offset") for k in unusable)
    with h5py.File(auto, "r") as f:
        assert f.attrs["apex"] == "auto"
        for key in unusable:
            a = f[key].attrs
            assert rows[key].onset < a["spotted_apex"] < rows[key].offset
            assert a["apex_used"] == a["spotted_apex"]

    sheet = tmp_path / "sheet.h5"
    build_cache("casme2", casme, sheet, options=BuildOptions(size=32, apex="sheet"))
    got = _sources(sheet)
    assert {k for k, (s, _) in got.items() if s == "none"} == unusable
    assert all(got[k][1] == ("full",) for k in unusable)

    middle = tmp_path / "middle.h5"
    build_cache("casme2", casme, middle, options=BuildOptions(size=32, apex="middle"))
    with h5py.File(middle, "r") as f:
        for key, row in rows.items():
            assert f[key].attrs["apex_source"] == "middle"
            assert f[key].attrs["apex_used"] == row.onset + (row.offset - row.onset + 1) // 2

    spot = tmp_path / "spot.h5"
    report = build_cache("casme2", casme, spot, options=BuildOptions(size=32, apex="spot"))
    assert set(_sources(spot).values()) <= {("spotted", ("full", "onset", "offset"))}
    assert sum("apex spotted at frame" in n for n in report.notes) == len(rows)

    # the mode is a build parameter: another one is refused, naming it
    with pytest.raises(CacheError, match="apex: cache has 'spot', asked 'auto'"):
        build_cache("casme2", casme, spot, options=BuildOptions(size=32))


def test_a_cache_from_before_apex_modes_counts_as_sheet(casme, tmp_path):
    cache = tmp_path / "old.h5"
    build_cache("casme2", casme, cache, options=BuildOptions(size=32, apex="sheet"))
    with h5py.File(cache, "a") as f:  # as a build before --apex wrote it
        del f.attrs["apex"]
        for subject in f:
            for clip in f[subject]:
                a = f[subject][clip].attrs
                for name in ("apex_source", "apex_used", "spotted_apex"):
                    del a[name]
    with open_cache(cache) as c:
        assert c.params["apex"] == "sheet"
        assert {clip.apex_source for clip in c} == {"sheet", "none"}
    again = build_cache("casme2", casme, cache, options=BuildOptions(size=32, apex="sheet"))
    assert again.built == 0


def test_inspect_names_the_spotted_apexes(casme, tmp_path):
    cache = tmp_path / "c.h5"
    build_cache("casme2", casme, cache, options=BuildOptions(size=32))
    out = CliRunner().invoke(mer_prep, ["inspect", "--cache", str(cache)]).output
    spotted = [k for k, (s, _) in _sources(cache).items() if s == "spotted"]
    assert f"spotted {len(spotted)}" in out
    assert "spotted apexes" in out and spotted[0] in out


def test_spot_apex_command_writes_every_clip_beside_the_sheet(casme, tmp_path):
    out = tmp_path / "apex.csv"
    result = CliRunner().invoke(mer_prep, ["spot-apex", "--dataset", "casme2", "--root",
                                           str(casme), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    manifest = build_manifest("casme2", casme).rows
    assert [(r["subject"], r["clip"]) for r in rows] == [(m.subject, m.clip) for m in manifest]
    for r in rows:
        assert int(r["onset"]) < int(r["spotted_apex"]) < int(r["offset"])
        if r["sheet_apex_usable"] == "True":
            assert int(r["difference"]) == int(r["spotted_apex"]) - int(r["sheet_apex"])
    assert "clips spotted" in result.output and "median |difference|" in result.output
    piped = CliRunner().invoke(mer_prep, ["spot-apex", "--dataset", "casme2", "--root",
                                          str(casme), "--out", "-", "--quiet"])
    assert piped.exit_code == 0
    assert list(csv.DictReader(io.StringIO(piped.stdout))) == rows


def test_manifest_summary_counts_the_clips_that_need_spotting(casme, tmp_path):
    from mer_di.data_manifest import summarise

    manifest = build_manifest("casme2", casme, classes="all")
    cache = tmp_path / "c.h5"
    build_cache("casme2", casme, cache, options=BuildOptions(size=32))
    spotted = sum(s == "spotted" for s, _ in _sources(cache).values())
    usable = sum(r.full_ok for r in manifest.rows)
    assert spotted > 0
    assert (f"apex: {usable - spotted} clips from the sheet, {spotted} need spotting"
            in summarise(manifest))


@pytest.mark.parametrize("dataset", ["casme2", "samm", "mmew", "smic", "casme3"])
def test_fast_grey_cells_spot_the_same_apexes_on_look_alikes(dataset, monkeypatch):
    """Issue 22: the integer cell sums give the cells of the float32 means (the arithmetic
    before, :func:`numpy_grey_cells`, to rounding) and the same spotted apex on every
    generated clip, at several sizes and noise levels."""
    from mer_di.pipeline import apex as apex_module
    from mer_di.pipeline.apex import numpy_grey_cells as _reference_cells

    spec = get_spec(dataset)
    plan = spec.plan(3, 1, spec.length, np.random.default_rng(7))
    n = 0
    for i, clip in enumerate(plan[:12]):
        for size, noise in (((96, 96), 1.0), ((250, 140), 4.0)):
            look = random_look(np.random.default_rng([8, i]))
            look = dataclasses.replace(look, noise_sigma=look.noise_sigma * noise)
            frames = dict(render_clip(spec, spec.layouts[0], look, clip, size,
                                      np.random.default_rng([9, i])))
            stack = np.stack([frames[k] for k in range(clip.onset, clip.offset + 1)])
            fast = apex_module._grey_cells(stack)
            np.testing.assert_allclose(fast, _reference_cells(stack), rtol=0, atol=1e-3)
            got = spot_apex(stack)
            with monkeypatch.context() as m:
                m.setattr(apex_module, "_grey_cells", _reference_cells)
                assert got == spot_apex(stack), (clip, size, noise)
            n += 1
    assert n >= 12
