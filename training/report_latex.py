"""The report's tables as LaTeX, to paste into a paper: ``table.tex`` (Table I: mean ± std
over folds, and pooled over folds) and ``paired.tex`` (each configuration against the
baseline).

booktabs rules (``\\usepackage{booktabs}``, nothing else); percentages; mean ± std as
``$\\pm$``; the best mean of each column in bold (every row that ties it at the printed
precision); what differs from the paper's settings for a model (its row tag: tiny, random
init, epochs...) as a numbered table note, as are what each column is over and why a row
has no number. Every text from the runs is escaped (``_ % & # $ { } ~ ^ \\``, and the few
non-ASCII signs the tags use).
"""

from __future__ import annotations

import re

import pandas as pd

from mer_di.training.report_paired import parse_baseline, versus
from mer_di.training.report_runs import DATASET_NAMES, METRIC_NAMES
from mer_di.training.report_table import SETUP_COLUMNS, _failed, column_setups
from mer_di.training.results import METRICS

_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
            "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
            "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
            "±": r"$\pm$", "×": r"$\times$", "–": "--", "—": "---", "−": "$-$",
            "Δ": r"$\Delta$", "≤": r"$\leq$", "≥": r"$\geq$", "→": r"$\rightarrow$"}
_SPECIAL_RE = re.compile("|".join(re.escape(c) for c in _SPECIAL))
_LABEL = re.compile(r"^(?P<model>.*?) \((?P<tag>.*)\)$")


def tex_escape(text: object) -> str:
    """``text`` as LaTeX text: its special characters escaped (``a_b 5%`` -> ``a\\_b 5\\%``);
    ``->`` and ``<`` print as themselves (OT1 would make them ``¿`` and ``¡``)."""
    s = _SPECIAL_RE.sub(lambda m: _SPECIAL[m.group()], str(text))
    return s.replace("-\\textgreater{}", "$\\rightarrow$")


def _split_label(label: str) -> tuple[str, str]:
    """``'learnet (tiny, 1 epoch)'`` -> ``('learnet', 'tiny, 1 epoch')``."""
    m = _LABEL.match(label)
    return (m["model"], m["tag"]) if m else (label, "")


