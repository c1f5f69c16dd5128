"""Paired comparison of two configurations on the same test folds: the per-fold differences,
their estimate, a two-stage bootstrap interval and a sign-flip permutation p-value.

The differences come grouped by seed: ``groups[s]`` holds the per-fold differences of seed
``s`` [shape=(n_s,)]. The estimate is the mean over seeds of the per-seed mean over folds, so
every seed weighs the same whatever its number of folds. A single 1-D array (or list of
numbers) is taken as one seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

EXACT_MAX = 16  # enumerate every sign pattern up to 2**16 = 65,536 of them
_CHUNK = 2_000_000  # values drawn at a time by the resampling loops


def paired_differences(config: pd.DataFrame, baseline: pd.DataFrame, metric: str
                       ) -> pd.DataFrame:
    """Per-(seed, fold) differences ``metric(config) - metric(baseline)``.

    ``config`` and ``baseline`` hold one row per test fold with columns ``seed``, ``fold``
    and ``metric`` (``mer_di.training.results.fold_scores`` makes them). Returns columns seed,
    fold, config, baseline, diff, sorted by seed and fold. Raises ``ValueError`` when the
    two do not cover the same (seed, fold) pairs, or one has a pair twice.
    """
    keys = ["seed", "fold"]
    for name, df in (("config", config), ("baseline", baseline)):
        if df.duplicated(keys).any():
            raise ValueError(f"{name}: a (seed, fold) appears twice")
    a = config[keys + [metric]].rename(columns={metric: "config"})
    b = baseline[keys + [metric]].rename(columns={metric: "baseline"})
    only_a = set(map(tuple, a[keys].to_numpy())) - set(map(tuple, b[keys].to_numpy()))
    only_b = set(map(tuple, b[keys].to_numpy())) - set(map(tuple, a[keys].to_numpy()))
    if only_a or only_b:
        raise ValueError(f"(seed, fold) pairs differ: {_pairs(only_a)} only in the "
                         f"configuration, {_pairs(only_b)} only in the baseline")
    d = a.merge(b, on=keys).sort_values(keys, ignore_index=True)
    d["diff"] = d["config"] - d["baseline"]
    return d


def _pairs(pairs: set[tuple]) -> str:
    if not pairs:
        return "none"
    shown = sorted(pairs)[:3]
    more = f" and {len(pairs) - 3} more" if len(pairs) > 3 else ""
    return ", ".join(f"seed {s} fold {f}" for s, f in shown) + more


def by_seed(diffs: pd.DataFrame, column: str = "diff") -> list[np.ndarray]:
    """A ``paired_differences`` frame as the per-seed groups the other functions take."""
    return [g[column].to_numpy(np.float64) for _, g in diffs.groupby("seed", sort=True)]


def _groups(groups: Sequence[Sequence[float]] | np.ndarray) -> list[np.ndarray]:
    if isinstance(groups, np.ndarray) and groups.ndim == 1:
        groups = [groups]
    elif len(groups) and all(np.ndim(g) == 0 for g in groups):
        groups = [np.asarray(groups)]
    out = [np.asarray(g, np.float64).ravel() for g in groups]
    if not out or any(len(g) == 0 for g in out):
        raise ValueError("need at least one seed, each with at least one fold")
    return out


def hierarchical_mean(groups: Sequence[Sequence[float]] | np.ndarray) -> float:
    """Mean over seeds of the per-seed mean over folds."""
    return float(np.mean([g.mean() for g in _groups(groups)]))


def _weights(groups: list[np.ndarray]) -> np.ndarray:
    """Each difference's weight in the estimate, 1 / (seeds * folds of its seed) [shape=(n,)]."""
    return np.concatenate([np.full(len(g), 1.0 / (len(groups) * len(g))) for g in groups])


