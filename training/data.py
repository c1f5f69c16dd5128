"""The training set, read once from one or more caches through the store's reader
(:func:`mer_di.pipeline.store.open_cache`): clips, their labels under a class set, and
their images as arrays in memory.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from mer_di.data_manifest.classes import class_names, map_label, normalise_emotion
from mer_di.errors import CacheError, DataError
from mer_di.options import CLASS_SETS, check
from mer_di.pipeline.store import APEX_FRAME, IMAGES, CachedClip, file_sha256, open_cache

UNLABELLED = -1  # a clip whose emotion is outside the classes (only ever predicted)
CROSS_DATASET_SETS = ("megc",)  # class sets with one meaning across datasets


@dataclass
class ClipSet:
    """Clips of one or more caches, in memory, in a fixed order (index ``i`` everywhere).

    ``datasets``, ``subjects``, ``clips`` [shape=(N,), str] name each clip as its cache
    does; ``labels`` [shape=(N,), int64] index ``classes`` (:data:`UNLABELLED` for a clip
    outside them); ``full``, ``onset``, ``offset`` [shape=(N, H, W, C), float32] the raw
    dynamic images, ``onset``/``offset`` valid where ``has_onset``/``has_offset``;
    ``apex_frame`` [shape=(N, H, W, C), float32] the apex frames, or None when a cache
    predates them (schema 1).
    """

    datasets: np.ndarray
    subjects: np.ndarray
    clips: np.ndarray
    labels: np.ndarray
    classes: list[str]
    full: np.ndarray
    onset: np.ndarray
    offset: np.ndarray
    has_onset: np.ndarray
    has_offset: np.ndarray
    apex_frame: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.clips)

    @cached_property
    def groups(self) -> np.ndarray:
        """The subject of each clip as an int [shape=(N,)]: the same number for the same
        (dataset, subject), numbered in sorted order; what subject-wise folds group by."""
        pairs = sorted(set(zip(self.datasets.tolist(), self.subjects.tolist(), strict=True)))
        number = {p: i for i, p in enumerate(pairs)}
        return np.array([number[p] for p in zip(self.datasets.tolist(), self.subjects.tolist(),
                                                strict=True)], np.int64)

    def images(self, name: str) -> np.ndarray | None:
        """The array of image ``name`` (one of :data:`IMAGES`) of every clip, or None."""
        return {"full": self.full, "onset": self.onset, "offset": self.offset,
                APEX_FRAME: self.apex_frame}[name]


# A clip read for training: its record and its images (``full`` always).
Loaded = tuple[CachedClip, dict[str, np.ndarray]]


def read_clips(path: str | Path, keep=lambda clip: True) -> list[Loaded]:
    """Every clip of the cache ``path`` that ``keep`` accepts, with its images.

    Raises :class:`DataError` for a missing or foreign file, or an image with a NaN or inf
    (named by clip and image)."""
    try:
        with open_cache(path) as cache:
            loaded = [(clip, cache.images(clip, IMAGES)) for clip in cache if keep(clip)]
    except CacheError as exc:
        raise DataError(str(exc)) from None
    for clip, images in loaded:
        for name, image in images.items():
            if not np.isfinite(image).all():  # a NaN or inf would train (and score) silently
                raise DataError(f"{path}: clip {clip.key}, image {name!r}, holds non-finite "
                                "values (NaN or inf); rebuild the cache with mer-prep "
                                "build-cache --rebuild")
    return loaded


def load_caches(paths: list[str | Path], class_set: str = "five") -> ClipSet:
    """Read ``paths`` into one :class:`ClipSet` under ``class_set``.

    Clips whose emotion the class set leaves out are dropped. Where greyscale and colour
    caches combine, greyscale images are repeated to three channels. Raises
    :class:`DataError` for a missing or foreign file, caches of different image sizes, or
    a class set that leaves a class without clips.
    """
    check("class set", class_set, CLASS_SETS, DataError)
    if not paths:
        raise DataError("no cache given")
    _check_distinct_files(paths)
    loaded: list[Loaded] = []
    for path in paths:
        loaded += read_clips(path, lambda c: map_label(c.dataset, class_set, c.emotion)
                             is not None)
    if not loaded:
        raise DataError(f"no clip of {', '.join(map(str, paths))} is in class set {class_set!r}")
    _check_distinct_clips(loaded, paths)
    datasets = sorted({clip.dataset for clip, _ in loaded})
    if len(datasets) > 1 and class_set not in CROSS_DATASET_SETS:
        raise DataError(f"the caches hold {len(datasets)} datasets ({', '.join(datasets)}); "
                        f"class set {class_set!r} is each dataset's own (their class names "
                        "differ, e.g. 'others' and 'other'); combine datasets with a class set "
                        f"defined across them: --classes {' or '.join(CROSS_DATASET_SETS)}")
    if class_set == "all":
        classes = sorted({normalise_emotion(clip.emotion) for clip, _ in loaded})
    else:
        classes = list(dict.fromkeys(c for d in datasets for c in class_names(d, class_set)))
    clips = assemble(loaded, classes, class_set)
    counts = np.bincount(clips.labels, minlength=len(classes))
    if (counts == 0).any():
        empty = [c for c, n in zip(classes, counts, strict=True) if n == 0]
        raise DataError(f"class set {class_set!r} leaves no clips in class(es) "
                        f"{', '.join(empty)} in {', '.join(map(str, paths))}")
    return clips


def _check_distinct_files(paths: list[str | Path]) -> None:
    """The same cache twice (by path or by content) would train its clips twice and, under
    kfold, put a clip in training and test at once."""
    seen: dict[str, Path] = {}
    for path in map(Path, paths):
        if not path.is_file():
            continue  # read_clips names it
        digest = file_sha256(path)
        if digest in seen:
            same = "is given twice" if seen[digest].resolve() == path.resolve() else \
                f"has the same content as {seen[digest]}"
            raise DataError(f"--cache {path} {same}; give each cache once")
        seen[digest] = path


def _check_distinct_clips(loaded: list[Loaded], paths: list[str | Path]) -> None:
    """No clip (dataset, subject, clip) may come from two caches."""
    seen: set[tuple[str, str, str]] = set()
    for clip, _ in loaded:
        key = (clip.dataset, clip.subject, clip.clip)
        if key in seen:
            raise DataError(f"clip {clip.dataset} {clip.key} is in more than one of "
                            f"{', '.join(map(str, paths))}; each clip may come from one cache "
                            "only (two caches of the same dataset overlap)")
        seen.add(key)


def assemble(loaded: Iterable[Loaded], classes: list[str], class_set: str) -> ClipSet:
    """Loaded clips -> a :class:`ClipSet`, labelled with ``classes`` under ``class_set``
    (:data:`UNLABELLED` where a clip's emotion is outside them). Raises :class:`DataError`
    when the images differ in size."""
    loaded = list(loaded)
    sizes = {images["full"].shape[:2] for _, images in loaded}
    if len(sizes) > 1:
        raise DataError(f"the caches hold images of different sizes {sorted(sizes)} (H, W); "
                        "build them with the same --size")
    channels = {images["full"].shape[2] for _, images in loaded}
    if len(channels) > 1:  # greyscale SAMM beside colour CASME II (the MEGC composite)
        for _, images in loaded:
            for name, img in images.items():
                if img.shape[2] == 1:
                    images[name] = np.repeat(img, 3, axis=2)
    shape = (*sizes.pop(), max(channels))
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index.get(map_label(clip.dataset, class_set, clip.emotion), UNLABELLED)
                       for clip, _ in loaded], np.int64)
    n = len(loaded)
    full = np.stack([images["full"] for _, images in loaded]).astype(np.float32, copy=False)
    phase = {p: np.zeros((n, *shape), np.float32) for p in ("onset", "offset")}
    has = {p: np.zeros(n, bool) for p in phase}
    for i, (_, images) in enumerate(loaded):
        for p in phase:
            if p in images:
                phase[p][i], has[p][i] = images[p], True
    apex_frame = None
    if all(APEX_FRAME in images for _, images in loaded):
        apex_frame = np.stack([images[APEX_FRAME] for _, images in loaded]).astype(
            np.float32, copy=False)
    names = {k: np.array([getattr(clip, k) for clip, _ in loaded], dtype=object)
             for k in ("dataset", "subject", "clip")}
    return ClipSet(datasets=names["dataset"], subjects=names["subject"], clips=names["clip"],
                   labels=labels, classes=classes, full=full, onset=phase["onset"],
                   offset=phase["offset"], has_onset=has["onset"], has_offset=has["offset"],
                   apex_frame=apex_frame)
