"""Optical flow as a flow model sees it: scaling, augmentation, and the samples of a unit.

A clip's flow phases (written by the build, issue 19.1) are ``flow_onset_apex`` and, for
the phase-aware configurations, ``flow_apex_offset``: each [shape=(H, W, 3), float32],
channels u (horizontal flow, pixels per frame pair at the stored size, + to the right),
v (vertical flow, + downwards) and optical strain (the magnitude of the strain tensor of
(u, v), >= 0, per pixel). The models that read them declare ``ModelCfg.input_kind ==
"flow"`` (:mod:`mer_di.training.models.flow_models`).

Normalisation (:func:`prepare_flow`, the one place it is done): per image, u and v are
divided by the largest flow magnitude sqrt(u^2 + v^2) of that image, so they lie in
[-1, 1] with the direction of every vector kept, and the strain is divided by its own
largest value, into [0, 1]; a field without motion (largest value below :data:`NO_MOTION`)
becomes 0. Why per image: the raw values are in pixels per frame pair at the stored size,
so they change with the build's ``--size``, the camera's frame rate (SMIC 100 fps,
CASME II and SAMM 200 fps) and the onset-apex distance; in a composite run raw magnitudes
would tell the model the dataset rather than the expression. The field's models are fed
per-image normalised flow too (STSTNet's authors feed images of "norm_u_v_os", 8 bits per
channel). Why not min-max (as dynamic images are scaled): it moves zero, and zero must
stay "no motion", because the corners a rotation brings in (:func:`flow_flip_rotate`) and
a phase without a flow are 0. The cost: the overall intensity of a motion is not seen,
only its pattern (relative magnitudes and directions within the face).

The phase-aware configurations (``dualdi``, ``dualdi+fliprot``) take, as dual-DI does with
the phase dynamic images, a training clip's onset->apex and apex->offset flows as two
samples with the clip's label (:func:`flow_unit_samples`); validation and test clips give
their onset->apex flow only, as every flow model of the field is tested.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from mer_di.errors import DataError
from mer_di.training.augment import draw_flip_rotate, flip_rotate
from mer_di.training.loop import Samples

FLOW_ONSET_APEX = "flow_onset_apex"
FLOW_APEX_OFFSET = "flow_apex_offset"
FLOW_PHASES = (FLOW_ONSET_APEX, FLOW_APEX_OFFSET)
FLOW_CHANNELS = ("u", "v", "strain")
NO_MOTION = 1e-6  # pixels per frame pair (and its strain): below it, a field is "no motion"
CHUNK = 256  # images scaled at a time


def prepare_flow(images: np.ndarray, size: int, device: torch.device | str = "cpu"
                 ) -> torch.Tensor:
    """Flow phases [shape=(N, H, W, 3), float32: u, v, strain] -> flow-model input
    [shape=(N, 3, size, size), float32] on ``device``.

    Each image is resized to ``size`` (area averaging when shrinking, bilinear when
    growing, as :func:`mer_di.training.augment.prepare_images` resizes dynamic images);
    u is multiplied by ``size / W`` and v by ``size / H`` so that the vectors are
    displacements on the resized grid (a non-square image keeps its directions); then u
    and v are divided by the image's largest magnitude sqrt(u^2 + v^2), into [-1, 1], and
    the strain by its largest absolute value, into [0, 1] (a magnitude is never negative).
    A channel pair or strain whose largest value is below :data:`NO_MOTION` becomes 0.

    Raises ValueError for a shape other than (N, H, W, 3), a ``size`` below 1 or a
    non-finite value.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[3] != len(FLOW_CHANNELS):
        raise ValueError(f"flow images must be (N, H, W, 3) (u, v, strain), not "
                         f"{images.shape}")
    if size < 1:
        raise ValueError(f"size must be 1 or more, not {size}")
    if not np.isfinite(images).all():
        raise ValueError("flow images hold non-finite values (NaN or inf)")
    n, h, w, _ = images.shape
    out = torch.empty((n, 3, size, size), dtype=torch.float32, device=device)
    grid = torch.tensor([size / w, size / h], dtype=torch.float32, device=device).view(1, 2, 1, 1)
    for i in range(0, n, CHUNK):
        x = torch.from_numpy(np.ascontiguousarray(images[i:i + CHUNK], np.float32)).to(device)
        x = x.permute(0, 3, 1, 2)
        if (h, w) != (size, size):
            mode = "area" if h >= size and w >= size else "bilinear"
            x = F.interpolate(x, size=(size, size), mode=mode,
                              **({} if mode == "area" else {"align_corners": False}))
        uv = x[:, :2] * grid
        largest = uv.square().sum(1).sqrt().flatten(1).max(1).values.view(-1, 1, 1, 1)
        out[i:i + CHUNK, :2] = torch.where(largest >= NO_MOTION, uv / largest.clamp_min(
            NO_MOTION), torch.zeros_like(uv))
        strain = x[:, 2:]
        peak = strain.abs().flatten(1).max(1).values.view(-1, 1, 1, 1)
        out[i:i + CHUNK, 2:] = torch.where(peak >= NO_MOTION, strain / peak.clamp_min(
            NO_MOTION), torch.zeros_like(strain))
    return out


