"""Readers by dataset name."""

from __future__ import annotations

from pathlib import Path

from mer_di.data_manifest.casme2 import Casme2Reader
from mer_di.data_manifest.mmew import MmewReader
from mer_di.data_manifest.reader import DatasetReader, Manifest
from mer_di.data_manifest.samm import SammReader

from mer_di.errors import ManifestError

_READERS: dict[str, type[DatasetReader]] = {
    "casme2": Casme2Reader,
    "samm": SammReader,
    "mmew": MmewReader,
}
DATASETS = tuple(_READERS)


def get_reader(dataset: str) -> DatasetReader:
    """The reader for ``dataset`` (``casme2``, ``samm`` or ``mmew``)."""
    try:
        return _READERS[dataset]()
    except KeyError:
        raise ManifestError(
            f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}"
        ) from None


def build_manifest(dataset: str, root: str | Path, sheet: str | Path | None = None,
                   classes: str = "five") -> Manifest:
    """Read ``dataset``'s annotation sheet and resolve its clips under ``root``."""
    return get_reader(dataset).read(root, sheet=sheet, classes=classes)
