"""The dynamic-image cache: exact images, incremental and crash-safe builds, bad frames."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from mer_di.data_manifest import build_manifest
from mer_di.data_manifest.synth import generate_dataset
from mer_di.errors import CacheError
from mer_di.pipeline.build import BuildError, BuildOptions, build_cache
from mer_di.pipeline.cli import main as mer_prep
from mer_di.pipeline.frames import jpeg_geometry
from mer_di.pipeline.writer import writer_lock


def _linear(n):
    t = np.arange(1, n + 1, dtype=np.float64)
    return 2 * t - n - 1


def _reference(frames: np.ndarray) -> np.ndarray:
    """The paper's Eq. 1 in float64 over frames (T, H, W, C)."""
    return np.tensordot(_linear(len(frames)), frames.astype(np.float64), axes=1)


def _arrays(cache: Path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(cache, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
    return out


@pytest.fixture(scope="module")
def casme(tmp_path_factory) -> Path:
    return generate_dataset("casme2", tmp_path_factory.mktemp("c") / "casme2", subjects=2,
                            clips_per_class=1, frame_size=(40, 48), length=(6, 9), seed=2).root


def test_cache_equals_float64_reference_from_the_jpegs(casme, tmp_path):
    cache = tmp_path / "c.h5"
    report = build_cache("casme2", casme, cache, options=BuildOptions(size=None, workers=2))
    rows = build_manifest("casme2", casme, classes="all").rows
    assert report.total == len(rows) and not report.skipped
    with h5py.File(cache, "r") as f:
        assert f.attrs["dataset"] == "casme2" and f.attrs["size"] == "native"
        assert len(f.attrs["sheet_sha256"]) == 64
        for row in rows:
            frames = np.stack([cv2.imread(str(row.frame_path(n)))[..., ::-1]
                               for n in range(row.onset, row.offset + 1)])
            g = f[row.key]
            assert g.attrs["onset"] == row.onset and g.attrs["label"] == row.label
            # the apex the phases use: the sheet's where usable, else spotted (--apex auto)
            source, still = g.attrs["apex_source"], int(g.attrs["apex_used"]) - row.onset
            if source == "sheet":
                assert still == row.apex - row.onset
                on_ok, off_ok = row.onset_ok, row.offset_ok
            else:
                assert source == "spotted" and not (row.onset_ok or row.offset_ok)
                assert int(g.attrs["spotted_apex"]) == row.onset + still
                on_ok, off_ok = still > 0, still < len(frames) - 1
            expected = {"full": _reference(frames), "apex_frame": frames[still]}
            if on_ok:
                expected["onset"] = _reference(frames[:still + 1])
            if off_ok:
                expected["offset"] = _reference(frames[still:][::-1])
            assert set(g) == set(expected), row.problems
            for phase, ref in expected.items():
                got = g[phase][()]
                want_type = np.uint8 if phase == "apex_frame" else np.float32
                assert got.dtype == want_type and got.shape == frames.shape[1:]
                np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5 * np.abs(ref).max())


def test_resized_cache_is_the_resized_image(casme, tmp_path):
    """Pooling then resizing to 24x24 (the cheap order, exact by linearity) equals
    resizing the pooled native image."""
    native = _arrays(build_cache("casme2", casme, tmp_path / "n.h5",
                                 options=BuildOptions(size=None)).cache)
    small = _arrays(build_cache("casme2", casme, tmp_path / "s.h5",
                                options=BuildOptions(size=24)).cache)
    assert native.keys() == small.keys()
    for name, img in small.items():
        assert img.shape == (24, 24, 3)
        ref = cv2.resize(native[name], (24, 24), interpolation=cv2.INTER_AREA)
        np.testing.assert_allclose(img, ref, rtol=0, atol=1e-5 * np.abs(ref).max())


def test_reduced_jpeg_decoding_is_pooled_exactly(tmp_path):
    """100x100 frames to 24x24 decode at 1/4 in the JPEG decoder; the cache equals the
    float64 pooling of those reduced frames, resized."""
    root = generate_dataset("mmew", tmp_path / "m", subjects=1, clips_per_class=1,
                            frame_size=(100, 100), length=(8, 10), seed=6).root
    cache = build_cache("mmew", root, tmp_path / "s.h5", options=BuildOptions(size=24)).cache
    rows = build_manifest("mmew", root, classes="all").rows
    with h5py.File(cache, "r") as f:
        for row in rows:
            assert f[row.key].attrs["jpeg_reduce"] == 4
            frames = np.stack([cv2.imread(str(row.frame_path(n)), cv2.IMREAD_REDUCED_COLOR_4)
                               for n in range(row.onset, row.offset + 1)])
            ref = cv2.resize(_reference(frames).astype(np.float32), (24, 24),
                             interpolation=cv2.INTER_AREA)[..., ::-1]
            got = f[row.key]["full"][()]
            np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4 * np.abs(ref).max())


