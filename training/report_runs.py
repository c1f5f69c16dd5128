"""Reading finished run folders for a report: :class:`Run` (a run's configuration,
predictions, learning curves and failed units, its model names tagged with what differs
from the paper) and the checks that refuse anything but a finished run."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mer_di.errors import ReportError
from mer_di.training.results import PRED_COLUMNS, label_with_setup
from mer_di.training.units import FAILURES, SCORES, Unit

DATASET_NAMES = {"casme2": "CASME II", "samm": "SAMM", "mmew": "MMEW", "smic": "SMIC-HS",
                 "casme3": "CAS(ME)^3", "all": "Composite"}
METRIC_NAMES = {"accuracy": "Acc", "uf1": "UF1", "uar": "UAR"}
PAIRED_METRICS = ("uf1", "accuracy")
ALL = "all"


@dataclass
class Run:
    """One finished run folder, its model names tagged (``learnet (apex frame)``)."""

    path: Path
    name: str  # unique among the report's runs; used in file names
    config: dict
    predictions: pd.DataFrame
    epochs: pd.DataFrame | None
    # failed units (model, config, seed, fold, failed): their (model, config) has no score
    failures: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def classes(self) -> list[str]:
        return list(self.config["classes"])

    @property
    def spec(self) -> dict:
        return self.config["spec"]

    @property
    def datasets(self) -> list[str]:
        return list(dict.fromkeys(self.predictions["dataset"]))

    def describe(self) -> str:
        spec = self.spec
        folds = f" ({spec['folds']} folds)" if spec["protocol"] not in ("loso", "lodo") else ""
        return (f"`{self.path}`: {', '.join(map(str, spec['caches']))}; "
                f"{self.config.get('clips', '?')} clips; classes {', '.join(self.classes)}; "
                f"protocol {spec['protocol']}{folds}; seeds "
                f"{', '.join(map(str, spec['seeds']))}; input: "
                + ("the apex frame alone (control)" if spec.get("input") == "apex"
                   else "dynamic images"))


def model_label(model: str, config: dict) -> str:
    """The model's name in the report, tagged with what differs from the paper's settings
    (tiny, random init, epochs...) and when the run's input is the apex frame."""
    tags = [t for t in ((config.get("setup") or {}).get(model, ""),
                        "apex frame" if config["spec"].get("input") == "apex" else "") if t]
    return label_with_setup(model, ", ".join(tags))


def _resume_hint(path: Path) -> str:
    return (f"finish it with `mer-train cv ... --resume --out {path}` (the options it was "
            "started with)")


def load_run(path: str | Path) -> Run:
    """Read a finished run folder; raise :class:`ReportError` for anything else."""
    path = Path(path)
    if not path.exists():
        raise ReportError(f"{path}: no such folder")
    if not path.is_dir():
        raise ReportError(f"{path} is not a folder; give a run folder made by mer-train cv")
    if not (path / "config.json").is_file():
        raise ReportError(f"{path} is not a run folder (no config.json); give a folder made "
                          "by mer-train cv")
    try:
        config = json.loads((path / "config.json").read_text())
        spec, units, classes = config["spec"], list(config["units"]), config["classes"]
        lacking = [k for k in ("protocol", "seeds", "caches") if k not in spec]
    except (ValueError, KeyError, TypeError) as exc:
        raise ReportError(f"{path}/config.json is not a run configuration ({exc})") from None
    if lacking:
        raise ReportError(f"{path}/config.json is not a run configuration (no "
                          f"{', '.join(lacking)} in its spec)")
    missing = [u for u in units if not (path / "units" / u / SCORES).is_file()]
    if missing:
        raise ReportError(f"{path}: the run is not finished ({len(missing)} of {len(units)} "
                          f"folds missing, e.g. {missing[0]}); {_resume_hint(path)}")
    pred_path = path / "predictions.csv"
    if not pred_path.is_file():
        raise ReportError(f"{path}: no predictions.csv (the run stopped before writing its "
                          f"tables); {_resume_hint(path)}")
    preds = pd.read_csv(pred_path, keep_default_na=False,
                        dtype={c: str for c in ("model", "config", "dataset", "subject", "clip",
                                                "label_name", "pred_name")})
    absent = [c for c in PRED_COLUMNS if c not in preds.columns]
    if absent:
        raise ReportError(f"{pred_path} lacks column(s) {', '.join(absent)}")
    have = set(map(tuple, preds[["model", "config", "seed", "fold"]].drop_duplicates()
                   .itertuples(index=False)))
    failures = (pd.read_csv(path / FAILURES, dtype={"model": str, "config": str})
                if (path / FAILURES).is_file() else pd.DataFrame(columns=["model", "config"]))
    failed = set(zip(failures["model"], failures["config"], strict=True))
    for u in units:
        unit = Unit.parse(u)
        if (unit and unit.fold is not None and (unit.model, unit.config) not in failed
                and (unit.model, unit.config, unit.seed, unit.fold) not in have):
            raise ReportError(f"{path}: predictions.csv lacks the finished fold {u} (it was "
                              f"written before the run ended); {_resume_hint(path)}")
    if len(preds) == 0 and not failed:
        raise ReportError(f"{pred_path} holds no predictions")
    n = len(classes)
    bad = ~preds["label"].between(0, n - 1) | ~preds["pred"].between(0, n - 1)
    if bad.any():
        raise ReportError(f"{pred_path}: class indices outside 0..{n - 1} (config.json has "
                          f"{n} classes)")
    label = {m: model_label(m, config) for m in preds["model"].unique()}
    preds["model"] = preds["model"].map(label)
    epochs = None
    if (path / "epochs.csv").is_file():
        epochs = pd.read_csv(path / "epochs.csv", dtype={"model": str, "config": str})
        epochs["model"] = epochs["model"].map(lambda m: model_label(m, config))
    failures["model"] = failures["model"].map(lambda m: model_label(m, config))
    return Run(path, safe_name(path.resolve().name), config, preds, epochs, failures)


def load_runs(paths: list[str | Path]) -> list[Run]:
    """Load each run; their names (for files) made unique."""
    if not paths:
        raise ReportError("give at least one run folder")
    runs, seen = [], set()
    for p in paths:
        run = load_run(p)
        if any(run.path.resolve() == r.path.resolve() for r in runs):
            raise ReportError(f"{p} is given twice")
        name, i = run.name, 2
        while name in seen:
            name, i = f"{run.name}-{i}", i + 1
        run.name = name
        seen.add(name)
        runs.append(run)
    return runs


def safe_name(text: str) -> str:
    """``text`` as a file-name part: letters, digits, '.', '_' and '-' only."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-.")
    return s or "x"



def _order(values: list[str], first: tuple[str, ...] = ()) -> list[str]:
    seen = list(dict.fromkeys(values))
    return [v for v in first if v in seen] + [v for v in seen if v not in first]

