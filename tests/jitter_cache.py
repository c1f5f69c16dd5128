"""Tests' stand-in for ``mer-prep build-cache --apex-jitter K`` (issue 19.4a): adds the
shifted-apex images to a cache in its layout (:mod:`mer_di.training.robustness`), made by
the build's own code (each shift a sheet row with the apex moved, through
:func:`mer_di.pipeline.build.pool_clips`), so the images are what the build makes. What a
cache already holds is kept: over a build made with ``--apex-jitter`` it adds only what
that build does not make (``jitter_flow_onset_apex``, the flow at shifted apexes)."""

from __future__ import annotations

import dataclasses
from contextlib import closing
from pathlib import Path

import h5py
import numpy as np

from mer_di.data_manifest import build_manifest
from mer_di.pipeline.build import BuildOptions, pool_clips


def _records(rows, options: BuildOptions) -> dict[str, object]:
    with closing(pool_clips([(r, "") for r in rows], options)) as pooled:
        return {done.row.key: done.record for done in pooled if done.record is not None}


def add_jitter(cache: Path, dataset: str, root: Path, k: int, size: int,
               flow: bool = False) -> None:
    """Write ``apex_jitter`` K, ``jitter_onset``/``jitter_offset`` (and with ``flow``
    ``jitter_flow_onset_apex``), ``jitter_shifts``, ``spotted_onset``/``spotted_offset``
    into ``cache`` (built with ``BuildOptions(size=size)`` from ``root``)."""
    rows = [r for r in build_manifest(dataset, root, classes="all").rows if r.full_ok]
    with h5py.File(cache, "r") as f:
        sheet = {r.key: r for r in rows if r.key in f
                 and f[r.key].attrs.get("apex_source") == "sheet" and "onset" in f[r.key]}
    base = BuildOptions(size=size, apex="sheet", workers=1, flow="farneback" if flow else None)
    shifted = {}
    for s in range(-k, k + 1):
        moved = [dataclasses.replace(r, apex=r.apex + s, onset_ok=True, offset_ok=True)
                 for r in sheet.values() if r.onset < r.apex + s < r.offset]
        shifted[s] = _records(moved, base)
    spotted = _records(list(sheet.values()), dataclasses.replace(base, apex="spot", flow=None))
    with h5py.File(cache, "r+") as f:
        f.attrs["apex_jitter"] = int(f.attrs.get("apex_jitter", k)) or k
        for key in sheet:
            g = f[key]
            if "jitter_onset" in g and (not flow or "jitter_flow_onset_apex" in g):
                continue
            shape = g["onset"].shape
            arrays = {"jitter_onset": np.zeros((2 * k + 1, *shape), np.float32),
                      "jitter_offset": np.zeros((2 * k + 1, *shape), np.float32)}
            if flow:
                arrays["jitter_flow_onset_apex"] = np.zeros((2 * k + 1, *shape[:2], 3),
                                                            np.float32)
            valid = []
            for s in range(-k, k + 1):
                record = shifted[s].get(key)
                if record is None:
                    continue
                valid.append(s)
                for phase in ("onset", "offset"):  # entry K: the cache's own, byte for byte
                    image = g[phase][()] if s == 0 else record.images.get(phase)
                    if image is not None:
                        arrays[f"jitter_{phase}"][k + s] = image
                if flow:
                    image = (g["flow_onset_apex"][()] if s == 0 else
                             record.images.get("flow_onset_apex"))
                    if image is not None:
                        arrays["jitter_flow_onset_apex"][k + s] = image
            for name, array in arrays.items():
                if name not in g:
                    g.create_dataset(name, data=array)
            if "jitter_shifts" in g.attrs:
                continue
            g.attrs["jitter_shifts"] = np.array(valid, np.int64)
            record = spotted.get(key)
            if record is not None and record.attrs.get("spotted_apex") != "":
                at = int(record.attrs["spotted_apex"])
                g.attrs["spotted_apex"] = at
                if sheet[key].onset < at < sheet[key].offset:
                    for phase in ("onset", "offset"):
                        if phase in record.images:
                            g.create_dataset(f"spotted_{phase}", data=record.images[phase])