def flow_flip_rotate(batch: torch.Tensor, flip: torch.Tensor, angle: torch.Tensor
                     ) -> torch.Tensor:
    """:func:`mer_di.training.augment.flip_rotate` for flow [shape=(B, 3, H, W) -> same]:
    the pixels are moved as there, and the vectors (u, v) turned with them.

    Moving pixels alone would be wrong for a vector field: a face mirrored left to right
    moves to the left where it moved to the right. ``flip_rotate`` samples output pixel p
    at ``A p`` with ``A = R(angle) diag(s, 1)`` (s = -1 where flipped), so the content's
    displacements become ``A^-1 (u, v)``: ``u' = s (cos u + sin v)``,
    ``v' = -sin u + cos v``. The strain (a norm of the strain tensor, unchanged by
    mirroring and rotation) is only moved. Corners rotated in from outside are 0: no motion.
    """
    if batch.dim() != 4 or batch.shape[1] < 2:
        raise ValueError(f"flow batch must be (B, C >= 2, H, W), not {tuple(batch.shape)}")
    out = flip_rotate(batch, flip, angle)
    angle = angle.to(batch.device, batch.dtype).view(-1, 1, 1)
    sign = (1.0 - 2.0 * flip.to(batch.device, batch.dtype)).view(-1, 1, 1)
    cos, sin = torch.cos(angle), torch.sin(angle)
    u, v = out[:, 0], out[:, 1]
    turned = torch.stack([sign * (cos * u + sin * v), cos * v - sin * u], 1)
    return torch.cat([turned, out[:, 2:]], 1)


