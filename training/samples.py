"""Samples of a fold: which image of which clip a model sees, as rows of one tensor.

:class:`ImageBank` prepares the images of a clip set once for a model's input (size,
normalisation) and is the only place that knows where each image's row is; the samples
of a unit are rows of it, so a fold, a configuration or an epoch never copies the images.
"""

from __future__ import annotations

import numpy as np
import torch

from mer_di.pipeline.store import APEX_FRAME, IMAGES, JITTER_PHASES
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
        self.jitter_entries = 0  # 2K+1 of the jitter_* images held (--apex-jitter K)
        arrays = []
        rows = 0
        for name in (*IMAGES, *JITTER_PHASES):
            array = clips.images(name) if name in names else None
            if array is not None:
                self._start[name] = rows
                rows += len(array)
                arrays.append(array)
                if name in JITTER_PHASES:
                    self.jitter_entries = len(array) // max(self.n, 1)
        self.tensor = prepare_images(np.concatenate(arrays), size, mean, std, device)

    def rows(self, name: str, idx: np.ndarray) -> np.ndarray:
        """Rows of image ``name`` of clips ``idx`` [shape=(n,), int64]."""
        return self._start[name] + np.asarray(idx, np.int64)

    def jitter_rows(self, name: str, idx: np.ndarray, entry: np.ndarray) -> np.ndarray:
        """Rows of entry ``entry`` [shape=(n,)] of the ``jitter_*`` image ``name`` of clips
        ``idx`` [shape=(n,)]."""
        return (self._start[name] + np.asarray(idx, np.int64) * self.jitter_entries
                + np.asarray(entry, np.int64))


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
    if phases and getattr(spec, "apex_jitter", 0):  # the shifted apexes' phase images
        return ("full", "onset", "offset", *JITTER_PHASES)
    return ("full", "onset", "offset") if phases else ("full",)


def unit_samples(clips: ClipSet, bank: ImageBank, idx: np.ndarray, pair: bool, dual: bool,
                 apex_frame: bool = False, jitter_seed: int | None = None) -> Samples:
    """Samples of clips ``idx`` with their labels.

    Single-image models: each clip's ``full`` image, plus its valid ``onset`` and
    ``offset`` images when ``dual``. Pair models: each clip's (``onset``, ``offset``)
    pair, a missing phase image replaced by the clip's ``full`` image. ``apex_frame``:
    each clip's apex frame instead (the motion-free control).

    ``jitter_seed`` (``--apex-jitter``, training clips only; the bank holds the
    ``jitter_*`` images): each clip with a valid shift takes, each epoch, the phase images
    of one shift drawn uniformly from its valid ones (:func:`jitter_draw`) in place of its
    ``onset`` and ``offset``; the samples' ``draw`` gives each epoch's rows.
    """
    idx = np.asarray(idx, np.int64)
    if jitter_seed is not None and bank.jitter_entries and (pair or dual):
        return _jittered_samples(clips, bank, idx, pair, jitter_seed)
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


def jitter_draw(valid: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """Per clip, the jitter entry of epoch ``epoch`` (1-based): one of its valid entries
    (``valid`` [shape=(n, 2K+1), bool], each row with one or more), uniformly, from a
    generator seeded with (``seed``, ``epoch``) alone: the same unit draws the same
    shifts on every run, resumed or on Ray."""
    rng = np.random.default_rng([int(seed), int(epoch), 194])  # 19.4: its own stream
    counts = valid.sum(axis=1)
    pick = np.minimum((rng.random(len(valid)) * counts).astype(np.int64), counts - 1)
    return np.argmax(np.cumsum(valid, axis=1) > pick[:, None], axis=1).astype(np.int64)


def _jittered_samples(clips: ClipSet, bank: ImageBank, idx: np.ndarray, pair: bool,
                      seed: int) -> Samples:
    """:func:`unit_samples` under ``--apex-jitter``: the layout of the unjittered samples
    (clips with a valid shift giving both phase images), the phase rows of each epoch
    drawn by :func:`jitter_draw`; ``index`` holds epoch 1's."""
    labels = clips.labels
    valid = clips.jitter_valid[idx]
    jit = valid.any(axis=1)  # the clips that take shifted apexes; the others as before
    full = bank.rows("full", idx)
    if pair:
        base_on = np.where(clips.has_onset[idx], bank.rows("onset", idx), full)
        base_off = np.where(clips.has_offset[idx], bank.rows("offset", idx), full)
        ys = labels[idx]
    else:
        on_sel = clips.has_onset[idx] | jit
        off_sel = clips.has_offset[idx] | jit
        ys = np.concatenate([labels[idx], labels[idx[on_sel]], labels[idx[off_sel]]])
    j_idx = idx[jit]

    def rows_of(epoch: int) -> torch.Tensor:
        entry = jitter_draw(valid[jit], seed, epoch)
        on, off = (np.where(clips.has_onset[idx], bank.rows("onset", idx), full),
                   np.where(clips.has_offset[idx], bank.rows("offset", idx), full))
        on[jit] = bank.jitter_rows("jitter_onset", j_idx, entry)
        off[jit] = bank.jitter_rows("jitter_offset", j_idx, entry)
        if pair:
            return torch.from_numpy(np.stack([on, off], 1))
        return torch.from_numpy(np.concatenate([full, on[on_sel], off[off_sel]]))

    if pair:
        del base_on, base_off
    return Samples(rows_of(1), torch.from_numpy(ys), draw=rows_of)
