"""The report's apex robustness section (runs made with ``mer-train cv --apex-robustness``,
:mod:`mer_di.training.robustness`): UF1 and UAR against the apex error.

``robustness.md`` and ``robustness.csv``: one row per run x model x configuration, one
column per apex error (frames the apex was shifted from the annotated one, ``-K..+K``) and
``spotted`` (the apex spotted from the frames); UF1 and UAR pooled over folds (all folds'
predictions of a seed scored together, then the mean over seeds, as the summary's
``pooled`` columns) and the clips each column has (per seed). A model whose test input
does not depend on the apex has a row saying so, without numbers. ``robustness.png``: UF1
and UAR against the apex error, one line per row, the spotted apex as a separate point.

Everything comes from the run's ``robustness_predictions.csv`` (and the units'
``scores.json`` for what was left out), so the numbers are the run's own.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from mer_di.errors import ReportError
from mer_di.training.metrics import mean_std, scores
from mer_di.training.report_runs import Run, model_label
from mer_di.training.robustness import KEY, PREDICTIONS, SHIFTED, SPOTTED_INPUT
from mer_di.training.units import SCORES, Unit

SPOTTED = "spotted"  # the column of the spotted apex


def _unit_infos(run: Run) -> dict[tuple[str, str], list[dict]]:
    """Per (model label, config): the ``apex_robustness`` record of each test unit."""
    out: dict[tuple[str, str], list[dict]] = {}
    for name in run.config.get("units", []):
        unit = Unit.parse(name)
        if unit is None or unit.fold is None:
            continue
        try:
            s = json.loads((run.path / "units" / name / SCORES).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(s.get(KEY), dict):
            out.setdefault((model_label(unit.model, run.config), unit.config), []).append(
                s[KEY])
    return out


def _read(run: Run) -> pd.DataFrame:
    path = run.path / PREDICTIONS
    if not path.is_file():
        return pd.DataFrame(columns=["model", "config", "seed", "input", "apex_error",
                                     "label", "pred"])
    try:
        table = pd.read_csv(path, keep_default_na=False, dtype={
            c: str for c in ("model", "config", "dataset", "subject", "clip", "input")})
    except (pd.errors.ParserError, ValueError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path} is damaged ({' '.join(str(exc).split())[:160]}); "
                          f"`mer-train cv --resume --out {run.path}` writes it again") from None
    table["model"] = table["model"].map(lambda m: model_label(m, run.config))
    return table


def _score(rows: pd.DataFrame, n_classes: int) -> dict[str, float]:
    """UF1, UAR, accuracy pooled over folds per seed, mean over seeds; n per seed."""
    per_seed = [scores(g["label"].to_numpy(int), g["pred"].to_numpy(int), n_classes)
                for _, g in rows.groupby("seed", sort=True)]
    out = {m: mean_std([getattr(s, m) for s in per_seed])[0]
           for m in ("uf1", "uar", "accuracy")}
    return {**out, "n": int(max(s.n for s in per_seed)), "seeds": len(per_seed)}


KEYS = ["seed", "fold", "dataset", "subject", "clip"]


def _unchanged(sel: pd.DataFrame, zero: pd.DataFrame) -> float:
    """The share of ``sel``'s predictions equal to the same clip's prediction at the
    annotated apex (same seed and fold), over the clips both have (NaN when none)."""
    both = sel[[*KEYS, "pred"]].merge(zero[[*KEYS, "pred"]], on=KEYS, suffixes=("", "_0"))
    return float((both["pred"] == both["pred_0"]).mean()) if len(both) else np.nan


def robustness_long(runs: list[Run]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(scores, rows)``: one row per run x model x config x column (``column`` ``-K``..
    ``+K`` as text, or ``spotted``; ``apex_error``; ``uf1``, ``uar``, ``accuracy``, ``n``
    clips per seed, ``seeds``; ``unchanged``: the share of predictions equal to those at
    the annotated apex; for ``spotted`` ``mean_abs_error`` in frames), and one row
    per run x model x config with its ``note`` (why not measured, what was left out)."""
    long, rows = [], []
    for run in runs:
        if not run.spec.get("apex_robustness"):
            continue
        table = _read(run)
        infos = _unit_infos(run)
        k = max((int(i.get("jitter", 0)) for v in infos.values() for i in v), default=0)
        for (model, config), _ in run.predictions.groupby(["model", "config"], sort=False):
            measured = [i for i in infos.get((model, config), []) if i.get("measured")]
            if not measured:
                why = next((i.get("why") for i in infos.get((model, config), [])
                            if i.get("why")), "no robustness predictions")
                rows.append({"run": run.name, "model": model, "config": config,
                             "measured": False, "note": f"not apex-dependent: {why}"})
                continue
            left: dict[str, int] = {}
            for info in measured:
                for reason, n in (info.get("left_out") or {}).items():
                    left[reason] = left.get(reason, 0) + int(n)
            per = max(1, len(run.spec.get("seeds", [])))  # the same clips every seed
            said = {"no_annotated_apex": "without an annotated apex (spotted or middle)",
                    "no_jitter": "without shifted phase inputs in the cache"}
            note = ", ".join(f"{n // per} {said.get(reason, reason)}"
                             for reason, n in left.items() if n)
            note = f"test clips left out (per seed): {note}" if note else ""
            rows.append({"run": run.name, "model": model, "config": config,
                         "measured": True, "input": measured[0].get("input", ""),
                         "note": note})
            mine = table[(table["model"] == model) & (table["config"] == config)]
            zero = mine[(mine["input"] == SHIFTED) & (mine["apex_error"] == 0)]
            for shift in range(-k, k + 1):
                sel = mine[(mine["input"] == SHIFTED) & (mine["apex_error"] == shift)]
                entry = {"run": run.name, "model": model, "config": config,
                         "column": f"{shift:+d}" if shift else "0", "apex_error": shift,
                         "unchanged": _unchanged(sel, zero)}
                long.append({**entry, **(_score(sel, len(run.classes)) if len(sel)
                                         else {"n": 0})})
            sel = mine[mine["input"] == SPOTTED_INPUT]
            if measured[0].get("input") != "optical flow":
                entry = {"run": run.name, "model": model, "config": config,
                         "column": SPOTTED, "apex_error": np.nan,
                         "unchanged": _unchanged(sel, zero)}
                extra = ({**_score(sel, len(run.classes)),
                          "mean_abs_error": float(np.abs(sel["apex_error"].astype(float))
                                                  .mean())} if len(sel) else {"n": 0})
                long.append({**entry, **extra})
    return pd.DataFrame(long), pd.DataFrame(rows)


