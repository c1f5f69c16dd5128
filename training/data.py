"""The training set, read once from one or more caches through the store's reader
(:func:`mer_di.pipeline.store.open_cache`): clips, their labels under a class set, and
their images as arrays in memory.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from mer_di.data_manifest.classes import class_names, map_label, normalise_emotion
from mer_di.errors import CacheError, DataError, MerError
from mer_di.options import CLASS_SETS, check
from mer_di.pipeline.cache_reader import open_cache
from mer_di.pipeline.store import (
    APEX_FRAME,
    FLOW_IMAGES,
    IMAGES,
    JITTER_PHASES,
    CachedClip,
    file_sha256,
)

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
    predates them (schema 1). ``flow``: flow phase (:data:`FLOW_IMAGES`) -> [shape=(N, H,
    W, 3), float32: u, v, strain, raw, :mod:`mer_di.pipeline.flow`], valid where
    ``has_flow[phase]`` [shape=(N,), bool], for the phases some clip has; 0 elsewhere,
    which is exact where ``still_flow[phase]`` (the phase's two frames are one frame: apex
    = onset, apex = offset; the build stores no image for it). ``jitter`` (read only for
    ``--apex-jitter K``): ``jitter_onset``/``jitter_offset`` -> [shape=(N, 2K+1, H, W, C),
    float32], entry ``j`` the phase image at the apex shifted by ``j - K``, valid where
    ``jitter_valid`` [shape=(N, 2K+1), bool]; empty (and None) otherwise.
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
    notes: list[str] = field(default_factory=list)  # what reading them found (--clips)
    flow: dict[str, np.ndarray] = field(default_factory=dict)
    has_flow: dict[str, np.ndarray] = field(default_factory=dict)
    still_flow: dict[str, np.ndarray] = field(default_factory=dict)
    jitter: dict[str, np.ndarray] = field(default_factory=dict)
    jitter_valid: np.ndarray | None = None

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

    @property
    def flow_phases(self) -> tuple[str, ...]:
        """The flow phases a flow model can read (what
        :func:`mer_di.training.flow_input.check_flow_input` checks): ``flow_onset_apex``
        when every clip has it or is still over it (apex = onset: its flow is 0; a model
        is tested on it, so none may be missing), and then ``flow_apex_offset`` when some
        clip has it (a second training sample where ``has_flow`` says)."""
        first = FLOW_IMAGES[0]
        if first not in self.has_flow or not (self.has_flow[first]
                                              | self.still_flow[first]).all():
            return ()
        return tuple(p for p in FLOW_IMAGES if p in self.has_flow
                     and self.has_flow[p].any())

    def images(self, name: str) -> np.ndarray | None:
        """The array of image ``name`` (one of :data:`IMAGES`) of every clip, or None; for
        a ``jitter_*`` phase (:data:`JITTER_PHASES`) its entries, clip by clip
        [shape=(N * (2K+1), H, W, C)], or None without them."""
        if name in JITTER_PHASES:
            array = self.jitter.get(name)
            return None if array is None else array.reshape(-1, *array.shape[2:])
        return {"full": self.full, "onset": self.onset, "offset": self.offset,
                APEX_FRAME: self.apex_frame}[name]


# A clip read for training: its record and its images (``full`` always).
Loaded = tuple[CachedClip, dict[str, np.ndarray]]


def read_clips(path: str | Path, keep=lambda clip: True, extra: tuple[str, ...] = ()
               ) -> list[Loaded]:
    """Every clip of the cache ``path`` that ``keep`` accepts, with its images (and the
    images ``extra``, e.g. :data:`JITTER_PHASES`, where it has them).

    Raises :class:`DataError` for a missing or foreign file, or an image with a NaN or inf
    (named by clip and image)."""
    try:
        with open_cache(path) as cache:
            loaded = [(clip, cache.images(clip, (*IMAGES, *FLOW_IMAGES, *extra)))
                      for clip in cache if keep(clip)]
    except CacheError as exc:
        raise DataError(str(exc)) from None
    for clip, images in loaded:
        for name, image in images.items():
            if not np.isfinite(image).all():  # a NaN or inf would train (and score) silently
                raise DataError(f"{path}: clip {clip.key}, image {name!r}, holds non-finite "
                                "values (NaN or inf); rebuild the cache with mer-prep "
                                "build-cache --rebuild")
    return loaded


def _each_cache(paths: list[str | Path], read) -> list:
    """``read(cache)`` of each cache opened in turn (:class:`DataError` for one that can't
    be read)."""
    out = []
    for path in paths:
        try:
            with open_cache(path) as cache:
                out.append(read(cache))
        except CacheError as exc:
            raise DataError(str(exc)) from None
    return out


def cache_datasets(paths: list[str | Path]) -> list[str]:
    """The dataset of each cache (:class:`DataError` for one that can't be read)."""
    return _each_cache(paths, lambda cache: cache.dataset)


def default_class_set(paths: list[str | Path]) -> str:
    """The class set a run over ``paths`` uses when none is given: the dataset's usual one
    (``five`` for CASME II, SAMM, MMEW; see each reader's ``default_classes``); ``megc``,
    the one set defined across datasets, for caches of several datasets."""
    from mer_di.data_manifest.registry import get_reader

    datasets = sorted(set(cache_datasets(paths)))
    if len(datasets) > 1:
        return CROSS_DATASET_SETS[0]
    return getattr(get_reader(datasets[0]), "default_classes", "five")


def _class_of(dataset: str, class_set: str, emotion: str) -> str | None:
    try:
        return map_label(dataset, class_set, emotion)
    except MerError as exc:  # a class set this dataset does not define
        raise DataError(str(exc)) from None


def check_apex_jitter(paths: list[str | Path], k: int) -> list[int]:
    """Each cache's ``--apex-jitter`` K; :class:`DataError` naming a cache whose K is
    below ``k`` (it holds no phase images that far from the apex)."""
    have = _each_cache(paths, lambda cache: cache.apex_jitter)
    for path, got in zip(paths, have, strict=True):
        if got < k:
            built = f"with --apex-jitter {got}" if got else "without --apex-jitter (K = 0)"
            raise DataError(f"--apex-jitter {k}: {path} was built {built}, so it holds no "
                            f"phase images {k} frames from the apex; rebuild it with "
                            f"mer-prep build-cache ... --out {path} --apex-jitter {k} "
                            f"--rebuild (or give --apex-jitter {got} or less)")
    return have


def load_caches(paths: list[str | Path], class_set: str = "five",
                clip_list: str | Path | None = None, apex_jitter: int = 0) -> ClipSet:
    """Read ``paths`` into one :class:`ClipSet` under ``class_set``.

    Clips whose emotion the class set leaves out are dropped. Where greyscale and colour
    caches combine, greyscale images are repeated to three channels. With ``clip_list``
    (a file, :mod:`mer_di.training.cliplist`) only the clips it lists are read; a listed
    clip that no cache has, or that the class set leaves out, stops the run, and a label
    that disagrees with the list's is kept and named in ``notes``. ``apex_jitter`` K > 0
    also reads each clip's phase images at the apex shifted by -K..K (``ClipSet.jitter``;
    every cache must be built with ``--apex-jitter`` K or more). Raises
    :class:`DataError` for a missing or foreign file, caches of different image sizes, a
    cache built with a smaller K, or a class set that leaves a class without clips.
    """
    check("class set", class_set, CLASS_SETS, DataError)
    if not paths:
        raise DataError("no cache given")
    _check_distinct_files(paths)
    jitter_of = {}
    if apex_jitter:
        jitter_of = dict(zip(map(str, paths), check_apex_jitter(paths, apex_jitter),
                             strict=True))
    listed = None
    if clip_list is not None:
        listed = _listed(paths, clip_list, class_set)
    loaded: list[Loaded] = []
    for path in paths:
        part = read_clips(path, lambda c: (listed is None or (c.dataset, c.subject, c.clip)
                                           in listed.keep)
                          and _class_of(c.dataset, class_set, c.emotion) is not None,
                          extra=JITTER_PHASES if apex_jitter else ())
        if apex_jitter:
            part = [_jitter_window(clip, images, jitter_of[str(path)], apex_jitter)
                    for clip, images in part]
        loaded += part
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
    if listed is not None:
        clips.notes += _disagreements(loaded, listed, classes, class_set, clip_list)
    counts = np.bincount(clips.labels, minlength=len(classes))
    if (counts == 0).any():
        empty = [c for c, n in zip(classes, counts, strict=True) if n == 0]
        raise DataError(f"class set {class_set!r} leaves no clips in class(es) "
                        f"{', '.join(empty)} in {', '.join(map(str, paths))}")
    return clips


def _jitter_window(clip: CachedClip, images: dict[str, np.ndarray], have: int, k: int
                   ) -> Loaded:
    """A clip's ``jitter_*`` entries of shifts -k..k, out of its cache's -have..have."""
    for name in JITTER_PHASES:
        if name in images:
            images[name] = images[name][have - k:have + k + 1]
    return clip, images


def _listed(paths: list[str | Path], clip_list: str | Path, class_set: str):
    """The list matched against the caches' clips; stops at listed clips they lack or
    that the class set leaves out, naming them."""
    from mer_di.training.cliplist import match_clips, read_clip_list

    listed = read_clip_list(clip_list)
    records = []
    for path in paths:
        try:
            with open_cache(path) as cache:
                records += list(cache)
        except CacheError as exc:
            raise DataError(str(exc)) from None
    match = match_clips(listed, [(c.dataset, c.subject, c.clip) for c in records])
    if match.missing:
        names = [f"{m.dataset} {m.subject}/{m.clip} (line {m.line})" for m in match.missing]
        raise DataError(f"--clips {clip_list}: {len(names)} of its {len(listed)} clips are in "
                        f"no cache ({', '.join(map(str, paths))}): " + ", ".join(names[:20])
                        + (f" and {len(names) - 20} more" if len(names) > 20 else ""))
    outside = [f"{c.dataset} {c.key} ({c.emotion!r})" for c in records
               if (c.dataset, c.subject, c.clip) in match.keep
               and _class_of(c.dataset, class_set, c.emotion) is None]
    if outside:
        raise DataError(f"--clips {clip_list}: {len(outside)} listed clips are outside class "
                        f"set {class_set!r}: " + ", ".join(outside[:20]))
    return match


def _disagreements(loaded: list[Loaded], match, classes: list[str], class_set: str,
                   clip_list: str | Path) -> list[str]:
    """A note per clip whose label differs from the class its list gives it."""
    from mer_di.training.cliplist import list_class

    notes = []
    for clip, _ in loaded:
        item = match.keep.get((clip.dataset, clip.subject, clip.clip))
        said = list_class(item.label, classes, class_set) if item else None
        have = map_label(clip.dataset, class_set, clip.emotion)
        if said is not None and said != have:
            notes.append(f"{clip.dataset} {clip.key}: {clip_list} (line {item.line}) says "
                         f"{said}, the cache's sheet says {have} ({clip.emotion!r}); the "
                         "sheet's label is used")
    return notes


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
                if img.shape[-1] == 1:  # (H, W, C), or (2K+1, H, W, C) for jitter_*
                    images[name] = np.repeat(img, 3, axis=-1)
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
    flow = {p: np.zeros((n, *shape[:2], 3), np.float32) for p in FLOW_IMAGES
            if any(p in images for _, images in loaded)}
    has_flow = {p: np.zeros(n, bool) for p in flow}
    still = {p: np.zeros(n, bool) for p in flow}
    for i, (clip, images) in enumerate(loaded):
        a = clip.attrs
        ends = dict(zip(FLOW_IMAGES, ("onset", "offset"), strict=True))
        for p in flow:
            if p in images:
                flow[p][i], has_flow[p][i] = images[p], True
            else:
                apex = a.get("apex_used")
                still[p][i] = apex is not None and apex == a.get(ends[p])
    jitter, jitter_valid = _jitter_arrays(loaded, shape)
    names = {k: np.array([getattr(clip, k) for clip, _ in loaded], dtype=object)
             for k in ("dataset", "subject", "clip")}
    return ClipSet(datasets=names["dataset"], subjects=names["subject"], clips=names["clip"],
                   labels=labels, classes=classes, full=full, onset=phase["onset"],
                   offset=phase["offset"], has_onset=has["onset"], has_offset=has["offset"],
                   apex_frame=apex_frame, flow=flow, has_flow=has_flow,
                   still_flow=still, jitter=jitter, jitter_valid=jitter_valid)


def _jitter_arrays(loaded: list[Loaded], shape: tuple[int, ...]
                   ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """``ClipSet.jitter`` and ``jitter_valid`` of clips read with their ``jitter_*``
    entries (all the same 2K+1); ``({}, None)`` when none has them."""
    counts = {len(images[p]) for _, images in loaded for p in JITTER_PHASES if p in images}
    if not counts:
        return {}, None
    (m,) = counts
    k = m // 2
    n = len(loaded)
    arrays = {p: np.zeros((n, m, *shape), np.float32) for p in JITTER_PHASES}
    valid = np.zeros((n, m), bool)
    for i, (clip, images) in enumerate(loaded):
        if not all(p in images for p in JITTER_PHASES):
            continue  # no phase images: trains as today
        for p in JITTER_PHASES:
            arrays[p][i] = images[p]
        for s in clip.jitter_shifts:
            if -k <= s <= k:
                valid[i, s + k] = True
    return arrays, valid
