"""Dynamic images of micro-expression clips into one HDF5 cache (no torch here).

Public: :func:`build_cache` with :class:`BuildOptions` (a dataset folder and its sheet ->
the cache), :func:`open_cache` (read it: clip records, arrays on request),
:func:`clip_dynamic_images` and :func:`rank_pool_weights` (the kernel on frames in memory).
"""

from mer_di.pipeline.build import BuildOptions, BuildReport, build_cache
from mer_di.pipeline.dynamic_image import ClipImages, clip_dynamic_images, rank_pool_weights
from mer_di.pipeline.store import Cache, CachedClip, open_cache

__all__ = ["BuildOptions", "BuildReport", "Cache", "CachedClip", "ClipImages", "build_cache",
           "clip_dynamic_images", "open_cache", "rank_pool_weights"]
