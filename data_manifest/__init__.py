"""Canonical clip manifests from the official annotation sheets of CASME II, SAMM, MMEW and
CAS(ME)^3 part A, and from the clip folders of SMIC-HS (which has no sheet).

The public entry points are :func:`build_manifest` (sheet + dataset folder -> manifest),
:func:`write_manifest` / :func:`read_manifest` (CSV round trip) and :func:`summarise`.
"""

from mer_di.data_manifest.classes import CLASS_SETS, class_names
from mer_di.data_manifest.records import ManifestRow, read_manifest, write_manifest
from mer_di.data_manifest.registry import DATASETS, build_manifest, get_reader
from mer_di.data_manifest.summary import summarise
from mer_di.errors import ManifestError, SheetError

__all__ = [
    "CLASS_SETS",
    "DATASETS",
    "ManifestError",
    "ManifestRow",
    "SheetError",
    "build_manifest",
    "class_names",
    "get_reader",
    "read_manifest",
    "summarise",
    "write_manifest",
]
