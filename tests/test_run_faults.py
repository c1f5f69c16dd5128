"""Issue 18, the class test of failed writes: a tiny ``cv``, ``report``, ``predict`` and
``table1`` with a write failure (ENOSPC, then EIO) injected at the 1st, 2nd, ... k-th
write each makes, as SQLite's I/O-error tests do. For every k: a clean message and a
non-zero exit, no traceback, nothing temporary left and no partial file under a final
name; the same command (``--resume`` for cv) then finishes with the predictions of an
undisturbed run. Also a read-only ``--out`` (EROFS) and: every file is written beside its
final name (never in a temporary folder elsewhere, so ``--out`` may be on any
filesystem)."""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from mer_di.training.cli import main as mer_train

REAL_OPEN = builtins.open
# --unit-cpus 1: one torch thread, twenty times faster on a busy machine than threads that
# contend for its cores
PARTIAL = ".partial-"  # a temporary file beside its final name: .NAME.partial-PID
CV = ["--quiet", "--tiny", "--model", "learnet", "--config", "baseline", "--protocol", "kfold",
      "--folds", "2", "--epochs", "1", "--batch-size", "8",
      "--unit-cpus", "1", "--val-fraction", "0"]
TABLE1 = ["--model", "learnet", "--config", "baseline", "--folds", "2", "--epochs", "1",
          "--tiny", "--quiet", "--unit-cpus", "1"]


class Faults:
    """Every ``write`` to a file opened for writing through ``open`` (which pathlib,
    pandas, matplotlib, numpy and json all use) is counted; the ``at``-th writes half its
    data and raises ``OSError(err)``. ``opened`` lists the files opened for writing."""

    def __init__(self, at: int | None = None, err: int = errno.ENOSPC):
        self.at, self.err, self.count, self.opened = at, err, 0, []

    def open(self, file, mode="r", *args, **kwargs):
        fh = REAL_OPEN(file, mode, *args, **kwargs)
        if isinstance(file, (str, os.PathLike)) and set(mode) & set("wax+"):
            self.opened.append(Path(file))
            return _Failing(fh, self)
        return fh


class _Failing:
    def __init__(self, fh, faults: Faults):
        self._fh, self._faults = fh, faults

    def write(self, data):
        f = self._faults
        f.count += 1
        if f.count == f.at:
            self._fh.write(data[: len(data) // 2])
            self._fh.flush()
            raise OSError(f.err, os.strerror(f.err))
        return self._fh.write(data)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()


@contextmanager
def injected(faults: Faults):
    mp = pytest.MonkeyPatch()
    mp.setattr(builtins, "open", faults.open)
    mp.setattr(io, "open", faults.open)
    try:
        yield faults
    finally:
        mp.undo()


def invoke(args: list[str], faults: Faults | None = None):
    with injected(faults or Faults()):
        result = CliRunner().invoke(mer_train, args)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        result.output, result.exception)
    return result


def leftovers(folder: Path) -> list[Path]:
    """Temporary files and folders (ours, and the names used before issue 18), a lock."""
    return [p for p in folder.rglob("*") if PARTIAL in p.name or p.name.startswith(".tmp-")
            or p.suffix in (".tmp", ".partial") or p.name == ".lock"]


def check_whole(folder: Path) -> None:
    """Every file under a final name reads as what it claims to be."""
    for p in folder.rglob("*"):
        if p.suffix == ".csv":
            pd.read_csv(p)
        elif p.suffix == ".json":
            json.loads(p.read_text())
        elif p.suffix == ".pt":
            torch.load(p, weights_only=True)
        elif p.suffix == ".png":
            assert p.read_bytes().startswith(b"\x89PNG") and p.read_bytes().endswith(
                b"IEND\xaeB`\x82")


def check_fault(result, faults: Faults, folder: Path, rerun: str) -> None:
    assert result.exit_code == 1, result.output
    words = {errno.ENOSPC: "disk full", errno.EIO: "Input/output error",
             errno.EROFS: "Read-only file system"}[faults.err]
    assert words in result.output, result.output
    assert rerun in result.output, result.output
    if folder.exists():
        assert not leftovers(folder), leftovers(folder)
        check_whole(folder)
    # no file is ever opened for writing under its final name
    assert all(PARTIAL in p.name for p in faults.opened), faults.opened


@pytest.fixture(scope="module")
def clean(tmp_path_factory, tiny_cache) -> dict[str, object]:
    """A tiny cache; an undisturbed cv, report, predict and table1 of it, and how many
    writes each made."""
    base, cache = tmp_path_factory.mktemp("faults"), tiny_cache
    from mer_di.training.figures import _pyplot

    _pyplot()  # matplotlib writes its font cache once, on first use: not the commands' write
    out: dict[str, object] = {"cache": cache, "base": base}
    for name, args in (
            ("cv", ["cv", *CV, "--cache", str(cache), "--out", str(base / "run")]),
            ("report", ["report", str(base / "run"), "--bootstrap", "200", "--out",
                        str(base / "report")]),
            ("predict", ["predict", "--run", str(base / "run"), "--cache", str(cache),
                         "--fold", "0", "--out", str(base / "pred.csv")]),
            ("table1", ["table1", *TABLE1, "--cache", str(cache), "--out",
                        str(base / "t1")])):
        faults = Faults()
        result = invoke(args, faults)
        assert result.exit_code == 0, result.output
        assert all(PARTIAL in p.name for p in faults.opened), faults.opened
        assert all(base in p.parents for p in faults.opened)  # nothing written elsewhere
        out[name] = faults.count
    return out


def _same(a: Path, b: Path) -> None:
    pd.testing.assert_frame_equal(pd.read_csv(a), pd.read_csv(b))


def test_cv_survives_a_failed_write_at_every_write(clean, tmp_path):
    base, cache = clean["base"], str(clean["cache"])
    assert clean["cv"] >= 10  # config, 2 units x 4 files, the tables
    for k in range(1, clean["cv"] + 1):
        for err in (errno.ENOSPC, errno.EIO):
            run = tmp_path / f"run{k}-{err}"
            args = ["cv", *CV, "--cache", cache, "--out", str(run)]
            faults = Faults(at=k, err=err)
            failed = invoke(args, faults)
            check_fault(failed, faults, run, f"mer-train cv --resume --out {run}")
            if err == errno.ENOSPC and k > 1:  # after config.json: the space it needs
                assert "the rest of the run needs about" in failed.output, failed.output
            report = invoke(["report", str(run), "--no-figures", "--out", str(tmp_path / "r")])
            assert report.exit_code == 1, report.output  # never a report of a failed run
            result = invoke([*args, "--resume"])
            assert result.exit_code == 0, (k, err, result.output)
            _same(run / "predictions.csv", base / "run" / "predictions.csv")
            assert not leftovers(run)


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EIO])
def test_report_and_predict_survive_a_failed_write_at_every_write(clean, tmp_path, err):
    base, cache = clean["base"], str(clean["cache"])
    tables = 4  # table.md, table.csv, paired.md, paired.csv; then the figures
    assert clean["report"] > tables
    for k in range(1, clean["report"] + 1):
        out = tmp_path / f"report{k}"
        args = ["report", str(base / "run"), "--bootstrap", "200", "--out", str(out)]
        if k <= tables:  # the tables are written first: no figures to draw for them
            args.append("--no-figures")
        faults = Faults(at=k, err=err)
        check_fault(invoke(args, faults), faults, out, "run the same command again")
        assert invoke(args).exit_code == 0
        _same(out / "table.csv", base / "report" / "table.csv")
        assert sorted(p.name for p in out.iterdir()) == sorted(
            p.name for p in (base / "report").iterdir() if k > tables or p.suffix != ".png")
    for k in range(1, clean["predict"] + 1):
        out = tmp_path / f"pred{k}.csv"
        args = ["predict", "--run", str(base / "run"), "--cache", cache, "--fold", "0",
                "--out", str(out)]
        faults = Faults(at=k, err=err)
        check_fault(invoke(args, faults), faults, tmp_path, "run the same command again")
        assert not out.exists()
        assert invoke(args).exit_code == 0
        _same(out, base / "pred.csv")


