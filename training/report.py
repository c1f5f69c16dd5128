"""``mer-train report``: finished run folders -> a Table-I style table, paired comparisons
against the baseline configuration, confusion matrices and learning curves.

Everything is computed from each run's saved ``predictions.csv`` (and ``epochs.csv`` for the
curves) with the functions that made the run's ``summary.csv``, so the numbers agree.

The report folder holds::

    table.md, table.csv     one row per model x configuration; per dataset (and "all" for a
                            run over several): mean +- std over folds, and pooled over folds
    paired.md, paired.csv   each configuration against the baseline on the same folds
    confusion_<run>_<model>_<config>.png, curves_<run>_<model>_<config>.png
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mer_di._paths import check_writable, make_folder
from mer_di.errors import ReportError
from mer_di.training.configs import CONFIG_NAMES
from mer_di.training.figures import plot_confusion, plot_curves
from mer_di.training.results import (
    METRICS,
    PRED_COLUMNS,
    fold_scores,
    label_with_setup,
    pooled_confusion,
    summarise,
)
from mer_di.training.stats import (
    by_seed,
    hierarchical_bootstrap_ci,
    hierarchical_mean,
    paired_differences,
    sign_flip_p,
    smallest_p,
    win_tie_loss,
)
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


# --- the table --------------------------------------------------------------------------

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
            "clips": len(clips), "clip_set": digest}


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
                        f"class set {class_set} ({classes}).")
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


# --- paired comparisons -----------------------------------------------------------------

_SAME = (("protocol", lambda r: r.spec["protocol"]), ("folds", lambda r: r.spec.get("folds")),
         ("seeds", lambda r: list(r.spec["seeds"])), ("classes", lambda r: r.classes),
         ("caches", lambda r: [r.config.get("caches_sha256", {}).get(c, c)
                               for c in r.spec["caches"]]))


def _differs(a: Run, b: Run) -> list[str]:
    """What keeps two runs' folds from being the same (empty when they may be)."""
    if a.path.resolve() == b.path.resolve():
        return []
    return [name for name, get in _SAME if get(a) != get(b)]


def _clip_sets(preds: pd.DataFrame) -> dict[tuple[int, int], frozenset]:
    return {(int(s), int(f)): frozenset(zip(g["dataset"], g["subject"], g["clip"], strict=True))
            for (s, f), g in preds.groupby(["seed", "fold"], sort=True)}


def _unpaired_folds(a: pd.DataFrame, b: pd.DataFrame) -> str | None:
    """Why the two sets of predictions are not on the same test folds (None when they are)."""
    sa, sb = _clip_sets(a), _clip_sets(b)
    if sa.keys() != sb.keys():
        return (f"the (seed, fold) pairs differ ({len(sa)} against {len(sb)}; seeds "
                f"{sorted({s for s, _ in sa})} against {sorted({s for s, _ in sb})})")
    bad = [k for k in sa if sa[k] != sb[k]]
    if bad:
        return (f"the test clips of {len(bad)} of {len(sa)} (seed, fold) pairs differ (e.g. "
                f"seed {bad[0][0]} fold {bad[0][1]})")
    return None


@dataclass
class _Entry:
    run: Run
    model: str
    config: str
    preds: pd.DataFrame = field(repr=False)


def _entries(runs: list[Run]) -> list[_Entry]:
    out = []
    for run in runs:
        for (model, config), g in run.predictions.groupby(["model", "config"], sort=False):
            out.append(_Entry(run, model, config, g))
    return out


def _data(run: Run) -> str:
    return ", ".join(DATASET_NAMES.get(d, d) for d in run.datasets)


