"""One model trained on one fold: Adam, cosine annealing, cross-entropy, early stopping.

The images of the whole clip set live in one tensor on the device (see
:func:`mer_di.training.augment.prepare_images`); samples are indices into it, so a fold, a
configuration or an epoch never copies the data set. The validation split (carved from the
training folds by the caller) picks the epoch and stops training; the test fold is only
ever predicted, after training.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from mer_di.errors import DivergedError
from mer_di.training.augment import draw_flip_rotate, flip_rotate

SELECT_EPOCH = ("val", "test-fold")
OPTIMISTIC = "optimistic: epoch chosen on the test fold"  # the label of every such row


@dataclass
class TrainOptions:
    """The loop's settings; the defaults are the paper's (patience and the validation
    fraction are ours: the paper says only "early stopping on a validation loss")."""

    epochs: int = 50
    batch_size: int = 25
    lr: float = 1e-4
    patience: int = 10  # epochs without a lower validation loss before stopping; 0: never
    val_fraction: float = 0.2  # of the training clips, for early stopping; 0: none
    amp: bool = True  # mixed precision where the device is a GPU
    # which split picks the kept epoch and stops early: "val" (a validation split carved
    # from the training folds, honest) or "test-fold" (the paper's protocol, replication
    # only: the held-out fold itself; optimistic, and labelled so everywhere)
    select_epoch: str = "val"

    def check(self) -> None:
        """Raise ValueError naming every option out of its range (NaN and inf included)."""
        bad = [f"{name} {value}: {why}" for name, value, ok, why in (
            ("--epochs", self.epochs, self.epochs >= 1, "give 1 or more"),
            ("--batch-size", self.batch_size, self.batch_size >= 2, "give 2 or more"),
            ("--lr", self.lr, math.isfinite(self.lr) and self.lr > 0,
             "give a positive, finite learning rate"),
            ("--patience", self.patience, self.patience >= 0, "give 0 (never stop) or more"),
            ("--val-fraction", self.val_fraction,
             math.isfinite(self.val_fraction) and 0 <= self.val_fraction < 1,
             "give a fraction in [0, 1)"),
            ("--select-epoch", self.select_epoch, self.select_epoch in SELECT_EPOCH,
             f"give {' or '.join(SELECT_EPOCH)}"),
        ) if not ok]
        if bad:
            raise ValueError("; ".join(bad))


@dataclass
class Samples:
    """Samples as rows of the image tensor: ``index`` [shape=(n,)] for single-image
    models, [shape=(n, 2)] (onset row, offset row) for pair models; ``labels`` [shape=(n,)].
    ``draw`` (training samples under ``--apex-jitter``): epoch (1-based) -> that epoch's
    ``index`` (same shape, same labels); None: ``index`` every epoch."""

    index: torch.Tensor
    labels: torch.Tensor
    draw: Callable[[int], torch.Tensor] | None = field(default=None, repr=False,
                                                       compare=False)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class FitResult:
    best_epoch: int  # 1-based epoch whose weights are kept
    epochs_run: int
    stopped_early: bool
    history: list[dict[str, float]] = field(default_factory=list)


def _batch(images: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows ``index`` -> (B, C, H, W), or (2, B, C, H, W) for pair indices (B, 2)."""
    x = images[index.to(images.device)]
    return x.transpose(0, 1) if index.dim() == 2 else x


def _forward(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x[0], x[1]) if x.dim() == 5 else model(x)


@functools.cache
def _bf16(index: int | None) -> bool:
    """Whether CUDA device ``index`` computes in bfloat16 (asked once per device: the
    query costs a driver call, and the loop needs it every step)."""
    with torch.cuda.device(index):
        return torch.cuda.is_bf16_supported()


def amp_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """The autocast dtype of the loop on ``device``: bfloat16 where the GPU has it,
    float16 on older GPUs, None (float32) on the CPU or without ``amp``."""
    if not amp or device.type != "cuda":
        return None
    return torch.bfloat16 if _bf16(device.index) else torch.float16


def _autocast(device: torch.device, amp: bool):
    dtype = amp_dtype(device, amp)
    if dtype is not None:
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast(device.type, enabled=False)


class BestWeights:
    """The weights of the best epoch so far, kept on the model's own device.

    The buffers are allocated once, at the first :meth:`save`, and later saves copy into
    them in place: an improvement costs one device-to-device copy of the weights, with no
    host transfer and no allocation (VGG-19: 532 MiB per copy; ``benchmarks/bench_snapshot.py``
    measures it against the host copy it replaces). :meth:`restore` loads them back.
    """

    def __init__(self) -> None:
        self.state: dict[str, torch.Tensor] | None = None

    @torch.no_grad()
    def save(self, model: torch.nn.Module) -> None:
        current = model.state_dict()
        if self.state is None:
            self.state = {k: v.detach().clone() for k, v in current.items()}
            return
        for k, v in current.items():
            self.state[k].copy_(v.detach(), non_blocking=True)

    def restore(self, model: torch.nn.Module) -> None:
        if self.state is not None:
            model.load_state_dict(self.state)


