"""``mer-train table1``: the paper's whole Table I in one command.

Six models (VGG-Face, VGG-19, ResNet-34, EfficientNet-B0, ViT-B/16, LEARNet) x the four
augmentation settings, cross-validated on each dataset separately with the paper's
settings (5-fold ``kfold``, Adam 1e-4 with cosine annealing, batch 25, up to 50 epochs,
early stopping on a validation split), one run folder per dataset under ``out``, then the
report of them side by side (``out/report``). Every unit goes through the chosen executor
(local, or Ray over a workstation's or a cluster's GPUs).

Pretrained weights come from one folder, each under the name the model's registry gives
it (:attr:`mer_di.training.models.ModelCfg.weights_file`: ``vgg_face_dag.pth``,
``<timm name>.pth``); LEARNet is trained from scratch. Every missing file is named, with
what to put there, before anything trains; ``allow_random_init`` runs those models from
random initialisation instead, and their rows say so.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mer_di._paths import check_writable
from mer_di.errors import RunError
from mer_di.options import CONFIG_NAMES
from mer_di.training.data import cache_datasets
from mer_di.training.loop import TrainOptions
from mer_di.training.models import model_cfg
from mer_di.training.models.registry import missing_weights
from mer_di.training.plan import CVSpec

TABLE1_MODELS = ("vggface", "vgg19", "resnet34", "efficientnet_b0", "vit_base_patch16_224",
                 "learnet")


def table1_weights(weights_dir: str | Path | None, models: tuple[str, ...] = TABLE1_MODELS,
                   tiny: bool = False, overrides: dict[str, str] | None = None
                   ) -> tuple[dict[str, str], list[str]]:
    """``(pretrained, missing)``: the weights of each model that takes some (``{model:
    path}``; ``overrides`` ``{model or "*": FILE, "cache" or "hub"}`` first, then the file
    of the model's name in ``weights_dir``) and, for each file that is not there, a line
    naming it and where it comes from."""
    pretrained, missing = {}, []
    overrides = overrides or {}
    for model in models:
        cfg = model_cfg(model, tiny=tiny)
        if cfg.from_scratch or not cfg.weights_file:
            continue
        given = overrides.get(model, overrides.get("*"))
        if given in ("cache", "hub") or (given and Path(given).is_file()):
            pretrained[model] = given
            continue
        if given:
            missing.append(missing_weights(model, given, tiny=tiny))
            continue
        path = Path(weights_dir) / cfg.weights_file if weights_dir else Path(cfg.weights_file)
        if path.is_file():
            pretrained[model] = str(path)
        else:
            missing.append(missing_weights(model, path, tiny=tiny))
    return pretrained, missing


def run_table1(caches: list[str | Path], out: str | Path, *, weights_dir: str | Path | None,
               models: tuple[str, ...] = TABLE1_MODELS, configs: tuple[str, ...] = CONFIG_NAMES,
               folds: int = 5, seeds: tuple[int, ...] = (0,), train: TrainOptions | None = None,
               tiny: bool = False, overrides: dict[str, str] | None = None,
               allow_random_init: bool = False,
               resume: bool = False, device: str = "auto", executor=None,
               progress: bool = True, echo: Callable[[str], None] = print):
    """Run Table I on each cache (one dataset each) into ``out/<dataset>/`` and report
    them together into ``out/report/``; returns the :class:`mer_di.training.report.Report`.

    Raises :class:`RunError` for a missing weights file (all of them named) unless
    ``allow_random_init``, for two caches of one dataset, or an ``out`` that can't be
    written; and whatever :func:`mer_di.training.run_cv` raises."""
    from mer_di.training.report import make_report
    from mer_di.training.runner import run_cv

    if not caches:
        raise RunError("give the caches of Table I (--cache casme2.h5 --cache samm.h5)")
    out = check_writable(out, folder=True)
    datasets = cache_datasets([str(c) for c in caches])
    twice = sorted({d for d in datasets if datasets.count(d) > 1})
    if twice:
        raise RunError(f"two caches of {', '.join(twice)}: Table I runs each dataset "
                       "separately, one cache each")
    pretrained, missing = table1_weights(weights_dir, models, tiny, overrides)
    if missing and not allow_random_init:
        raise RunError("missing pretrained weights (put each file in --weights-dir, or give "
                       "--allow-random-init to run those models from random initialisation, "
                       "marked in the report):\n  " + "\n  ".join(missing))
    for line in missing:
        echo(f"random initialisation: {line}")
    runs = []
    for cache, dataset in zip(caches, datasets, strict=True):
        echo(f"== Table I on {dataset} ({cache})")
        spec = CVSpec(caches=[str(cache)], models=list(models), configs=list(configs),
                      protocol="kfold", folds=folds, seeds=list(seeds), classes=None,
                      train=train or TrainOptions(), pretrained=dict(pretrained), tiny=tiny)
        summary = run_cv(spec, out / dataset, resume=resume or (out / dataset).exists(),
                         device=device, progress=progress, echo=echo, executor=executor)
        if "failed" in summary and summary["failed"].astype(bool).any():
            echo(f"warning: some units of {dataset} failed; see {out / dataset}/failures.csv")
        runs.append(out / dataset)
    return make_report([str(r) for r in runs], out=out / "report")
