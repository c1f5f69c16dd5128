"""``mer-prep``: manifests, look-alike datasets and the dynamic-image cache.

Each command parses its options and calls one library function; the project's errors
become a clean message and exit code 1 (:class:`mer_di._cli.CleanErrors`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mer_di import __version__
from mer_di._cli import CONTEXT, CleanErrors, example
from mer_di.data_manifest import (
    DATASETS,
    build_manifest,
    get_reader,
    summarise,
    write_manifest,
)
from mer_di.options import APEX_MODES, CLASS_SETS, CROPS, WEIGHTS, describe
from mer_di.pipeline.flow import FLOW_METHODS
from mer_di.pipeline.store import MAX_APEX_JITTER

MIN_SIZE = 32  # --size: the smallest square side a cache may have


@click.group(cls=CleanErrors, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="mer-prep")
def main() -> None:
    """Prepare micro-expression datasets: manifests, look-alike data, dynamic images."""


@main.command(epilog=example("mer-prep manifest --dataset casme2 --root ~/data/CASME2 "
                             "--out casme2_manifest.csv"))
@click.option("--dataset", type=click.Choice(DATASETS), required=True, help="Which dataset.")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="The dataset folder (holding Cropped/, SAMM/, Micro_Expression/, "
              "SMIC_all_cropped/, spNO.1/ ...).")
@click.option("--sheet", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The annotation sheet (.xlsx or .csv); default: the official file name "
                   "in --root.")
@click.option("--classes", type=click.Choice(tuple(CLASS_SETS)), default=None,
              help="Class set (default: the dataset's own: five; SMIC all; CAS(ME)^3 four): "
              + describe(CLASS_SETS) + ".")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the manifest CSV ('-': standard output, the summary "
              "then goes to standard error).")
@click.option("--strict", is_flag=True, help="Fail (exit 1) when any row has a problem.")
def manifest(dataset: str, root: Path, sheet: Path | None, classes: str | None, out: Path,
             strict: bool) -> None:
    """Read the annotation sheet, check every row against the folders, write a CSV."""
    result = build_manifest(dataset, root, sheet=sheet, classes=classes)
    write_manifest(result.rows, out)
    to_stderr = str(out) == "-"
    click.echo(summarise(result), err=to_stderr)
    click.echo(f"\nwrote {len(result.rows)} rows to {out}", err=to_stderr)
    if result.why_no_clip():
        raise click.ClickException(result.why_no_clip())
    if strict and result.problem_rows:
        click.echo(f"--strict: {len(result.problem_rows)} rows have problems", err=True)
        sys.exit(1)


def _parse_size(_ctx, _param, value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        w, h = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{value!r}: give WIDTHxHEIGHT, e.g. 640x480") from None
    if w < 48 or h < 48:
        raise click.BadParameter(f"{value!r}: frames must be at least 48x48")
    return w, h


def _parse_length(_ctx, _param, value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        lo, _, hi = value.partition(":")
        lo_i, hi_i = int(lo), int(hi or lo)
    except ValueError:
        raise click.BadParameter(f"{value!r}: give MIN:MAX frames, e.g. 20:40") from None
    if not 5 <= lo_i <= hi_i:
        raise click.BadParameter(f"{value!r}: need 5 <= MIN <= MAX")
    return lo_i, hi_i


@main.command(epilog=example(
    "mer-prep synth --dataset casme2 --out demo/casme2 --subjects 6",
    "mer-prep synth --dataset samm --out megc/samm --from-sheet SAMM_Micro_FACS_Codes_v2.xlsx "
    "--frame-size 48x48",
    "mer-prep synth --dataset smic --out megc/smic --from-sheet combined_3class_gt.csv "
    "--frame-size 48x48"))
@click.option("--dataset", type=click.Choice(DATASETS), required=True, help="Which dataset.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to create (must be empty or absent).")
@click.option("--subjects", type=click.IntRange(1, 99), default=6, show_default=True)
@click.option("--clips-per-class", type=click.IntRange(1, 50), default=2, show_default=True,
              help="Clips of each emotion of the dataset's default class set per subject "
              "(CASME II, SAMM, MMEW: the five classes; SMIC: its 3; CAS(ME)^3: its 7 "
              "emotions).")
@click.option("--frame-size", callback=_parse_size, default=None,
              help="WIDTHxHEIGHT of the frames; default depends on the dataset.")
@click.option("--length", callback=_parse_length, default=None,
              help="MIN:MAX frames from onset to offset; default depends on the dataset.")
@click.option("--layout", default=None,
              help="The reader's frame layout: " + "; ".join(
                  f"{d}: {'|'.join(x.name for x in get_reader(d).layouts)}" for d in DATASETS)
              + " (default: the first).")
@click.option("--from-sheet", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Draw frames for every row of this real annotation sheet instead (its "
              "subjects, clips, frame numbers and labels; the sheet is copied into --out "
              "under its official name); for smic, MEGC2019's combined_3class_gt.csv (its "
              "smic rows). Rows that cannot be drawn are listed and left without frames.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress lines.")
@click.pass_context
def synth(ctx: click.Context, dataset: str, out: Path, subjects: int, clips_per_class: int,
          frame_size: tuple[int, int] | None, length: tuple[int, int] | None,
          layout: str | None, from_sheet: Path | None, seed: int, quiet: bool) -> None:
    """Write a look-alike dataset in the official layout, with its annotation sheet (SMIC:
    its folders alone)."""
    from mer_di.data_manifest.synth import generate_dataset

    if from_sheet is not None:
        from click.core import ParameterSource

        from mer_di.data_manifest.synth.from_sheet import generate_from_sheet

        given = [f"--{name.replace('_', '-')}" for name in ("subjects", "clips_per_class")
                 if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE]
        if given:
            raise click.UsageError(f"{', '.join(given)}: not used with --from-sheet (the "
                                   "sheet's rows are drawn)")
        result = generate_from_sheet(dataset, out, from_sheet, frame_size=frame_size,
                                     length=length, layout=layout, seed=seed,
                                     progress=not quiet)
    else:
        result = generate_dataset(dataset, out, subjects=subjects,
                                  clips_per_class=clips_per_class, frame_size=frame_size,
                                  length=length, layout=layout, seed=seed,
                                  progress=not quiet)
    click.echo(result.describe())


def _parse_out_size(_ctx, _param, value: str) -> int | None:
    if value == "native":
        return None
    try:
        size = int(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: give a number of pixels or 'native'") from None
    if size < MIN_SIZE:
        raise click.BadParameter(f"{value!r}: at least {MIN_SIZE} pixels (a micro-expression "
                                 "moves 1-2 pixels of a ~200-pixel face: smaller images lose "
                                 "it, and every model here takes 32 or more)")
    return size


@main.command("build-cache", epilog=example(
    "mer-prep build-cache --dataset casme2 --root ~/data/CASME2 --out casme2.h5 --size 224"))
@click.option("--dataset", type=click.Choice(DATASETS), required=True, help="Which dataset.")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="The dataset folder.")
@click.option("--sheet", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The annotation sheet; default: the official file name in --root.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The HDF5 cache to build or complete.")
@click.option("--size", "size", default="224", show_default=True, callback=_parse_out_size,
              help="Square side in pixels, or 'native' (no resize).")
@click.option("--crop", type=click.Choice(tuple(CROPS)), default="none", show_default=True,
              help=describe(CROPS) + ".")
@click.option("--weights", type=click.Choice(tuple(WEIGHTS)), default="linear",
              show_default=True, help="Rank-pooling weights: " + describe(WEIGHTS) + ".")
@click.option("--workers", type=click.IntRange(1, 256), default=None,
              help="Frame-decoding threads (default: all cores).")
@click.option("--strict", is_flag=True, help="Stop at the first bad clip instead of skipping.")
@click.option("--rebuild", is_flag=True, help="Replace a cache built with other parameters.")
@click.option("--redo", multiple=True, metavar="SUBJECT/CLIP",
              help="Build this clip again even when the cache has it (repeat), e.g. one "
              "whose pixels were damaged.")
@click.option("--apex", type=click.Choice(tuple(APEX_MODES)), default="auto",
              show_default=True, help="Where each clip's apex (and so its onset and offset "
              "images) comes from: " + describe(APEX_MODES) + ".")
@click.option("--flow", type=click.Choice(tuple(FLOW_METHODS)), default=None,
              help="Optical flow (onset->apex, apex->offset: u, v, strain) beside the "
              "dynamic images: " + describe(FLOW_METHODS) + ". Default: none for a new "
              "cache, else the cache's own; another method over an existing cache computes "
              "only the flow (from the onset, apex and offset frames).")
@click.option("--apex-jitter", type=click.IntRange(0, MAX_APEX_JITTER), default=0,
              show_default=True, metavar="K",
              help="Also store every clip's onset and offset images at the apex shifted by "
              "-K..K frames (jitter_onset, jitter_offset) and at its spotted apex "
              "(spotted_onset, spotted_offset), in the same pass: for mer-train cv "
              "--apex-jitter and the apex robustness evaluation. A build parameter.")
@click.option("--quiet", is_flag=True, help="No progress lines.")
def build_cache_command(dataset: str, root: Path, sheet: Path | None, out: Path,
                        size: int | None, crop: str, weights: str, workers: int | None,
                        strict: bool, rebuild: bool, redo: tuple[str, ...], apex: str,
                        flow: str | None, apex_jitter: int, quiet: bool) -> None:
    """Compute the full, onset and offset dynamic images of every clip into one HDF5 file."""
    from mer_di.pipeline.build import BuildOptions, build_cache

    options = BuildOptions(size=size, crop=crop, weights=weights, workers=workers,
                           strict=strict, rebuild=rebuild, redo=redo, apex=apex, flow=flow,
                           apex_jitter=apex_jitter)
    report = build_cache(dataset, root, out, sheet=sheet, options=options,
                         progress=not quiet)
    click.echo(report.describe())


@main.command("spot-apex", epilog=example(
    "mer-prep spot-apex --dataset casme2 --root ~/data/CASME2 --out casme2_apex.csv"))
@click.option("--dataset", type=click.Choice(DATASETS), required=True, help="Which dataset.")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="The dataset folder.")
@click.option("--sheet", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The annotation sheet; default: the official file name in --root.")
@click.option("--crop", type=click.Choice(tuple(CROPS)), default="none", show_default=True,
              help=describe(CROPS) + ".")
@click.option("--workers", type=click.IntRange(1, 256), default=None,
              help="Frame-decoding threads (default: all cores).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The CSV to write ('-': standard output): one row per clip, the sheet's "
              "apex beside the spotted one.")
@click.option("--quiet", is_flag=True, help="No progress lines.")
def spot_apex_command(dataset: str, root: Path, sheet: Path | None, crop: str,
                      workers: int | None, out: Path, quiet: bool) -> None:
    """Spot every clip's apex from its frames and write it beside the sheet's apex."""
    from mer_di.pipeline.spotting import spot_clips, summarise_spotted, write_spotted

    if str(out) != "-":
        from mer_di._paths import check_writable

        check_writable(out)
    records = spot_clips(dataset, root, sheet=sheet, crop=crop, workers=workers,
                         progress=not quiet)
    write_spotted(records, out)
    click.echo(summarise_spotted(records), err=str(out) == "-")
    click.echo(f"wrote {len(records)} rows to {out}", err=str(out) == "-")


def _cache_given(positional: Path | None, option: Path | None) -> Path:
    """The cache named as an argument or with --cache (as in mer-train), not both."""
    if positional is not None and option is not None:
        raise click.UsageError("give the cache once: as an argument or with --cache")
    if positional is None and option is None:
        raise click.UsageError("give the cache: --cache FILE (or as the first argument)")
    path = positional or option
    if not path.is_file():
        raise click.BadParameter(f"{path}: no such file", param_hint="--cache")
    return path


CACHE_OPTION = click.option("--cache", "cache_opt", type=click.Path(dir_okay=False,
                            path_type=Path), help="The cache (also accepted as the first "
                            "argument).")


@main.command("inspect", epilog=example("mer-prep inspect --cache casme2.h5",
                                        "mer-prep inspect --cache casme2.h5 --json"))
@click.argument("cache", required=False, type=click.Path(dir_okay=False, path_type=Path))
@CACHE_OPTION
@click.option("--json", "as_json", is_flag=True, help="The same facts as one JSON object.")
def inspect_command(cache: Path | None, cache_opt: Path | None, as_json: bool) -> None:
    """Provenance, clips per subject, label and phase, and skipped clips of a cache."""
    from mer_di.pipeline.cache_info import cache_summary, describe_cache

    path = _cache_given(cache, cache_opt)
    if as_json:
        import json

        click.echo(json.dumps(cache_summary(path), indent=2))
    else:
        click.echo(describe_cache(path))


@main.command("show", epilog=example("mer-prep show --cache casme2.h5 sub01/EP02_01f "
                                     "--out clip.png"))
@click.argument("args", nargs=-1, metavar="[CACHE] SUBJECT/CLIP")
@CACHE_OPTION
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The PNG to write.")
def show_command(args: tuple[str, ...], cache_opt: Path | None, out: Path) -> None:
    """A PNG of one clip (SUBJECT/CLIP): its three images beside its key frames."""
    from mer_di.pipeline.cache_info import show_clip

    if len(args) == 2:
        cache, clip = Path(args[0]), args[1]
    elif len(args) == 1:
        cache, clip = None, args[0]
    else:
        raise click.UsageError("give the clip as SUBJECT/CLIP, and the cache with --cache")
    click.echo(f"wrote {show_clip(_cache_given(cache, cache_opt), clip, out)}")


if __name__ == "__main__":
    main()
