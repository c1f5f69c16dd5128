"""``mer-train report``: finished run folders -> a Table-I style table, paired comparisons
against the baseline configuration, confusion matrices and learning curves.

Everything is computed from each run's saved ``predictions.csv`` (and ``epochs.csv`` for the
curves) with the functions that made the run's ``summary.csv``, so the numbers agree.

The report folder holds::

    table.md, table.csv     one row per model x configuration; per dataset (and "all" for a
                            run over several): mean +- std over folds, and pooled over folds
    paired.md, paired.csv   each configuration against the baseline on the same folds (or
                            every model against one model's configuration: --baseline
                            MODEL:CONFIG, e.g. DI models against STSTNet)
    table.tex, paired.tex   the same tables as LaTeX (booktabs), to paste into a paper
    confusion_<run>_<model>_<config>.png, curves_<run>_<model>_<config>.png
    robustness.md, .csv, .png   runs made with --apex-robustness: UF1 and UAR against the
                            apex error (:mod:`~mer_di.training.report_robustness`)

The work is split: :mod:`~mer_di.training.report_runs` reads the run folders,
:mod:`~mer_di.training.report_table` makes the table, :mod:`~mer_di.training.report_paired`
the paired comparisons, :mod:`~mer_di.training.figures` draws; this module writes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mer_di._files import (
    WriteError,
    file_sha256,
    free_bytes,
    human_bytes,
    remove_partials,
    write_atomic,
)
from mer_di._paths import check_writable, make_folder
from mer_di.errors import ReportError
from mer_di.training.figures import plot_confusion, plot_curves
from mer_di.training.report_inflation import inflation, inflation_markdown
from mer_di.training.report_latex import paired_latex, table_latex
from mer_di.training.report_paired import against_title, paired, paired_markdown
from mer_di.training.report_robustness import robustness_report
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


def _file_part(model: str) -> str:
    """A model's label as a short file-name part: its name and, for a tagged label
    (``resnet34 (tiny, random init, ...)``, 130 characters and more), a hash of the whole
    label, so the names stay unique and far below the 255-byte limit."""
    import hashlib

    name, sep, _ = model.partition(" (")
    if not sep:
        return safe_name(model)[:80]
    return f"{safe_name(name)[:80]}-{hashlib.sha1(model.encode()).hexdigest()[:8]}"


def write_figures(run: Run, out: Path) -> dict[Path, bytes]:
    """A confusion matrix and learning curves per (model, config) of the run: their
    paths under ``out`` and PNG bytes (written by :func:`make_report`)."""
    figures = {}
    for (model, config), g in run.predictions.groupby(["model", "config"], sort=False):
        stem = f"{run.name}_{_file_part(model)}_{safe_name(config)}"
        seeds, folds = g["seed"].nunique(), g[["seed", "fold"]].drop_duplicates().shape[0]
        pooled = f"{folds} folds" + (f" of {seeds} seeds, summed" if seeds > 1 else "")
        figures[out / f"confusion_{stem}.png"] = plot_confusion(
            pooled_confusion(g, len(run.classes)), run.classes,
            f"{run.name}: {model}, {config} (pooled over {pooled})")
        if run.epochs is not None:
            e = run.epochs[(run.epochs["model"] == model) & (run.epochs["config"] == config)]
            if len(e):
                figures[out / f"curves_{stem}.png"] = plot_curves(
                    e, f"{run.name}: {model}, {config}")
    return figures


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
                baseline: str | list[str] = "baseline", n_boot: int = 10_000, seed: int = 0,
                figures: bool = True) -> Report:
    """Read finished run folders and write their report.

    Parameters
    ----------
    runs : list of str or Path
        Run folders made by ``mer-train cv`` (:func:`mer_di.run_cv`); several combine
        side by side (each (model, configuration, dataset) at most once).
    out : str or Path, optional
        The report folder (default ``<first run>/report``).
    baseline : str or list of str
        What every other row is compared with, fold by fold: ``CONFIG`` (each model's
        other configurations against its own ``CONFIG``) or ``MODEL:CONFIG`` (every other
        model x configuration of the runs against ``MODEL``'s ``CONFIG``, e.g.
        ``"ststnet:baseline"``: dynamic-image models against the flow model on the same
        folds); a list makes each comparison, one section each.
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
    wanted = [baseline] if isinstance(baseline, str) else list(baseline)
    paired_md = "\n".join(  # one section per --baseline, in the order given
        f"{against_title(text)}:\n\n"
        f"{paired_markdown(pairs[pairs['against'] == text], n_boot, seed)}\n"
        for text in dict.fromkeys(wanted))
    contents: dict[Path, bytes | str] = {
        out / "table.md": table_md, out / "table.csv": table_wide(long).to_csv(index=False),
        out / "paired.md": paired_md, out / "paired.csv": pairs.to_csv(index=False)}
    contents.update({out / "table.tex": table_latex(long),  # to paste into a paper
                     out / "paired.tex": paired_latex(pairs, n_boot, seed)})
    inflated = inflation(loaded, n_boot, seed)
    if len(inflated):  # the paper's protocol beside ours, on the same folds
        inflation_md = f"{inflation_markdown(inflated, n_boot, seed)}\n"
        contents.update({out / "inflation.md": inflation_md,
                         out / "inflation.csv": inflated.to_csv(index=False)})
        paired_md += f"\n{inflation_md}"
    robust, robust_md = robustness_report(loaded, out, figures)  # --apex-robustness runs
    contents.update(robust)
    paired_md += f"\n{robust_md}" if robust_md else ""
    if figures:
        for run in loaded:
            contents.update(write_figures(run, out))
    _write_all(out, contents)
    files = list(contents)
    warnings = changed_caches(loaded) + [
        f"the {DATASET_NAMES.get(d, d)} column mixes rows of {len(setups)} different class "
        "sets or clip sets (marked [a], [b]... in table.md); their numbers are not comparable"
        for d, setups in column_setups(long).items() if len(setups) > 1]
    return Report(out, long, pairs, f"{table_md}\n{paired_md}", files, warnings)


def _write_all(out: Path, contents: dict[Path, bytes | str]) -> None:
    """Write every file of the report, each whole under its final name or not at all; a
    failed write is a :class:`ReportError` saying how much the report needs."""
    remove_partials(out, dead_only=True)  # a killed report's, not a running one's
    for path, data in contents.items():
        try:
            write_atomic(path, data)
        except WriteError as exc:
            needed = sum(len(d) for d in contents.values())
            free = free_bytes(out)
            if exc.disk_full:
                raise ReportError(
                    f"disk full while writing the report {exc.path} ({exc.reason}): the "
                    f"report needs about {human_bytes(needed)} in {out}"
                    + (f" ({human_bytes(free)} free now)" if free is not None else "")
                    + "; the files already written are whole. Free some space, then run the "
                    "same command again") from None
            raise ReportError(f"cannot write the report {exc.path} ({exc.reason}); the files "
                              "already written are whole. Give another --out, or run the "
                              "same command again once it can be written") from None


def changed_caches(runs: list[Run]) -> list[str]:
    """A warning per cache of a run that is no longer the file the run was made on (rebuilt
    since): the report is the run's, made on the cache as it was."""
    out = []
    for run in runs:
        shas = run.config.get("caches_sha256") or {}
        for cache, sha in shas.items():
            try:
                now = file_sha256(cache) if Path(cache).is_file() else sha
            except OSError:
                continue
            if now != sha:
                out.append(f"{cache} has changed since {run.path} was trained on it (rebuilt "
                           "or replaced): this report is the run's own predictions, made on "
                           "the cache as it was; train again to use the new cache")
    return out
