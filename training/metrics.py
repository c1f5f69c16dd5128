"""Accuracy, UF1 (macro F1) and UAR (macro recall), per fold and pooled.

UF1 is the unweighted mean of per-class F1 over the classes that occur in the labels or
the predictions; UAR the unweighted mean of per-class recall over the classes that occur
in the labels (sklearn's ``f1_score(average='macro')`` and ``balanced_accuracy_score``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Scores:
    accuracy: float
    uf1: float
    uar: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return {"accuracy": self.accuracy, "uf1": self.uf1, "uar": self.uar, "n": self.n}


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts [shape=(n_classes, n_classes)]: rows true class, columns predicted class."""
    m = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(m, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return m


def scores(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> Scores:
    """Accuracy, UF1 and UAR of integer labels and predictions."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(y_true) == 0:
        raise ValueError("no predictions to score")
    m = confusion(y_true, y_pred, n_classes)
    tp = np.diag(m).astype(np.float64)
    support, predicted = m.sum(1), m.sum(0)
    present = (support + predicted) > 0
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    return Scores(accuracy=float(tp.sum() / len(y_true)), uf1=float(f1[present].mean()),
                  uar=float(recall[support > 0].mean()), n=int(len(y_true)))


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    a = np.asarray(values, np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0
