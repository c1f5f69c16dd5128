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


PAPER_CLIP_SETS = {
    # the clips behind the CASME II accuracies of the paper's Table I: the five-class rows
    # of the 2014 sheet with a numeric apex (245; the 2019 revision gives 248)
    "paper-casme2": ("casme2", "CASME2-coding-20140508", 245),
}


def paper_clip_list(name: str, cache: str | Path, folder: Path) -> Path:
    """Write the named clip set ``name`` of ``cache`` as a clip-list CSV into ``folder``
    and return its path; :class:`RunError` for an unknown name, a cache of another dataset
    or one built from another sheet (whose rows are not the paper's)."""
    import csv

    from mer_di.data_manifest.classes import map_label
    from mer_di.pipeline.cache_reader import open_cache

    if name not in PAPER_CLIP_SETS:
        raise RunError(f"--clips {name}: no such file, and not a named clip set (they are: "
                       f"{', '.join(PAPER_CLIP_SETS)})")
    dataset, sheet, count = PAPER_CLIP_SETS[name]
    with open_cache(cache) as c:
        attrs = dict(c.attrs)
        if str(attrs.get("dataset")) != dataset:
            raise RunError(f"--clips {name} is a {dataset} clip set; {cache} is a "
                           f"{attrs.get('dataset')} cache")
        if sheet not in str(attrs.get("sheet", "")):
            raise RunError(f"--clips {name}: the paper's {count} clips are rows of {sheet}; "
                           f"{cache} was built from {attrs.get('sheet')}, whose rows differ. "
                           f"Build the cache from {sheet}.xlsx, or give the paper's list as a "
                           "CSV")
        rows = [(clip.dataset, clip.subject, clip.clip) for clip in c
                if map_label(dataset, "five", clip.emotion) is not None
                and isinstance(clip.attrs.get("apex"), int)
                and not isinstance(clip.attrs.get("apex"), bool)]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.csv"
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["dataset", "subject", "clip"])
        w.writerows(rows)
    tmp.replace(path)
    return path


def _clip_list(lists: dict[str, str], dataset: str, cache: str | Path, out: Path) -> str | None:
    """The clip-list file of ``dataset``'s run: a CSV given for it (or for every dataset),
    or a named set written into ``out/clip-lists``."""
    given = lists.get(dataset, lists.get("*"))
    if given is None:
        return None
    if Path(given).is_file():
        return given
    if given in PAPER_CLIP_SETS and PAPER_CLIP_SETS[given][0] != dataset and dataset not in lists:
        return None  # a named set given for every dataset applies to its own dataset only
    return str(paper_clip_list(given, cache, out / "clip-lists"))


SELECTIONS = {"val": ("val",), "test-fold": ("test-fold",), "both": ("val", "test-fold")}


def run_folder(out: Path, dataset: str, selection: str) -> Path:
    """Where a dataset's run goes: ``out/<dataset>``, ``out/<dataset>-test-fold`` for the
    paper's protocol."""
    return out / (dataset if selection == "val" else f"{dataset}-test-fold")


def table_bytes(datasets, models, configs, folds, seeds, tiny, checkpoints, runs: int) -> int:
    """Bytes the whole table writes (every dataset, model, configuration, seed, fold and
    protocol run); a head's size is a rounding error of the weights, so it is counted at 8
    classes whatever the dataset's set."""
    from mer_di.training.disk import RECORDS_BYTES, checkpoint_bytes

    per_dataset = sum(RECORDS_BYTES + (checkpoint_bytes(model, 8, tiny) if checkpoints else 0)
                      for model in models)
    return per_dataset * len(datasets) * len(configs) * folds * len(seeds) * runs


