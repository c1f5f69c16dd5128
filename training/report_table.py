"""The report's Table-I table: one row per (model, configuration, dataset) from the
runs' predictions (:func:`table_long`), its wide CSV layout and its markdown, with what
each dataset column is over (class set, clip set) so mixed columns are marked."""

from __future__ import annotations

import hashlib

import pandas as pd

from mer_di.errors import ReportError
from mer_di.training.configs import CONFIG_NAMES
from mer_di.training.report_runs import ALL, DATASET_NAMES, METRIC_NAMES, Run, _order
from mer_di.training.results import METRICS, summarise


def table_long(runs: list[Run]) -> pd.DataFrame:
    """One row per (model, config, dataset) with the summary's columns (fractions) and the
    run it comes from; dataset ``all`` for the whole of a run over several datasets.
    Raises :class:`ReportError` when two runs give the same (model, config, dataset)."""
    rows, where = [], {}
    for run in runs:
        groups = run.datasets + ([ALL] if len(run.datasets) > 1 else [])
        for dataset in groups:
            preds = run.predictions
            sub = preds if dataset == ALL else preds[preds["dataset"] == dataset]
            setup = _setup(run, sub)
            for r in summarise(sub, len(run.classes)).to_dict("records"):
                key = (r["model"], r["config"], dataset)
                if key in where:
                    raise ReportError(f"{r['model']} x {r['config']} on {dataset} is in both "
                                      f"{where[key]} and {run.path}; give each (model, "
                                      "configuration, dataset) once")
                where[key] = run.path
                rows.append({"run": str(run.path), "dataset": dataset, **setup, **r})
        for (model, config), g in run.failures.groupby(["model", "config"], sort=False):
            for dataset in groups or [ALL]:  # a row that says why it has no number
                sub = (run.predictions if dataset == ALL
                       else run.predictions[run.predictions["dataset"] == dataset])
                rows.append({"run": str(run.path), "dataset": dataset, "model": model,
                             "config": config, **_setup(run, sub), "folds": len(g),
                             "failed": f"{len(g)} unit(s) failed: {g.iloc[0]['failed']}"})
    df = pd.DataFrame(rows)
    models = _order(df["model"].tolist())
    configs = _order(df["config"].tolist(), CONFIG_NAMES)
    datasets = [d for d in _order(df["dataset"].tolist()) if d != ALL]
    datasets += [ALL] if ALL in set(df["dataset"]) else []
    for col, order in (("model", models), ("config", configs), ("dataset", datasets)):
        df[col] = pd.Categorical(df[col], order, ordered=True)
    df = df.sort_values(["model", "config", "dataset"], kind="stable", ignore_index=True)
    for col in ("model", "config", "dataset"):
        df[col] = df[col].astype(str)
    return df[["model", "config", "dataset"] + [c for c in df.columns
                                               if c not in ("model", "config", "dataset")]]


def _setup(run: Run, preds: pd.DataFrame) -> dict:
    """What a row's numbers are over: the run's class set, and the clips of its test folds
    (how many, and a short hash of which, so two rows of one column can be compared)."""
    clips = sorted(set(zip(preds["dataset"], preds["subject"], preds["clip"], strict=True)))
    digest = hashlib.sha1("\n".join("/".join(c) for c in clips).encode()).hexdigest()[:8]
    return {"class_set": run.spec.get("classes", "?"), "classes": ", ".join(run.classes),
            "clips": len(clips), "clip_set": digest,
            "data_setup": run.config.get("data_setup", "")}


SETUP_COLUMNS = ("class_set", "classes", "clips", "clip_set")


def column_setups(long: pd.DataFrame) -> dict[str, list[tuple]]:
    """Per dataset column, the distinct (class_set, classes, clips, clip_set) of its rows,
    in order of appearance: more than one means the column mixes rows whose numbers are
    not comparable (other classes, or other clips)."""
    out = {}
    for dataset, g in long.groupby("dataset", sort=False):
        out[dataset] = list(dict.fromkeys(
            tuple(r[c] for c in SETUP_COLUMNS) for r in g.to_dict("records")))
    return out


def table_wide(long: pd.DataFrame) -> pd.DataFrame:
    """The Table-I layout: one row per model x config, columns ``<dataset>.<column>``."""
    values = [c for c in long.columns if c not in ("model", "config", "dataset")]
    rows = {}
    for r in long.to_dict("records"):
        row = rows.setdefault((r["model"], r["config"]),
                              {"model": r["model"], "config": r["config"]})
        row.update({f"{r['dataset']}.{c}": r[c] for c in values})
    datasets = list(dict.fromkeys(long["dataset"]))
    cols = ["model", "config"] + [f"{d}.{c}" for d in datasets for c in values]
    return pd.DataFrame(list(rows.values())).reindex(columns=cols)


