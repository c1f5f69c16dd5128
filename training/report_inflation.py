"""The paper's protocol beside ours: how much choosing each fold's epoch on its own test fold
(``--select-epoch test-fold``, the paper's "validation set") inflates the scores, measured on
the same folds as the honest run (``--select-epoch val``).

For every (model, configuration, dataset) that an honest run and an optimistic run both hold
on the same test folds (same caches, classes, protocol, folds, seeds and test clips): the
honest and the optimistic score, and the inflation ``optimistic - honest`` with its
two-stage bootstrap interval over the (seed, fold) pairs (:mod:`mer_di.training.stats`).
"""

from __future__ import annotations

import pandas as pd

from mer_di.training.loop import OPTIMISTIC
from mer_di.training.report_paired import _differs, _unpaired_folds
from mer_di.training.report_runs import DATASET_NAMES, METRIC_NAMES, Run, model_label
from mer_di.training.results import fold_scores
from mer_di.training.stats import (
    by_seed,
    hierarchical_bootstrap_ci,
    hierarchical_mean,
    paired_differences,
    win_tie_loss,
)

INFLATION_METRICS = ("uf1", "accuracy")


def selection(run: Run) -> str:
    """``val`` or ``test-fold``: how the run chose each fold's epoch."""
    return (run.spec.get("train") or {}).get("select_epoch", "val")


def _by_model(run: Run) -> dict[str, pd.DataFrame]:
    """The run's predictions per (untagged model name, config)."""
    names = {model_label(m, run.config): m for m in run.config.get("setup", {})}
    out = {}
    for (label, config), g in run.predictions.groupby(["model", "config"], sort=False):
        out[(names.get(label, label), config)] = g
    return out


def inflation(runs: list[Run], n_boot: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """One row per (model, config, dataset, metric) held by an honest and an optimistic
    run on the same folds: ``honest``, ``optimistic``, ``inflation`` (fractions) with
    ``ci_low``/``ci_high``, ``n`` (seed, fold) pairs, ``won/tied/lost`` (folds where the
    optimistic score is above, equal, below). Empty when no such pair of runs is given."""
    rows = []
    honest = [r for r in runs if selection(r) == "val"]
    for opt in (r for r in runs if selection(r) == "test-fold"):
        for run in honest:
            if _differs(run, opt):
                continue
            mine, theirs = _by_model(run), _by_model(opt)
            for key in [k for k in mine if k in theirs]:
                a, b = theirs[key], mine[key]
                if _unpaired_folds(a, b):
                    continue
                n_classes = len(run.classes)
                fa, fb = fold_scores(a, n_classes), fold_scores(b, n_classes)
                data = ", ".join(DATASET_NAMES.get(d, d) for d in run.datasets)
                for metric in INFLATION_METRICS:
                    d = paired_differences(fa, fb, metric)
                    groups = by_seed(d)
                    low, high = hierarchical_bootstrap_ci(groups, n_boot, seed)
                    won, tied, lost = win_tie_loss(d["diff"].to_numpy())
                    rows.append({
                        "model": key[0], "config": key[1], "data": data, "metric": metric,
                        "honest": hierarchical_mean(by_seed(d, "baseline")),
                        "optimistic": hierarchical_mean(by_seed(d, "config")),
                        "inflation": hierarchical_mean(groups), "ci_low": low,
                        "ci_high": high, "n": len(d), "won": won, "tied": tied,
                        "lost": lost, "honest_run": str(run.path),
                        "optimistic_run": str(opt.path)})
    cols = ["model", "config", "data", "metric", "honest", "optimistic", "inflation",
            "ci_low", "ci_high", "n", "won", "tied", "lost", "honest_run", "optimistic_run"]
    return pd.DataFrame(rows).reindex(columns=cols)


def inflation_markdown(df: pd.DataFrame, n_boot: int, seed: int) -> str:
    """The inflation table as markdown, with what it measures."""
    lines = [f"The paper's protocol beside ours ({OPTIMISTIC}, against the epoch chosen on a "
             "validation split of the training folds), on the same test folds:", "",
             "| model | config | data | metric | honest | optimistic | inflation | 95% CI | "
             "optimistic won/tied/lost |",
             "|---|---|---|---|---:|---:|---:|---|---|"]
    for r in df.to_dict("records"):
        lines.append(
            f"| {r['model']} | {r['config']} | {r['data']} | {METRIC_NAMES[r['metric']]} | "
            f"{100 * r['honest']:.2f} | {100 * r['optimistic']:.2f} | "
            f"{100 * r['inflation']:+.2f} | [{100 * r['ci_low']:+.2f}, "
            f"{100 * r['ci_high']:+.2f}] | {r['won']}/{r['tied']}/{r['lost']} |")
    lines += ["", "Scores: %, mean over seeds of the mean over folds; inflation: optimistic − "
              "honest in percentage points, its interval a two-stage bootstrap over seeds "
              f"then folds ({n_boot} resamples, seed {seed}). The optimistic run also trains "
              "on the clips the honest run holds out for validation, so the inflation "
              "includes that (the paper's protocol has no validation split)."]
    return "\n".join(lines)