class _Notes:
    """Numbered table notes, each text once; :meth:`mark` gives its superscript."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def mark(self, text: str) -> str:
        if text not in self.texts:
            self.texts.append(text)
        return f"\\textsuperscript{{{self.texts.index(text) + 1}}}"

    def lines(self) -> list[str]:
        return [f"\\textsuperscript{{{i}}}\\,{t}\\par" for i, t in enumerate(self.texts, 1)]


def _pct(value: float) -> str:
    return f"{100 * value:.2f}"


def _tabular(long: pd.DataFrame, cell, notes: _Notes) -> list[str]:
    """One tabular: a row per (model, config), the datasets' Acc, UF1, UAR; the best of
    each column (by its printed mean) bold. ``cell(row, metric)`` gives (mean, text)."""
    datasets = list(dict.fromkeys(long["dataset"]))
    keyed = {(r["model"], r["config"], r["dataset"]): r for r in long.to_dict("records")}
    pairs = list(dict.fromkeys(zip(long["model"], long["config"], strict=True)))
    setups = column_setups(long)
    mixed = {d for d in datasets if len(setups[d]) > 1}
    best = {}
    for d in datasets:
        for m in METRICS:
            shown = [cell(r, m)[0] for r in long[long["dataset"] == d].to_dict("records")
                     if not _failed(r)]
            shown = [v for v in shown if v is not None]
            # no best in a column of mixed setups: its numbers are not comparable
            best[d, m] = max(shown) if shown and d not in mixed else None
    n = 2 + len(datasets) * len(METRICS)
    out = [f"\\begin{{tabular}}{{ll{'r' * (n - 2)}}}", "\\toprule"]
    k = len(METRICS)
    out.append(" & & " + " & ".join(  # the datasets over their metrics, as Table I
        f"\\multicolumn{{{k}}}{{c}}{{{tex_escape(DATASET_NAMES.get(d, d))}}}"
        for d in datasets) + " \\\\")
    out.append(" ".join(f"\\cmidrule(lr){{{3 + i * k}-{2 + (i + 1) * k}}}"
                        for i in range(len(datasets))))
    out.append("Model & Configuration & " + " & ".join(
        METRIC_NAMES[m] for _ in datasets for m in METRICS) + " \\\\")
    out.append("\\midrule")
    previous = None
    for model, config in pairs:
        name, tag = _split_label(model)
        shown_name = ""
        if model != previous:  # the model's name once, on its first row
            shown_name = tex_escape(name) + (notes.mark(
                f"{tex_escape(name)}: {tex_escape(tag)}.") if tag else "")
            if previous is not None:
                out.append("\\addlinespace")
        previous = model
        cells = []
        for d in datasets:
            r = keyed.get((model, config, d))
            for m in METRICS:
                if r is None:
                    cells.append("--")
                    continue
                if _failed(r):
                    cells.append("failed" + notes.mark(
                        f"{tex_escape(model)} $\\times$ {tex_escape(config)}: no score, "
                        f"{tex_escape(_failed(r))}."))
                    continue
                value, text = cell(r, m)
                if value is not None and value == best[d, m]:
                    head, _, rest = text.partition(" ")
                    text = f"\\textbf{{{head}}}" + (f" {rest}" if rest else "")
                if d in mixed:
                    i = setups[d].index(tuple(r[c] for c in SETUP_COLUMNS))
                    text += f"\\textsuperscript{{[{chr(ord('a') + i)}]}}"
                cells.append(text)
        out.append(f"{shown_name} & {tex_escape(config)} & " + " & ".join(cells) + " \\\\")
    out += ["\\bottomrule", "\\end{tabular}"]
    return out


def _over(long: pd.DataFrame) -> list[str]:
    """What each column is over, as notes (a column of mixed setups lettered as its
    cells are)."""
    setups = column_setups(long)
    lines = []
    for d, found in setups.items():
        name = tex_escape(DATASET_NAMES.get(d, d))
        data = [s for s in dict.fromkeys(long.loc[long["dataset"] == d, "data_setup"])
                if isinstance(s, str) and s] if "data_setup" in long.columns else []
        extra = f" Over: {tex_escape('; '.join(data))}." if data else ""
        if len(found) == 1:
            class_set, classes, clips, _ = found[0]
            lines.append(f"{name}: {clips} clips, class set {tex_escape(class_set)} "
                         f"({tex_escape(classes)}).{extra}\\par")
            continue
        lines.append(f"{name}: \\textbf{{not one setup}}; compare only cells of one "
                     "letter:\\par")
        for i, (class_set, classes, clips, _) in enumerate(found):
            lines.append(f"\\quad[{chr(ord('a') + i)}] class set {tex_escape(class_set)} "
                         f"({tex_escape(classes)}); {clips} clips\\par")
    return lines


def _table(body: list[str], caption: str, label: str, notes: list[str]) -> list[str]:
    # wide (several datasets): in a two-column paper use table*, or scale the tabular with
    # graphicx's \resizebox{\linewidth}{!}{...}
    return (["\\begin{table}[tbp]", "\\centering", f"\\caption{{{caption}}}",
             f"\\label{{{label}}}", "\\small", "\\setlength{\\tabcolsep}{4pt}", *body,
             "\\par\\smallskip", "\\parbox{\\linewidth}{\\footnotesize", *notes, "}",
             "\\end{table}"])


def table_latex(long: pd.DataFrame) -> str:
    """``table.tex``: Table I as two LaTeX tables (mean ± std over folds; pooled over
    folds), booktabs, the best of each column bold, the rows' notes as table notes."""
    folds = sorted(set(long["folds"]))
    several_seeds = bool((long.reindex(columns=["seeds"])["seeds"] > 1).any())
    n_folds = (f"{folds[0]} test folds" if len(folds) == 1
               else "each cell's test folds (their number is in table.csv)")

    def mean_cell(r: dict, m: str):
        mean, std = r[f"{m}_mean"], r[f"{m}_std"]
        if pd.isna(mean):
            return None, "--"
        return round(100 * mean, 2), f"{_pct(mean)} $\\pm$ {_pct(std)}"

    def pooled_cell(r: dict, m: str):
        value = r[f"pooled_{m}"]
        if pd.isna(value):
            return None, "--"
        std = r[f"pooled_{m}_std"] if r.get("seeds", 1) > 1 else None
        return round(100 * value, 2), _pct(value) + ("" if std is None or pd.isna(std)
                                                     else f" $\\pm$ {_pct(std)}")

    out = ["% Table I written by mer-train report; needs \\usepackage{booktabs}",
           "% (percentages; the best mean of each column in bold). Wide with several",
           "% datasets: in a two-column paper use table*, or \\resizebox (graphicx)."]
    for cell, caption, label, how in (
            (mean_cell, "Mean $\\pm$ std over folds (\\%)", "tab:mer-di-mean",
             f"Mean and sample std over {n_folds}" + (" (of all seeds)" if several_seeds
                                                      else "") + "."),
            (pooled_cell, "Pooled over folds (\\%)", "tab:mer-di-pooled",
             "Each metric of all folds' test predictions together"
             + (", per seed, then mean $\\pm$ std over seeds." if several_seeds else "."))):
        notes = _Notes()
        body = _tabular(long, cell, notes)
        lines = [f"{how} Bold: the best of each column (none where a column mixes "
                 "setups).\\par", *_over(long), *notes.lines()]
        out += [*_table(body, caption, label, lines), ""]
    return "\n".join(out)


