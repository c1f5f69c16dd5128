"""Cross-validated training of micro-expression models from the dynamic-image cache.

Public: :class:`CVSpec` and :class:`TrainOptions` (what to run), :func:`run_cv` (run it
into a run folder), :func:`make_report` (tables and figures from run folders) and
:func:`predict` (a finished run applied to new clips).

They load when first used, so importing the command line (``mer-train``) does not import
torch: an interrupt while torch loads is then the command's to handle (``interrupted``).
"""

from __future__ import annotations

from mer_di._lazy import lazy_names

__all__ = ["CVSpec", "TrainOptions", "make_report", "predict", "run_cv"]
__getattr__, __dir__ = lazy_names(__name__, {
    "CVSpec": "mer_di.training.plan",
    "TrainOptions": "mer_di.training.loop",
    "make_report": "mer_di.training.report",
    "predict": "mer_di.training.inference",
    "run_cv": "mer_di.training.runner",
}, __all__)
