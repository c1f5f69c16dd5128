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


def test_slurm_script_starts_a_head_and_workers_then_the_command(tmp_path):
    """scripts/slurm_ray.sh with stand-ins for SLURM's and Ray's commands: a head on the
    first node, a worker on each other node, then the command with the head's address."""
    log = tmp_path / "calls.txt"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_ins = {
        "scontrol": 'echo n1; echo n2; echo n3',
        # srun ... hostname --ip-address -> an address; srun ... ray start -> logged
        "srun": f'echo "srun $*" >> {log}; case "$*" in *hostname*) echo 10.0.0.1;; esac',
        "ray": f'echo "ray $*" >> {log}',
        "mer-train": f'echo "mer-train $*" >> {log}',
    }
    for name, body in stand_ins.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "activate").write_text("")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "MER_DI_VENV": str(venv),
           "SLURM_JOB_NODELIST": "n[1-3]", "SLURM_CPUS_PER_TASK": "8",
           "SLURM_GPUS_PER_TASK": "2", "RAY_WAIT_S": "0"}
    proc = subprocess.run(["bash", "scripts/slurm_ray.sh", "mer-train", "table1", "--out", "x",
                           "--executor", "ray"], cwd=REPO, capture_output=True, text=True,
                          env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    calls = log.read_text().splitlines()
    head = [c for c in calls if "--head" in c]
    assert len(head) == 1 and "-w n1" in head[0] and "--num-gpus=2" in head[0]
    workers = [c for c in calls if "--address=10.0.0.1:6379" in c]
    assert sorted(c.split("-w ")[1].split()[0] for c in workers) == ["n2", "n3"]
    assert "mer-train table1 --out x --executor ray --ray-address 10.0.0.1:6379" in calls
    assert calls[-1] == "ray stop"