def run_table1(caches: list[str | Path], out: str | Path, *, weights_dir: str | Path | None,
               models: tuple[str, ...] = TABLE1_MODELS, configs: tuple[str, ...] = CONFIG_NAMES,
               folds: int = 5, seeds: tuple[int, ...] = (0,), train: TrainOptions | None = None,
               tiny: bool = False, overrides: dict[str, str] | None = None,
               allow_random_init: bool = False, clip_lists: dict[str, str] | None = None,
               checkpoints: bool = False, determinism: str = "reproducible",
               select_epoch: str = "val",
               resume: bool = False, device: str = "auto", executor=None,
               progress: bool = True, echo: Callable[[str], None] = print):
    """Run Table I on each cache (one dataset each) into ``out/<dataset>/`` and report
    them together into ``out/report/``; returns the :class:`mer_di.training.report.Report`.

    ``clip_lists``: ``{dataset or "*": CSV or a named set}`` (:data:`PAPER_CLIP_SETS`);
    ``checkpoints``: keep each unit's weights (off by default: the six models' weights are
    about 1.4 GiB per configuration and fold); ``select_epoch``: ``val`` (honest),
    ``test-fold`` (the paper's protocol, into ``out/<dataset>-test-fold``, labelled
    optimistic) or ``both`` (the report then measures the inflation on the same folds).
    Before anything trains it says how much the table writes, and refuses when the disk
    can't hold it.

    Raises :class:`RunError` for a missing weights file (all of them named) unless
    ``allow_random_init``, for two caches of one dataset, or an ``out`` that can't be
    written; and whatever :func:`mer_di.training.run_cv` raises."""
    import dataclasses

    from mer_di.training.disk import check_space
    from mer_di.training.report import make_report
    from mer_di.training.runner import run_cv

    if not caches:
        raise RunError("give the caches of Table I (--cache casme2.h5 --cache samm.h5)")
    if select_epoch not in SELECTIONS:
        raise RunError(f"--select-epoch {select_epoch}: give {', '.join(SELECTIONS)}")
    out = check_writable(out, folder=True)
    datasets = cache_datasets([str(c) for c in caches])
    twice = sorted({d for d in datasets if datasets.count(d) > 1})
    if twice:
        raise RunError(f"two caches of {', '.join(twice)}: Table I runs each dataset "
                       "separately, one cache each")
    unknown = sorted(set(clip_lists or {}) - set(datasets) - {"*"})
    if unknown:
        raise RunError(f"--clips {unknown[0]}=...: no cache of {unknown[0]} in this table")
    pretrained, missing = table1_weights(weights_dir, models, tiny, overrides)
    if missing and not allow_random_init:
        raise RunError("missing pretrained weights (put each file in --weights-dir, or give "
                       "--allow-random-init to run those models from random initialisation, "
                       "marked in the report):\n  " + "\n  ".join(missing))
    for line in missing:
        echo(f"random initialisation: {line}")
    selections = SELECTIONS[select_epoch]
    need = table_bytes(datasets, models, configs, folds, seeds, tiny, checkpoints,
                       len(selections))
    echo(check_space(out, need, f"Table I ({len(datasets)} dataset(s) x {len(models)} models "
                     f"x {len(configs)} configurations x {folds} folds x {len(seeds)} seed(s)"
                     + (" x 2 protocols" if len(selections) > 1 else "") + ", "
                     + ("with" if checkpoints else "without") + " checkpoints)",
                     "leave out --checkpoints"))
    base = train or TrainOptions()
    runs = []
    for cache, dataset in zip(caches, datasets, strict=True):
        clip_list = _clip_list(clip_lists or {}, dataset, cache, out)
        for selection in selections:
            folder = run_folder(out, dataset, selection)
            label = " (the paper's protocol: epoch chosen on the test fold)" * (
                selection == "test-fold")
            echo(f"== Table I on {dataset} ({cache}){label}")
            spec = CVSpec(caches=[str(cache)], models=list(models), configs=list(configs),
                          protocol="kfold", folds=folds, seeds=list(seeds), classes=None,
                          clip_list=clip_list,
                          train=dataclasses.replace(base, select_epoch=selection),
                          pretrained=dict(pretrained), tiny=tiny, checkpoints=checkpoints,
                          determinism=determinism)
            summary = run_cv(spec, folder, resume=resume or folder.exists(), device=device,
                             progress=progress, echo=echo, executor=executor)
            if "failed" in summary and summary["failed"].astype(bool).any():
                echo(f"warning: some units of {dataset} failed; see {folder}/failures.csv")
            runs.append(folder)
    return make_report([str(r) for r in runs], out=out / "report")
