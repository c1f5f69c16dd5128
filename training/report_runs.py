"""Reading finished run folders for a report: :class:`Run` (a run's configuration,
predictions, learning curves and failed units, its model names tagged with what differs
from the paper) and the checks that refuse anything but a finished run."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mer_di._files import file_sha256
from mer_di.errors import ReportError
from mer_di.training.flow_input import input_label
from mer_di.training.loop import OPTIMISTIC
from mer_di.training.results import PRED_COLUMNS, label_with_setup
from mer_di.training.run_folder import TABLES, read_config, resume_command, writer_of
from mer_di.training.units import FAILURES, FILES, SCORES, Unit, unit_damage

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
                + input_label(spec)
                + (f"; **{OPTIMISTIC}** (the paper's protocol, for replication only)"
                   if (spec.get("train") or {}).get("select_epoch") == "test-fold" else ""))


def model_label(model: str, config: dict) -> str:
    """The model's name in the report, tagged with what differs from the paper's settings
    (tiny, random init, epochs...) and when the run's input is the apex frame."""
    tags = [t for t in ((config.get("setup") or {}).get(model, ""),
                        "apex frame" if config["spec"].get("input") == "apex" else "") if t]
    return label_with_setup(model, ", ".join(tags))


def _resume_hint(path: Path) -> str:
    return (f"finish it with `mer-train cv ... --resume --out {path}` (the options it was "
            "started with)")


def _repair_hint(path: Path) -> str:
    return (f"`{resume_command(path)}` redoes what is damaged and writes the run's tables "
            "again")


def _read_table(path: Path, run: Path, dtype: dict | None = None, **kwargs) -> pd.DataFrame:
    """A CSV table of the run, or :class:`ReportError` naming the file and why it can't
    be read (empty, not UTF-8, not CSV), with the command that writes it again."""
    try:
        return pd.read_csv(path, dtype=dtype, encoding="utf-8", **kwargs)
    except pd.errors.EmptyDataError:
        why = "empty"
    except UnicodeDecodeError:
        why = "not text (not UTF-8)"
    except (pd.errors.ParserError, ValueError, TypeError) as exc:
        why = f"not a readable table ({' '.join(str(exc).split())[:160]})"
    except OSError as exc:
        why = f"unreadable ({exc.strerror or exc})"
    raise ReportError(f"{path} is damaged: {why}; {_repair_hint(run)}")


