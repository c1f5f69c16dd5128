"""mer-di: dynamic-image micro-expression recognition.

The way in from Python (everything else is private by name or lives in a submodule)::

    import mer_di

    manifest = mer_di.build_manifest("casme2", "/data/CASME2")          # sheet -> clips
    mer_di.build_cache("casme2", "/data/CASME2", "casme2.h5")            # -> dynamic images
    with mer_di.open_cache("casme2.h5") as cache:                        # clip records
        for clip in cache:
            images = cache.images(clip)                                  # arrays on request
    spec = mer_di.CVSpec(caches=["casme2.h5"], models=["learnet"])
    mer_di.run_cv(spec, "runs/learnet")                                  # cross-validation
    mer_di.make_report(["runs/learnet"])                                 # Table I layout
    mer_di.predict("runs/learnet", cache="casme2.h5")                    # a trained run

Submodules load when first used, so ``import mer_di`` (or the errors) never imports torch;
the training entries do.
"""

from __future__ import annotations

from mer_di._lazy import lazy_names
from mer_di.errors import (
    BuildError,
    CacheError,
    ConfigError,
    DataError,
    FoldError,
    FrameError,
    ManifestError,
    MerError,
    ModelError,
    PredictError,
    ReportError,
    RunError,
    SheetError,
    SynthError,
)

__version__ = "0.1.0"

# public name -> the module that defines it (imported on first access)
_LAZY = {
    "build_manifest": "mer_di.data_manifest",
    "read_manifest": "mer_di.data_manifest",
    "write_manifest": "mer_di.data_manifest",
    "generate_dataset": "mer_di.data_manifest.synth",
    "generate_from_sheet": "mer_di.data_manifest.synth",
    "BuildOptions": "mer_di.pipeline",
    "build_cache": "mer_di.pipeline",
    "open_cache": "mer_di.pipeline",
    "CVSpec": "mer_di.training",
    "TrainOptions": "mer_di.training",
    "run_cv": "mer_di.training",
    "make_report": "mer_di.training",
    "predict": "mer_di.training",
}

__all__ = [
    "BuildError", "BuildOptions", "CVSpec", "CacheError", "ConfigError", "DataError",
    "FoldError", "FrameError", "ManifestError", "MerError", "ModelError", "PredictError",
    "ReportError", "RunError", "SheetError", "SynthError", "TrainOptions", "__version__",
    "build_cache", "build_manifest", "generate_dataset", "generate_from_sheet", "make_report",
    "open_cache",
    "predict", "read_manifest", "run_cv", "write_manifest",
]


__getattr__, __dir__ = lazy_names(__name__, _LAZY, __all__)