def random_flow_flip_rotate(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """:func:`flow_flip_rotate` with the draws of
    :func:`mer_di.training.augment.draw_flip_rotate` (flip p = 0.5, +-10 degrees)."""
    return flow_flip_rotate(batch, *draw_flip_rotate(batch.shape[0], generator))


class FlowBank:
    """The flow phases of a clip set as flow-model input [shape=(rows, 3, size, size),
    float32] on ``device``, scaled by :func:`prepare_flow`; the same interface as
    :class:`mer_di.training.samples.ImageBank` (``tensor``, ``rows``, ``key``), so a unit
    trains on it with :func:`mer_di.training.loop.fit` unchanged.

    ``phases``: phase name (:data:`FLOW_PHASES`) -> [shape=(N, H, W, 3), float32] or None,
    clip ``i`` at row ``i``; ``flow_onset_apex`` is required. ``valid``: phase name ->
    [shape=(N,), bool], the clips whose flow of that phase exists (default: all); a clip
    without an apex->offset flow (e.g. apex = last frame) gives no second sample.
    """

    def __init__(self, phases: Mapping[str, np.ndarray | None], size: int,
                 device: torch.device | str = "cpu",
                 valid: Mapping[str, np.ndarray] | None = None):
        unknown = sorted(set(phases) - set(FLOW_PHASES))
        if unknown:
            raise ValueError(f"unknown flow phase(s) {', '.join(unknown)}: give "
                             f"{' or '.join(FLOW_PHASES)}")
        names = tuple(p for p in FLOW_PHASES if phases.get(p) is not None)
        if FLOW_ONSET_APEX not in names:
            raise ValueError(f"a flow bank needs {FLOW_ONSET_APEX}")
        self.n = len(phases[FLOW_ONSET_APEX])
        if any(len(phases[p]) != self.n for p in names):
            raise ValueError("every flow phase needs one image per clip: "
                             + ", ".join(f"{p} {len(phases[p])}" for p in names))
        valid = dict(valid or {})
        self.valid = {p: np.ones(self.n, bool) if valid.get(p) is None
                      else np.asarray(valid[p], bool) for p in names}
        if any(v.shape != (self.n,) for v in self.valid.values()):
            raise ValueError(f"valid masks must be (N,) = ({self.n},)")
        self.names = names
        self.key = (size, names)
        self._start = {p: self.n * i for i, p in enumerate(names)}
        self.tensor = prepare_flow(np.concatenate([phases[p] for p in names]), size, device)

    def rows(self, name: str, idx: np.ndarray) -> np.ndarray:
        """Rows of flow phase ``name`` of clips ``idx`` [shape=(n,), int64]."""
        return self._start[name] + np.asarray(idx, np.int64)


def flow_unit_samples(labels: np.ndarray, bank: FlowBank, idx: np.ndarray,
                      dual: bool) -> Samples:
    """Samples of clips ``idx`` [shape=(n,), int64] for a flow model, with their labels
    [shape=(N,), int64] (the clip set's ``labels``).

    Each clip's onset->apex flow; with ``dual`` (the phase-aware configurations, training
    samples only), also its apex->offset flow where it has one, as a second sample with
    the same label: the flow analogue of :func:`mer_di.training.samples.unit_samples`,
    which adds the ``onset`` and ``offset`` dynamic images. Raises ValueError for ``dual``
    on a bank without ``flow_apex_offset``.
    """
    idx = np.asarray(idx, np.int64)
    labels = np.asarray(labels)
    rows, ys = [bank.rows(FLOW_ONSET_APEX, idx)], [labels[idx]]
    if dual:
        if FLOW_APEX_OFFSET not in bank.names:
            raise ValueError(f"a phase-aware configuration needs {FLOW_APEX_OFFSET} in the "
                             "flow bank")
        sel = idx[bank.valid[FLOW_APEX_OFFSET][idx]]
        rows.append(bank.rows(FLOW_APEX_OFFSET, sel))
        ys.append(labels[sel])
    return Samples(torch.from_numpy(np.concatenate(rows)), torch.from_numpy(np.concatenate(ys)))


def clip_set_flow_bank(clips, configs: Iterable[str], size: int,
                       device: torch.device | str = "cpu") -> FlowBank:
    """The :class:`FlowBank` of a :class:`mer_di.training.data.ClipSet` for units under
    ``configs`` (:func:`needed_flow_phases`): its ``flow`` arrays, the apex->offset flow
    valid where ``has_flow`` says. Raises :class:`DataError` when the clip set lacks a
    phase the configurations need (see :func:`check_flow_input`)."""
    phases = needed_flow_phases(configs)
    missing = [p for p in phases if p not in clips.flow_phases]
    if missing:
        raise DataError(f"the clips hold no {' or '.join(missing)}: build the cache with "
                        "optical flow (mer-prep build-cache --flow dis)")
    valid = {p: clips.has_flow[p] for p in phases if p != FLOW_ONSET_APEX}
    return FlowBank({p: clips.flow[p] for p in phases}, size, device, valid=valid)


def input_label(spec: Mapping[str, object]) -> str:
    """What a run's models were fed, for its summary: ``spec`` is its ``config.json``'s
    spec (``input``, ``models``); each model's declared input decides (``input_kind``)."""
    if spec.get("input") == "apex":
        return "the apex frame alone (control)"
    from mer_di.training.models import is_known, model_cfg

    models = [str(m) for m in spec.get("models") or ()]
    flow = [m for m in models if is_known(m) and model_cfg(m).input_kind == "flow"]
    if not flow:
        return "dynamic images"
    di = [m for m in models if m not in flow]
    return ("optical flow" + (f" ({', '.join(flow)}), dynamic images ({', '.join(di)})"
                              if di else ""))


def needed_flow_phases(configs: Iterable[str]) -> tuple[str, ...]:
    """The flow phases units under ``configs`` read: both where one is phase-aware
    (``dualdi*``), else the onset->apex flow alone."""
    from mer_di.training.configs import get_config

    if any(get_config(c).dual for c in configs):
        return FLOW_PHASES
    return (FLOW_ONSET_APEX,)


def check_flow_input(cfgs: Mapping[str, object], available: Iterable[str],
                     configs: Iterable[str], cache: str = "the cache") -> None:
    """Refuse, before anything trains, flow models (``cfgs``: model name -> ModelCfg)
    over a cache without the flow phases their configurations need.

    ``available``: the flow phases every clip of the caches has (empty for a cache built
    without flow). Raises :class:`DataError` naming the models, the phases and the cache.
    """
    flow = sorted(m for m, cfg in cfgs.items() if getattr(cfg, "input_kind", "di") == "flow")
    if not flow:
        return
    missing = [p for p in needed_flow_phases(configs) if p not in set(available)]
    if missing:
        raise DataError(f"model(s) {', '.join(flow)} are fed optical flow, but {cache} "
                        f"holds no {' or '.join(missing)}: build the cache with optical "
                        "flow (a cache built before it has dynamic images only)")
