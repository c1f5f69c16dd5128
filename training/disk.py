"""How much a run writes, said before it starts, and refused when the disk can't hold it.

A unit folder holds small CSV/JSON records (a few KB) and, with checkpoints on, its chosen
weights: 4 bytes per parameter and buffer element (float32), about 532 MiB for VGG-19,
so checkpoints decide the size of a run (Table I's six models: about 1.4 GiB per
configuration and fold).
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

from mer_di.errors import RunError

RECORDS_BYTES = 64 * 1024  # history, predictions and scores of one unit, generously
MARGIN = 1.1  # what the estimate leaves for the file system and the report


@functools.cache
def checkpoint_bytes(model: str, num_classes: int, tiny: bool = False,
                     backbone: str | None = None) -> int:
    """Bytes of one ``model.pt`` of ``model``: its state_dict in float32, counted on the
    meta device (nothing allocated)."""
    from mer_di.training.models.registry import _on_meta, build_model

    with _on_meta():
        built, _ = build_model(model, num_classes, tiny=tiny, backbone=backbone)
    return 4 * sum(t.numel() for t in built.state_dict().values()) + 4096


def run_bytes(plan, todo=None) -> int:
    """Bytes the units ``todo`` (default: all) of ``plan`` will write."""
    spec = plan.spec
    units = plan.units if todo is None else todo
    n_classes = len(plan.clips.classes)
    total = 0
    for unit in units:
        total += RECORDS_BYTES
        if spec.checkpoints:
            total += checkpoint_bytes(unit.model, n_classes, spec.tiny, spec.backbone)
    return total


def human(n: float) -> str:
    """``1.44 GiB``, ``532 MiB``, ``64 KiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit in ("B", "KiB", "MiB") else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} TiB"


def check_space(folder: str | Path, needed: int, what: str, hint: str) -> str:
    """The line saying how much ``what`` will write into ``folder``; :class:`RunError`
    when the disk holding it has less free space than that (with ``hint``: how to need
    less)."""
    folder = Path(folder)
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    line = f"{what} will write about {human(needed)} into {folder} ({human(free)} free)"
    if needed * MARGIN > free:
        raise RunError(f"{line}: not enough space; free some, choose another --out, or "
                       f"{hint}")
    return line
