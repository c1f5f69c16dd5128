"""``mer-train``'s options shared by its commands and how their values become arguments:
seeds, ``KEY=VALUE`` lists (``--pretrained``, ``--clips``), the executor options and the
executor they make, the GPU and epoch-selection options. :mod:`mer_di.training.cli` holds
the commands."""

from __future__ import annotations

from pathlib import Path

import click

from mer_di.data_manifest.registry import DATASETS


def _seeds(ctx, param, values: tuple[str, ...]) -> list[int]:
    """``--seeds 0,1 --seeds 2`` -> [0, 1, 2]: repeated and comma-separated both add."""
    try:
        seeds = [int(s) for value in values for s in value.split(",") if s.strip()]
    except ValueError:
        raise click.BadParameter(f"{', '.join(values)!r}: give seeds as integers, e.g. "
                                 "0,1,2") from None
    if not seeds:
        raise click.BadParameter("give at least one seed")
    twice = sorted({s for s in seeds if seeds.count(s) > 1})
    if twice:
        raise click.BadParameter(f"seed {', '.join(map(str, twice))} given twice (each seed "
                                 "is one repeat of the whole cross-validation)")
    return seeds


def _weights(values: tuple[str, ...], models: tuple[str, ...]) -> dict[str, str]:
    """--pretrained values -> {model or "*": file}; MODEL=FILE only where MODEL is a --model
    (a file name may itself contain '=')."""
    for value in values:
        model, sep, _ = value.partition("=")
        if sep and model not in models and not Path(value).exists():
            raise click.BadParameter(f"{value}: {model} is not a --model of this run (its "
                                     f"models: {', '.join(models) or 'none'})",
                                     param_hint="--pretrained")
    return _per_key(values, models, "--pretrained", "weights", "every model")


def _per_key(values: tuple[str, ...], keys, option: str, what: str, every: str
             ) -> dict[str, str]:
    """``KEY=VALUE`` or ``VALUE`` options -> ``{key or "*": value}``: ``KEY=`` only where
    KEY is one of ``keys`` (a value may itself contain '='); each key once."""
    out: dict[str, str] = {}
    for value in values:
        key, sep, rest = value.partition("=")
        key, rest = (key, rest) if sep and key in keys else ("*", value)
        if key in out:
            raise click.BadParameter(f"two {what} for {every if key == '*' else key}",
                                     param_hint=option)
        out[key] = rest
    return out


def _group(*options):
    """One decorator applying ``options`` in the order given (as stacked decorators)."""
    def apply(command):
        for option in reversed(options):
            command = option(command)
        return command
    return apply


# ``--executor``, ``--ray-address``, ``--unit-cpus``, ``--unit-gpus``: where a command's
# units run (:func:`make_executor`), the same on every command that runs units
executor_options = _group(
    click.option("--executor", type=click.Choice(("local", "ray")), default="local",
                 show_default=True, help="local: the units one after another in this "
                 "process; ray: every unit a Ray task, over this machine's or a "
                 "cluster's CPUs and GPUs (pip install \"mer-di[ray]\")."),
    click.option("--ray-address", help="With --executor ray: join the running Ray "
                 "cluster at auto or HOST:PORT (default: start a Ray instance on this "
                 "machine)."),
    click.option("--unit-cpus", type=click.FloatRange(min=0, min_open=True),
                 default=None, help="CPUs of each unit (its torch threads)  [default: 1 "
                 "with --executor ray, torch's own with local]"),
    click.option("--unit-gpus", type=click.FloatRange(min=0), default=None,
                 help="With --executor ray: GPUs of each unit, fractions share one "
                 "(0.25: four units per GPU)  [default: 1 when the cluster has GPUs, "
                 "else 0]"),
)
# how a run uses the GPU, the same on every command that trains
determinism_option = click.option(
    "--determinism", type=click.Choice(("reproducible", "fast")), default="reproducible",
    show_default=True, help="On a GPU: reproducible (deterministic kernels: a resumed or Ray "
    "run equals an uninterrupted one) or fast (cuDNN autotuning, TF32, channels_last CNNs; "
    "not bit-reproducible). The CPU computes the same in both; every row names its mode.")
# which split picks each fold's epoch, and the determinism mode
protocol_options = _group(
    determinism_option,
    click.option("--select-epoch", type=click.Choice(("val", "test-fold")),
                 default="val", show_default=True,
                 help="Which clips pick each fold's epoch and early stop: val (a "
                 "validation split of the training folds; honest) or test-fold (the "
                 "paper's protocol, for replication only: its rows are labelled "
                 "'optimistic: epoch chosen on the test fold')."),
)


def _clip_lists(values: tuple[str, ...]) -> dict[str, str]:
    """--clips values -> {dataset or "*": CSV or set name}; each key once."""
    return _per_key(values, DATASETS, "--clips", "clip lists", "every dataset")


def _device_for(executor: str, device: str) -> None:
    """``--device`` is the local executor's: Ray's workers take the GPUs ``--unit-gpus``
    gives them, so a ``--device`` there would be silently ignored; refused instead."""
    if executor == "ray" and device != "auto":
        raise click.UsageError(f"--device {device} applies to --executor local; with "
                               "--executor ray each unit runs where Ray places it (on a GPU "
                               "with --unit-gpus > 0, else on CPUs: --unit-gpus 0)")


def make_executor(kind: str, address: str | None, unit_cpus: float | None,
                  unit_gpus: float | None, progress: bool):
    """The executor of ``--executor`` with its options; options that do not apply to
    ``local`` are refused rather than ignored."""
    from mer_di.training.executor import LocalExecutor

    if kind == "local":
        for name, value in (("--ray-address", address), ("--unit-gpus", unit_gpus)):
            if value is not None:
                raise click.UsageError(f"{name} applies to --executor ray only")
        return LocalExecutor(progress, threads=int(unit_cpus) if unit_cpus else None)
    from mer_di.training.ray_executor import RayExecutor, import_ray

    import_ray()  # without Ray: the install command, before anything else happens
    return RayExecutor(address, unit_cpus or 1.0, unit_gpus, progress)
