"""Cross-validated training of micro-expression models from the dynamic-image cache.

Public: :class:`CVSpec` and :class:`TrainOptions` (what to run), :func:`run_cv` (run it
into a run folder), :func:`make_report` (tables and figures from run folders) and
:func:`predict` (a finished run applied to new clips).

They load when first used, so importing the command line (``mer-train``) does not import
torch: an interrupt while torch loads is then the command's to handle (``interrupted``).
"""

from __future__ import annotations

import importlib

_LAZY = {
    "CVSpec": "mer_di.training.plan",
    "TrainOptions": "mer_di.training.loop",
    "make_report": "mer_di.training.report",
    "predict": "mer_di.training.inference",
    "run_cv": "mer_di.training.runner",
}

__all__ = ["CVSpec", "TrainOptions", "make_report", "predict", "run_cv"]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mer_di.training' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
