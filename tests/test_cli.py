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
