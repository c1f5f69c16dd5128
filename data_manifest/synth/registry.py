"""The look-alike generators by dataset name: one spec per reader."""

from __future__ import annotations

from mer_di.data_manifest.synth.casme2 import Casme2Spec
from mer_di.data_manifest.synth.casme3 import Casme3Spec
from mer_di.data_manifest.synth.mmew import MmewSpec
from mer_di.data_manifest.synth.samm import SammSpec
from mer_di.data_manifest.synth.smic import SmicSpec
from mer_di.data_manifest.synth.spec import SynthSpec
from mer_di.errors import SynthError

# specs hold no state beyond their reader, so one instance per dataset serves every call
SPECS: dict[str, SynthSpec] = {s.name: s for s in (Casme2Spec(), SammSpec(), MmewSpec(),
                                                   SmicSpec(), Casme3Spec())}


def get_spec(dataset: str) -> SynthSpec:
    """The generator's rules for ``dataset`` (:class:`SynthError` for a dataset without)."""
    if dataset not in SPECS:
        raise SynthError(f"unknown dataset {dataset!r}; choose one of {', '.join(SPECS)}")
    return SPECS[dataset]