@torch.no_grad()
def predict(model: torch.nn.Module, images: torch.Tensor, samples: Samples,
            batch_size: int = 100, amp: bool = True) -> np.ndarray:
    """Logits of ``samples`` [shape=(n, classes), float32] (model in eval mode)."""
    model.eval()
    out = []
    for i in range(0, len(samples), batch_size):
        x = _batch(images, samples.index[i:i + batch_size])
        with _autocast(images.device, amp):
            out.append(_forward(model, x).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


@torch.no_grad()
def _loss(model, images: torch.Tensor, samples: Samples, batch_size: int, amp: bool) -> tuple[
        float, float]:
    logits = torch.from_numpy(predict(model, images, samples, batch_size * 4, amp))
    labels = samples.labels.cpu()
    loss = F.cross_entropy(logits, labels).item()
    return loss, (logits.argmax(1) == labels).float().mean().item()


def fit(model: torch.nn.Module, images: torch.Tensor, train: Samples, val: Samples | None,
        options: TrainOptions, seed: int, fliprot: bool,
        on_epoch: Callable[[dict[str, float]], None] | None = None,
        augment: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
        = flip_rotate) -> FitResult:
    """Train ``model`` on ``train``; keep the weights of the epoch with the lowest loss on
    ``val`` (the last epoch when there is no ``val``). The shuffling and the augmentation
    draw from a generator seeded with ``seed``. ``augment(batch, flip, angle)`` applies
    ``fliprot``'s draws (:func:`mer_di.training.augment.flip_rotate`; a flow model's is
    :func:`mer_di.training.flow_input.flow_flip_rotate`, which turns the vectors too).
    Under ``options.select_epoch == "test-fold"`` the caller passes the test fold as
    ``val`` (the paper's protocol); the loop itself cannot tell, which is why the runs and
    rows it makes are labelled."""
    device = images.device
    model.to(device)
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=options.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=options.epochs)
    # float16 (GPUs without bfloat16) needs loss scaling; bfloat16 and float32 do not
    scaler = torch.amp.GradScaler("cuda", enabled=(
        amp_dtype(device, options.amp) == torch.float16))
    # samples, labels and each epoch's draws go to the device once, not once per batch:
    # every host-to-device copy of a batch would wait for the GPU to drain
    index, labels = train.index.to(device), train.labels.to(device)
    n = len(train)
    result = FitResult(best_epoch=0, epochs_run=0, stopped_early=False)
    best_loss, best = float("inf"), BestWeights()
    for epoch in range(1, options.epochs + 1):
        start = time.perf_counter()
        model.train()
        if train.draw is not None:  # --apex-jitter: this epoch's shifted phase images
            index = train.draw(epoch).to(device)
        order = torch.randperm(n, generator=generator)
        if n % options.batch_size == 1 and n > 1:
            order = order[:-1]  # a batch of one breaks batch norm; a different one each epoch
        if fliprot:
            flips, angles = (t.to(device) for t in draw_flip_rotate(len(order), generator))
        order = order.to(device)
        total = torch.zeros((), device=device)
        for i in range(0, len(order), options.batch_size):
            rows = order[i:i + options.batch_size]
            x = _batch(images, index[rows])
            if fliprot:
                x = augment(x, flips[i:i + options.batch_size],
                            angles[i:i + options.batch_size])
            y = labels[rows]
            with _autocast(device, options.amp):
                loss = F.cross_entropy(_forward(model, x), y)
            optimiser.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimiser)
            scaler.update()
            total += loss.detach().float() * len(rows)
        seen = len(order)
        lr = optimiser.param_groups[0]["lr"]
        schedule.step()
        record = {"epoch": epoch, "train_loss": total.item() / max(seen, 1), "lr": lr}
        if val is not None and len(val):
            record["val_loss"], record["val_accuracy"] = _loss(model, images, val,
                                                               options.batch_size, options.amp)
            better = record["val_loss"] < best_loss
        else:
            record["val_loss"] = record["val_accuracy"] = float("nan")
            better = True
        bad = [k for k in ("train_loss", "val_loss")
               if not math.isfinite(record[k]) and (k == "train_loss" or val is not None)]
        if bad:  # diverged: no epoch of this unit can be trusted to give a score
            record["seconds"] = time.perf_counter() - start
            result.history.append(record)
            raise DivergedError(
                f"the {bad[0].replace('_', ' ')} became {record[bad[0]]} at epoch {epoch} "
                f"(lr {options.lr:g}): training diverged; try a lower --lr", result.history)
        if better:
            best_loss, result.best_epoch = record.get("val_loss", 0.0), epoch
            best.save(model)
        record["best"] = int(better)
        record["seconds"] = time.perf_counter() - start
        result.history.append(record)
        result.epochs_run = epoch
        if on_epoch:
            on_epoch(record)
        if (val is not None and options.patience
                and epoch - result.best_epoch >= options.patience):
            result.stopped_early = epoch < options.epochs
            break
    best.restore(model)
    return result