def paired(runs: list[Run], baseline: str = "baseline", n_boot: int = 10_000, seed: int = 0
           ) -> pd.DataFrame:
    """Each (model, configuration) other than ``baseline`` against that model's
    ``baseline`` on the same test folds: one row per metric (UF1, accuracy), or one
    ``skipped`` row with the reason. See :mod:`mer_di.training.stats` for the method."""
    entries = _entries(runs)
    configs = sorted({e.config for e in entries}
                     | {c for r in runs for c in r.failures.get("config", [])})
    if baseline not in configs:
        raise ReportError(f"--baseline {baseline}: no run has that configuration (they have "
                          f"{', '.join(configs)})")
    models = _order([e.model for e in entries])
    others = _order([e.config for e in entries], CONFIG_NAMES)
    rows = []
    for e in sorted((e for e in entries if e.config != baseline),
                    key=lambda e: (models.index(e.model), others.index(e.config))):
        base = {"model": e.model, "config": e.config, "baseline": baseline,
                "data": _data(e.run), "run": str(e.run.path)}
        cands = [b for b in entries if b.model == e.model and b.config == baseline]
        cands.sort(key=lambda b: b.run is not e.run)  # the same run first
        reason, match = f"no {baseline} run of {e.model}", None
        if any(((r.failures["model"] == e.model) & (r.failures["config"] == baseline)).any()
               for r in runs if len(r.failures)):
            reason = f"{e.model} {baseline} failed (see its run's {FAILURES})"
        for b in cands:
            differs = _differs(e.run, b.run)
            if differs:
                reason = (f"{e.model} {baseline} is in {b.run.path}, whose "
                          f"{', '.join(differs)} differ from {e.run.path}'s")
                continue
            why = _unpaired_folds(e.preds, b.preds)
            if why:
                reason = f"{why} between {e.run.path} and {b.run.path}"
                continue
            match = b
            break
        if match is None:
            rows.append({**base, "status": "skipped", "reason": reason})
            continue
        n_classes = len(e.run.classes)
        fa, fb = fold_scores(e.preds, n_classes), fold_scores(match.preds, n_classes)
        for metric in PAIRED_METRICS:
            d = paired_differences(fa, fb, metric)
            groups = by_seed(d)
            won, tied, lost = win_tie_loss(d["diff"].to_numpy())
            low, high = hierarchical_bootstrap_ci(groups, n_boot, seed)
            rows.append({**base, "baseline_run": str(match.run.path), "status": "ok",
                         "metric": metric, "seeds": len(groups), "n": len(d),
                         "config_score": hierarchical_mean(by_seed(d, "config")),
                         "baseline_score": hierarchical_mean(by_seed(d, "baseline")),
                         "estimate": hierarchical_mean(groups), "ci_low": low,
                         "ci_high": high, "p": sign_flip_p(groups, n_boot, seed),
                         "p_method": "exact" if len(d) <= 16 else f"random ({n_boot})",
                         "won": won, "tied": tied, "lost": lost, "reason": ""})
    cols = ["model", "config", "baseline", "metric", "data", "run", "baseline_run", "status",
            "seeds", "n", "config_score", "baseline_score", "estimate", "ci_low", "ci_high",
            "p", "p_method", "won", "tied", "lost", "reason"]
    return pd.DataFrame(rows).reindex(columns=cols)


def paired_markdown(df: pd.DataFrame, n_boot: int, seed: int) -> str:
    """The paired comparisons as a markdown table, with a note on the method."""
    ok = df[df["status"] == "ok"]
    several_data = df["data"].nunique() > 1
    lines = []
    if len(ok):
        lines += ["| model | config | " + ("data | " if several_data else "")
                  + "metric | n | config | baseline | Δ | 95% CI | p | won/tied/lost |",
                  "|---|---|" + ("---|" if several_data else "")
                  + "---|---:|---:|---:|---:|---|---:|---|"]
        for r in ok.to_dict("records"):
            lines.append(
                f"| {r['model']} | {r['config']} vs {r['baseline']} | "
                + (f"{r['data']} | " if several_data else "")
                + f"{METRIC_NAMES[r['metric']]} | {r['n']} | {100 * r['config_score']:.2f} | "
                f"{100 * r['baseline_score']:.2f} | {100 * r['estimate']:+.2f} | "
                f"[{100 * r['ci_low']:+.2f}, {100 * r['ci_high']:+.2f}] | {r['p']:.4g} | "
                f"{r['won']}/{r['tied']}/{r['lost']} |")
        ns = sorted(set(ok["n"]))
        floor = ", ".join(f"{smallest_p(n, n_boot):.4g} with n = {n}" for n in ns)
        several_seeds = bool((ok["seeds"] > 1).any())
        lines += [
            "",
            "Δ (percentage points): the mean over seeds of each seed's mean over folds of "
            "metric(config) − metric(baseline), on the same test folds; n: (seed, fold) "
            "pairs; won/tied/lost: folds where the configuration scored above, equal to, "
            f"below the baseline. 95% CI: two-stage bootstrap percentile interval ({n_boot} "
            "resamples, seed "
            f"{seed}): the seeds drawn with replacement, then the folds within each drawn "
            "seed. p: two-sided sign-flip permutation test of the per-fold differences "
            "(H0: each is symmetric about 0; statistic Δ), exact over all 2^n sign patterns "
            f"when n ≤ 16, otherwise {n_boot} random sign patterns with "
            "p = (1 + #{|T*| ≥ |T|}) / (1 + B).",
            "",
            f"Resolution: with n folds the smallest exact two-sided p is 2/2^n (0.0625 for 5 "
            f"folds and one seed), so p < 0.05 needs more folds or seeds; here: {floor}."
            + (" The folds of different seeds re-split the same clips, so their differences "
               "are not independent: with several seeds read p and the interval as "
               "optimistic." if several_seeds else ""),
        ]
    else:
        lines.append("No configuration could be paired with its baseline.")
    skipped = df[df["status"] == "skipped"]
    if len(skipped):
        lines += ["", "Not compared:"]
        lines += [f"- {r['model']} {r['config']} ({r['run']}): {r['reason']}"
                  for r in skipped.to_dict("records")]
    return "\n".join(lines)


