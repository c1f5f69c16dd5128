"""The project's exceptions: one base class, one subclass per area.

Every error a user can cause (a bad sheet, a foreign cache, an unknown model, a run that
cannot resume) is a :class:`MerError`; the two commands turn any of them into a one-line
message and exit code 1, with no traceback. Anything else is a bug. This module imports
nothing, so catching the project's errors never imports torch.
"""

from __future__ import annotations


class MerError(Exception):
    """Base class of every error this project raises for bad input or a refused request."""


# -- data_manifest ---------------------------------------------------------------------------

class ManifestError(MerError):
    """A manifest could not be built at all (no sheet, unreadable sheet, bad arguments)."""


class SheetError(ManifestError):
    """An annotation sheet was found but no sheet of it has the expected header."""


class SynthError(MerError):
    """The look-alike generator cannot run with these arguments."""


# -- pipeline ----------------------------------------------------------------------------------

class CacheError(MerError):
    """The cache cannot be used as asked (locked, foreign, other parameters, unreadable)."""


class BuildError(CacheError):
    """The build stopped (``--strict`` and a bad clip); finished clips are kept."""


class FrameError(MerError):
    """A frame file could not be used; the message names the file and frame number."""


# -- training ----------------------------------------------------------------------------------

class DataError(MerError, ValueError):
    """The caches can't make this training set; the message says which file and why."""


class ConfigError(MerError, ValueError):
    """An unknown configuration, or one a model cannot take."""


class FoldError(MerError, ValueError):
    """The folds asked for cannot be made from these clips."""


class ModelError(MerError, ValueError):
    """The model can't be built or its weights can't be loaded; the message says why."""


class RunError(MerError, ValueError):
    """The run can't start (or continue) as asked; the message says why."""


class DivergedError(RunError):
    """A unit's training met a non-finite loss; ``history`` holds its epochs up to then."""

    def __init__(self, message: str, history: list[dict] | None = None):
        super().__init__(message)
        self.history = list(history or [])


class ReportError(MerError, ValueError):
    """The report can't be made from the given folders; the message says why."""


class PredictError(MerError, ValueError):
    """A trained run can't be applied to these clips; the message says why."""


__all__ = ["BuildError", "CacheError", "ConfigError", "DataError", "DivergedError", "FoldError",
           "FrameError",
           "ManifestError", "MerError", "ModelError", "PredictError", "ReportError",
           "RunError", "SheetError", "SynthError"]


class OutputError(MerError):
    """An output path can't be written (a parent is a file, a folder is read-only, the disk
    is full); the message names the path."""
