"""What reaches a user's terminal is ours: the demo's commands, on tiny data, with the
warnings a user would see (UserWarning, FutureWarning, RuntimeWarning) turned into errors,
print no library warning; what a library would have warned about is said in our words."""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ERRORS = "error::UserWarning,error::FutureWarning,error::RuntimeWarning"
# a library's own words: "SomethingWarning:", a path into site-packages, setuptools' banner
LIBRARY_LINE = re.compile(r"\w+Warning\b|site-packages|Traceback|^!!$", re.M)


def _run(tmp: Path, module: str, *args: str) -> str:
    env = {**os.environ, "PYTHONWARNINGS": ERRORS, "MPLCONFIGDIR": str(tmp / "mpl")}
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=300)
    said = proc.stdout + proc.stderr
    assert proc.returncode == 0, said[-4000:]
    assert not LIBRARY_LINE.search(said), said[-4000:]
    return said


@pytest.mark.slow
def test_the_demos_commands_print_no_library_warning(tmp_path):
    """scripts/demo.sh's steps (smaller: 2 folds, 1 epoch, tiny LEARNet, two
    configurations, no apex-frame run), with a class of one clip, fewer than the folds:
    scikit-learn's 'least populated class' UserWarning is now the run's note, said once and
    kept in config.json and summary.md."""
    prep, train = "mer_di.pipeline.cli", "mer_di.training.cli"
    _run(tmp_path, prep, "synth", "--dataset", "casme2", "--out", "casme2", "--subjects", "6",
         "--clips-per-class", "1", "--frame-size", "48x48", "--seed", "0", "--quiet")
    _run(tmp_path, prep, "manifest", "--dataset", "casme2", "--root", "casme2", "--out",
         "manifest.csv")
    _run(tmp_path, prep, "build-cache", "--dataset", "casme2", "--root", "casme2", "--out",
         "c.h5", "--size", "32", "--quiet")
    _run(tmp_path, prep, "inspect", "--cache", "c.h5")
    with open(tmp_path / "casme2" / "synth_ground_truth.csv") as f:
        rows = [r for r in csv.DictReader(f) if not r["quirk"]]
    _run(tmp_path, prep, "show", "--cache", "c.h5", f"{rows[0]['subject']}/{rows[0]['clip']}",
         "--out", "clip.png")
    common = ["--cache", "c.h5", "--model", "learnet", "--tiny", "--epochs", "1",
              "--protocol", "subject-kfold", "--folds", "2", "--no-checkpoints", "--quiet"]
    # every emotion of the sheet: 'fear' has one clip, fewer than the 2 folds
    said = _run(tmp_path, train, "cv", *common, "--classes", "all", "--config", "baseline",
                "--config", "dualdi+fliprot", "--out", "runs/learnet")
    note = [line for line in said.splitlines() if "class 'fear' has 1 clip" in line]
    assert len(note) == 1 and "fewer than the 2 folds" in note[0], said
    assert "at least 1 test fold holds no clip of it" in note[0] and "per-fold" in note[0]
    run = tmp_path / "runs" / "learnet"
    notes = json.loads((run / "config.json").read_text())["notes"]
    assert [n for n in notes if n.startswith("class 'fear' has 1 clip")], notes
    assert "class 'fear' has 1 clip" in (run / "summary.md").read_text()
    _run(tmp_path, train, "report", "runs/learnet", "--out", "report")
    assert (tmp_path / "report" / "table.md").is_file()


def test_rays_notice_that_it_chose_token_authentication_is_dropped(caplog):
    """``ray.init`` logged 'Token authentication is enabled for this Ray cluster. Set
    RAY_AUTH_MODE=disabled to opt out...' on every local run; its warning that
    authentication is off still reaches the user."""
    from mer_di.training.ray_executor import RayExecutor

    name = "ray._private.authentication.authentication_token_setup"

    class FakeRay:
        @staticmethod
        def is_initialized():
            return False

        @staticmethod
        def init(**kwargs):
            logging.getLogger(name).warning(
                "Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE="
                "disabled to opt out.")
            logging.getLogger(name).warning(
                "Token authentication is disabled for this Ray cluster. Anyone with ...")

    with caplog.at_level(logging.WARNING):
        assert RayExecutor()._connect(FakeRay) is True
    said = [r.getMessage() for r in caplog.records]
    assert not [m for m in said if "is enabled" in m], said
    assert [m for m in said if "is disabled" in m], said