def _columns(long: pd.DataFrame) -> list[str]:
    shifts = sorted({int(e) for e in long["apex_error"].dropna()})
    cols = [f"{s:+d}" if s else "0" for s in shifts]
    return cols + ([SPOTTED] if (long["column"] == SPOTTED).any() else [])


def robustness_wide(long: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """``robustness.csv``: a row per run x model x config; per column ``uf1_<c>``,
    ``uar_<c>``, ``n_<c>``, ``unchanged_<c>`` (fractions; ``c`` the apex error or
    ``spotted``), and
    ``spotted_mean_abs_error``; ``measured`` and ``note``."""
    out = []
    cols = _columns(long) if len(long) else []
    for r in rows.to_dict("records"):
        line = {k: r.get(k) for k in ("run", "model", "config", "measured", "input", "note")}
        mine = long[(long["run"] == r["run"]) & (long["model"] == r["model"])
                    & (long["config"] == r["config"])] if len(long) else long
        for c in cols:
            cell = mine[mine["column"] == c]
            got = cell.iloc[0].to_dict() if len(cell) else {}
            for m in ("uf1", "uar", "unchanged"):
                line[f"{m}_{c}"] = got.get(m, np.nan)
            line[f"n_{c}"] = int(got["n"]) if got.get("n") is not None and not pd.isna(
                got.get("n")) else (0 if r["measured"] else np.nan)
            if c == SPOTTED:
                line["spotted_mean_abs_error"] = got.get("mean_abs_error", np.nan)
        out.append(line)
    table = pd.DataFrame(out)
    for c in [c for c in table.columns if c.startswith("n_")]:
        table[c] = table[c].astype("Int64")
    return table


def robustness_markdown(long: pd.DataFrame, rows: pd.DataFrame, many_runs: bool) -> str:
    cols = _columns(long) if len(long) else []
    lead = ("Apex robustness: each fold's model on its own test clips, with its "
            "apex-dependent input (DIANet: the onset and offset dynamic images; flow models: "
            "the onset->apex flow) made at the annotated apex shifted by the apex error "
            "(frames), or at the spotted apex. Cells: UF1 / UAR (%) pooled over folds "
            "(per seed, then the mean over seeds), and in brackets the test clips of the "
            "column (a shift counts the clips whose shifted apex lies strictly inside the "
            "clip; clips without an annotated apex are left out). Column 0 is the ordinary "
            "test input on those clips.")
    head = (["run"] if many_runs else []) + ["model", "config", *cols]
    lines = [lead, "", "| " + " | ".join(head) + " |",
             "|" + "|".join("---" for _ in head[:2 + many_runs])
             + "|" + "|".join("---:" for _ in cols) + "|"]
    notes = []
    for r in rows.to_dict("records"):
        cells = [r["run"]] if many_runs else []
        cells += [r["model"], r["config"]]
        if not r["measured"]:
            cells += ["–"] * len(cols)
            notes.append(f"- {r['model']} x {r['config']}: {r['note']}")
        else:
            for c in cols:
                cell = long[(long["run"] == r["run"]) & (long["model"] == r["model"])
                            & (long["config"] == r["config"]) & (long["column"] == c)]
                if not len(cell) or not cell.iloc[0]["n"]:
                    cells.append("n/a (0)" if len(cell) else "–")
                    continue
                x = cell.iloc[0]
                cells.append(f"{100 * x['uf1']:.1f} / {100 * x['uar']:.1f} ({int(x['n'])})")
            spotted = long[(long["run"] == r["run"]) & (long["model"] == r["model"])
                           & (long["config"] == r["config"]) & (long["column"] == SPOTTED)]
            if len(spotted) and spotted.iloc[0]["n"]:
                notes.append(f"- {r['model']} x {r['config']}: the spotted apex is "
                             f"{spotted.iloc[0]['mean_abs_error']:.2f} frames from the "
                             "annotated one on average (mean |error|)")
            elif r.get("input") == "optical flow":
                notes.append(f"- {r['model']} x {r['config']}: no spotted column (the "
                             "cache holds no flow at the spotted apex)")
            if r.get("note"):
                notes.append(f"- {r['model']} x {r['config']}: {r['note']}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += _unchanged_table(long, rows, cols, many_runs)
    return "\n".join(lines + ([""] + notes if notes else []))


def _unchanged_table(long: pd.DataFrame, rows: pd.DataFrame, cols: list[str],
                     many_runs: bool) -> list[str]:
    """Per measured row: the share (%) of the test clips whose prediction stays what it
    is at the annotated apex (the clips of the column that also have shift 0)."""
    measured = rows[rows["measured"].astype(bool)] if len(rows) else rows
    if not len(measured) or not cols:
        return []
    head = (["run"] if many_runs else []) + ["model", "config", *cols]
    out = ["", "Predictions unchanged from those at the annotated apex (% of the column's "
           "clips that shift 0 also has; the same model and clip, only the apex moved):", "",
           "| " + " | ".join(head) + " |",
           "|" + "|".join("---" for _ in head[:2 + many_runs]) + "|"
           + "|".join("---:" for _ in cols) + "|"]
    for r in measured.to_dict("records"):
        cells = ([r["run"]] if many_runs else []) + [r["model"], r["config"]]
        for c in cols:
            cell = long[(long["run"] == r["run"]) & (long["model"] == r["model"])
                        & (long["config"] == r["config"]) & (long["column"] == c)]
            v = cell.iloc[0]["unchanged"] if len(cell) else np.nan
            cells.append("–" if pd.isna(v) else f"{100 * v:.0f}")
        out.append("| " + " | ".join(cells) + " |")
    return out


def plot_robustness(long: pd.DataFrame, title: str) -> bytes:
    """UF1 and UAR (%) against the apex error, one line per run x model x config; the
    spotted apex a hollow point right of the shifts; as PNG."""
    from mer_di.training.figures import _png, _pyplot

    plt = _pyplot()
    shifts = sorted({int(e) for e in long["apex_error"].dropna()})
    k = max([abs(s) for s in shifts] or [1])
    spot_x = k + 1.5
    rows = long[["run", "model", "config"]].drop_duplicates().shape[0]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4 + 0.2 * ((rows + 2) // 3)), sharex=True,
                             layout="constrained")
    try:
        colours = plt.get_cmap("tab10")
        groups = list(long.groupby(["run", "model", "config"], sort=False))
        many_runs = long["run"].nunique() > 1
        short = {m: m.partition(" (")[0] for m in long["model"]}  # tags: robustness.md
        if len(set(short.values())) < len(set(short)):  # two tag sets of one model
            short = {m: m for m in short}
        for n, ((run, model, config), g) in enumerate(groups):
            colour = colours(n % 10)
            label = (f"{run}: " if many_runs else "") + f"{short[model]}, {config}"
            line = g[(g["column"] != SPOTTED) & (g["n"] > 0)].sort_values("apex_error")
            spot = g[(g["column"] == SPOTTED) & (g["n"] > 0)]
            for ax, m in zip(axes, ("uf1", "uar"), strict=True):
                ax.plot(line["apex_error"], 100 * line[m], "o-", color=colour, lw=1.5, ms=4,
                        label=label)
                if len(spot):
                    ax.plot([spot_x], [100 * spot.iloc[0][m]], "D", mfc="none", ms=7,
                            color=colour)
        ticks = [*shifts] + ([spot_x] if (long["column"] == SPOTTED).any() else [])
        names = [f"{s:+d}" if s else "0" for s in shifts] + (
            ["spotted"] if len(ticks) > len(shifts) else [])
        for ax, name in zip(axes, ("UF1 (%)", "UAR (%)"), strict=True):
            ax.set_xticks(ticks, names)
            ax.axvline(0, color="grey", lw=0.6, ls=":")
            ax.set_xlabel("apex error (frames from the annotated apex)", fontsize=8)
            ax.set_ylabel(name)
            ax.set_ylim(0, 100)
            ax.grid(alpha=0.3)
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", fontsize=7,
                   ncol=min(3, max(1, len(labels))))
        fig.suptitle(title, fontsize=9)
        return _png(fig)
    finally:
        plt.close(fig)


def robustness_report(runs: list[Run], out: Path, figures: bool = True
                      ) -> tuple[dict[Path, bytes | str], str]:
    """The section's files under ``out`` (none when no run was made with
    ``--apex-robustness``) and its markdown (to print)."""
    if not any(r.spec.get("apex_robustness") for r in runs):
        return {}, ""
    long, rows = robustness_long(runs)
    md = robustness_markdown(long, rows, len({r for r in rows["run"]}) > 1) + "\n"
    files: dict[Path, bytes | str] = {
        out / "robustness.md": md,
        out / "robustness.csv": robustness_wide(long, rows).to_csv(index=False)}
    if figures and len(long) and (long["n"] > 0).any():
        names = ", ".join(dict.fromkeys(long["run"]))
        files[out / "robustness.png"] = plot_robustness(
            long, f"{names}: UF1 and UAR against the apex error (pooled over folds)")
    return files, md
