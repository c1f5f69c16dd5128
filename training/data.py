"""The training set, read once from one or more caches (the only module that reads them).

Training never imports :mod:`pipeline`'s builder; it reads the HDF5 layout documented in
:mod:`mer_di.pipeline.store` (``/<subject>/<clip>/<phase>``) with h5py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from mer_di.data_manifest.classes import CLASS_SET_NAMES, class_names, map_label, normalise_emotion
from mer_di.pipeline.store import PHASES, STILL  # the layout's names (STILL: the apex frame)

from mer_di.errors import DataError


@dataclass
class ClipSet:
    """Every usable clip of the caches, in memory.

    ``full`` [shape=(N, H, W, C), float32] raw dynamic images; ``onset``/``offset`` the
    same shape, valid where ``has_onset``/``has_offset``; ``labels`` int class indices
    into ``classes``; ``subjects`` ``dataset:subject`` strings; ``keys``
    ``dataset:subject/clip``. ``apex`` [shape=(N, H, W, C)] the apex frames, or None
    when a cache predates them (schema 1).
    """

    keys: list[str]
    subjects: np.ndarray
    labels: np.ndarray
    classes: list[str]
    full: np.ndarray
    onset: np.ndarray
    offset: np.ndarray
    has_onset: np.ndarray
    has_offset: np.ndarray
    apex: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.keys)


def _attr(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def load_caches(paths: list[str | Path], class_set: str = "five") -> ClipSet:
    """Read ``paths`` into one :class:`ClipSet` under ``class_set``.

    Clips whose emotion the class set leaves out are dropped. Where greyscale and colour
    caches combine, greyscale images are repeated to three channels. Raises :class:`DataError`
    for a missing or foreign file, caches of different image shapes, or a class set that
    leaves a class without clips.
    """
    if class_set not in CLASS_SET_NAMES:
        raise DataError(f"unknown class set {class_set!r}; choose {', '.join(CLASS_SET_NAMES)}")
    if not paths:
        raise DataError("no cache given")
    records = []  # (dataset, subject, clip, emotion, {phase: array})
    for path in map(Path, paths):
        if not path.is_file():
            raise DataError(f"{path}: cache not found")
        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            raise DataError(f"{path}: not an HDF5 file ({exc})") from None
        with f:
            if "schema_version" not in f.attrs or "dataset" not in f.attrs:
                raise DataError(f"{path}: an HDF5 file, but not a dynamic-image cache "
                                "(build one with mer-prep build-cache)")
            dataset = _attr(f.attrs["dataset"])
            for subject in f:
                for clip in f[subject]:
                    g = f[subject][clip]
                    emotion = _attr(g.attrs.get("emotion", ""))
                    if map_label(dataset, class_set, emotion) is None:
                        continue
                    records.append((dataset, subject, clip, emotion,
                                    {p: g[p][()] for p in (*PHASES, STILL) if p in g}))
    if not records:
        raise DataError(f"no clip of {', '.join(map(str, paths))} is in class set {class_set!r}")
    sizes = {r[4]["full"].shape[:2] for r in records}
    if len(sizes) > 1:
        raise DataError(f"the caches hold images of different sizes {sorted(sizes)} (H, W); "
                        "build them with the same --size")
    channels = {r[4]["full"].shape[2] for r in records}
    if len(channels) > 1:  # greyscale SAMM beside colour CASME II (the MEGC composite)
        for r in records:
            for name, img in r[4].items():
                if img.shape[2] == 1:
                    r[4][name] = np.repeat(img, 3, axis=2)
    shapes = {(*sizes.pop(), max(channels))}
    datasets = sorted({r[0] for r in records})
    if class_set == "all":
        classes = sorted({normalise_emotion(r[3]) for r in records})
    else:
        classes = list(dict.fromkeys(c for d in datasets for c in class_names(d, class_set)))
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[map_label(r[0], class_set, r[3])] for r in records], np.int64)
    counts = np.bincount(labels, minlength=len(classes))
    if (counts == 0).any():
        empty = [c for c, n in zip(classes, counts, strict=True) if n == 0]
        raise DataError(f"class set {class_set!r} leaves no clips in class(es) "
                        f"{', '.join(empty)} in {', '.join(map(str, paths))}")
    shape = shapes.pop()
    full = np.stack([r[4]["full"] for r in records]).astype(np.float32, copy=False)
    onset = np.zeros((len(records), *shape), np.float32)
    offset = np.zeros_like(onset)
    has_onset = np.zeros(len(records), bool)
    has_offset = np.zeros(len(records), bool)
    for i, r in enumerate(records):
        if "onset" in r[4]:
            onset[i], has_onset[i] = r[4]["onset"], True
        if "offset" in r[4]:
            offset[i], has_offset[i] = r[4]["offset"], True
    apex = None
    if all(STILL in r[4] for r in records):
        apex = np.stack([r[4][STILL] for r in records]).astype(np.float32, copy=False)
    return ClipSet(
        keys=[f"{r[0]}:{r[1]}/{r[2]}" for r in records],
        subjects=np.array([f"{r[0]}:{r[1]}" for r in records]), labels=labels,
        classes=classes, full=full, onset=onset, offset=offset, has_onset=has_onset,
        has_offset=has_offset, apex=apex,
    )
