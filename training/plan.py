"""Planning a cross-validation run: the checked specification, the data, the folds, and the
list of independent units (model x configuration x seed x fold) that make it.

Nothing here trains or builds a model: a model's input size and normalisation come from
the registry's metadata (:func:`mer_di.training.models.model_cfg`). Every check that can
fail does so here, before any unit runs.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mer_di.errors import DataError, MerError, ModelError, RunError
from mer_di.options import INPUTS, PROTOCOLS, check
from mer_di.pipeline.cache_reader import open_cache
from mer_di.pipeline.store import MAX_APEX_JITTER
from mer_di.training.configs import applies, get_config
from mer_di.training.data import ClipSet, default_class_set, load_caches
from mer_di.training.determinism import MODES
from mer_di.training.flow_input import check_flow_input
from mer_di.training.folds import make_folds, small_class_notes
from mer_di.training.loop import OPTIMISTIC, TrainOptions
from mer_di.training.models import ModelCfg, check_weights, is_known, model_cfg
from mer_di.training.models.provenance import provenance
from mer_di.training.tags import crop_warnings
from mer_di.training.units import Unit


@dataclass
class CVSpec:
    """Everything that decides a run's numbers (saved as ``config.json``'s ``spec``).

    Parameters
    ----------
    caches : list of str
        Cache files (``mer-prep build-cache``); several combine (the MEGC composite).
    models : list of str
        Registered model names or timm model names.
    configs : list of str
        Training configurations (:data:`mer_di.options.CONFIGS`).
    protocol : str
        ``kfold``, ``subject-kfold``, ``loso`` or ``lodo``; ``folds`` for the first two.
    seeds : list of int
        Each seed draws its own folds, validation split, initialisation and batches.
    classes : str or None
        The class set (:data:`mer_di.options.CLASS_SETS`); None: the datasets' usual one
        (:func:`mer_di.training.data.default_class_set`), resolved when the run is planned.
    clip_list : str or None
        Only the clips this CSV lists (:mod:`mer_di.training.cliplist`): the MEGC
        composite's ``combined_3class_gt.csv``, or a paper's clip list.
    train : TrainOptions
        The loop's settings (epochs, batch size, learning rate, early stopping).
    pretrained : dict
        Weights per model: ``{"*": FILE}`` for every model, ``{model: FILE}`` for one; a
        FILE may be ``"cache"`` (timm's weights from the local hub cache).
    backbone : str or None
        DIANet's stream backbone.
    tiny : bool
        Tiny model variants (quick checks, not results).
    checkpoints : bool
        Save each unit's chosen weights as a self-contained checkpoint (``model.pt``).
    input : str
        ``di`` (dynamic images) or ``apex`` (each clip's apex frame alone, the control).
    final : bool
        Also train one model per (model, configuration, seed) on every clip (for
        ``mer-train predict``); it has no test fold and enters no table.
    determinism : str
        ``reproducible`` (the same numbers on every run, resumed or on Ray) or ``fast``
        (cuDNN autotuning, TF32, channels_last: faster on a GPU, not bit-reproducible);
        see :mod:`mer_di.training.determinism`. The CPU computes the same in both.
    apex_jitter : int
        ``--apex-jitter K``: the training clips of the dual-phase configurations and of
        pair models (DIANet) use, each epoch, their phase images at the apex shifted by a
        random valid shift in -K..K (the caches must be built with ``--apex-jitter`` K or
        more); validation and test clips keep the annotated apex. 0: none.
    apex_robustness : bool
        Also predict each fold's test clips at shifted and spotted apexes with the fold's
        model (DIANet, the flow models; caches built with ``--apex-jitter``): see
        :mod:`mer_di.training.robustness`.
    """

    caches: list[str]
    models: list[str]
    configs: list[str] = field(default_factory=lambda: ["baseline"])
    protocol: str = "kfold"
    folds: int = 5
    seeds: list[int] = field(default_factory=lambda: [0])
    classes: str | None = "five"
    clip_list: str | None = None
    train: TrainOptions = field(default_factory=TrainOptions)
    pretrained: dict[str, str] = field(default_factory=dict)
    backbone: str | None = None
    tiny: bool = False
    checkpoints: bool = True
    input: str = "di"
    final: bool = False
    determinism: str = "reproducible"
    apex_jitter: int = 0
    apex_robustness: bool = False

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    def weights_for(self, model: str) -> str | None:
        """The weights file (or "cache") model ``model`` starts from; None: random."""
        return self.pretrained.get(model, self.pretrained.get("*"))

    def model_cfg(self, model: str) -> ModelCfg:
        """The registry's metadata of ``model`` as this run builds it."""
        return model_cfg(model, tiny=self.tiny, backbone=self.backbone)


@dataclass
class Plan:
    """A checked run: the data, the folds per seed and the units, before any training."""

    spec: CVSpec
    clips: ClipSet
    folds: dict[int, list[np.ndarray]]
    units: list[Unit]
    cfgs: dict[str, ModelCfg]
    skipped: list[str]
    cache_params: list[dict[str, str]]
    notes: list[str] = field(default_factory=list)  # what the run does that a user may not expect
    # per model: which pretrained weights it starts from, for its rows' tag ('' for none)
    weights: dict[str, str] = field(default_factory=dict)


MAX_SEED = (2**32 - 1000) // 1000  # seed * 1000 + fold stays a valid NumPy seed


def resolve_device(device: str) -> torch.device:
    """``auto`` (CUDA when there is one), ``cpu`` or ``cuda[:N]`` as a torch device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    m = re.fullmatch(r"cpu|cuda(?::(\d+))?", device)
    if m is None:  # mps, xpu...: devices this project has never been tested on
        raise RunError(f"--device {device}: give auto, cpu or cuda[:N]")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RunError(f"--device {device}: no CUDA device here")
        n = torch.cuda.device_count()
        if m.group(1) is not None and int(m.group(1)) >= n:
            raise RunError(f"--device {device}: this machine has {n} CUDA device(s), "
                           f"cuda:0 to cuda:{n - 1}")
    return torch.device(device)


def _missing(spec: CVSpec, model: str, path: str) -> str:
    """What a missing weights file is, for ``model`` ("*": each model of the run)."""
    from mer_di.training.models.registry import missing_weights

    target = spec.models[0] if model == "*" else model
    try:
        msg = missing_weights(target, path, tiny=spec.tiny, backbone=spec.backbone)
    except ModelError:  # a model that takes no backbone
        msg = missing_weights(target, path, tiny=spec.tiny)
    return msg + (" (or 'cache' for timm's weights from the local hub cache)")


def plan_run(spec: CVSpec) -> Plan:
    """Check everything a run needs and raise :class:`RunError` (or the data's, folds' or
    configurations' error) before any training."""
    try:
        spec.train.check()
    except ValueError as exc:
        raise RunError(str(exc)) from None
    unknown = [m for m in spec.models if not is_known(m)]
    if unknown:
        raise RunError(f"unknown model(s) {', '.join(unknown)}: not registered and not a timm "
                       "model name")
    for c in spec.configs:
        get_config(c)
    check("protocol", spec.protocol, PROTOCOLS, RunError)
    check("determinism", spec.determinism, MODES, RunError)
    if spec.train.select_epoch == "test-fold" and spec.final:
        raise RunError("--final with --select-epoch test-fold: a final model has no test "
                       "fold to choose its epoch on; run --final without it")
    check("input", spec.input, INPUTS, RunError)
    for model, path in spec.pretrained.items():
        if model != "*" and model not in spec.models:
            raise RunError(f"--pretrained {model}={path}: {model} is not a --model of this run")
        if path not in ("cache", "hub") and not Path(path).is_file():
            raise RunError(f"--pretrained {path}: " + _missing(spec, model, path))
    if not spec.seeds:
        raise RunError("no seeds given")
    bad = [s for s in spec.seeds if not 0 <= s <= MAX_SEED]
    if bad or len(set(spec.seeds)) < len(spec.seeds):
        raise RunError(f"seeds {spec.seeds}: each seed once, in 0..{MAX_SEED} (a unit's "
                       "generators are seeded with seed * 1000 + fold, below 2**32)")
    if spec.classes is None:  # the datasets' usual set, written into the run's record
        spec = dataclasses.replace(spec, classes=default_class_set(spec.caches))
    if isinstance(spec.apex_jitter, bool) or not isinstance(spec.apex_jitter, int) or not (
            0 <= spec.apex_jitter <= MAX_APEX_JITTER):
        raise RunError(f"--apex-jitter {spec.apex_jitter!r}: give a whole number of frames "
                       f"in 0..{MAX_APEX_JITTER}")
    clips = load_caches(spec.caches, spec.classes, spec.clip_list,
                        apex_jitter=spec.apex_jitter)
    if spec.input == "apex" and clips.apex_frame is None:
        raise RunError(f"--input apex: {', '.join(spec.caches)} hold no apex frames (built "
                       "before cache schema 2); rebuild with mer-prep build-cache --rebuild")
    folds = {s: make_folds(spec.protocol, clips.labels, clips.groups, spec.folds, s,
                           datasets=clips.datasets)
             for s in spec.seeds}
    cfgs, units, skipped, weights_tags, weight_notes = {}, [], [], {}, []
    for model in spec.models:
        try:
            cfg = spec.model_cfg(model)
            weights = spec.weights_for(model)
            if weights is not None:
                check_weights(model, len(clips.classes), weights, tiny=spec.tiny,
                              backbone=spec.backbone)
            found = provenance(model, weights, cfg, _timm_name(model, cfg))
        except MerError as exc:
            raise RunError(str(exc)) from None
        cfg = cfgs[model] = found.cfg  # the normalisation the weights file records
        weights_tags[model] = found.tag
        weight_notes += [found.note] if found.note else []
        if spec.input == "apex" and cfg.pair:
            raise RunError(f"--input apex: {model} takes a pair of phase images, not one frame")
        for config in spec.configs:
            why = _inapplicable(spec, model, config, cfg.pair)
            if why:
                skipped.append(f"{model} x {config}: {why}")
                continue
            for s in spec.seeds:
                units += [Unit(model, config, s, k) for k in range(len(folds[s]))]
                if spec.final:
                    units.append(Unit(model, config, s, None))
    # a flow model (STSTNet, OFF-ApexNet) over caches without flow would train on
    # dynamic images under a flow model's name: refused
    check_flow_input(cfgs, getattr(clips, "flow_phases", ()), spec.configs,
                     cache=", ".join(spec.caches))
    flow_models = sorted(m for m, c in cfgs.items() if c.input_kind == "flow")
    if spec.input == "apex" and flow_models:  # the control is a still image, not a flow
        raise DataError(f"--input apex (the apex frame control) and the flow model(s) "
                        f"{', '.join(flow_models)}, which are fed optical flow: run them "
                        "without --input apex")
    if not units:
        raise RunError("nothing to run: " + "; ".join(skipped))
    notes = _upsampling(clips, cfgs) + clips.notes + weight_notes
    notes += _jitter_notes(spec, cfgs)
    notes += small_class_notes(spec.protocol, spec.folds, clips.labels, clips.classes)
    cache_params = []
    for path in spec.caches:
        with open_cache(path) as cache:
            cache_params.append(cache.params)
    notes += crop_warnings(cache_params, spec.caches)
    methods = {str(c): p.get("flow", "none") for c, p in zip(spec.caches, cache_params,
                                                              strict=True)}
    if flow_models and len(set(methods.values())) > 1:  # one model, two kinds of flow
        raise DataError("the caches' optical flow was made by different methods ("
                        + ", ".join(f"{c}: {m}" for c, m in methods.items()) + f"), and "
                        f"{', '.join(flow_models)} would learn the method with the dataset: "
                        "build them with one --flow (it is added without recomputing the "
                        "dynamic images)")
    if spec.apex_robustness:  # checked before any training: the caches' shifted apexes
        from mer_di.training.robustness import check_robustness

        notes += check_robustness(spec, cfgs)
    if spec.train.select_epoch == "test-fold":
        notes.append(f"--select-epoch test-fold ({OPTIMISTIC}): each fold's epoch and early "
                     "stop are chosen on its own test fold, as the paper's protocol did; for "
                     "replication only, its numbers are optimistic")
    return Plan(spec, clips, folds, units, cfgs, skipped, cache_params, notes, weights_tags)


def _timm_name(model: str, cfg: ModelCfg) -> str | None:
    """The timm name (with its default tag) whose weights ``model`` starts from: its own,
    or its backbone's (DIANet); None for a model outside timm (VGG-Face, LEARNet)."""
    from mer_di.training.models.timm_models import arch_of, timm_cfg

    if cfg.from_scratch or not cfg.weights_file or cfg.weights_file == "vgg_face_dag.pth":
        return None
    stream = cfg.weights_file.removesuffix(".pth")
    tag = timm_cfg(stream).get("tag")
    return f"{arch_of(stream)}.{tag}" if tag else stream


def jitter_applies(spec: CVSpec, cfg: ModelCfg, config: str) -> bool:
    """Whether ``--apex-jitter`` changes the training samples of ``cfg``'s model under
    ``config``: dynamic-image models whose training reads the phase images (dual-phase
    configurations, pair models), not the flow models nor ``--input apex``."""
    return (spec.apex_jitter > 0 and spec.input == "di" and cfg.input_kind != "flow"
            and (cfg.pair or get_config(config).dual))


def _jitter_notes(spec: CVSpec, cfgs: dict[str, ModelCfg]) -> list[str]:
    """What ``--apex-jitter`` does in this run, and where it does nothing."""
    if not spec.apex_jitter:
        return []
    k = spec.apex_jitter
    used = sorted({f"{m} x {c}" for m, cfg in cfgs.items() for c in spec.configs
                   if applies(c, cfg.pair) and jitter_applies(spec, cfg, c)})
    if not used:
        return [f"--apex-jitter {k}: no unit of this run reads phase images in training "
                "(a dual-phase configuration or dianet), so it changes nothing"]
    notes = [f"--apex-jitter {k}: the training clips of {', '.join(used)} take, each epoch, "
             f"their phase images at the apex shifted by a random valid shift in -{k}..{k} "
             "frames (seeded by the unit's seed and the epoch); validation and test clips "
             "keep the annotated apex"]
    flow = sorted(m for m, cfg in cfgs.items() if cfg.input_kind == "flow")
    if flow:
        notes.append(f"--apex-jitter {k}: not applied to the flow model(s) {', '.join(flow)} "
                     "(their input is the cache's onset->apex flow)")
    return notes


def _upsampling(clips: ClipSet, cfgs: dict[str, ModelCfg]) -> list[str]:
    """A note for each model fed images larger than the cache's: they are upsampled, which
    adds no detail (build the cache at the model's size instead)."""
    h, w = clips.full.shape[1:3]
    return [f"{model}: the caches' {h}x{w} images are upsampled to the model's "
            f"{cfg.input_size}x{cfg.input_size} input (build the cache with --size "
            f"{cfg.input_size} to avoid it)"
            for model, cfg in cfgs.items() if cfg.input_size > min(h, w)]


def _inapplicable(spec: CVSpec, model: str, config: str, pair: bool) -> str:
    """Why ``model`` can't run ``config`` in this run ('' when it can)."""
    if spec.input == "apex" and get_config(config).dual:
        return "--input apex has one still frame per clip, no phase images"
    if not applies(config, pair):
        return (f"{model} takes each clip's onset and offset images as a pair; the "
                "dual-phase configurations are for single-image models")
    return ""