def _cell(mean: float, std: float | None = None) -> str:
    if pd.isna(mean):
        return "–"
    return f"{100 * mean:.2f}" + ("" if std is None else f" ± {100 * std:.2f}")


def _failed(row: dict) -> str:
    """Why a table row has no number ('' for a scored row)."""
    why = row.get("failed")
    return why if isinstance(why, str) else ""


def _data_setups(long: pd.DataFrame, dataset: str) -> str:
    """`` Against the paper: 240 clips (paper: 245), ...`` for the column's runs."""
    if "data_setup" not in long.columns:
        return ""
    found = [s for s in dict.fromkeys(long.loc[long["dataset"] == dataset, "data_setup"])
             if isinstance(s, str) and s]
    return f" Over: {'; '.join(found)}." if found else ""


def table_markdown(long: pd.DataFrame) -> str:
    """Two markdown tables (mean ± std over folds; pooled over folds), percentages."""
    datasets = list(dict.fromkeys(long["dataset"]))
    keyed = {(r["model"], r["config"], r["dataset"]): r for r in long.to_dict("records")}
    pairs = list(dict.fromkeys(zip(long["model"], long["config"], strict=True)))
    head = "| model | config | " + " | ".join(
        f"{DATASET_NAMES.get(d, d)} {METRIC_NAMES[m]}" for d in datasets for m in METRICS)
    rule = "|---|---|" + "---:|" * (len(datasets) * len(METRICS))

    setups = column_setups(long)
    mixed = {d for d in datasets if len(setups[d]) > 1}

    def mark(r: dict) -> str:  # which setup of a mixed column a cell's number is over
        d = r["dataset"]
        if d not in mixed:
            return ""
        return f" [{chr(ord('a') + setups[d].index(tuple(r[c] for c in SETUP_COLUMNS)))}]"

    def lines(cell) -> list[str]:
        out = [head + " |", rule]
        for model, config in pairs:
            cells = []
            for d in datasets:
                r = keyed.get((model, config, d))
                cells += [("failed" if _failed(r) else cell(r, m) + mark(r)) if r is not None
                          else "–" for m in METRICS]
            out.append(f"| {model} | {config} | " + " | ".join(cells) + " |")
        return out

    over = []
    for d in datasets:
        name = DATASET_NAMES.get(d, d)
        if d not in mixed:
            class_set, classes, clips, clip_set = setups[d][0]
            over.append(f"- {name}: every row over the same {clips} clips (set {clip_set}), "
                        f"class set {class_set} ({classes})." + _data_setups(long, d))
            continue
        over.append(f"- **{name}: not one setup.** Its rows are over different class sets "
                    "or clips, so their numbers are not comparable; compare only cells of "
                    "one letter:")
        for i, (class_set, classes, clips, clip_set) in enumerate(setups[d]):
            over.append(f"  - [{chr(ord('a') + i)}] class set {class_set} ({classes}); "
                        f"{clips} clips (set {clip_set})")

    failed = list(dict.fromkeys(f"Failed, no score: {r['model']} x {r['config']}: {_failed(r)}"
                                for r in long.to_dict("records") if _failed(r)))
    failed = ["", *failed] if failed else []
    folds = sorted(set(long["folds"]))
    several_seeds = bool((long.reindex(columns=["seeds"])["seeds"] > 1).any())
    n_folds = (f"{folds[0]} test folds" if len(folds) == 1
               else "each cell's test folds (their number is in table.csv)")
    mean = lines(lambda r, m: _cell(r[f"{m}_mean"], r[f"{m}_std"]))
    pooled = lines(lambda r, m: _cell(r[f"pooled_{m}"],
                                      r[f"pooled_{m}_std"] if r["seeds"] > 1 else None))
    return "\n".join(
        ["What each column is over:", *over, "",
         f"Mean ± std over folds (%): mean and sample std over {n_folds}"
         + (" (of all seeds)" if several_seeds else "") + ".", "", *mean, "",
         "Pooled over folds (%): each metric of all folds' test predictions together"
         + (", per seed, then mean ± std over seeds." if several_seeds else "."), "",
         *pooled, *failed])

