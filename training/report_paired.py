"""The report's paired comparisons: each configuration against the same model's baseline
(``--baseline CONFIG``), or every model x configuration against one model's configuration
(``--baseline MODEL:CONFIG``: dynamic-image models against a flow model), on the same
test folds (differences, bootstrap intervals, sign-flip p-values; the method in
:mod:`mer_di.training.stats`), as a table and as markdown."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from mer_di.errors import ReportError
from mer_di.training.configs import CONFIG_NAMES
from mer_di.training.report_runs import DATASET_NAMES, METRIC_NAMES, PAIRED_METRICS, Run, _order
from mer_di.training.results import fold_scores
from mer_di.training.stats import (
    by_seed,
    hierarchical_bootstrap_ci,
    hierarchical_mean,
    paired_differences,
    sign_flip_p,
    smallest_p,
    win_tie_loss,
)
from mer_di.training.units import FAILURES

_SAME = (("protocol", lambda r: r.spec["protocol"]),
         # --folds does not apply to loso and lodo (one fold per subject, per dataset)
         ("folds", lambda r: None if r.spec["protocol"] in ("loso", "lodo")
          else r.spec.get("folds")),
         ("seeds", lambda r: list(r.spec["seeds"])), ("classes", lambda r: r.classes),
         ("caches", lambda r: [r.config.get("caches_sha256", {}).get(c, c)
                               for c in r.spec["caches"]]))


def _differs(a: Run, b: Run) -> list[str]:
    """What keeps two runs' folds from being the same (empty when they may be)."""
    if a.path.resolve() == b.path.resolve():
        return []
    differs = [name for name, get in _SAME if get(a) != get(b)]
    if "protocol" in differs:  # the folds of another protocol differ by that alone
        differs = [d for d in differs if d != "folds"]
    return differs


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


@dataclass(frozen=True)
class Baseline:
    """What a ``--baseline`` compares with: ``config`` of each model itself (``model``
    None, ``--baseline baseline``), or one model's ``config`` that every other model x
    configuration is compared with (``--baseline ststnet:baseline``: DI models against
    the flow model on the same folds). ``text``: as given."""

    config: str
    model: str | None = None

    @property
    def text(self) -> str:
        return self.config if self.model is None else f"{self.model}:{self.config}"

    def holds(self, e: _Entry) -> bool:
        """Whether ``e`` is this baseline (a model's own baseline matches every model)."""
        return e.config == self.config and (self.model is None or _is_model(e.model,
                                                                             self.model))


def _is_model(label: str, name: str) -> bool:
    """A report label (``ststnet (tiny, random init, ...)``) is the model ``name`` when
    its bare name or the whole label is ``name``."""
    return label == name or label.partition(" (")[0] == name


def bare(label: str) -> str:
    """A report label without its tags: the model's name."""
    return label.partition(" (")[0]


def parse_baseline(text: str) -> Baseline:
    """``CONFIG`` or ``MODEL:CONFIG`` (the last ':' splits, so a timm name with one, such
    as ``hf-hub:...``, stays whole)."""
    model, sep, config = str(text).rpartition(":")
    if not sep:
        return Baseline(str(text))
    if not model or not config:
        raise ReportError(f"--baseline {text}: give CONFIG (each model against its own) or "
                          "MODEL:CONFIG (every model against that one), e.g. "
                          "--baseline ststnet:baseline")
    return Baseline(config, model)


def _check_baseline(b: Baseline, entries: list[_Entry], runs: list[Run]) -> None:
    configs = sorted({e.config for e in entries}
                     | {c for r in runs for c in r.failures.get("config", [])})
    if b.config not in configs:
        raise ReportError(f"--baseline {b.text}: no run has the configuration {b.config} "
                          f"(they have {', '.join(configs)})")
    if b.model is None:
        return
    models = _order([bare(e.model) for e in entries]
                    + [bare(m) for r in runs for m in r.failures.get("model", [])])
    if not any(_is_model(m, b.model) for m in models):
        raise ReportError(f"--baseline {b.text}: no run has the model {b.model} (they have "
                          f"{', '.join(models)})")


def _failed(runs: list[Run], b: Baseline, model: str) -> bool:
    want = b.model if b.model is not None else model
    return any(any(_is_model(m, want) and c == b.config
                   for m, c in zip(r.failures["model"], r.failures["config"], strict=True))
               for r in runs if len(r.failures))