def paired_latex(df: pd.DataFrame, n_boot: int, seed: int) -> str:
    """``paired.tex``: each configuration against the baseline on the same test folds
    (Δ, bootstrap interval, sign-flip p, won/tied/lost), booktabs; the skipped ones and
    the method as table notes. One table per ``--baseline`` (column ``against``)."""
    if "against" not in df or df["against"].nunique() <= 1:
        return _paired_latex(df, n_boot, seed, "tab:mer-di-paired")
    parts = [_paired_latex(g, n_boot, seed, f"tab:mer-di-paired-{i + 1}")
             for i, (_, g) in enumerate(df.groupby("against", sort=False))]
    return parts[0] + "".join(p.split("\n", 1)[1] for p in parts[1:])


def _paired_latex(df: pd.DataFrame, n_boot: int, seed: int, label: str) -> str:
    ok = df[df["status"] == "ok"]
    skipped = df[df["status"] == "skipped"]
    several_data = df["data"].nunique() > 1
    notes = _Notes()
    cols = "ll" + ("l" if several_data else "") + "lrrrrlrl"
    body = [f"\\begin{{tabular}}{{{cols}}}", "\\toprule",
            "Model & Configuration & " + ("Data & " if several_data else "")
            + "Metric & $n$ & Config & Baseline & $\\Delta$ & 95\\% CI & $p$ & W/T/L \\\\",
            "\\midrule"]
    previous = None
    for r in ok.to_dict("records"):
        name, tag = _split_label(r["model"])
        shown = ""
        if r["model"] != previous:
            shown = tex_escape(name) + (notes.mark(f"{tex_escape(name)}: {tex_escape(tag)}.")
                                        if tag else "")
            if previous is not None:
                body.append("\\addlinespace")
        previous = r["model"]
        body.append(
            f"{shown} & {tex_escape(versus(r) if 'baseline_model' in r else r['config'])} & "
            + (f"{tex_escape(r['data'])} & " if several_data else "")
            + f"{METRIC_NAMES[r['metric']]} & {int(r['n'])} & {_pct(r['config_score'])} & "
            f"{_pct(r['baseline_score'])} & ${100 * r['estimate']:+.2f}$ & "
            f"$[{100 * r['ci_low']:+.2f}, {100 * r['ci_high']:+.2f}]$ & {r['p']:.4g} & "
            f"{int(r['won'])}/{int(r['tied'])}/{int(r['lost'])} \\\\")
    if not len(ok):
        width = len(cols)
        body.append(f"\\multicolumn{{{width}}}{{l}}{{No configuration could be paired with "
                    "its baseline.}} \\\\")
    body += ["\\bottomrule", "\\end{tabular}"]
    lines = [
        "$\\Delta$ (percentage points): the mean over seeds of each seed's mean over folds "
        "of metric(config) $-$ metric(baseline), on the same test folds; $n$: (seed, fold) "
        "pairs; W/T/L: folds where the configuration scored above, equal to, below the "
        f"baseline. 95\\% CI: two-stage bootstrap percentile interval ({n_boot} resamples, "
        f"seed {seed}). $p$: two-sided sign-flip permutation test of the per-fold "
        "differences, exact when $n \\leq 16$; with $n$ folds the smallest exact $p$ is "
        "$2/2^n$.\\par"]
    lines += [f"Not compared: {tex_escape(r['model'])} {tex_escape(r['config'])}: "
              f"{tex_escape(r['reason'])}.\\par" for r in skipped.to_dict("records")]
    lines += notes.lines()
    baseline = tex_escape(df["baseline"].iloc[0]) if len(df) else "baseline"
    model = (parse_baseline(df["against"].iloc[0]).model if len(df) and "against" in df
             else None)
    if model is not None:
        caption = (f"Each model and configuration against {tex_escape(model)} "
                   f"{baseline}, on the same test folds")
    else:
        caption = f"Each configuration against {baseline}, on the same test folds"
    return "\n".join(["% Paired comparisons written by mer-train report; needs "
                      "\\usepackage{booktabs}",
                      *_table(body, caption, label, lines), ""])
