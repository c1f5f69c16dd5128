"""Dynamic images of micro-expression clips into one HDF5 cache (no torch here).

Public: :func:`build_cache` with :class:`BuildOptions` (a dataset folder and its sheet ->
the cache), :func:`open_cache` (read it: clip records, arrays on request),
:func:`clip_dynamic_images` and :func:`rank_pool_weights` (the kernel on frames in memory).

They load when first used, so ``mer-prep`` starts without h5py and numba.
"""

from __future__ import annotations

from mer_di._lazy import lazy_names

__all__ = ["BuildOptions", "BuildReport", "Cache", "CachedClip", "ClipImages", "build_cache",
           "clip_dynamic_images", "open_cache", "rank_pool_weights"]
__getattr__, __dir__ = lazy_names(__name__, {
    **dict.fromkeys(("BuildOptions", "BuildReport", "build_cache"), "mer_di.pipeline.build"),
    **dict.fromkeys(("ClipImages", "clip_dynamic_images", "rank_pool_weights"),
                    "mer_di.pipeline.dynamic_image"),
    **dict.fromkeys(("Cache", "open_cache"), "mer_di.pipeline.cache_reader"),
    "CachedClip": "mer_di.pipeline.store",
}, __all__)
