"""The set-up scripts, with a stand-in virtual environment that records what it is asked."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _fake_venv(tmp_path: Path) -> tuple[Path, Path]:
    """A folder that looks like a venv: its python records its arguments; its mer-prep
    fails, which stops the demo (set -e) right after the install step."""
    venv, log = tmp_path / "venv", tmp_path / "calls.txt"
    (venv / "bin").mkdir(parents=True)
    for name, body in (("python", f'echo "$@" >> {log}'), ("mer-prep", "exit 3")):
        script = venv / "bin" / name
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(0o755)
    return venv, log


def test_demo_with_an_out_dir_installs_the_project_not_a_bogus_extra(tmp_path):
    """`bash scripts/demo.sh OUT_DIR` (the README's usage) once installed `.[OUT_DIR]`."""
    venv, log = _fake_venv(tmp_path)
    out = tmp_path / "demo_out"
    proc = subprocess.run(["bash", "scripts/demo.sh", str(out)], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "VENV": str(venv)})
    assert proc.returncode == 3, proc.stderr  # stopped at the stand-in mer-prep
    installs = [line for line in log.read_text().splitlines() if "install" in line]
    # the project itself (with the tested torch pair as constraints), never `.[OUT_DIR]`
    assert installs[-1].endswith(" -e ."), installs
    assert "[" not in installs[-1], installs
    assert out.is_dir()
