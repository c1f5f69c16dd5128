"""``mer-train``: cross-validated training from the dynamic-image cache, reports, and
predictions of a trained run. Each command parses its options and calls one library
function; the project's errors become a clean message and exit code 1."""

from __future__ import annotations

import click

from mer_di import __version__
from mer_di._cli import CONTEXT, CleanErrors, example
from mer_di.data_manifest.registry import DATASETS
from mer_di.options import CLASS_SETS, CONFIGS, INPUTS, PROTOCOLS, describe
from mer_di.training.cli_options import (
    _clip_lists,
    _device_for,
    _seeds,
    _weights,
    determinism_option,
    executor_options,
    make_executor,
    protocol_options,
)


@click.group(cls=CleanErrors, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="mer-train")
def main() -> None:
    """Train and evaluate micro-expression models on a dynamic-image cache."""


@main.command(epilog=example(
    "mer-train cv --cache casme2.h5 --model resnet34 --pretrained resnet34=resnet34.pth "
    "--protocol kfold --out runs/resnet34",
    "mer-train cv --resume --out runs/resnet34"))
@click.option("--cache", "caches", multiple=True,
              type=click.Path(dir_okay=False), help="A cache from mer-prep build-cache; "
              "repeat to combine datasets (the MEGC composite is three caches).")
@click.option("--model", "models", multiple=True,
              help="vggface, vgg19, resnet34, efficientnet_b0, vit_base_patch16_224, learnet, "
              "dianet, or any timm model name; the optical-flow models ststnet, off_apexnet "
              "(a cache built with --flow); repeat for several.")
@click.option("--config", "configs", multiple=True,
              help="Augmentation setting (the paper's 'configuration'): " + describe(CONFIGS)
              + "; repeat for several (default: all four).")
@click.option("--protocol", type=click.Choice(tuple(PROTOCOLS)),
              default="kfold", show_default=True, help=describe(PROTOCOLS) + ".")
@click.option("--folds", type=int, default=5, show_default=True,
              help="Folds for kfold and subject-kfold.")
@click.option("--seeds", "--seed", "seeds", multiple=True, default=["0"], show_default=True,
              callback=_seeds,
              help="Seeds, comma-separated or repeated (--seeds 0,1 --seeds 2); each gives its "
              "own folds, split and initialisation.")
@click.option("--classes", type=click.Choice(tuple(CLASS_SETS)), default=None,
              help="Class set: " + describe(CLASS_SETS) + "  [default: the dataset's usual "
              "set (five for CASME II, SAMM, MMEW), megc for caches of several datasets]")
@click.option("--clips", "clip_list", type=click.Path(dir_okay=False, exists=True),
              help="Only the clips this CSV lists (dataset, subject, clip[, class]; "
              "MEGC2019's combined_3class_gt.csv as it is); a listed clip the caches lack "
              "stops the run.")
@click.option("--epochs", type=int, default=50, show_default=True, help="Most epochs per fold.")
@click.option("--batch-size", type=int, default=25, show_default=True)
@click.option("--lr", type=float, default=1e-4, show_default=True,
              help="Adam's learning rate (cosine-annealed over --epochs).")
@click.option("--patience", type=int, default=10, show_default=True,
              help="Stop after this many epochs without a lower validation loss (0: never).")
@click.option("--val-fraction", type=float, default=0.2, show_default=True,
              help="Share of the training clips held out to pick the epoch and stop early "
              "(subject-disjoint under subject-kfold and loso); 0: train all epochs, keep the "
              "last.")
@click.option("--amp/--no-amp", default=True, show_default=True,
              help="Mixed precision on a GPU (no effect on the CPU).")
@click.option("--pretrained", multiple=True,
              help="Weights for the backbones: FILE for every model, or MODEL=FILE for one "
              "(repeat). FILE is a local weights file (VGG-Face: vgg_face_dag.pth) or "
              "'cache': timm's weights where an earlier download left them (Hugging Face or "
              "torch hub cache; nothing is downloaded), or 'hub': the same, downloaded by timm "
              "when they are not there (a machine that is online). The head is replaced for "
              "the classes.")
@click.option("--backbone", help="DIANet's stream backbone (a timm CNN; default resnet18).")
@click.option("--tiny", is_flag=True,
              help="Tiny variants of the models (fast CPU checks, not for results).")
