"""``mer-prep`` through click's CliRunner."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from mer_di.data_manifest import read_manifest
from mer_di.pipeline.cli import main as mer_prep
from mer_di.training.cli import main as mer_train


def test_manifest_command(small_datasets, tmp_path):
    out = tmp_path / "m.csv"
    result = CliRunner().invoke(mer_prep, ["manifest", "--dataset", "casme2", "--root",
                                           str(small_datasets["casme2"]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "clips per label" in result.output and "clips per subject" in result.output
    assert "problem rows (4):" in result.output
    assert len(read_manifest(out)) == 16


def test_strict_fails_on_problem_rows(small_datasets, tmp_path):
    result = CliRunner().invoke(mer_prep, ["manifest", "--dataset", "samm", "--root",
                                           str(small_datasets["samm"]), "--strict", "--out",
                                           str(tmp_path / "m.csv")])
    assert result.exit_code == 1
    assert "--strict: 4 rows have problems" in result.output


def test_unreadable_sheet_is_a_clean_error(tmp_path):
    bad = tmp_path / "sheet.xlsx"
    bad.write_text("nope")
    result = CliRunner().invoke(mer_prep, ["manifest", "--dataset", "mmew", "--root",
                                           str(tmp_path), "--sheet", str(bad), "--out",
                                           str(tmp_path / "m.csv")])
    assert result.exit_code != 0
    assert "cannot read as an Excel workbook" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "m.csv").exists()


def test_synth_command(tmp_path):
    out = tmp_path / "d"
    result = CliRunner().invoke(mer_prep, ["synth", "--dataset", "mmew", "--out", str(out),
                                           "--subjects", "2", "--clips-per-class", "1",
                                           "--frame-size", "48x48", "--length", "6:8"])
    assert result.exit_code == 0, result.output
    assert "planted quirks" in result.output and (out / "MMEW_Micro_Exp.xlsx").is_file()
    bad = CliRunner().invoke(mer_prep, ["synth", "--dataset", "mmew", "--out", str(out),
                                        "--frame-size", "big"])
    assert bad.exit_code != 0 and "WIDTHxHEIGHT" in bad.output


def _commands(group: click.Group, prefix: str = ""):
    for name, cmd in group.commands.items():
        yield f"{prefix}{name}", cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, f"{prefix}{name} ")


@pytest.mark.parametrize("group", [mer_prep, mer_train])
def test_every_command_has_help(group):
    for name, cmd in _commands(group):
        assert cmd.help, f"{name} has no help text"
        result = CliRunner().invoke(group, [*name.split(), "--help"])
        assert result.exit_code == 0


@pytest.mark.parametrize("group, args, named", [
    (mer_train, ["cv", "--cache", "a.h5", "--lr", "1", "--lr", "2"], "--lr is given twice"),
    (mer_train, ["cv", "--cache", "a.h5", "--out", "r1", "--out=r2", "--out", "r3"],
     "--out is given 3 times"),
    (mer_train, ["report", "run", "--figures", "--no-figures"],
     "--figures/--no-figures is given twice"),
    (mer_prep, ["build-cache", "--dataset", "casme2", "--dataset", "samm", "--root", "r",
                "--out", "c.h5"], "--dataset is given twice"),
])
def test_a_single_valued_option_given_twice_is_refused(group, args, named, tmp_path,
                                                      monkeypatch):
    """click keeps the last value silently (``--lr 1 --lr 2`` trained with 2): refused,
    before anything runs, on every command of both groups."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(group, args)
    assert result.exit_code == 2 and named in result.output, result.output
    assert "Traceback" not in result.output and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("group", [mer_prep, mer_train])
def test_every_command_refuses_repeated_options(group):
    from mer_di._cli import OnceOptions

    for name, cmd in _commands(group):
        assert isinstance(cmd, OnceOptions | click.Group), f"{name} is a plain click command"