def test_rerun_reuses_and_parameters_are_checked(casme, tmp_path):
    cache = tmp_path / "c.h5"
    first = build_cache("casme2", casme, cache, options=BuildOptions(size=16))
    assert first.built == first.total
    again = build_cache("casme2", casme, cache, options=BuildOptions(size=16))
    assert again.built == 0 and again.reused == first.total
    assert _arrays(cache).keys() == _arrays(cache).keys()
    with pytest.raises(CacheError, match="size: cache has '16', asked '20'.*--rebuild"):
        build_cache("casme2", casme, cache, options=BuildOptions(size=20))
    rebuilt = build_cache("casme2", casme, cache, options=BuildOptions(size=20, rebuild=True))
    assert rebuilt.built == first.total
    assert next(iter(_arrays(cache).values())).shape == (20, 20, 3)


def _copy_dataset(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_bad_frame_files_skip_the_clip(casme, tmp_path):
    root = _copy_dataset(casme, tmp_path / "d")
    rows = [r for r in build_manifest("casme2", root).rows if not r.problems]
    corrupt, empty = rows[0], rows[1]
    corrupt.frame_path(corrupt.onset + 1).write_bytes(b"\xff\xd8 not really a jpeg")
    empty.frame_path(empty.offset).write_bytes(b"")
    cache = tmp_path / "c.h5"
    report = build_cache("casme2", root, cache, options=BuildOptions(size=16))
    reasons = {s["key"]: s["reason"] for s in report.skipped}
    assert f"frame {corrupt.onset + 1} (" in reasons[corrupt.key]
    assert "not a decodable image" in reasons[corrupt.key]
    assert f"frame {empty.offset} (" in reasons[empty.key] and "empty file" in reasons[empty.key]
    with h5py.File(cache, "r") as f:
        assert corrupt.key not in f and empty.key not in f
        assert "not a decodable image" in f.attrs["skipped"]
    before = _arrays(cache)
    with pytest.raises(BuildError, match="--strict"):
        build_cache("casme2", root, cache, options=BuildOptions(size=16, strict=True))
    assert _arrays(cache).keys() == before.keys()  # nothing already built is lost
    # once the frames are fixed, a re-run adds exactly those clips
    for row in (corrupt, empty):
        for n in range(row.onset, row.offset + 1):
            src = Path(str(row.frame_path(n)).replace(str(root), str(casme)))
            row.frame_path(n).write_bytes(src.read_bytes())
    fixed = build_cache("casme2", root, cache, options=BuildOptions(size=16))
    assert fixed.built == 2 and not fixed.skipped


def test_a_second_writer_is_refused(casme, tmp_path):
    cache = tmp_path / "c.h5"
    with writer_lock(cache):
        result = CliRunner().invoke(mer_prep, ["build-cache", "--dataset", "casme2", "--root",
                                               str(casme), "--out", str(cache)])
    assert result.exit_code != 0
    assert "is being written by another build" in result.output
    assert not cache.exists()


def _build_cmd(root: Path, cache: Path) -> list[str]:
    return [sys.executable, "-m", "mer_di.pipeline.cli", "build-cache", "--dataset", "casme2",
            "--root", str(root), "--out", str(cache), "--size", "native", "--workers", "1"]


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["start", "parts", "late"])
def test_killed_build_is_completed_by_the_next_run(tmp_path, moment):
    root = generate_dataset("casme2", tmp_path / "d", subjects=3, clips_per_class=2,
                            frame_size=(320, 240), length=(30, 40), seed=4).root
    clean = tmp_path / "clean.h5"
    total = build_cache("casme2", root, clean, options=BuildOptions(size=None)).total
    cache = tmp_path / "c.h5"
    parts = tmp_path / "c.h5.parts"
    # start: the temporary cache exists (parts or none); late: all but the last two clips
    want_parts = {"start": 0, "parts": 3, "late": total - 2}[moment]
    proc = subprocess.Popen(_build_cmd(root, cache), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=Path(__file__).parents[1])
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if (list(tmp_path.glob("c.h5.tmp-*"))
                and len(list(parts.glob("*.part"))) >= want_parts):
            break
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the build finished before it could be killed"
    assert not cache.exists()  # nothing that looks like a whole cache
    report = build_cache("casme2", root, cache, options=BuildOptions(size=None))
    assert report.reused >= want_parts
    assert not parts.exists() and not list(tmp_path.glob("c.h5.tmp-*"))
    got, want = _arrays(cache), _arrays(clean)
    assert got.keys() == want.keys()
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])


