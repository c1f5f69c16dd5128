"""Hostile and broken input (issue 11): sheet cells that try to be paths, sheets and frames
built to exhaust memory or hang, caches that point elsewhere or are damaged, a full disk,
and bad arguments on every command. Each case ends in a clear message, never a traceback,
a hang or a read outside the dataset root."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import h5py
import numpy as np
import openpyxl
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mer_di.data_manifest import build_manifest
from mer_di.data_manifest.reader import name_problem
from mer_di.data_manifest.registry import get_reader
from mer_di.data_manifest.synth import generate_dataset
from mer_di.errors import BuildError, CacheError, FrameError, OutputError, SheetError
from mer_di.pipeline.build import BuildOptions, build_cache
from mer_di.pipeline.cache_reader import open_cache
from mer_di.pipeline.cli import main as mer_prep
from mer_di.pipeline.frames import read_frame
from mer_di.pipeline.writer import CacheWriter
from mer_di.training.cli import main as mer_train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def casme(tmp_path_factory) -> Path:
    return generate_dataset("casme2", tmp_path_factory.mktemp("h") / "casme2", subjects=2,
                            clips_per_class=1, frame_size=(40, 48), length=(6, 9), seed=2).root


@pytest.fixture(scope="module")
def built(casme, tmp_path_factory) -> Path:
    """A whole cache of ``casme`` (copy it before changing it)."""
    cache = tmp_path_factory.mktemp("hc") / "c.h5"
    build_cache("casme2", casme, cache, options=BuildOptions(size=16, workers=2))
    return cache


def _copy(src: Path, dst: Path) -> Path:
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copy(src, dst)
    return dst


def _sheet(root: Path) -> Path:
    return next(root.glob("CASME2-coding-*.xlsx"))


def _edit_sheet(path: Path, edits: dict[int, dict[str, object]]) -> None:
    """Set cells of data rows (0-based, under the header on row 1) by column name."""
    wb = openpyxl.load_workbook(path)
    ws = wb.active
    header = [c.value for c in ws[1]]
    for i, cells in edits.items():
        for name, value in cells.items():
            ws.cell(row=i + 2, column=header.index(name) + 1, value=value)
    wb.save(path)


def _good_rows(root: Path):
    return [r for r in build_manifest("casme2", root).rows if not r.problems]


# --- 1. names from a sheet are data, not paths -------------------------------------------

_OPENED: list[str] | None = None


def _audit(event: str, args: tuple) -> None:
    if _OPENED is not None and event in ("open", "os.listdir", "os.scandir") and args:
        if isinstance(args[0], (str, bytes, os.PathLike)):
            _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)  # records only while a test sets _OPENED


def test_sheet_names_are_data_not_paths(casme, tmp_path):
    """A Filename of '../../../outside/secret', an absolute path, '..' or 'EP/full' is a
    problem of its row; nothing outside the root is opened or listed, and no HDF5 key is
    made of such a name (before: frames outside the root were read and stored)."""
    global _OPENED
    root = _copy(casme, tmp_path / "d")
    rows = build_manifest("casme2", root).rows
    outside = tmp_path / "outside" / "secret"
    _copy(Path(rows[0].frame_dir), outside)  # real frames: reading them would work
    hostile = {0: "../../../outside/secret", 1: str(outside), 2: "..", 3: "EP01/full"}
    _edit_sheet(_sheet(root), {i: {"Filename": name} for i, name in hostile.items()})
    _OPENED = []
    try:
        report = build_cache("casme2", root, tmp_path / "c.h5",
                             options=BuildOptions(size=16, workers=1))
    finally:
        opened, _OPENED = _OPENED, None
    reasons = {s["sheet_row"]: str(s["reason"]) for s in report.skipped}
    assert "holds a path separator" in reasons[2] and "holds a path separator" in reasons[3]
    assert "'..' is not a folder name" in reasons[4]
    assert "'EP01/full' holds a path separator" in reasons[5]
    assert not [p for p in opened if "outside" in p]
    with h5py.File(tmp_path / "c.h5", "r") as f:
        names = []
        f.visit(names.append)
    assert names and not [n for n in names if ".." in n or "outside" in n or "tmp" in n]


_HOSTILE_NAMES = st.sampled_from(["..", ".", "../x", "/etc", "a/b", "a\\b", "x\x00y", "",
                                  "\n", "EP/full", "~", "a" * 300, "ok_name", "é"])


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(clip=st.one_of(_HOSTILE_NAMES, st.text(max_size=30)),
       emotion=st.one_of(_HOSTILE_NAMES, st.text(max_size=20)),
       onset=st.integers(-5, 10**12), offset=st.integers(-5, 10**12))
def test_any_sheet_cell_stays_under_the_root(tmp_path, clip, emotion, onset, offset):
    """Property: whatever a Filename or (MMEW) emotion cell holds, reading the row never
    fails and never points outside the root; a name that is not a plain folder name is a
    problem of the row and is never joined to a path."""
    reader = get_reader("mmew")
    layout = reader.layouts[1]  # <subject>/<emotion>/<clip>/
    cells = {"subject": 3, "clip": clip, "onset": onset, "apex": onset, "offset": offset,
             "emotion": emotion}
    row = reader._row(2, cells, tmp_path, layout, "all")
    text_clip, text_emotion = clip.strip(), emotion.strip()
    bad = ((text_clip and name_problem("filename", text_clip))
           or (text_emotion and name_problem("emotion", text_emotion)))
    if bad:
        assert Path(row.frame_dir) == Path() and not row.full_ok and row.problems
    else:
        assert Path(row.frame_dir).resolve().is_relative_to(tmp_path.resolve())


def test_a_huge_frame_range_is_a_row_problem_found_without_the_frames(tmp_path, monkeypatch):
    """Offset 10^9: a row problem found in constant time (before: a list of every missing
    frame number, a hang)."""
    reader = get_reader("casme2")
    (tmp_path / "sub01" / "EP01").mkdir(parents=True)

    def no_listing(*_):
        raise AssertionError("the clip folder was listed")

    monkeypatch.setattr("mer_di.data_manifest.reader.os.listdir", no_listing)
    cells = {"subject": 1, "clip": "EP01", "onset": 1, "apex": 2, "offset": 10**9,
             "emotion": "happiness"}
    row = reader._row(2, cells, tmp_path, reader.layouts[0], "five")
    assert "more than the 100000 a clip may have" in row.problems and not row.full_ok


# --- 2, 8. sheets: bounded reading, and hints instead of puzzles -------------------------

def test_a_sparse_workbook_is_read_by_its_real_content(casme, tmp_path):
    """One cell at XFD1048576: the declared grid is 1M x 16K cells; reading stays within
    a 1.5 GB address space (before: out of memory)."""
    path = tmp_path / "sparse.xlsx"
    wb = openpyxl.load_workbook(_sheet(casme))
    wb.active["XFD1048576"] = "x"
    wb.save(path)
    n_rows = len(build_manifest("casme2", casme).rows)
    code = textwrap.dedent(f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (1536 * 2**20, 1536 * 2**20))
        from mer_di.data_manifest.casme2 import Casme2Reader
        from mer_di.data_manifest.sheet import read_table
        t = read_table({str(path)!r}, Casme2Reader.required_columns)
        print(sum(1 for _, cells in t.rows if cells["subject"] is not None))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.split()[-1]) == n_rows


def test_a_formula_without_a_stored_value_says_so(casme, tmp_path):
    root = _copy(casme, tmp_path / "d")
    _edit_sheet(_sheet(root), {0: {"OnsetFrame": "=F2-5"}, 1: {"Filename": '="EP"&"01"'}})
    rows = build_manifest("casme2", root).rows
    assert "onset is a formula without a stored value (=F2-5)" in rows[0].problems
    assert "save it, so its values are stored" in rows[0].problems
    assert 'Filename is a formula without a stored value (="EP"&"01")' in rows[1].problems


def test_csv_sheets_separator_encoding_and_spelling(casme, tmp_path):
    table = pd.read_excel(_sheet(casme), dtype=object)
    want = [(r.subject, r.clip, r.onset, r.offset, r.emotion)
            for r in build_manifest("casme2", casme).rows]
    semi = tmp_path / "semi.csv"
    table.to_csv(semi, sep=";", index=False)  # Excel's CSV where ',' is the decimal mark
    got = build_manifest("casme2", casme, sheet=semi).rows
    assert [(r.subject, r.clip, r.onset, r.offset, r.emotion) for r in got] == want
    latin = tmp_path / "latin.csv"
    table.assign(**{"Estimated Emotion": "répression"}).to_csv(latin, index=False,
                                                               encoding="latin-1")
    with pytest.raises(SheetError, match=r"not UTF-8 text \(byte 0xe9 on line 2\)\. It "
                                         r"decodes as Latin-1/Windows-1252"):
        build_manifest("casme2", casme, sheet=latin)
    bars = tmp_path / "bars.csv"
    table.to_csv(bars, sep="|", index=False)
    with pytest.raises(SheetError, match="is separated by bars"):
        build_manifest("casme2", casme, sheet=bars)
    lacking = tmp_path / "lacking.csv"
    table.drop(columns=["OnsetFrame"]).to_csv(lacking, index=False)
    with pytest.raises(SheetError, match=r"lacks OnsetFrame"):  # as the sheet spells it
        build_manifest("casme2", casme, sheet=lacking)


# --- 2, 3. frames: a FIFO, a hostile header, any bytes -----------------------------------

def test_a_fifo_where_a_frame_should_be_is_a_bad_frame(casme, tmp_path):
    """Before: the build blocked forever opening the FIFO."""
    root = _copy(casme, tmp_path / "d")
    row = _good_rows(root)[0]
    frame = row.frame_path(row.onset + 2)
    frame.unlink()
    os.mkfifo(frame)
    out = subprocess.run([sys.executable, "-m", "mer_di.pipeline.cli", "build-cache",
                          "--dataset", "casme2", "--root", str(root), "--out",
                          str(tmp_path / "c.h5"), "--size", "32", "--workers", "1"],
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"frame {row.onset + 2} (" in out.stdout and "not a regular file" in out.stdout


def _claim_size(path: Path, w: int, h: int) -> None:
    data = bytearray(path.read_bytes())
    i = data.index(b"\xff\xc0")  # OpenCV writes baseline JPEGs (SOF0)
    data[i + 5:i + 7] = h.to_bytes(2, "big")
    data[i + 7:i + 9] = w.to_bytes(2, "big")
    path.write_bytes(bytes(data))


def test_a_jpeg_header_claiming_65000x65000_is_a_bad_frame(casme, tmp_path):
    """Before: a cv2.error traceback stopped every build, --strict or not."""
    root = _copy(casme, tmp_path / "d")
    first, middle = _good_rows(root)[:2]
    _claim_size(first.frame_path(first.onset), 65000, 65000)  # the onset: sizes the clip
    _claim_size(middle.frame_path(middle.onset + 1), 65000, 65000)
    report = build_cache("casme2", root, tmp_path / "c.h5", options=BuildOptions(size=16))
    reasons = {s["key"]: str(s["reason"]) for s in report.skipped}
    for row, n in ((first, first.onset), (middle, middle.onset + 1)):
        assert f"frame {n} (" in reasons[row.key]
        assert "claims 65000x65000 pixels" in reasons[row.key]
    with open_cache(tmp_path / "c.h5") as c:  # the other clips are built
        assert first.key not in c and middle.key not in c and len(c) == report.built > 0
    with pytest.raises(BuildError, match="--strict"):
        build_cache("casme2", root, tmp_path / "c.h5",
                    options=BuildOptions(size=16, strict=True, redo=(first.key,)))


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_frame_file_decodes_or_is_a_bad_frame(tmp_path, data):
    """Property: random bytes, or a real JPEG with bytes changed, cut or a size claimed,
    decode to an image or raise FrameError naming the frame; nothing else escapes."""
    ok, jpeg = cv2.imencode(".jpg", np.random.default_rng(0).integers(
        0, 255, (24, 32, 3), np.uint8))
    raw = bytearray(jpeg.tobytes())
    kind = data.draw(st.sampled_from(["random", "mutated", "cut", "claim"]))
    if kind == "random":
        raw = bytearray(data.draw(st.binary(max_size=2000)))
    elif kind == "mutated":
        for _ in range(data.draw(st.integers(1, 20))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    elif kind == "cut":
        raw = raw[:data.draw(st.integers(0, len(raw)))]
    else:
        i = raw.index(b"\xff\xc0")
        raw[i + 5:i + 9] = data.draw(st.binary(min_size=4, max_size=4))
    path = tmp_path / "frame.jpg"
    path.write_bytes(bytes(raw))
    try:
        img = read_frame(path, 7)
    except FrameError as exc:
        assert "frame 7 (" in str(exc)
    else:
        assert isinstance(img, np.ndarray) and img.size > 0


# --- 4, 5. hostile and damaged caches ----------------------------------------------------

def _first_key(cache: Path) -> str:
    with open_cache(cache) as c:
        return next(iter(c)).key


def _hostile(kind: str, cache: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(os.urandom(16 * 16 * 3 * 4))
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["data"] = np.zeros((16, 16, 3), np.float32)
    key = _first_key(cache)
    with h5py.File(cache, "r+") as f:
        g = f[key]
        del g["full"]
        if kind == "external":
            g.create_dataset("full", (16, 16, 3), np.float32,
                             external=[(str(secret), 0, 16 * 16 * 3 * 4)])
        elif kind == "soft":
            g["full"] = h5py.SoftLink(f"/{key}/onset")
        elif kind == "external-link":
            g["full"] = h5py.ExternalLink(str(other), "/data")
        else:
            layout = h5py.VirtualLayout((16, 16, 3), np.float32)
            layout[...] = h5py.VirtualSource(str(other), "data", (16, 16, 3))
            g.create_virtual_dataset("full", layout)


@pytest.mark.parametrize("kind", ["external", "soft", "external-link", "virtual"])
def test_a_cache_that_points_elsewhere_is_refused(built, tmp_path, kind):
    """Before: an external dataset's bytes (any file) were read as an image."""
    cache = _copy(built, tmp_path / "c.h5")
    _hostile(kind, cache, tmp_path)
    with pytest.raises(CacheError, match="refusing to read it"):
        with open_cache(cache) as c:
            list(c)
    for group, args in ((mer_prep, ["inspect", str(cache)]),
                        (mer_train, ["cv", "--cache", str(cache), "--model", "learnet",
                                     "--out", str(tmp_path / "run")])):
        result = CliRunner().invoke(group, args)
        assert result.exit_code == 1 and "refusing to read it" in result.output
        assert not isinstance(result.exception, Exception) or isinstance(
            result.exception, SystemExit)
    assert not (tmp_path / "run").exists()


