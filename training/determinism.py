"""The two ways a run can use a GPU: ``reproducible`` (the same numbers every time: a resumed
run, a Ray run and an uninterrupted local run agree) and ``fast`` (cuDNN's autotuner,
channels_last for the CNNs, TF32 matrix products: faster, but two runs may differ in the
last bits, and after enough epochs in the predictions).

On the CPU the two modes compute the same: every CPU kernel we use is deterministic, and
none of the fast-mode switches applies there. The mode is a run setting (``config.json``'s
``spec.determinism``; every row's tag names it), set once per process by
:func:`apply_determinism` before a unit trains: in the run's process, and in each Ray
worker.
"""

from __future__ import annotations

import os

import torch

MODES = ("reproducible", "fast")
# cuBLAS picks its reduction order by workspace; a fixed workspace makes it deterministic
# (NVIDIA's documented setting; must be in the environment before the CUDA context exists)
CUBLAS_WORKSPACE = ":4096:8"
# what stays nondeterministic in reproducible mode, named in config.json: operations with no
# deterministic CUDA kernel warn (warn_only) instead of stopping the run
STILL_NONDETERMINISTIC = (
    "CUDA kernels without a deterministic implementation warn and stay nondeterministic "
    "(torch.use_deterministic_algorithms(warn_only=True)); the models of Table I use none "
    "in training (scaled-dot-product attention falls back to a deterministic kernel)")


def apply_determinism(mode: str, device: torch.device) -> dict[str, object]:
    """Set this process's torch switches for ``mode`` on ``device``; returns what was set
    (for ``config.json``). Raises ValueError for an unknown mode."""
    if mode not in MODES:
        raise ValueError(f"--determinism {mode}: give {' or '.join(MODES)}")
    record: dict[str, object] = {"mode": mode, "device": str(device)}
    if device.type != "cuda":
        record["note"] = "CPU: both modes compute the same (deterministic kernels)"
        return record
    if mode == "reproducible":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")
        record.update(cublas_workspace=os.environ["CUBLAS_WORKSPACE_CONFIG"],
                      nondeterministic=STILL_NONDETERMINISTIC)
    else:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.deterministic = False
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.set_float32_matmul_precision("high")
        record.update(channels_last="CNNs", tf32=True, cudnn_benchmark=True)
    return record


def channels_last(mode: str, device: torch.device, model: torch.nn.Module) -> bool:
    """Whether ``model`` trains in channels_last memory format: fast mode on a GPU, for
    models made of 2-D convolutions (a transformer gains nothing from it)."""
    if mode != "fast" or device.type != "cuda":
        return False
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    linears = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    return convs > linears


def mode_tag(mode: str) -> str:
    """The row tag of ``mode``: every row says which mode produced it."""
    return "fast mode (not bit-reproducible)" if mode == "fast" else "reproducible mode"
