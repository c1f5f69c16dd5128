"""A run's records -> tables: per-fold scores, the summary (mean +- std over folds, and
pooled over all folds' predictions), as CSV and markdown.

Everything here is computed from the saved predictions, so a report made later from the
run folder gives exactly the numbers the run printed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from mer_di._files import write_atomic
from mer_di.errors import RunError
from mer_di.training.flow_input import input_label
from mer_di.training.metrics import confusion, mean_std, scores
from mer_di.training.run_folder import TABLES, read_config, resume_command
from mer_di.training.units import FAILED, FAILURES, SCORES, Unit, unit_damage

PRED_COLUMNS = ("model", "config", "seed", "fold", "dataset", "subject", "clip", "label",
                "pred", "label_name", "pred_name")
METRICS = ("accuracy", "uf1", "uar")
GROUP = ["model", "config"]


def fold_scores(predictions: pd.DataFrame, n_classes: int) -> pd.DataFrame:
    """One row per (model, config, seed, fold): n, accuracy, uf1, uar."""
    rows = []
    for (model, config, seed, fold), g in predictions.groupby(
            ["model", "config", "seed", "fold"], sort=False):
        s = scores(g["label"].to_numpy(), g["pred"].to_numpy(), n_classes)
        rows.append({"model": model, "config": config, "seed": seed, "fold": fold, **s.as_dict()})
    return pd.DataFrame(rows, columns=["model", "config", "seed", "fold", *METRICS, "n"])


def summarise(predictions: pd.DataFrame, n_classes: int) -> pd.DataFrame:
    """One row per (model, config), in the order they first appear.

    ``<metric>_mean``/``_std``: over every test fold of every seed. ``pooled_<metric>``
    (``_std``): the metric of all folds' predictions pooled, per seed, then mean (and
    sample std) over seeds (std 0 with one seed).
    """
    folds = fold_scores(predictions, n_classes)
    if folds.empty:  # every (model, config) failed
        return pd.DataFrame(columns=["model", "config", "seeds", "folds", "clips"])
    rows = []
    for (model, config), g in folds.groupby(GROUP, sort=False):
        row = {"model": model, "config": config, "seeds": g["seed"].nunique(),
               "folds": len(g), "clips": int(g["n"].sum())}
        for m in METRICS:
            row[f"{m}_mean"], row[f"{m}_std"] = mean_std(g[m].tolist())
        preds = predictions[(predictions["model"] == model) & (predictions["config"] == config)]
        pooled = [scores(p["label"].to_numpy(), p["pred"].to_numpy(), n_classes)
                  for _, p in preds.groupby("seed", sort=True)]
        for m in METRICS:
            row[f"pooled_{m}"], row[f"pooled_{m}_std"] = mean_std(
                [getattr(s, m) for s in pooled])
        rows.append(row)
    return pd.DataFrame(rows)


def pooled_confusion(predictions: pd.DataFrame, n_classes: int) -> np.ndarray:
    """Counts over all the given predictions [shape=(n_classes, n_classes)]."""
    return confusion(predictions["label"].to_numpy(), predictions["pred"].to_numpy(), n_classes)


def _pct(mean: float, std: float) -> str:
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def summary_markdown(summary: pd.DataFrame) -> str:
    """The summary as a markdown table (percentages, mean ± std)."""
    head = ("| model | config | folds | Acc | UF1 | UAR | pooled Acc | pooled UF1 | pooled UAR |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    for r in summary.to_dict("records"):
        r["model"] = label_with_setup(r["model"], r.get("setup"))
        if r.get("failed"):
            lines.append(f"| {r['model']} | {r['config']} | {r['folds']} | "
                         + " | ".join(["failed"] * 2 * len(METRICS)) + " |")
            continue
        cells = [_pct(r[f"{m}_mean"], r[f"{m}_std"]) for m in METRICS]
        pooled = [(f"{100 * r[f'pooled_{m}']:.2f}" if r["seeds"] == 1
                   else _pct(r[f"pooled_{m}"], r[f"pooled_{m}_std"])) for m in METRICS]
        lines.append(f"| {r['model']} | {r['config']} | {r['folds']} | " + " | ".join(cells)
                     + " | " + " | ".join(pooled) + " |")
    failed = [f"failed: {r['model']} x {r['config']}: {r['failed']}"
              for r in summary.to_dict("records") if r.get("failed")]
    lines += ["", *failed] if failed else []
    return "\n".join(lines)


def write_tables(out: Path, classes: list[str], echo: Callable[[str], None] = print
                 ) -> pd.DataFrame:
    """Gather every finished unit of ``out`` into the run's tables (each written whole:
    :func:`mer_di._files.write_atomic`), then ``tables.json`` recording them; echo the
    summary. :class:`RunError` for a unit that is missing or damaged, naming it."""
    config = read_config(out)
    names = [n for n in config["units"] if (u := Unit.parse(n)) is None or u.fold is not None]
    done = [out / "units" / name for name in names if (out / "units" / name / SCORES).exists()]
    missing = len(names) - len(done)
    if missing:
        raise RunError(f"{out}: {missing} of {len(names)} folds are not finished; "
                       "run again with --resume")
    for d in done:
        unit = Unit.parse(d.name)
        why = unit_damage(d.parent, unit, checkpoint=False) if unit else ""
        if why:
            raise RunError(f"{d}: {why}; redo that unit with `{resume_command(out)}`")
    history = pd.concat([pd.read_csv(d / "history.csv") for d in done], ignore_index=True)
    preds = pd.concat([pd.read_csv(d / "predictions.csv", keep_default_na=False,
                                   dtype={"subject": str, "clip": str}) for d in done],
                      ignore_index=True)[list(PRED_COLUMNS)]
    unit_scores = [json.loads((d / SCORES).read_text()) for d in done]
    failures = pd.DataFrame([s for s in unit_scores if FAILED in s],
                            columns=["model", "config", "seed", "fold", FAILED])
    # a (model, config) with a failed unit gets no number: its other folds alone would
    # give a plausible but wrong score
    failed = set(zip(failures["model"], failures["config"], strict=True))
    keep = np.array([pair not in failed for pair in zip(preds["model"], preds["config"],
                                                         strict=True)], bool)
    preds = preds.loc[keep]
    summary = with_failures(summarise(preds, len(classes)), failures)
    setup = config.get("setup", {})
    summary.insert(2, "setup", [setup.get(m, "") for m in summary["model"]])
    table = summary_markdown(summary)
    spec = config["spec"]
    head = (f"{', '.join(spec['caches'])}: {config['clips']} clips, classes "
            f"{', '.join(classes)}; protocol {spec['protocol']}"
            + (f" ({spec['folds']} folds)" if spec["protocol"] != "loso" else "")
            + f", seeds {', '.join(map(str, spec['seeds']))}; input: "
            + input_label(spec))
    if config.get("data_setup"):
        head += f"\nover: {config['data_setup']}"
    ran = ran_on(unit_scores)
    if ran:
        head += f"\nran on: {ran}"
    notes = "".join(f"\nnote: {n}" for n in config.get("notes", []))
    tables = {"epochs.csv": history, "predictions.csv": preds,
              "folds.csv": fold_scores(preds, len(classes)), "summary.csv": summary}
    if len(failures):
        tables[FAILURES] = failures
    from mer_di.training.robustness import PREDICTIONS, gather

    robust = gather(done, failed)  # --apex-robustness: beside predictions.csv
    if robust is not None:
        tables[PREDICTIONS] = robust
    files = {name: df.to_csv(index=False).encode() for name, df in tables.items()}
    files["summary.md"] = f"{head}{notes}\n\n{table}\n".encode()
    (out / TABLES).unlink(missing_ok=True)  # stale while the tables are replaced
    for name, data in files.items():
        write_atomic(out / name, data)
    if not len(failures):
        (out / FAILURES).unlink(missing_ok=True)
    write_atomic(out / TABLES, json.dumps({n: {"bytes": len(b), "sha256": hashlib.sha256(
        b).hexdigest()} for n, b in files.items()}, indent=1))
    echo(head)
    echo(table)
    return summary


def ran_on(unit_scores: list[dict]) -> str:
    """Where a run's units really ran, from their ``scores.json``: ``node1 cuda:0 (NVIDIA
    H200): 38 units; node2 cpu: 2 units`` ('' for units from before it was recorded)."""
    from collections import Counter

    counts = Counter((s["host"], s["device"]) for s in unit_scores
                     if s.get("host") and s.get("device"))
    return "; ".join(f"{host} {device}: {n} unit{'s' * (n != 1)}"
                     for (host, device), n in sorted(counts.items()))


def label_with_setup(model: str, setup: object) -> str:
    """``resnet34 (tiny, random init, 3 epochs)``: a row says what produced it."""
    return f"{model} ({setup})" if isinstance(setup, str) and setup else model


def with_failures(summary: pd.DataFrame, failures: pd.DataFrame) -> pd.DataFrame:
    """The summary with a row, without numbers, for each (model, config) that has failed
    units; column ``failed`` says why ('' on the other rows)."""
    summary = summary.assign(failed="")
    rows = [{"model": model, "config": config, "folds": len(g),
             "failed": f"{len(g)} unit(s) failed, e.g. seed {g.iloc[0]['seed']} fold "
                       f"{g.iloc[0]['fold']}: {g.iloc[0][FAILED]}"}
            for (model, config), g in failures.groupby(["model", "config"], sort=False)]
    return pd.concat([summary, pd.DataFrame(rows)], ignore_index=True) if rows else summary
