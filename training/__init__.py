"""Cross-validated training of micro-expression models from the dynamic-image cache.

Public: :class:`CVSpec` and :class:`TrainOptions` (what to run), :func:`run_cv` (run it
into a run folder), :func:`make_report` (tables and figures from run folders) and
:func:`predict` (a finished run applied to new clips).
"""

from mer_di.training.inference import predict
from mer_di.training.loop import TrainOptions
from mer_di.training.plan import CVSpec
from mer_di.training.report import make_report
from mer_di.training.runner import run_cv

__all__ = ["CVSpec", "TrainOptions", "make_report", "predict", "run_cv"]
