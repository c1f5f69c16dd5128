"""Look-alike CASME II, SAMM and MMEW datasets: drawn faces, official layouts and sheets."""

from mer_di.data_manifest.synth.generate import (
    GROUND_TRUTH,
    QUIRKS,
    SynthError,
    SynthResult,
    generate_dataset,
    read_ground_truth,
)

__all__ = ["GROUND_TRUTH", "QUIRKS", "SynthError", "SynthResult", "generate_dataset",
           "read_ground_truth"]
