"""Command-line conventions (issue 11.10, 11.11): progress as plain lines where the output
is not a terminal, --quiet, -h, an example at the end of every --help, inspect --json,
`--out -`, the same option names in both commands, no lock file after a build, and a
missing weights file that says where the weights come from."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from mer_di import _progress
from mer_di.data_manifest.synth import generate_dataset
from mer_di.errors import ModelError
from mer_di.pipeline.build import BuildOptions, build_cache
from mer_di.pipeline.cli import main as mer_prep
from mer_di.pipeline.writer import writer_lock
from mer_di.training.cli import main as mer_train


@pytest.fixture(scope="module")
def casme(tmp_path_factory) -> Path:
    return generate_dataset("casme2", tmp_path_factory.mktemp("c") / "casme2", subjects=2,
                            clips_per_class=1, frame_size=(40, 48), length=(6, 9), seed=4).root


@pytest.fixture(scope="module")
def built(casme, tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("cc") / "c.h5"
    build_cache("casme2", casme, cache, options=BuildOptions(size=32, workers=1))
    return cache


def _run(cli, *args: str):
    return CliRunner().invoke(cli, list(args))


def test_plain_progress_writes_whole_lines_not_redraws():
    stream = io.StringIO()
    bar = _progress.progress_bar(4, "dynamic images", "clip", stream=stream)
    assert isinstance(bar, _progress.PlainProgress)  # a StringIO is not a terminal
    bar.every = 0
    for _ in range(4):
        bar.update()
    bar.set_postfix(last_uf1="0.500")
    bar.close()
    text = stream.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert lines[0].startswith("dynamic images: 1/4 clip (25%)") and "left" in lines[0]
    assert lines[-1].startswith("dynamic images: 4/4 clip (100%)")
    assert lines[-1].endswith("last_uf1=0.500")


def test_plain_progress_is_throttled():
    stream = io.StringIO()
    bar = _progress.PlainProgress(1000, "x", "clip", stream=stream, every=3600)
    for _ in range(1000):
        bar.update()
    bar.close()
    assert len(stream.getvalue().splitlines()) == 1  # only the closing line


def test_build_cache_progress_in_a_log_and_quiet(casme, tmp_path, monkeypatch):
    monkeypatch.setattr(_progress, "PLAIN_EVERY_S", 0.0)
    result = CliRunner().invoke(mer_prep, ["build-cache", "--dataset", "casme2", "--root",
                                           str(casme), "--out", str(tmp_path / "a.h5"),
                                           "--size", "32", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "dynamic images: 1/" in result.output and "\r" not in result.output
    result = CliRunner().invoke(mer_prep, ["build-cache", "--dataset", "casme2", "--root",
                                           str(casme), "--out", str(tmp_path / "b.h5"),
                                           "--size", "32", "--workers", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "dynamic images:" not in result.output and "built" in result.output


def _commands():
    for group, name in ((mer_prep, "mer-prep"), (mer_train, "mer-train")):
        yield group, name, []
        for sub in group.commands:
            yield group, name, [sub]


@pytest.mark.parametrize("group,name,sub", list(_commands()),
                         ids=lambda v: v if isinstance(v, str) else None)
def test_every_help_takes_dash_h_and_subcommands_end_with_an_example(group, name, sub):
    long = _run(group, *sub, "--help")
    short = _run(group, *sub, "-h")
    assert long.exit_code == 0 and short.exit_code == 0, short.output
    assert short.output == long.output
    if sub:
        tail = long.output.rstrip().splitlines()
        at = max(i for i, line in enumerate(tail) if line.strip().startswith("Example"))
        assert all(line.strip().startswith(name) for line in tail[at + 1:]), tail[at:]
        assert any(f"{name} {sub[0]}" in line for line in tail[at + 1:])


@pytest.mark.parametrize("group,cmd", [(mer_prep, "synth"), (mer_prep, "build-cache"),
                                       (mer_train, "cv")])
def test_long_commands_have_quiet(group, cmd):
    assert "--quiet" in _run(group, cmd, "--help").output


def test_inspect_json_and_cache_as_an_option(built, tmp_path):
    text = _run(mer_prep, "inspect", str(built))
    assert text.exit_code == 0, text.output
    assert _run(mer_prep, "inspect", "--cache", str(built)).output == text.output
    as_json = _run(mer_prep, "inspect", "--cache", str(built), "--json")
    assert as_json.exit_code == 0, as_json.output
    facts = json.loads(as_json.output)
    assert facts["clips"] == sum(facts["per_subject"].values()) > 0
    assert facts["provenance"]["dataset"] == "casme2" and str(facts["provenance"]["size"]) == "32"
    assert f"clips: {facts['clips']} from {facts['subjects']} subjects" in text.output
    both = _run(mer_prep, "inspect", str(built), "--cache", str(built))
    assert both.exit_code == 2 and "give the cache once" in both.output
    from mer_di.pipeline.cache_reader import open_cache

    with open_cache(built) as c:
        clip = next(iter(c)).key
    png = tmp_path / "clip.png"
    shown = _run(mer_prep, "show", "--cache", str(built), clip, "--out", str(png))
    assert shown.exit_code == 0 and png.is_file(), shown.output
    old = _run(mer_prep, "show", str(built), clip, "--out", str(tmp_path / "b.png"))
    assert old.exit_code == 0, old.output


def test_out_dash_writes_a_table_to_standard_output_or_is_refused(casme, tmp_path):
    result = CliRunner().invoke(
        mer_prep, ["manifest", "--dataset", "casme2", "--root", str(casme), "--out", "-"])
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert rows and {"subject", "clip", "label"} <= set(rows[0])
    assert "wrote" in result.stderr and "wrote" not in result.stdout
    for cli, args in ((mer_prep, ["build-cache", "--dataset", "casme2", "--root", str(casme),
                                  "--out", "-"]),
                      (mer_train, ["cv", "--cache", "x.h5", "--model", "learnet",
                                   "--out", "-"]),
                      (mer_train, ["report", str(tmp_path), "--out", "-"])):
        refused = _run(cli, *args)
        assert refused.exit_code == 1, refused.output
        assert "standard output takes tables only" in refused.output
        assert "Traceback" not in refused.output
    assert not Path("-").exists()


def test_cv_takes_seed_as_well_as_seeds():
    cv = mer_train.commands["cv"]
    ctx = cv.make_context("cv", ["--seed", "3", "--seeds", "1,2", "--out", "r"])
    assert ctx.params["seeds"] == [3, 1, 2]
    assert "augmentation setting" in _run(mer_train, "cv", "--help").output.lower()


def test_no_lock_file_outlives_a_build(casme, tmp_path):
    cache = tmp_path / "c.h5"
    lock = tmp_path / "c.h5.lock"
    with writer_lock(cache):
        assert lock.exists()
    assert not lock.exists()
    build_cache("casme2", casme, cache, options=BuildOptions(size=32, workers=1))
    assert cache.is_file() and not lock.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.h5"] or all(
        not p.name.endswith(".lock") for p in tmp_path.iterdir())


def test_a_held_lock_still_refuses_a_second_writer(tmp_path):
    cache = tmp_path / "c.h5"
    with writer_lock(cache):
        with pytest.raises(Exception, match="being written by another build"):
            with writer_lock(cache):
                pass
    with writer_lock(cache):  # and it can be taken again afterwards
        pass


@pytest.mark.parametrize("model,expect", [
    ("vggface", ["vggface", "vgg_face_dag.pth", "albanie"]),
    ("resnet34", ["resnet34", "resnet34.", "timm.create_model", "=cache"]),
    ("learnet", ["learnet", "trained from scratch"]),
])
def test_a_missing_weights_file_says_where_the_weights_come_from(model, expect, tmp_path):
    from mer_di.training.models import build_model

    missing = tmp_path / "weights" / "w.pth"
    with pytest.raises(ModelError) as err:
        build_model(model, 3, pretrained=missing, tiny=True)
    message = str(err.value)
    assert str(missing) in message
    for word in expect:
        assert word in message, message


def test_dianet_names_its_backbone_weights(tmp_path):
    from mer_di.training.models import build_model

    with pytest.raises(ModelError, match="resnet18") as err:
        build_model("dianet", 3, pretrained=tmp_path / "nope.pth", tiny=True)
    assert "both streams" in str(err.value)


def test_cv_names_the_missing_weights_before_training(built, tmp_path):
    out = tmp_path / "run"
    result = _run(mer_train, "cv", "--cache", str(built), "--model", "vggface", "--tiny",
                  "--pretrained", str(tmp_path / "vgg_face_dag.pth"), "--out", str(out))
    assert result.exit_code == 1 and "albanie" in result.output, result.output
    assert not out.exists()
    result = _run(mer_train, "cv", "--cache", str(built), "--model", "learnet",
                  "--pretrained", "resnet34=cache", "--out", str(out))
    assert result.exit_code == 2, result.output
    assert "resnet34 is not a --model of this run (its models: learnet)" in result.output
    assert not out.exists()


def test_click_keeps_help_option_names_for_subcommands():
    # the context settings given to the groups reach every command's context
    ctx = mer_train.make_context("mer-train", ["cv", "--out", "r"], resilient_parsing=True)
    assert isinstance(ctx, click.Context) and "-h" in ctx.help_option_names
