"""Cross-validation folds and the validation split carved from the training folds.

- ``kfold``: stratified over clips (the paper's 5-fold).
- ``subject-kfold``: stratified, grouped by subject (no subject in two folds).
- ``loso``: leave one subject out.
- ``lodo``: leave one dataset out (combined caches): each dataset is once the test fold.
The same seed gives the same folds. The validation split used for early stopping comes
from the training clips only, subject-disjoint where the protocol is. A class with fewer
clips than folds is the run's note (:func:`small_class_notes`), in place of scikit-learn's
warning.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.model_selection import KFold, StratifiedGroupKFold, StratifiedKFold

from mer_di.errors import FoldError
from mer_di.options import PROTOCOL_NAMES as PROTOCOLS


def make_folds(protocol: str, labels: np.ndarray, subjects: np.ndarray, n_folds: int = 5,
               seed: int = 0, datasets: np.ndarray | None = None) -> list[np.ndarray]:
    """Test indices of every fold (each clip in exactly one test fold). ``datasets``
    [shape=(N,)] names each clip's dataset (needed by ``lodo``; its folds are the datasets
    in sorted order)."""
    labels, subjects = np.asarray(labels), np.asarray(subjects)
    n = len(labels)
    if protocol == "loso":
        return [np.flatnonzero(subjects == s) for s in sorted(set(subjects.tolist()))]
    if protocol == "lodo":
        names = sorted(set(np.asarray(datasets).tolist())) if datasets is not None else []
        if len(names) < 2:
            raise FoldError("--protocol lodo (leave one dataset out) needs caches of two or "
                            f"more datasets; these hold {', '.join(names) or 'none'}")
        return [np.flatnonzero(np.asarray(datasets) == d) for d in names]
    if protocol not in PROTOCOLS:
        raise FoldError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if n_folds < 2:
        raise FoldError("need at least 2 folds")
    if protocol == "kfold":
        if n < n_folds:
            raise FoldError(f"{n} clips cannot make {n_folds} folds")
        largest = int(np.unique(labels, return_counts=True)[1].max())
        if largest < n_folds:  # StratifiedKFold's own ValueError would be a traceback
            raise FoldError(f"{n_folds} stratified folds need a class with at least {n_folds} "
                            f"clips; the largest has {largest}: give --folds {max(2, largest)} "
                            "or fewer")
        splitter = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
        splits = splitter.split(np.zeros(n), labels)
    else:
        n_subjects = len(set(subjects.tolist()))
        if n_subjects < n_folds:
            raise FoldError(f"{n_subjects} subjects cannot make {n_folds} subject-disjoint folds")
        splitter = StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed)
        splits = splitter.split(np.zeros(n), labels, subjects)
    try:
        with warnings.catch_warnings():  # said once per run by small_class_notes
            warnings.filterwarnings("ignore", "The least populated class", UserWarning)
            folds = [np.sort(test) for _, test in splits]
    except ValueError as exc:  # any other split sklearn cannot make
        raise FoldError(f"{protocol} with {n_folds} folds cannot be made: {exc}") from None
    empty = [i for i, f in enumerate(folds) if len(f) == 0]
    if empty:
        raise FoldError(f"fold {empty[0]} has no test clips")
    return folds


def small_class_notes(protocol: str, n_folds: int, labels: np.ndarray,
                      classes: list[str]) -> list[str]:
    """A note for each class with fewer clips than the stratified protocols' folds: some
    test folds hold no clip of it, and what that does to their per-fold metrics."""
    if protocol not in ("kfold", "subject-kfold"):
        return []
    labels = np.asarray(labels)
    counts = np.bincount(labels[labels >= 0], minlength=len(classes))
    notes = []
    for name, n in zip(classes, counts.tolist(), strict=True):
        if 0 < n < n_folds:
            m = n_folds - n
            folds = "1 test fold holds" if m == 1 else f"{m} test folds hold"
            notes.append(
                f"class {name!r} has {n} clip{'s' * (n != 1)}, fewer than the {n_folds} folds "
                f"of {protocol}: at least {folds} no clip of it, and the UAR and UF1 of such "
                "a fold leave it out (UF1 counts it, as 0, only where a clip was predicted as "
                "it), so the per-fold metrics (mean ± std over folds) are over other classes "
                "from fold to fold; the pooled metrics count it everywhere")
    return notes


def validation_split(train: np.ndarray, labels: np.ndarray, subjects: np.ndarray,
                     subject_disjoint: bool, fraction: float = 0.2,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split training indices into (fit, validation), about ``fraction`` for validation.

    Stratified by label; grouped by subject when ``subject_disjoint``. Falls back to a
    plain stratified split when there are too few subjects to group.
    """
    train = np.asarray(train)
    if not 0 < fraction < 1:
        raise FoldError("validation fraction must be in (0, 1)")
    k = max(2, round(1 / fraction))
    y, g = np.asarray(labels)[train], np.asarray(subjects)[train]
    if subject_disjoint and len(set(g.tolist())) >= k:
        splitter = StratifiedGroupKFold(k, shuffle=True, random_state=seed)
        with warnings.catch_warnings():  # stratifying the validation split is best effort
            warnings.filterwarnings("ignore", "The least populated class", UserWarning)
            fit, val = next(splitter.split(np.zeros(len(train)), y, g))
    else:
        # stratified when some class has k members; fewer folds when none has; a plain
        # shuffled split when no class has two (stratifying is then impossible)
        k = min(k, len(train), max(2, int(np.bincount(y).max())))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "least populated class" notes
            try:
                splitter = StratifiedKFold(k, shuffle=True, random_state=seed)
                fit, val = next(splitter.split(np.zeros(len(train)), y))
            except ValueError:
                fit, val = next(KFold(k, shuffle=True, random_state=seed).split(train))
    return np.sort(train[fit]), np.sort(train[val])
