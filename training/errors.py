"""The training side's own errors: what a command turns into a clean message."""

from __future__ import annotations

from training.configs import ConfigError
from training.data import DataError
from training.folds import FoldError
from training.models import ModelError
from training.runner import RunError

USER_ERRORS = (ConfigError, DataError, FoldError, ModelError, RunError)
