"""The installed package: one top-level name, a lazy public API that keeps torch out of
light imports, the README's Python example, and clean errors from both commands."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

import mer_di

REPO = Path(__file__).resolve().parents[1]


def _copy_of_checkout(dest: Path) -> Path:
    """The checkout's files (no .git, .venv or build output) in ``dest``."""
    shutil.copytree(REPO, dest, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
        ".ruff_cache", "demo_out", "*.h5"))
    return dest


# every warning an error: a deprecation of setuptools' (the licence as a TOML table, say)
# fails the build here long before the day setuptools stops reading it
_BUILD = ("import sys; sys.path.insert(0, 'scripts'); import build_backend as b; "
          "print(b.build_{kind}(sys.argv[1]))")


def _build(kind: str, source: Path, out: Path) -> Path:
    proc = subprocess.run([sys.executable, "-W", "error", "-c", _BUILD.format(kind=kind),
                           str(out)], cwd=source, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Warning" not in proc.stderr, proc.stderr[-3000:]
    return out / proc.stdout.split()[-1]


@pytest.mark.slow
def test_sdist_and_wheel_build_without_warnings_and_the_wheel_runs_alone(tmp_path):
    """The sdist, then the wheel built from the unpacked sdist (as pip does from an index),
    and the editable wheel, all with warnings as errors; the wheel installed (without its
    dependencies, which the running environment has) into a folder of its own runs synth,
    build-cache and cv from a folder that is not the checkout, with the checkout's editable
    install out of sight: a file only the checkout has shows up."""
    source = _copy_of_checkout(tmp_path / "src")
    sdist = _build("sdist", source, tmp_path / "dist")
    # what `pip install -e .` (scripts/venv.sh) builds: no setuptools note either
    assert _build("editable", source, tmp_path / "editable").name.endswith(".whl")
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    unpacked = next((tmp_path / "unpacked").iterdir())
    assert (unpacked / "LICENSE").is_file()
    wheel = _build("wheel", unpacked, tmp_path / "dist")
    # the wheel's metadata: the SPDX licence and its file
    meta = zipfile.ZipFile(wheel).read(f"{wheel.name.split('-py')[0]}.dist-info/METADATA")
    assert b"License-Expression: MIT" in meta and b"License-File: LICENSE" in meta
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                    "--target", str(site), str(wheel)], check=True, cwd=tmp_path)
    # -S: no .pth files, so the checkout's editable finder can't supply a module the wheel
    # lacks (site-packages holds no mer_di of its own), and the working folder is not the
    # checkout: every mer_di module comes from the wheel's folder; the dependencies come
    # from this environment's site-packages, after it
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(site), sysconfig.get_paths()["purelib"]])}
    work = tmp_path / "work"
    work.mkdir()

    def run(command: str, *args: str) -> str:
        proc = subprocess.run([sys.executable, "-S", str(site / "bin" / command), *args],
                              cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        return proc.stdout

    assert run("mer-prep", "--version").strip().endswith(mer_di.__version__)
    run("mer-prep", "synth", "--dataset", "casme2", "--out", "casme2", "--subjects", "3",
        "--clips-per-class", "1", "--frame-size", "48x48", "--seed", "0", "--quiet")
    run("mer-prep", "build-cache", "--dataset", "casme2", "--root", "casme2", "--out",
        "c.h5", "--size", "32", "--quiet")
    run("mer-train", "cv", "--cache", "c.h5", "--model", "learnet", "--tiny", "--epochs",
        "1", "--config", "baseline", "--protocol", "subject-kfold", "--folds", "3",
        "--no-checkpoints", "--quiet", "--out", "run")
    assert (work / "run" / "summary.csv").is_file()
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert tops == {"mer_di"}


@pytest.mark.slow
def test_the_wheel_installs_only_mer_di(tmp_path):
    # built from a copy: setuptools leaves build/ in the source tree, and a stale build/
    # would put deleted modules into the next wheel
    source = _copy_of_checkout(tmp_path / "src")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(source)], check=True, cwd=tmp_path)
    # nothing is left in the folder built from (setuptools would leave build/, egg-info)
    assert not (source / "build").exists() and not list(source.glob("*.egg-info"))
    wheel = next(tmp_path.glob("mer_di-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("mer_di/pipeline/store.py", "mer_di/training/cli.py",
                   "mer_di/data_manifest/synth/generate.py", "mer_di/training/models/dianet.py"):
        assert module in names


def test_torch_is_a_range_and_our_pair_a_constraint():
    """Installing into an environment with a working torch keeps it: pyproject accepts a
    range; scripts/ pin the known-good pair with a constraints file."""
    import tomllib
    from packaging.requirements import Requirement

    deps = {Requirement(d).name: Requirement(d).specifier
            for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
                "dependencies"]}
    for version in ("2.4.0", "2.5.1", "2.14.1"):
        assert deps["torch"].contains(version)
    assert deps["torchvision"].contains("0.20.1") and deps["torchvision"].contains("0.29.1")
    pins = (REPO / "scripts" / "constraints.txt").read_text()
    assert "torch==2.14.1" in pins and "torchvision==0.29.1" in pins
    assert "-c scripts/constraints.txt" in (REPO / "scripts" / "venv.sh").read_text()


def test_a_users_training_module_does_not_shadow_ours(tmp_path):
    """A project with its own training.py on the path still gets our command."""
    (tmp_path / "training.py").write_text("raise SystemExit('the user module ran')\n")
    (tmp_path / "pipeline.py").write_text("raise SystemExit('the user module ran')\n")
    out = subprocess.run([sys.executable, "-m", "mer_di.training.cli", "--help"],
                         cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert "cv" in out.stdout and "predict" in out.stdout


def test_light_imports_never_import_torch():
    code = ("import sys, mer_di, mer_di.errors, mer_di.options, mer_di.pipeline, "
            "mer_di.data_manifest; from mer_di import MerError, CacheError, ModelError; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_public_api_is_listed_and_resolves():
    assert set(dir(mer_di)) == set(mer_di.__all__)
    for name in mer_di.__all__:
        assert getattr(mer_di, name) is not None, name
    with pytest.raises(AttributeError):
        mer_di.not_a_thing  # noqa: B018
    assert re.fullmatch(r"\d+\.\d+\.\d+", mer_di.__version__)


def test_every_project_error_is_a_mer_error():
    import mer_di.errors as errors

    classes = [v for v in vars(errors).values() if isinstance(v, type)
               and issubclass(v, Exception)]
    assert len(classes) >= 10
    assert all(issubclass(c, errors.MerError) for c in classes)


def _readme_python() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("## From Python", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(_readme_python(), "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "clips" in out and (tmp_path / "runs" / "learnet" / "summary.csv").is_file()
    assert (tmp_path / "report" / "table.md").is_file()


def test_readme_names_every_option_value():
    from mer_di import options

    text = (REPO / "README.md").read_text()
    for choices in (options.CROPS, options.WEIGHTS, options.CLASS_SETS, options.PROTOCOLS,
                    options.CONFIGS, options.INPUTS):
        for value in choices:
            assert f"`{value}`" in text, value


def test_no_public_name_shadows_a_module():
    """`from .x import x` in a package's __init__ hides module x behind the function
    (`import mer_di.training.x as m` would give the function)."""
    import mer_di.data_manifest
    import mer_di.pipeline
    import mer_di.training

    for package in (mer_di.pipeline, mer_di.training, mer_di.data_manifest):
        modules = {p.stem for p in Path(package.__file__).parent.glob("*.py")}
        assert not set(package.__all__) & modules, package.__name__