@click.option("--input", "input_", type=click.Choice(tuple(INPUTS)), default="di",
              show_default=True, help=describe(INPUTS) + " (baseline and fliprot only).")
@click.option("--checkpoints/--no-checkpoints", default=True, show_default=True,
              help="Save each fold's chosen weights (units/*/model.pt, for mer-train "
              "predict).")
@click.option("--final", is_flag=True,
              help="Also train each model x configuration x seed on every clip (a final "
              "model for mer-train predict; it enters no table).")
@click.option("--apex-robustness", is_flag=True,
              help="Also predict each fold's test clips, with the fold's model, at the apex "
              "shifted by -K..+K frames and at the spotted apex (caches built with "
              "--apex-jitter K); for the models whose test input depends on the apex "
              "(dianet, the flow models). mer-train report then writes robustness.md/.csv/"
              ".png.")
@click.option("--apex-jitter", type=click.IntRange(0, 10), default=0, show_default=True,
              metavar="K",
              help="Training clips of the dual-phase configurations and of dianet take, "
              "each epoch, their phase images at the apex shifted by a random valid shift "
              "in -K..K frames (caches built with mer-prep build-cache --apex-jitter K or "
              "more); validation and test clips keep the annotated apex. 0: none.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--resume", is_flag=True,
              help="Finish an interrupted run in --out: finished folds are kept.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="The run folder (runs/NAME).")
@executor_options
@protocol_options
@click.option("--quiet", is_flag=True, help="No progress bars or progress lines.")
def cv(caches, models, configs, protocol, folds, seeds, classes, clip_list, epochs,
       batch_size, lr,
       patience, val_fraction, amp, pretrained, backbone, tiny, input_, checkpoints, final,
       apex_robustness, device, resume, out, executor, ray_address, unit_cpus, unit_gpus,
       determinism, select_epoch, quiet, apex_jitter=0) -> None:
    """Cross-validate every model x configuration x seed on the cache(s) and print the
    summary (mean +- std over folds, and pooled over folds)."""
    from mer_di.training import CVSpec, TrainOptions, run_cv

    runner = make_executor(executor, ray_address, unit_cpus, unit_gpus, not quiet)
    _device_for(executor, device)
    ctx = click.get_current_context()
    if protocol in ("loso", "lodo") and (ctx.get_parameter_source("folds")
                                         is not click.core.ParameterSource.DEFAULT):
        per = "subject" if protocol == "loso" else "dataset"
        click.echo(f"note: --folds {folds} is ignored: --protocol {protocol} has one fold per "
                   f"{per}")

    if resume and not caches and not models:  # `--resume --out RUN`: the run's own settings
        from mer_di.training.runner import resume_spec

        spec = resume_spec(out)
        if apex_robustness and not spec.apex_robustness:
            raise click.UsageError(f"--apex-robustness: {out} was started without it, and "
                                   "its finished folds were not measured; start a run with "
                                   "it into another --out")
        return _finish(run_cv(spec, out, resume=True, device=device, progress=not quiet,
                              echo=click.echo, executor=runner), out)
    if not caches or not models:
        raise click.UsageError("give --cache and --model (or --resume --out RUN alone to "
                               "finish a run with its own settings)")
    spec = CVSpec(caches=list(caches), models=list(models),
                  configs=list(configs) or list(CONFIGS), protocol=protocol,
                  folds=folds, seeds=seeds, classes=classes, clip_list=clip_list,
                  train=TrainOptions(epochs=epochs, batch_size=batch_size, lr=lr,
                                     patience=patience, val_fraction=val_fraction, amp=amp,
                                     select_epoch=select_epoch),
                  pretrained=_weights(pretrained, models), backbone=backbone, tiny=tiny,
                  checkpoints=checkpoints, input=input_, final=final, apex_jitter=apex_jitter,
                  determinism=determinism, apex_robustness=apex_robustness)
    _finish(run_cv(spec, out, resume=resume, device=device, progress=not quiet,
                   echo=click.echo, executor=runner), out)


@main.command("table1", epilog=example(
    "mer-train table1 --cache casme2.h5 --cache samm.h5 --weights-dir weights/ "
    "--out runs/table1",
    "mer-train table1 --cache casme2.h5 --cache samm.h5 --weights-dir weights/ "
    "--out runs/table1 --executor ray --unit-gpus 0.5"))
@click.option("--cache", "caches", multiple=True, required=True,
              type=click.Path(dir_okay=False, exists=True),
              help="One cache per dataset (repeat): each is cross-validated on its own.")
@click.option("--weights-dir", type=click.Path(file_okay=False, exists=True),
              help="The folder of pretrained weights, each under its model's name: "
              "vgg_face_dag.pth, vgg19.pth, resnet34.pth, efficientnet_b0.pth, "
              "vit_base_patch16_224.pth (LEARNet is trained from scratch).")
@click.option("--pretrained", multiple=True,
              help="Instead of --weights-dir, for every model (hub, cache or a FILE) or one "
              "(MODEL=hub|cache|FILE, repeat): hub downloads timm's weights on a machine "
              "that is online.")
@click.option("--allow-random-init", is_flag=True,
              help="Run models whose weights are missing from random initialisation (their "
              "rows say so) instead of stopping.")
@click.option("--model", "models", multiple=True,
              help="Only these of the table's models (repeat; default: all six).")
@click.option("--config", "configs", multiple=True,
              help="Only these augmentation settings (repeat; default: all four).")
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True)
@click.option("--seeds", "--seed", "seeds", multiple=True, default=["0"], show_default=True,
              callback=_seeds, help="Seeds, comma-separated or repeated.")