# --- figures ----------------------------------------------------------------------------

def write_figures(run: Run, out: Path) -> list[Path]:
    """A confusion matrix and learning curves per (model, config) of the run."""
    written = []
    for (model, config), g in run.predictions.groupby(["model", "config"], sort=False):
        stem = f"{run.name}_{safe_name(model)}_{safe_name(config)}"
        seeds, folds = g["seed"].nunique(), g[["seed", "fold"]].drop_duplicates().shape[0]
        pooled = f"{folds} folds" + (f" of {seeds} seeds, summed" if seeds > 1 else "")
        path = out / f"confusion_{stem}.png"
        plot_confusion(pooled_confusion(g, len(run.classes)), run.classes,
                       f"{run.name}: {model}, {config} (pooled over {pooled})", path)
        written.append(path)
        if run.epochs is not None:
            e = run.epochs[(run.epochs["model"] == model) & (run.epochs["config"] == config)]
            if len(e):
                path = out / f"curves_{stem}.png"
                plot_curves(e, f"{run.name}: {model}, {config}", path)
                written.append(path)
    return written


# --- the whole report -------------------------------------------------------------------

@dataclass
class Report:
    out: Path
    table: pd.DataFrame  # long: one row per (model, config, dataset)
    paired: pd.DataFrame
    markdown: str  # what table.md and paired.md hold, for printing
    files: list[Path]
    # what a reader must not miss (a column mixing class sets or clip sets), for stderr
    warnings: list[str] = field(default_factory=list)


def make_report(runs: list[str | Path], out: str | Path | None = None,
                baseline: str = "baseline", n_boot: int = 10_000, seed: int = 0,
                figures: bool = True) -> Report:
    """Read finished run folders and write their report.

    Parameters
    ----------
    runs : list of str or Path
        Run folders made by ``mer-train cv`` (:func:`mer_di.run_cv`); several combine
        side by side (each (model, configuration, dataset) at most once).
    out : str or Path, optional
        The report folder (default ``<first run>/report``).
    baseline : str
        The configuration every other one is compared with, fold by fold.
    n_boot : int
        Bootstrap resamples of the paired intervals (and random sign flips for the
        p-value when there are more than 16 folds).
    seed : int
        Seed of the bootstrap and the sign flips.
    figures : bool
        Also write confusion matrices and learning curves (PNG).

    Returns
    -------
    report : Report
        ``out``; ``table`` (one row per model x configuration x dataset: accuracy, UF1,
        UAR as fractions in [0, 1], mean and std over folds and pooled); ``paired``;
        ``markdown`` (what ``table.md`` and ``paired.md`` hold); ``files`` written.

    Raises
    ------
    ReportError
        A folder that is not a finished run, or runs that can't share a table.
    """
    if out is not None:  # a place it can't write is said before the runs are read
        check_writable(out, folder=True)
    loaded = load_runs(list(runs))
    long = table_long(loaded)
    pairs = paired(loaded, baseline, n_boot, seed)
    out = check_writable(out if out is not None else loaded[0].path / "report", folder=True)
    make_folder(out)
    runs_md = "\n".join(f"- {r.describe()}" for r in loaded)
    table_md = f"Runs:\n{runs_md}\n\n{table_markdown(long)}\n"
    paired_md = (f"Paired comparisons against {baseline}:\n\n"
                 f"{paired_markdown(pairs, n_boot, seed)}\n")
    files = [out / n for n in ("table.md", "table.csv", "paired.md", "paired.csv")]
    files[0].write_text(table_md)
    table_wide(long).to_csv(files[1], index=False)
    files[2].write_text(paired_md)
    pairs.to_csv(files[3], index=False)
    if figures:
        for run in loaded:
            files += write_figures(run, out)
    warnings = [f"the {DATASET_NAMES.get(d, d)} column mixes rows of {len(setups)} "
                "different class sets or clip sets (marked [a], [b]... in table.md); their "
                "numbers are not comparable"
                for d, setups in column_setups(long).items() if len(setups) > 1]
    return Report(out, long, pairs, f"{table_md}\n{paired_md}", files, warnings)