def _check_tables(path: Path, units: list[str]) -> None:
    """The tables :data:`~mer_di.training.run_folder.TABLES` records must be as written;
    a run whose units record their files but not its tables stopped while writing them."""
    record = path / TABLES
    if not record.is_file():
        if any(_records_files(path / "units" / u) for u in units[:1]):
            raise ReportError(f"{path}: the run's tables are not all written (it stopped while "
                              f"writing them: {TABLES} is missing); {_resume_hint(path)}")
        return  # a run written before the tables were recorded: their content is checked
    try:
        files = json.loads(record.read_text(encoding="utf-8"))
        wanted = {name: (int(w["bytes"]), str(w["sha256"])) for name, w in files.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise ReportError(f"{record} is damaged (not the record of the run's tables); "
                          f"{_repair_hint(path)}") from None
    for name, (size, sha) in wanted.items():
        table = path / name
        if not table.is_file():
            raise ReportError(f"{table} is missing; {_repair_hint(path)}")
        have = table.stat().st_size
        if have != size:
            raise ReportError(f"{table} is damaged: {have} bytes, the run wrote {size} "
                              f"({'emptied' if have == 0 else 'cut short or edited'}); "
                              f"{_repair_hint(path)}")
        if file_sha256(table) != sha:
            raise ReportError(f"{table} is damaged: not what the run wrote (same size, other "
                              f"content); {_repair_hint(path)}")


def _records_files(unit_dir: Path) -> bool:
    """Whether the unit's scores record its files (a unit written since they do)."""
    try:
        return FILES in json.loads((unit_dir / SCORES).read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False


def _check_predictions(preds: pd.DataFrame, pred_path: Path, path: Path,
                       classes: list[str]) -> None:
    """Class indices are integers of the run's classes, and the names beside them agree (a
    row cut short or edited has neither)."""
    n = len(classes)
    index = {c: pd.to_numeric(preds[c], errors="coerce") for c in ("label", "pred")}
    bad = pd.Series(False, index=preds.index)
    for values in index.values():
        bad |= values.isna() | (values != values.round()) | ~values.between(0, n - 1)
    if bad.any():
        raise ReportError(f"{pred_path}: class indices outside 0..{n - 1} or not integers "
                          f"(config.json has {n} classes; first at row {int(bad.idxmax()) + 2})"
                          f"; {_repair_hint(path)}")
    for c in ("label", "pred"):
        preds[c] = index[c].astype(int)
        names = preds[c].map(lambda i: classes[i])
        wrong = names != preds[f"{c}_name"]
        if wrong.any():
            raise ReportError(f"{pred_path} is damaged: row {int(wrong.idxmax()) + 2} gives "
                              f"{c} {preds[c][wrong.idxmax()]} the name "
                              f"{preds[f'{c}_name'][wrong.idxmax()]!r}, not "
                              f"{names[wrong.idxmax()]!r}; {_repair_hint(path)}")


def load_run(path: str | Path) -> Run:
    """Read a finished run folder; raise :class:`ReportError` for anything else: a run
    still being written, unfinished, or with a damaged unit or table (named, with the
    command that repairs it)."""
    path = Path(path)
    if not path.exists():
        raise ReportError(f"{path}: no such folder")
    if not path.is_dir():
        raise ReportError(f"{path} is not a folder; give a run folder made by mer-train cv")
    if not (path / "config.json").is_file():
        raise ReportError(f"{path} is not a run folder (no config.json); give a folder made "
                          "by mer-train cv")
    config = read_config(path, ReportError)
    try:
        spec, units, classes = config["spec"], list(config["units"]), list(config["classes"])
        lacking = [k for k in ("protocol", "seeds", "caches") if k not in spec]
    except (ValueError, KeyError, TypeError) as exc:
        raise ReportError(f"{path}/config.json is not a run configuration ({exc})") from None
    if lacking:
        raise ReportError(f"{path}/config.json is not a run configuration (no "
                          f"{', '.join(lacking)} in its spec)")
    missing = [u for u in units if not (path / "units" / u / SCORES).is_file()]
    holder = writer_of(path)
    if holder is not None:
        raise ReportError(f"{path}: the run is incomplete, still being written by mer-train "
                          f"cv (pid {holder}): {len(units) - len(missing)} of {len(units)} "
                          "units finished so far; report it once that run has ended")
    if missing:
        raise ReportError(f"{path}: the run is not finished ({len(missing)} of {len(units)} "
                          f"folds missing, e.g. {missing[0]}); {_resume_hint(path)}")
    for u in units:
        unit = Unit.parse(u)
        why = unit and unit_damage(path / "units", unit, checkpoint=False, unrecorded=False)
        if why:
            raise ReportError(f"{path}: unit {u} is damaged ({why}); {_repair_hint(path)}")
    pred_path = path / "predictions.csv"
    if not pred_path.is_file():
        raise ReportError(f"{path}: no predictions.csv (the run stopped before writing its "
                          f"tables); {_resume_hint(path)}")
    _check_tables(path, units)
    preds = _read_table(pred_path, path, keep_default_na=False, dtype={
        c: str for c in ("model", "config", "dataset", "subject", "clip", "label_name",
                         "pred_name")})
    absent = [c for c in PRED_COLUMNS if c not in preds.columns]
    if absent:
        raise ReportError(f"{pred_path} lacks column(s) {', '.join(absent)}; "
                          f"{_repair_hint(path)}")
    _check_predictions(preds, pred_path, path, classes)
    have = set(map(tuple, preds[["model", "config", "seed", "fold"]].drop_duplicates()
                   .itertuples(index=False)))
    failures = (_read_table(path / FAILURES, path, dtype={"model": str, "config": str})
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
    label = {m: model_label(m, config) for m in preds["model"].unique()}
    preds["model"] = preds["model"].map(label)
    epochs = None
    if (path / "epochs.csv").is_file():
        epochs = _read_table(path / "epochs.csv", path, dtype={"model": str, "config": str})
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

