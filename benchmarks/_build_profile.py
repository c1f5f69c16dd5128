"""Where a build's time goes: the build's steps wrapped by timers for one extra build
(``bench_build.py``'s profile)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# (label, module, attribute, class or None); the profile wraps those that exist
STAGES = (
    ("manifest (build_manifest)", "mer_di.pipeline.build", "build_manifest", None),
    ("load_clip, whole clip (prefetch thread)", "mer_di.pipeline.build", "load_clip", None),
    ("  per frame: _decode_one (decoder threads)", "mer_di.pipeline.frames", "_decode_one", None),
    ("  read_frame (read + decode; + 1st-frame probe)", "mer_di.pipeline.frames", "read_frame",
     None),
    ("  detect_face (Haar crop, onset frame)", "mer_di.pipeline.frames", "detect_face", None),
    ("make_record (main thread)", "mer_di.pipeline.clip_pool", "make_record", None),
    ("  kernel: clip_dynamic_images", "mer_di.pipeline.clip_record", "clip_dynamic_images",
     None),
    ("  finish_image (resize, RGB)", "mer_di.pipeline.clip_record", "finish_image", None),
    ("  spot_apex (the clips without a usable apex)", "mer_di.pipeline.clip_record",
     "spot_apex", None),
    ("PartStore.save (main thread)", "mer_di.pipeline.writer", "save", "PartStore"),
    ("CacheWriter.add (main thread)", "mer_di.pipeline.writer", "add", "CacheWriter"),
    ("  write_new_attrs", "mer_di.pipeline.writer", "write_new_attrs", None),
    ("CacheWriter.commit (sync, rename)", "mer_di.pipeline.writer", "commit", "CacheWriter"),
    ("  PartStore.load", "mer_di.pipeline.writer", "load", "PartStore"),
)


@contextmanager
def stage_timers(totals: dict[str, list[float]]) -> Iterator[None]:
    """Wrap the build's steps (:data:`STAGES`, those that exist) to add up, per step, the
    calls, wall seconds and CPU seconds of the calling thread; restored on exit."""
    import importlib

    lock = threading.Lock()
    undo = []
    for label, module_name, attr, cls_name in STAGES:
        try:
            owner = importlib.import_module(module_name)
        except ImportError:  # an older tree (PYTHONPATH), without this module
            continue
        if cls_name is not None:
            owner = getattr(owner, cls_name, None)
        fn = getattr(owner, attr, None) if owner is not None else None
        if fn is None:
            continue
        totals[label] = [0, 0.0, 0.0]

        def wrapper(*a, _fn=fn, _label=label, **k):
            w0, c0 = time.perf_counter(), time.thread_time()
            try:
                return _fn(*a, **k)
            finally:
                dw, dc = time.perf_counter() - w0, time.thread_time() - c0
                with lock:
                    t = totals[_label]
                    t[0] += 1
                    t[1] += dw
                    t[2] += dc

        setattr(owner, attr, wrapper)
        undo.append((owner, attr, fn))
    try:
        yield
    finally:
        for owner, attr, fn in reversed(undo):
            setattr(owner, attr, fn)


def profile_build(build: Callable[[], object], workers: int) -> dict:
    """One extra (untimed) call of ``build`` with every step of :data:`STAGES` timed in
    place: per step its calls, wall seconds and the calling thread's CPU seconds."""
    totals: dict[str, list[float]] = {}
    with stage_timers(totals):
        c0, w0 = time.process_time(), time.perf_counter()
        build()
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return {"workers": workers, "wall_s": wall, "process_cpu_s": cpu,
            "stages": {k: {"calls": int(n), "wall_s": w, "thread_cpu_s": c}
                       for k, (n, w, c) in totals.items()}}