def test_haar_crop_one_box_per_clip_and_centre_fallback(tmp_path):
    root = generate_dataset("casme2", tmp_path / "raw", layout="raw", subjects=2,
                            clips_per_class=1, frame_size=(320, 240), length=(6, 8),
                            seed=5).root
    rows = [r for r in build_manifest("casme2", root).rows if not r.problems]
    blank = rows[0]
    ok, buf = cv2.imencode(".jpg", np.full((240, 320, 3), 128, np.uint8))
    blank.frame_path(blank.onset).write_bytes(buf.tobytes())
    cache = tmp_path / "c.h5"
    report = build_cache("casme2", root, cache, options=BuildOptions(size=32, crop="haar"))
    crop_notes = [n for n in report.notes if "face" in n]
    assert crop_notes == [f"{blank.key}: no face found on the onset frame "
                          f"(img{blank.onset}.jpg): centre crop"]
    with h5py.File(cache, "r") as f:
        assert tuple(f[blank.key].attrs["crop_box"]) == (40, 0, 240, 240)
        for row in rows[1:]:
            x, y, w, h = f[row.key].attrs["crop_box"]
            assert w == h and 100 < w < 240  # a face-sized square, not the frame
            assert f[row.key]["full"].shape == (32, 32, 3)


@pytest.mark.parametrize("shape", [(240, 320, 3), (37, 53, 1), (480, 640, 3)])
def test_jpeg_geometry_reads_the_frame_header(tmp_path, shape, rng):
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    path = tmp_path / "f.jpg"
    for params in ([], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]):
        ok, buf = cv2.imencode(".jpg", img, params)
        path.write_bytes(buf.tobytes())
        decoded = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        channels = 1 if decoded.ndim == 2 else decoded.shape[2]
        assert jpeg_geometry(path) == (*decoded.shape[:2], channels)