def test_a_truncated_cache_names_the_file_and_the_fix(built, tmp_path):
    cache = tmp_path / "c.h5"
    cache.write_bytes(built.read_bytes()[: built.stat().st_size // 2])
    result = CliRunner().invoke(mer_prep, ["inspect", str(cache)])
    assert result.exit_code == 1 and str(cache) in result.output
    assert "--rebuild" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_clip_without_its_full_image_is_named_and_rebuilt(casme, built, tmp_path):
    cache = _copy(built, tmp_path / "c.h5")
    key = _first_key(cache)
    with h5py.File(cache, "r+") as f:
        del f[key]["full"]
    with pytest.raises(CacheError, match=f"clip {key} is damaged \\(it has no full image\\).*"
                                         f"--redo {key}"):
        with open_cache(cache) as c:
            list(c)
    report = build_cache("casme2", casme, cache, options=BuildOptions(size=16))
    assert report.built == 1  # the damaged clip, found and built again
    with open_cache(cache) as c:
        assert "full" in c.get(*key.split("/")).phases


def test_damaged_pixels_are_an_error_and_redo_rebuilds_them(casme, built, tmp_path):
    """Images carry a Fletcher-32 checksum: flipped bytes are an error naming the clip and
    the command that rebuilds it (before: numbers)."""
    cache = _copy(built, tmp_path / "c.h5")
    key = _first_key(cache)
    with h5py.File(cache, "r") as f:
        offset = f[key]["full"].id.get_chunk_info(0).byte_offset
    with open(cache, "r+b") as fh:
        fh.seek(offset + 8)
        fh.write(b"\x00\x01\x02\x03\x04\x05\x06\x07")
    with open_cache(cache) as c, pytest.raises(CacheError, match=(
            f"the full image of clip {key} is damaged.*--redo {key}")):
        c.images(c.get(*key.split("/")))
    result = CliRunner().invoke(mer_train, ["cv", "--cache", str(cache), "--model", "learnet",
                                            "--out", str(tmp_path / "run")])
    assert result.exit_code == 1 and f"--redo {key}" in result.output
    report = build_cache("casme2", casme, cache, options=BuildOptions(size=16, redo=(key,)))
    assert report.built == 1
    with open_cache(cache) as c:
        assert np.isfinite(c.images(c.get(*key.split("/")))["full"]).all()


# --- 6. disk full ------------------------------------------------------------------------

def test_disk_full_mid_build_cleans_up_and_keeps_finished_clips(casme, built, tmp_path,
                                                                 monkeypatch):
    out = _copy(built, tmp_path / "c.h5")
    before = out.read_bytes()
    calls = {"n": 0}
    real_add = CacheWriter.add

    def add(self, record):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_add(self, record)

    monkeypatch.setattr(CacheWriter, "add", add)
    with pytest.raises(BuildError, match=r"disk full while writing .*3 finished clips are kept"):
        build_cache("casme2", casme, out, options=BuildOptions(size=16, rebuild=True))
    assert out.read_bytes() == before  # the previous cache is untouched
    assert not list(tmp_path.glob("c.h5.tmp-*"))  # nothing half-written is left
    parts = tmp_path / "c.h5.parts"
    assert len(list(parts.glob("*.part"))) == 3 and not list(parts.glob("*.tmp*"))
    # a first build that meets a full disk: the next run goes on from its finished clips
    fresh = tmp_path / "fresh.h5"
    calls["n"] = 0
    with pytest.raises(BuildError, match="disk full"):
        build_cache("casme2", casme, fresh, options=BuildOptions(size=16))
    assert not fresh.exists() and not list(tmp_path.glob("fresh.h5.tmp-*"))
    monkeypatch.setattr(CacheWriter, "add", real_add)
    report = build_cache("casme2", casme, fresh, options=BuildOptions(size=16))
    with open_cache(built) as whole:
        assert report.reused == 3 and report.total == len(whole)


def test_disk_full_while_saving_a_part_leaves_no_partial_part(casme, tmp_path, monkeypatch):
    import mer_di.pipeline.writer as writer

    calls = {"n": 0}
    real_save = np.save

    def save(fh, array):
        calls["n"] += 1
        if calls["n"] == 7:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(fh, array)

    monkeypatch.setattr(writer.np, "save", save)
    with pytest.raises(BuildError, match="disk full"):
        build_cache("casme2", casme, tmp_path / "c.h5", options=BuildOptions(size=16))
    assert not list((tmp_path / "c.h5.parts").glob("*.tmp*"))
    assert not list(tmp_path.glob("c.h5.tmp-*")) and not (tmp_path / "c.h5").exists()


# --- 7. bad arguments on every command ---------------------------------------------------

_CV = ["cv", "--cache", "c.h5", "--model", "learnet", "--tiny", "--folds", "2", "--epochs",
       "1"]
_BAD_ARGUMENTS = [
    (mer_train, [*_CV, "--out", "r", "--seeds", "-1"], "seeds [-1]"),
    (mer_train, [*_CV, "--out", "r", "--seeds", "0,0"], "seed 0 given twice"),
    (mer_train, [*_CV, "--out", "r", "--seeds", str(2**32 + 1)], "each seed once"),
    (mer_train, [*_CV, "--out", "r", "--lr", "nan"], "--lr nan"),
    (mer_train, [*_CV, "--out", "r", "--lr", "inf"], "--lr inf"),
    (mer_train, [*_CV, "--out", "r", "--lr", "-1"], "--lr -1"),
    (mer_train, [*_CV, "--out", "r", "--val-fraction", "nan"], "--val-fraction nan"),
    (mer_train, [*_CV, "--out", "r", "--device", "foo"], "--device foo"),
    (mer_train, [*_CV, "--out", "r", "--device", "gpu"], "--device gpu"),
    (mer_train, [*_CV, "--out", "r", "--device", "mps"], "--device mps"),
    (mer_train, [*_CV[:5], "--out", "r", "--folds", "9"], "need a class with at least 9"),
    (mer_train, [*_CV, "--out", "afile/r"], "afile is a file, not a folder"),
    (mer_train, [*_CV, "--out", "afile"], "'afile' is a file"),
    (mer_train, [*_CV[:-2], "--epochs", "0", "--out", "r"], "--epochs 0"),
    (mer_train, ["cv", "--cache", "nosuch.h5", "--model", "learnet", "--out", "r"],
     "nosuch.h5"),
    (mer_train, ["report", "nosuch"], "nosuch: no such folder"),
    (mer_train, ["predict", "--run", "nosuch", "--cache", "c.h5", "--out", "p.csv"],
     "nosuch"),
    (mer_train, ["predict", "--run", "nosuch", "--cache", "c.h5", "--out", "afile/p.csv"],
     "afile is a file"),
    (mer_prep, ["build-cache", "--dataset", "casme2", "--root", "d", "--out", "afile/c.h5"],
     "afile is a file, not a folder"),
    (mer_prep, ["build-cache", "--dataset", "casme2", "--root", "d", "--out", "x.h5",
                "--size", "8"], "at least 32"),
    (mer_prep, ["build-cache", "--dataset", "casme2", "--root", "d", "--out", "x.h5",
                "--redo", "sub99/none"], "--redo sub99/none"),
    (mer_prep, ["manifest", "--dataset", "casme2", "--root", "d", "--out", "afile/m.csv"],
     "afile is a file"),
    (mer_prep, ["synth", "--dataset", "casme2", "--out", "afile/s"], "afile is a file"),
    (mer_prep, ["show", "c.h5", "sub01/x", "--out", "afile/x.png"], "afile is a file"),
    (mer_prep, ["show", "c.h5", "nonsense", "--out", "x.png"], "SUBJECT/CLIP"),
    (mer_prep, ["inspect", "afile"], "afile"),
]


@pytest.fixture(scope="module")
def workspace(casme, built, tmp_path_factory) -> Path:
    """A folder with a cache (c.h5), a dataset (d/) and a plain file (afile)."""
    ws = tmp_path_factory.mktemp("ws")
    shutil.copy(built, ws / "c.h5")
    shutil.copytree(casme, ws / "d")
    (ws / "afile").write_text("not a folder")
    return ws


@pytest.mark.parametrize("group, args, says", _BAD_ARGUMENTS,
                         ids=[" ".join(a)[:60] for _, a, _ in _BAD_ARGUMENTS])
def test_bad_arguments_give_a_clean_message_and_leave_nothing(workspace, monkeypatch, group,
                                                              args, says):
    monkeypatch.chdir(workspace)
    before = sorted(p.name for p in workspace.iterdir())
    result = CliRunner().invoke(group, args)
    assert result.exit_code in (1, 2), result.output
    assert says in result.output, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # no traceback
    assert sorted(p.name for p in workspace.iterdir()) == before  # nothing left behind


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_folder_is_refused_before_anything_runs(workspace, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    with pytest.raises(OutputError, match="is not writable"):
        build_cache("casme2", workspace / "d", ro / "c.h5")