def hierarchical_bootstrap_ci(groups: Sequence[Sequence[float]] | np.ndarray,
                              n_boot: int = 10_000, seed: int = 0, level: float = 0.95
                              ) -> tuple[float, float]:
    """Percentile interval of the estimate by a two-stage bootstrap.

    Each resample draws the seeds with replacement, then, within each drawn seed, its folds
    with replacement, and takes the mean over the drawn seeds of the per-seed mean over the
    drawn folds. ``n_boot`` resamples from ``numpy.random.default_rng(seed)``, so the same
    seed gives the same interval. With one seed it is the ordinary bootstrap over folds.
    """
    if n_boot < 1:
        raise ValueError("n_boot must be at least 1")
    if not 0 < level < 1:
        raise ValueError("level must lie in (0, 1)")
    gs = _groups(groups)
    n_seeds = len(gs)
    sizes = np.array([len(g) for g in gs])
    width = int(sizes.max())
    table = np.zeros((n_seeds, width))
    for i, g in enumerate(gs):
        table[i, :len(g)] = g
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot)
    step = max(1, _CHUNK // (n_seeds * width))
    for start in range(0, n_boot, step):
        b = min(step, n_boot - start)
        seeds = rng.integers(0, n_seeds, size=(b, n_seeds))
        n = sizes[seeds]  # folds of each drawn seed [shape=(b, n_seeds)]
        folds = rng.integers(0, n[..., None], size=(b, n_seeds, width))
        used = np.arange(width) < n[..., None]  # a seed with fewer folds draws fewer
        values = np.where(used, table[seeds[..., None], folds], 0.0)
        stats[start:start + b] = (values.sum(2) / n).mean(1)
    alpha = (1 - level) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha])
    return float(low), float(high)


def sign_flip_p(groups: Sequence[Sequence[float]] | np.ndarray, n_perm: int = 10_000,
                seed: int = 0, exact_max: int = EXACT_MAX) -> float:
    """Two-sided p-value of a sign-flip permutation test on the per-fold differences.

    H0: each fold's difference is symmetric about 0, so its sign is a fair coin. The
    statistic T is the estimate (:func:`hierarchical_mean`) and T* the same with the signs
    flipped. With n differences in all, n <= ``exact_max`` enumerates all 2^n sign
    patterns (the observed one among them): p = #{|T*| >= |T|} / 2^n, whose smallest value
    is 2 / 2^n. Otherwise ``n_perm`` random patterns from ``default_rng(seed)``:
    p = (1 + #{|T*| >= |T|}) / (1 + n_perm). All differences 0 gives p = 1.
    """
    gs = _groups(groups)
    a = np.concatenate(gs) * _weights(gs)  # T = a.sum(); T* = (signs * a).sum()
    n = len(a)
    observed = abs(a.sum())
    tol = 1e-12 * max(1.0, float(np.abs(a).sum()))  # ties by rounding count as ties
    if n <= exact_max:
        bits = (np.arange(2 ** n)[:, None] >> np.arange(n)) & 1
        t = (1 - 2 * bits) @ a
        return float(np.count_nonzero(np.abs(t) >= observed - tol) / 2 ** n)
    if n_perm < 1:
        raise ValueError("n_perm must be at least 1")
    rng = np.random.default_rng(seed)
    hits = 0
    step = max(1, _CHUNK // n)
    for start in range(0, n_perm, step):
        b = min(step, n_perm - start)
        signs = rng.integers(0, 2, size=(b, n)) * 2 - 1
        hits += int(np.count_nonzero(np.abs(signs @ a) >= observed - tol))
    return (1 + hits) / (1 + n_perm)


def smallest_p(n: int, n_perm: int = 10_000, exact_max: int = EXACT_MAX) -> float:
    """The smallest p :func:`sign_flip_p` can give for n differences."""
    return 2 / 2 ** n if n <= exact_max else 1 / (1 + n_perm)


def win_tie_loss(diffs: np.ndarray, tol: float = 1e-12) -> tuple[int, int, int]:
    """How many differences are above, within ``tol`` of, and below 0."""
    d = np.asarray(diffs, np.float64)
    return (int(np.count_nonzero(d > tol)), int(np.count_nonzero(np.abs(d) <= tol)),
            int(np.count_nonzero(d < -tol)))