def test_table1_survives_a_failed_write(clean, tmp_path):
    """At its first write, the last of its cv's (tables.json), the report's first and
    last: the writes between are cv's and report's, each failed in turn above. ENOSPC
    and EIO by turns."""
    base, cache = clean["base"], str(clean["cache"])
    n, cv = clean["table1"], clean["cv"]
    for i, k in enumerate(sorted({1, cv, cv + 1, n})):
        out = tmp_path / f"t{k}"
        args = ["table1", *TABLE1, "--cache", cache, "--out", str(out)]
        faults = Faults(at=k, err=(errno.ENOSPC, errno.EIO)[i % 2])
        check_fault(invoke(args, faults), faults, out, "the same command again")
        assert invoke(args).exit_code == 0
        _same(out / "casme2" / "predictions.csv", base / "t1" / "casme2" / "predictions.csv")
        table = [pd.read_csv(p / "report" / "table.csv").filter(regex=r"^(?!.*\.run$)")
                 for p in (out, base / "t1")]
        pd.testing.assert_frame_equal(*table)


def test_read_only_out_is_said_and_nothing_is_left(clean, tmp_path):
    """A folder that turns out read-only when written (a read-only mount: EROFS) is named
    as such; the run folder it could not write is not left behind half-made."""
    run = tmp_path / "ro"
    args = ["cv", *CV, "--cache", str(clean["cache"]), "--out", str(run)]
    faults = Faults(at=1, err=errno.EROFS)
    result = invoke(args, faults)
    check_fault(result, faults, run, "--resume")
    assert not run.exists()
    faults = Faults(at=1, err=errno.EROFS)
    out = tmp_path / "rep"
    result = invoke(["report", str(clean["base"] / "run"), "--out", str(out), "--no-figures"],
                    faults)
    check_fault(result, faults, out, "Give another --out")


def test_a_write_error_crosses_processes_whole():
    """A Ray worker's failed unit write reaches the driver as itself (the run's message
    needs disk_full and the unit's size)."""
    import pickle

    from mer_di._files import WriteError

    exc = WriteError(Path("/runs/r/units/u/model.pt"), OSError(errno.ENOSPC, "No space"))
    exc.needed = 1234
    back = pickle.loads(pickle.dumps(exc))
    assert (str(back), back.disk_full, back.needed) == (str(exc), True, 1234)