def test_jpeg_geometry_declines_what_is_not_a_jpeg(tmp_path):
    ok, png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    cases = {"a.png": png.tobytes(), "empty.jpg": b"", "junk.jpg": b"\xff\xd8\x00garbage",
             "cut.jpg": b"\xff\xd8\xff\xe0\x00\x10JFIF"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        assert jpeg_geometry(tmp_path / name) is None, name
    assert jpeg_geometry(tmp_path / "missing.jpg") is None


def test_face_detection_is_thread_safe(tmp_path):
    """Two clips load at once during a build: detections made concurrently must equal the
    serial ones (a shared CascadeClassifier returned wrong boxes)."""
    from concurrent.futures import ThreadPoolExecutor

    from mer_di.pipeline.frames import detect_face

    root = generate_dataset("casme2", tmp_path / "raw", layout="raw", subjects=3,
                            clips_per_class=1, frame_size=(320, 240), length=(6, 8),
                            seed=5).root
    rows = [r for r in build_manifest("casme2", root).rows if not r.problems]
    images = [cv2.imread(str(r.frame_path(r.onset))) for r in rows] * 4
    serial = [detect_face(img) for img in images]
    assert sum(b is not None for b in serial) >= len(images) // 2
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            assert list(pool.map(detect_face, images)) == serial


def test_inspect_show_and_the_reader_agree_with_the_build(casme, tmp_path):
    """`mer-prep inspect` and `show` read the cache through the store's reader; every count
    they print is the build's."""
    from mer_di.pipeline.cache_reader import open_cache

    cache = tmp_path / "c.h5"
    report = build_cache("casme2", casme, cache, options=BuildOptions(size=16))
    with open_cache(cache) as c:
        clips = list(c)
        assert len(clips) == report.total
        spotted = [r for r in clips if r.apex_source == "spotted"]
        assert spotted and all(r.phases == ("full", "onset", "offset") for r in spotted)
        assert {r.apex_source for r in clips} == {"sheet", "spotted"}
        images = c.images(clips[0])
        assert images["full"].dtype == np.float32 and images["apex_frame"].dtype == np.uint8
        with pytest.raises(CacheError, match="has no clip 'sub01/nope'"):
            c.get("sub01", "nope")
    result = CliRunner().invoke(mer_prep, ["inspect", str(cache)])
    assert result.exit_code == 0, result.output
    n_phase = {p: sum(p in r.phases for r in clips) for p in ("full", "onset", "offset")}
    assert (f"per image: full {n_phase['full']}, onset {n_phase['onset']}, offset "
            f"{n_phase['offset']}, apex_frame {len(clips)}") in result.output
    assert f"apex from: sheet {len(clips) - len(spotted)}, spotted {len(spotted)}" \
        in result.output
    assert f"(16, 16, 3) x{n_phase['full'] + n_phase['onset'] + n_phase['offset'] + len(clips)}" \
        in result.output
    png = tmp_path / "clip.png"
    result = CliRunner().invoke(mer_prep, ["show", str(cache), clips[0].key, "--out", str(png)])
    assert result.exit_code == 0 and cv2.imread(str(png)) is not None
    result = CliRunner().invoke(mer_prep, ["show", str(cache), "nokey", "--out", str(png)])
    assert result.exit_code == 1 and "SUBJECT/CLIP" in result.output


def test_a_root_one_folder_too_high_fails_and_writes_no_cache(casme, tmp_path):
    """The sheet is found one folder below the root, the frames are not: no clip is
    usable, so the build and the manifest say where things were found and exit 1."""
    import shutil

    root = tmp_path / "top"
    shutil.copytree(casme, root / "CASME2")
    out = tmp_path / "c.h5"
    with pytest.raises(BuildError, match=r"no usable clip.*the sheet is in .*CASME2: is that"):
        build_cache("casme2", root, out, options=BuildOptions(size=16))
    assert not out.exists()
    result = CliRunner().invoke(mer_prep, ["manifest", "--dataset", "casme2", "--root",
                                           str(root), "--out", str(tmp_path / "m.csv")])
    assert result.exit_code == 1 and "no usable clip" in result.output
    header_only = tmp_path / "header.csv"
    header_only.write_text("Subject,Filename,OnsetFrame,ApexFrame,OffsetFrame,"
                           "Estimated Emotion\n")
    with pytest.raises(BuildError, match="a header but no rows"):
        build_cache("casme2", casme, out, sheet=header_only, options=BuildOptions(size=16))
    assert not out.exists()


def test_strict_stops_at_a_missing_clip_folder(casme, tmp_path):
    import shutil

    root = _copy_dataset(casme, tmp_path / "d")
    gone = next((root / "Cropped").glob("*/*"))
    shutil.rmtree(gone)
    out = tmp_path / "c.h5"
    with pytest.raises(BuildError, match=rf"--strict: {gone.parent.name}/{gone.name} .*clip "
                                         "folder missing"):
        build_cache("casme2", root, out, options=BuildOptions(size=16, strict=True))
    report = build_cache("casme2", root, out, options=BuildOptions(size=16))
    assert any(s["key"] == f"{gone.parent.name}/{gone.name}" for s in report.skipped)


def test_a_changed_emotion_relabels_the_cache_without_recomputing(casme, tmp_path):
    """Switching sheets (2014 -> 2019 CASME II relabels clips) must reach the cache."""
    import openpyxl

    from mer_di.pipeline.cache_reader import open_cache

    root = _copy_dataset(casme, tmp_path / "d")
    out = tmp_path / "c.h5"
    first = build_cache("casme2", root, out, options=BuildOptions(size=16))
    before = _arrays(out)
    sheet = next(root.glob("CASME2-coding-*.xlsx"))
    wb = openpyxl.load_workbook(sheet)
    ws = wb.worksheets[0]
    header = [c.value for c in ws[1]]
    row = ws[2]
    subject = f"sub{int(row[header.index('Subject')].value):02d}"
    clip = row[header.index("Filename")].value
    old = row[header.index("Estimated Emotion")].value
    new = "surprise" if old != "surprise" else "happiness"
    row[header.index("Estimated Emotion")].value = new
    wb.save(sheet)
    again = build_cache("casme2", root, out, options=BuildOptions(size=16))
    assert again.built == 0 and again.reused == first.total and again.relabelled == 1
    assert "1 of them relabelled from the sheet" in again.describe()
    with open_cache(out) as c:
        record = c.get(subject, clip)
        assert record.emotion == new and record.label == new
    after = _arrays(out)
    assert after.keys() == before.keys()
    for key in before:
        np.testing.assert_array_equal(after[key], before[key])
    assert build_cache("casme2", root, out, options=BuildOptions(size=16)).relabelled == 0


def test_frames_that_disagree_within_a_clip(casme, tmp_path):
    """A frame larger than the clip's first skips the clip, naming the frame (it used to be
    cropped silently); a greyscale frame in a colour clip is converted and named in the
    build's notes (it used to be converted silently)."""
    root = _copy_dataset(casme, tmp_path / "d")
    rows = [r for r in build_manifest("casme2", root).rows if r.full_ok]
    big_row, grey_row = rows[0], rows[1]
    big, grey = big_row.frame_path(big_row.onset + 2), grey_row.frame_path(grey_row.onset + 2)
    img = cv2.imread(str(big))
    cv2.imwrite(str(big), cv2.copyMakeBorder(img, 0, 8, 0, 8, cv2.BORDER_REPLICATE))
    cv2.imwrite(str(grey), cv2.cvtColor(cv2.imread(str(grey)), cv2.COLOR_BGR2GRAY))
    report = build_cache("casme2", root, tmp_path / "c.h5", options=BuildOptions(size=16))
    skipped = {s["key"]: s["reason"] for s in report.skipped}
    assert "differs from the clip's first frame" in skipped[big_row.key]
    assert big.name in skipped[big_row.key]
    assert grey_row.key not in skipped
    assert any(n.startswith(grey_row.key) and grey.name in n
               and "greyscale in a colour clip: converted" in n for n in report.notes)