def paired(runs: list[Run], baseline: str | Baseline | list = "baseline",
           n_boot: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """Each (model, configuration) against a baseline on the same test folds: one row per
    metric (UF1, accuracy), or one ``skipped`` row with the reason. See
    :mod:`mer_di.training.stats` for the method.

    ``baseline``: one or several (a list) ``--baseline`` values, each ``CONFIG`` (every
    other configuration of a model against that model's ``CONFIG``) or ``MODEL:CONFIG``
    (every other model x configuration, of any of the runs, against ``MODEL``'s
    ``CONFIG``: e.g. a DI model's four configurations against STSTNet's baseline). A pair
    is made only between runs of the same protocol, folds, seeds, classes and caches whose
    (seed, fold) pairs hold the same test clips; any other is a ``skipped`` row saying
    why. Column ``against`` says which ``--baseline`` a row answers, ``baseline_model`` the
    model it was compared with."""
    wanted = baseline if isinstance(baseline, (list, tuple)) else [baseline]
    if not wanted:
        raise ReportError("give at least one --baseline")
    entries = _entries(runs)
    frames = []
    parsed = [b if isinstance(b, Baseline) else parse_baseline(b) for b in wanted]
    for b in dict.fromkeys(parsed):  # each once, in the order given
        _check_baseline(b, entries, runs)
        frames.append(_paired_one(runs, entries, b, n_boot, seed))
    cols = ["against", "model", "config", "baseline_model", "baseline", "metric", "data",
            "run", "baseline_run", "status", "seeds", "n", "config_score", "baseline_score",
            "estimate", "ci_low", "ci_high", "p", "p_method", "won", "tied", "lost", "reason"]
    rows = [r for f in frames for r in f]
    return pd.DataFrame(rows).reindex(columns=cols)


def _paired_one(runs: list[Run], entries: list[_Entry], b: Baseline, n_boot: int,
                seed: int) -> list[dict]:
    models = _order([e.model for e in entries])
    others = _order([e.config for e in entries], CONFIG_NAMES)
    rows = []
    for e in sorted((e for e in entries if not b.holds(e)),
                    key=lambda e: (models.index(e.model), others.index(e.config))):
        base_model = b.model if b.model is not None else e.model
        name = f"{base_model} {b.config}"
        base = {"against": b.text, "model": e.model, "config": e.config,
                "baseline_model": base_model, "baseline": b.config, "data": _data(e.run),
                "run": str(e.run.path)}
        cands = [c for c in entries if b.holds(c)
                 and (b.model is not None or c.model == e.model)]
        cands.sort(key=lambda c: c.run is not e.run)  # the same run first
        reason, match = f"no {b.config} run of {base_model}", None
        if _failed(runs, b, e.model):
            reason = f"{name} failed (see its run's {FAILURES})"
        for c in cands:
            differs = _differs(e.run, c.run)
            if differs:
                reason = (f"{name} is in {c.run.path}, whose "
                          f"{', '.join(differs)} differ from {e.run.path}'s")
                continue
            why = _unpaired_folds(e.preds, c.preds)
            if why:
                reason = f"{why} between {e.run.path} and {c.run.path}"
                continue
            match = c
            break
        if match is None:
            rows.append({**base, "status": "skipped", "reason": reason})
            continue
        base["baseline_model"] = match.model
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
    return rows


def against_title(text: str) -> str:
    """The heading of one ``--baseline``'s comparisons."""
    b = parse_baseline(text)
    if b.model is None:
        return f"Paired comparisons against {b.config}"
    return (f"Paired comparisons against {b.model} {b.config} (every other model x "
            f"configuration against {b.model}'s {b.config}, on the same test folds)")


def versus(r: dict) -> str:
    """A row's comparison as the tables name it: ``dualdi vs baseline`` within a model,
    ``baseline vs ststnet baseline`` against another model."""
    if r["baseline_model"] == r["model"] or pd.isna(r["baseline_model"]):
        return f"{r['config']} vs {r['baseline']}"
    return f"{r['config']} vs {bare(r['baseline_model'])} {r['baseline']}"


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
                f"| {r['model']} | {versus(r)} | "
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

