"""Decoding clips and pooling them into their records, the next clips' frames decoding
while the current one is pooled: the build's path (:mod:`mer_di.pipeline.build`) and
:func:`mer_di.predict`'s for clips of a dataset folder."""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numba

from mer_di.data_manifest import ManifestRow
from mer_di.pipeline.clip_record import make_record
from mer_di.pipeline.frames import FrameError, load_clip
from mer_di.pipeline.store import ClipRecord

if TYPE_CHECKING:
    from mer_di.pipeline.build import BuildOptions

SWITCH_INTERVAL_S = 0.0002  # the GIL switch interval while decoding (Python's default 5 ms)


@dataclass
class PooledClip:
    """One clip through decoding and the kernel: its ``record`` (None when a frame failed,
    then ``error`` says which and why), the notes, and the frames decoded."""

    row: ManifestRow
    record: ClipRecord | None
    notes: list[str]
    error: str = ""
    frames: int = 0


@contextmanager
def _decoding_threads(workers: int) -> Iterator[None]:
    """Numba and the GIL tuned for decoding with ``workers`` threads, restored after."""
    # The kernel runs between decodes; with every core decoding, Numba's parallel threads
    # only steal CPU from the decoders (measured: 55-67% -> 75-93% of the decode floor).
    kernel_threads = max(1, min(numba.config.NUMBA_NUM_THREADS,
                                (os.cpu_count() or 1) - workers))
    previous_threads = numba.get_num_threads()
    numba.set_num_threads(kernel_threads)
    # A decoder thread needs the GIL for a moment between two frames; while the main
    # thread runs Python (HDF5 attributes, bookkeeping) it would wait up to the switch
    # interval (5 ms, several frames' decoding) for it. A short interval keeps the
    # decoders fed (measured: the 1-worker build went from 74 % to 82-99 % of the floor).
    previous_interval = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        yield
    finally:
        numba.set_num_threads(previous_threads)
        sys.setswitchinterval(previous_interval)


def pool_clips(todo: list[tuple[ManifestRow, str]], options: BuildOptions
               ) -> Iterator[PooledClip]:
    """Decode and pool every ``(row, fingerprint)`` of ``todo``, in order, one
    :class:`PooledClip` each (the build's path, and :func:`mer_di.predict`'s for clips of a
    dataset folder). Closing the iterator early cancels the clips not yet started."""
    workers = options.workers or os.cpu_count() or 1
    # Two clips load at once (each submits its frames to the shared decoders), so the
    # decoders never wait at a clip boundary: while one clip's last frames decode, the next
    # clip's are already queued. The caller pools clip i meanwhile.
    ahead = 2
    with _decoding_threads(workers), ThreadPoolExecutor(workers) as decoders, \
            ThreadPoolExecutor(ahead) as prefetch:
        def load(row: ManifestRow):
            paths = [(n, row.frame_path(n)) for n in range(row.onset, row.offset + 1)]
            return load_clip(paths, options.size, options.crop, decoders)

        pending = deque(prefetch.submit(load, row) for row, _ in todo[:ahead])
        try:
            for i, (row, fp) in enumerate(todo):
                current = pending.popleft()
                if i + ahead < len(todo):
                    pending.append(prefetch.submit(load, todo[i + ahead][0]))
                try:
                    clip = current.result()
                except FrameError as exc:
                    yield PooledClip(row, None, [], error=str(exc))
                    continue
                record, notes = make_record(row, clip, options.weights, options.size, fp,
                                            options.apex, options.flow, options.apex_jitter)
                yield PooledClip(row, record, notes, frames=clip.frames.shape[0])
        finally:
            for later in pending:
                later.cancel()