@click.option("--epochs", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--clips", "clip_lists", multiple=True,
              help="Only these clips: a CSV as for mer-train cv --clips, or a named set "
              "(paper-casme2: the paper's 245 CASME II clips, the five-class rows of the 2014 "
              "sheet with a numeric apex); DATASET=CSV_OR_NAME for one dataset's cache "
              "(repeat).")
@click.option("--checkpoints/--no-checkpoints", default=False, show_default=True,
              help="Keep each fold's weights (units/*/model.pt, for mer-train predict): "
              "about 1.4 GiB per configuration and fold for the six models, said before "
              "the table starts.")
@click.option("--tiny", is_flag=True, help="Tiny variants of the models (checks, not results).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="The folder: one run per dataset (OUT/<dataset>), the report in "
              "OUT/report. Run the same command again to finish an interrupted table.")
@executor_options
@determinism_option
@click.option("--select-epoch", type=click.Choice(("val", "test-fold", "both")),
              default="val", show_default=True,
              help="val: each fold's epoch chosen on a validation split of its training folds "
              "(honest); test-fold: on the test fold, as the paper's protocol (replication "
              "only, rows labelled optimistic); both: the two on the same folds, and the "
              "report gives the inflation.")
@click.option("--quiet", is_flag=True, help="No progress bars or progress lines.")
def table1(caches, weights_dir, pretrained, allow_random_init, models, configs, folds, seeds,
           epochs, clip_lists, checkpoints, tiny, device, out, executor, ray_address, unit_cpus,
           unit_gpus, determinism, select_epoch, quiet) -> None:
    """The paper's Table I: six models x four augmentation settings, 5-fold on each
    dataset separately with the paper's settings, then the report (OUT/report)."""
    from mer_di.training import TrainOptions
    from mer_di.training.table1 import TABLE1_MODELS, run_table1

    models = tuple(models) or TABLE1_MODELS
    runner = make_executor(executor, ray_address, unit_cpus, unit_gpus, not quiet)
    _device_for(executor, device)
    rep = run_table1(list(caches), out, weights_dir=weights_dir, models=models,
                     configs=tuple(configs) or tuple(CONFIGS), folds=folds, seeds=tuple(seeds),
                     train=TrainOptions(epochs=epochs), tiny=tiny,
                     overrides=_weights(pretrained, models), allow_random_init=allow_random_init,
                     clip_lists=_clip_lists(clip_lists), checkpoints=checkpoints,
                     determinism=determinism, select_epoch=select_epoch,
                     device=device, executor=runner, progress=not quiet, echo=click.echo)
    click.echo(rep.markdown)
    for warning in rep.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"wrote the report to {rep.out}")


