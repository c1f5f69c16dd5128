"""Samples of a fold: which image of which clip a model sees, as rows of one tensor.

:class:`ImageBank` prepares the images of a clip set once for a model's input (size,
normalisation) and is the only place that knows where each image's row is; the samples
of a unit are rows of it, so a fold, a configuration or an epoch never copies the images.
"""

from __future__ import annotations

import numpy as np
import torch

from mer_di.pipeline.store import APEX_FRAME, IMAGES
from mer_di.training.augment import prepare_images
from mer_di.training.data import ClipSet
from mer_di.training.loop import Samples


class ImageBank:
    """Every image of ``clips`` (``full``, ``onset``, ``offset``, ``apex_frame`` where
    present) as model input [shape=(rows, 3, size, size)] on ``device``, resized and
    normalised with ``mean`` and ``std`` (see :func:`mer_di.training.augment.prepare_images`).
    """

    def __init__(self, clips: ClipSet, size: int, mean: tuple[float, float, float],
                 std: tuple[float, float, float], device: torch.device | str = "cpu"):
        self.key = (size, tuple(mean), tuple(std))
        self.n = len(clips)
        self._start: dict[str, int] = {}
        arrays = []
        for name in IMAGES:
            array = clips.images(name)
            if array is not None:
                self._start[name] = self.n * len(arrays)
                arrays.append(array)
        self.tensor = prepare_images(np.concatenate(arrays), size, mean, std, device)

    def rows(self, name: str, idx: np.ndarray) -> np.ndarray:
        """Rows of image ``name`` of clips ``idx`` [shape=(n,), int64]."""
        return self._start[name] + np.asarray(idx, np.int64)


def unit_samples(clips: ClipSet, bank: ImageBank, idx: np.ndarray, pair: bool, dual: bool,
                 apex_frame: bool = False) -> Samples:
    """Samples of clips ``idx`` with their labels.

    Single-image models: each clip's ``full`` image, plus its valid ``onset`` and
    ``offset`` images when ``dual``. Pair models: each clip's (``onset``, ``offset``)
    pair, a missing phase image replaced by the clip's ``full`` image. ``apex_frame``:
    each clip's apex frame instead (the motion-free control).
    """
    idx = np.asarray(idx, np.int64)
    labels = clips.labels
    if apex_frame:
        return Samples(torch.from_numpy(bank.rows(APEX_FRAME, idx)),
                       torch.from_numpy(labels[idx]))
    full = bank.rows("full", idx)
    if pair:
        on = np.where(clips.has_onset[idx], bank.rows("onset", idx), full)
        off = np.where(clips.has_offset[idx], bank.rows("offset", idx), full)
        return Samples(torch.from_numpy(np.stack([on, off], 1)), torch.from_numpy(labels[idx]))
    rows, ys = [full], [labels[idx]]
    if dual:
        for phase, has in (("onset", clips.has_onset), ("offset", clips.has_offset)):
            sel = idx[has[idx]]
            rows.append(bank.rows(phase, sel))
            ys.append(labels[sel])
    return Samples(torch.from_numpy(np.concatenate(rows)), torch.from_numpy(np.concatenate(ys)))
