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
    """The images ``names`` of ``clips`` (default every one present: ``full``, ``onset``,
    ``offset``, ``apex_frame``) as model input [shape=(rows, 3, size, size), float32] on
    ``device``, resized and normalised with ``mean`` and ``std`` (see
    :func:`mer_di.training.augment.prepare_images`). A run prepares only the images its
    units use (:func:`needed_images`): on a GPU each image of CASME II at 224 px is 0.6 MB.
    """

    def __init__(self, clips: ClipSet, size: int, mean: tuple[float, float, float],
                 std: tuple[float, float, float], device: torch.device | str = "cpu",
                 names: tuple[str, ...] = IMAGES):
        self.key = (size, tuple(mean), tuple(std), tuple(names))
        self.n = len(clips)
        self._start: dict[str, int] = {}
        arrays = []
        for name in IMAGES:
            array = clips.images(name) if name in names else None
            if array is not None:
                self._start[name] = self.n * len(arrays)
                arrays.append(array)
        self.tensor = prepare_images(np.concatenate(arrays), size, mean, std, device)

    def rows(self, name: str, idx: np.ndarray) -> np.ndarray:
        """Rows of image ``name`` of clips ``idx`` [shape=(n,), int64]."""
        return self._start[name] + np.asarray(idx, np.int64)


def bank_key(plan, cfg) -> tuple:
    """What the bank of model ``cfg`` (a ModelCfg) under ``plan`` is made of; two models
    with the same key share one bank (its ``key``)."""
    if getattr(cfg, "input_kind", "di") == "flow":
        from mer_di.training.flow_input import needed_flow_phases

        return (cfg.input_size, needed_flow_phases(plan.spec.configs))
    return (cfg.input_size, tuple(cfg.mean), tuple(cfg.std), needed_images(plan))


def model_bank(plan, cfg, device: torch.device | str = "cpu"):
    """The input of model ``cfg`` for the clips of ``plan``: a
    :class:`mer_di.training.flow_input.FlowBank` of the flow phases the plan's
    configurations need for a flow model (``input_kind`` "flow"), else an
    :class:`ImageBank` of :func:`needed_images`. Its ``key`` is :func:`bank_key`'s."""
    if getattr(cfg, "input_kind", "di") == "flow":
        from mer_di.training.flow_input import clip_set_flow_bank

        return clip_set_flow_bank(plan.clips, plan.spec.configs, cfg.input_size, device)
    return ImageBank(plan.clips, cfg.input_size, cfg.mean, cfg.std, device,
                     needed_images(plan))


def needed_images(plan) -> tuple[str, ...]:
    """The images the units of ``plan`` read: the apex frame alone for ``--input apex``;
    otherwise ``full``, and the phase images when a configuration is dual-phase or a model
    takes the pair."""
    spec = plan.spec
    if spec.input == "apex":
        return (APEX_FRAME,)
    from mer_di.training.configs import get_config

    phases = (any(get_config(c).dual for c in spec.configs)
              or any(cfg.pair for cfg in plan.cfgs.values()))
    return ("full", "onset", "offset") if phases else ("full",)


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
