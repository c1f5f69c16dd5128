"""The set-up scripts, with a stand-in virtual environment that records what it is asked."""

from __future__ import annotations

import os
import shutil
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


def _venv_sh(project: Path, venv: Path, log: Path, extras: str = "test",
             fail: bool = False) -> subprocess.CompletedProcess:
    """``source scripts/venv.sh EXTRAS`` in ``project`` (a copy of pyproject.toml and
    scripts/), with a stand-in ``python3 -m venv`` that makes a venv whose python logs its
    arguments (and fails any pip install when ``fail``)."""
    bin_dir = project / "stand-ins"
    if not bin_dir.exists():
        bin_dir.mkdir()
        python = (f'echo "$@" >> {log}\n'
                  'case "$*" in *"pip install"*) [ -z "$FAIL" ] || exit 1;; esac\n')
        (bin_dir / "python3").write_text(
            f'#!/bin/sh\necho "python3 $*" >> {log}\n[ "$1 $2" = "-m venv" ] || exit 9\n'
            f'mkdir -p "$3/bin"\nprintf \'#!/bin/sh\\n%s\' \'{python}\' > "$3/bin/python"\n'
            'chmod +x "$3/bin/python"\n')
        (bin_dir / "python3").chmod(0o755)
    env = {**os.environ, "VENV": str(venv), "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "FAIL": "1" if fail else ""}
    return subprocess.run(["bash", "-c", f'set -eu; source scripts/venv.sh "{extras}"; '
                           'echo "reached the tests with $(command -v python)"'],
                          cwd=project, env=env, capture_output=True, text=True, timeout=60)


def test_venv_sh_says_what_the_first_run_does_and_later_runs_install_nothing(tmp_path):
    """The first run says it sets up the venv and installs PyTorch; a second one, with
    nothing changed, runs no pip at all (no network, starts at once); a changed
    pyproject.toml, other extras or a failed install are installed again."""
    project, venv, log = tmp_path / "project", tmp_path / "venv", tmp_path / "calls.txt"
    (project / "scripts").mkdir(parents=True)
    for name in ("pyproject.toml", "scripts/venv.sh", "scripts/constraints.txt"):
        shutil.copy(REPO / name, project / name)

    def calls() -> list[str]:
        lines = log.read_text().splitlines() if log.exists() else []
        log.write_text("")
        return lines

    first = _venv_sh(project, venv, log)
    assert first.returncode == 0, first.stderr
    assert "setting up" in first.stdout and "PyTorch" in first.stdout
    assert f"reached the tests with {venv}/bin/python" in first.stdout
    made = calls()
    assert made[0] == f"python3 -m venv {venv}"
    assert "-m pip install -qq --upgrade pip" in made
    assert made[-1] == "-m pip install -qq -c scripts/constraints.txt -e .[test]"

    again = _venv_sh(project, venv, log)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [f"reached the tests with {venv}/bin/python"]
    assert not [c for c in calls() if "pip" in c]  # only the cheap import check

    plain = _venv_sh(project, venv, log, extras="")  # the demo's install
    assert "updating" in plain.stdout and calls()[-1].endswith(" -e .")
    assert not [c for c in (_venv_sh(project, venv, log), calls())[1] if "pip" in c]

    with open(project / "pyproject.toml", "a") as f:
        f.write("\n# a changed dependency\n")
    failed = _venv_sh(project, venv, log, fail=True)
    assert failed.returncode != 0 and "reached the tests" not in failed.stdout
    assert "failed" in failed.stderr
    calls()
    retried = _venv_sh(project, venv, log)  # the failure left no stamp: installed again
    assert retried.returncode == 0 and "updating" in retried.stdout
    assert calls()[-1].endswith("-e .[test]")
    assert not [c for c in (_venv_sh(project, venv, log), calls())[1] if "pip" in c]


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
