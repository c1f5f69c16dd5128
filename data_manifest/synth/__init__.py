"""Look-alike CASME II, SAMM, MMEW, SMIC-HS and CAS(ME)^3 datasets: drawn faces, official
layouts and sheets.

One module per dataset (:mod:`.casme2`, :mod:`.samm`, :mod:`.mmew`, :mod:`.smic`,
:mod:`.casme3`) over the shared core (:mod:`.spec`, :mod:`.plan`, :mod:`.render`,
:mod:`.faces`, :mod:`.sheets`), each following its reader; :mod:`.generate` writes a
dataset, :mod:`.from_sheet` one with the rows of a real sheet.
"""

from mer_di.data_manifest.synth.from_sheet import generate_from_sheet
from mer_di.data_manifest.synth.generate import (
    GROUND_TRUTH,
    SynthResult,
    generate_dataset,
    read_ground_truth,
)
from mer_di.data_manifest.synth.plan import QUIRKS
from mer_di.errors import SynthError

__all__ = ["GROUND_TRUTH", "QUIRKS", "SynthError", "SynthResult", "generate_dataset",
           "generate_from_sheet", "read_ground_truth"]
