"""``mer-train report``: finished run folders -> a Table-I style table, paired comparisons
against the baseline configuration, confusion matrices and learning curves.

Everything is computed from each run's saved ``predictions.csv`` (and ``epochs.csv`` for the
curves) with the functions that made the run's ``summary.csv``, so the numbers agree.

The report folder holds::

    table.md, table.csv     one row per model x configuration; per dataset (and "all" for a
                            run over several): mean +- std over folds, and pooled over folds
    paired.md, paired.csv   each configuration against the baseline on the same folds
    confusion_<run>_<model>_<config>.png, curves_<run>_<model>_<config>.png

The work is split: :mod:`~mer_di.training.report_runs` reads the run folders,
:mod:`~mer_di.training.report_table` makes the table, :mod:`~mer_di.training.report_paired`
the paired comparisons, :mod:`~mer_di.training.figures` draws; this module writes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mer_di._paths import check_writable, make_folder
from mer_di.errors import ReportError
from mer_di.training.figures import plot_confusion, plot_curves
from mer_di.training.report_paired import paired, paired_markdown
from mer_di.training.report_runs import (
    DATASET_NAMES,
    Run,
    load_run,
    load_runs,
    safe_name,
)
from mer_di.training.report_table import column_setups, table_long, table_markdown, table_wide
from mer_di.training.results import pooled_confusion

__all__ = ["Report", "ReportError", "Run", "load_run", "load_runs", "make_report", "paired",
           "safe_name", "table_long", "write_figures"]


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