def _finish(summary, out) -> None:
    failed = summary["failed"].astype(bool).sum() if "failed" in summary else 0
    if failed:  # the tables are written; the exit code says they are not all numbers
        raise click.ClickException(f"{failed} model x configuration(s) failed and have no "
                                   f"score; see {out}/failures.csv")


@main.command(epilog=example("mer-train report runs/resnet34 runs/learnet --out "
                             "reports/table1"))
@click.argument("runs", nargs=-1, required=True, type=click.Path(), metavar="RUN...")
@click.option("--out", type=click.Path(file_okay=False),
              help="Folder for the report  [default: <first RUN>/report]")
@click.option("--baseline", "baselines", multiple=True, default=["baseline"],
              show_default=True, metavar="CONFIG|MODEL:CONFIG",
              help="What the other rows are compared with, fold by fold: CONFIG (each "
              "model's other configurations against its own CONFIG) or MODEL:CONFIG (every "
              "other model x configuration of the runs against that one, on the same folds: "
              "DI models against a flow model, e.g. ststnet:baseline). Repeat for several "
              "comparisons (--baseline baseline --baseline ststnet:baseline).")
@click.option("--bootstrap", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="Bootstrap resamples for the intervals (and random sign flips for p "
              "when there are more than 16 folds).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the bootstrap and of the random sign flips.")
@click.option("--figures/--no-figures", default=True, show_default=True,
              help="Write the confusion matrices and learning curves as PNG.")
def report(runs, out, baselines, bootstrap, seed, figures) -> None:
    """Table-I style report of finished run folders (RUN ...; several combine side by
    side): Acc, UF1 and UAR per dataset, mean +- std over folds and pooled over folds;
    each configuration against --baseline on the same folds (bootstrap interval and
    sign-flip p), or every model against one model's configuration (--baseline
    MODEL:CONFIG: DI against optical flow); confusion matrices and learning curves."""
    from mer_di.training.report import make_report

    rep = make_report(list(runs), out=out, baseline=list(baselines), n_boot=bootstrap,
                      seed=seed, figures=figures)
    click.echo(rep.markdown)
    for warning in rep.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"wrote {len(rep.files)} files to {rep.out}")


@main.command("predict", epilog=example(
    "mer-train predict --run runs/learnet --cache samm.h5 --out samm_predictions.csv"))
@click.option("--run", "run", required=True, type=click.Path(file_okay=False),
              help="A run folder made by mer-train cv (with checkpoints).")
@click.option("--cache", type=click.Path(dir_okay=False),
              help="Clips of this cache (built with the run's size, crop and weights).")
@click.option("--root", type=click.Path(file_okay=False),
              help="Clips of this dataset folder (with --dataset); images are made with the "
              "run's build parameters.")
@click.option("--dataset", type=click.Choice(DATASETS), help="The reader of --root.")
@click.option("--sheet", type=click.Path(dir_okay=False),
              help="--root's annotation sheet (default: the official file name in --root).")
@click.option("--clips", "clips", multiple=True, metavar="SUBJECT/CLIP",
              help="Only these clips (repeat; default: every usable clip).")
@click.option("--model", help="Which model of the run (needed when it has several).")
@click.option("--config", help="Which configuration of the run (when it has several).")
@click.option("--seed", type=int, help="Which seed of the run (when it has several).")
@click.option("--fold", default=None, help="A fold number, 'final' (mer-train cv --final) "
              "or 'all' (every fold's model, probabilities averaged)  [default: final when "
              "the run has it, else all]")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="The CSV to write: one row per clip with its class probabilities ('-': "
              "standard output).")
def predict_command(run, cache, root, dataset, sheet, clips, model, config, seed, fold, device,
                    out) -> None:
    """Apply a trained run's models to the clips of a cache or a dataset folder: one row
    per clip with the predicted class and every class's probability."""
    from mer_di.training.inference import predict

    table = predict(run, cache=cache, root=root, dataset=dataset, sheet=sheet,
                    clips=list(clips) or None, model=model, config=config, seed=seed,
                    fold=fold, device=device, out=out)
    for m in table.attrs["left_out"]:
        click.echo(f"left out {m['subject']}/{m['clip']}: {m['reason']}", err=out == "-")
    click.echo(f"{len(table)} clips predicted by {table.attrs['models']}; wrote {out}",
               err=out == "-")


if __name__ == "__main__":
    main()
