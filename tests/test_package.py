"""The installed package: one top-level name, a lazy public API that keeps torch out of
light imports, the README's Python example, and clean errors from both commands."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import mer_di

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_installs_only_mer_di(tmp_path):
    # built from a copy: setuptools leaves build/ in the source tree, and a stale build/
    # would put deleted modules into the next wheel
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
        ".ruff_cache", "demo_out"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(source)], check=True, cwd=tmp_path)
    # nothing is left in the folder built from (setuptools would leave build/, egg-info)
    assert not (source / "build").exists() and not list(source.glob("*.egg-info"))
    wheel = next(tmp_path.glob("mer_di-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert tops == {"mer_di"}
    for module in ("mer_di/pipeline/store.py", "mer_di/training/cli.py",
                   "mer_di/data_manifest/synth/generate.py", "mer_di/training/models/dianet.py"):
        assert module in names
    # the unpacked wheel imports on its own, from a folder that is not the checkout
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import mer_di.training.cli as c; "
            "assert c.__file__.startswith(sys.argv[1]), c.__file__")
    subprocess.run([sys.executable, "-c", code, str(site)], check=True, cwd=tmp_path)


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
