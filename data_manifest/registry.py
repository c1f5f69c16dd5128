"""Readers by dataset name."""

from __future__ import annotations

from pathlib import Path

from mer_di.data_manifest.casme2 import Casme2Reader
from mer_di.data_manifest.casme3 import Casme3Reader
from mer_di.data_manifest.mmew import MmewReader
from mer_di.data_manifest.reader import DatasetReader, Manifest
from mer_di.data_manifest.samm import SammReader
from mer_di.data_manifest.smic import SmicReader
from mer_di.errors import ManifestError

_READERS: dict[str, type[DatasetReader]] = {
    "casme2": Casme2Reader,
    "samm": SammReader,
    "mmew": MmewReader,
    "smic": SmicReader,
    "casme3": Casme3Reader,
}
DATASETS = tuple(_READERS)


def get_reader(dataset: str) -> DatasetReader:
    """The reader for ``dataset`` (one of :data:`DATASETS`)."""
    try:
        return _READERS[dataset]()
    except KeyError:
        raise ManifestError(
            f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}"
        ) from None


def build_manifest(dataset: str, root: str | Path, sheet: str | Path | None = None,
                   classes: str | None = None) -> Manifest:
    """Read ``dataset``'s annotation sheet and resolve its clips under ``root``.

    Parameters
    ----------
    dataset : str
        ``casme2``, ``samm``, ``mmew``, ``smic`` or ``casme3`` (:data:`DATASETS`).
    root : str or Path
        The dataset folder in its official layout (see the README's table).
    sheet : str or Path, optional
        The annotation sheet (.xlsx or .csv); default: the official file name in ``root``
        or one folder below. SMIC has no sheet: its clips are read from the folders (a
        ``sheet`` given for it is refused).
    classes : str, optional
        The class set that fills each row's ``label`` (:data:`mer_di.options.CLASS_SETS`);
        default: the dataset's own (``five``; SMIC ``all``; CAS(ME)^3 ``four``).

    Returns
    -------
    manifest : Manifest
        ``rows`` (one :class:`ManifestRow` per sheet row with a subject: frame numbers,
        emotion, label, frame folder and template, which images are possible, and every
        problem), ``problem_rows``, ``classes``, and where the sheet and frames were found.

    Raises
    ------
    ManifestError
        No sheet, an unreadable one, a sheet without the expected header (``SheetError``),
        an unknown dataset, or a class set the dataset does not define. Problems of single
        rows are not errors: they are reported in the rows.
    """
    return get_reader(dataset).read(root, sheet=sheet, classes=classes)
