"""Images as a model sees them, and the batched flip/rotate augmentation.

Everything here runs on whatever device the tensors live on: on a GPU the whole training
set sits there and a batch is flipped and rotated in one ``grid_sample`` call.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

MAX_DEGREES = 10.0
CHUNK = 256  # images converted at a time (bounds the float64-free temporary memory)


def prepare_images(images: np.ndarray, size: int, mean: tuple[float, float, float],
                   std: tuple[float, float, float], device: torch.device | str = "cpu"
                   ) -> torch.Tensor:
    """Raw dynamic images [shape=(N, H, W, C), float32, C = 1 or 3] -> model input
    [shape=(N, 3, size, size), float32] on ``device``.

    Each image is resized to ``size`` (area averaging when shrinking, bilinear when
    growing), min-max scaled to [0, 1] (a constant image becomes 0), greyscale repeated to
    three channels, then normalised with the backbone's ``mean`` and ``std``.
    """
    n, h, w, c = images.shape
    if c not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels, not {c}")
    out = torch.empty((n, 3, size, size), dtype=torch.float32, device=device)
    m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    for i in range(0, n, CHUNK):
        x = torch.from_numpy(np.ascontiguousarray(images[i:i + CHUNK])).to(device)
        x = x.permute(0, 3, 1, 2).float()
        if (h, w) != (size, size):
            mode = "area" if h >= size and w >= size else "bilinear"
            x = F.interpolate(x, size=(size, size), mode=mode,
                              **({} if mode == "area" else {"align_corners": False}))
        flat = x.flatten(1)
        lo = flat.min(1).values.view(-1, 1, 1, 1)
        span = (flat.max(1).values.view(-1, 1, 1, 1) - lo)
        x = torch.where(span > 0, (x - lo) / span.clamp_min(1e-12), torch.zeros_like(x))
        if c == 1:
            x = x.expand(-1, 3, -1, -1)
        out[i:i + CHUNK] = (x - m) / s
    return out


def draw_flip_rotate(n: int, generator: torch.Generator, max_degrees: float = MAX_DEGREES
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Random draws for ``n`` images from ``generator`` (on the CPU, so a seed fixes them
    on every device): ``flip`` [shape=(n,), bool] with p = 0.5 and ``angle``
    [shape=(n,), radians] uniform in +-``max_degrees``."""
    flip = torch.rand(n, generator=generator) < 0.5
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(max_degrees)
    return flip, angle


def _affine_grid(theta: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``F.affine_grid(theta, [B, C, h, w], align_corners=False)`` by broadcasting: on the
    CPU, affine_grid's batched matmul with an inner size of 3 cost 4x more."""
    xs = (torch.arange(w, device=theta.device, dtype=theta.dtype) * 2 + 1) / w - 1
    ys = (torch.arange(h, device=theta.device, dtype=theta.dtype) * 2 + 1) / h - 1
    t = theta.transpose(1, 2)  # (B, 3, 2): the x, y and constant columns
    return (xs.view(1, 1, w, 1) * t[:, None, None, 0] + t[:, None, None, 2]
            + ys.view(1, h, 1, 1) * t[:, None, None, 1])


def flip_rotate(batch: torch.Tensor, flip: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Flip image i horizontally where ``flip[i]``, then rotate it by ``angle[i]`` radians
    about its centre [shape=(B, C, H, W) -> same].

    ``batch`` may also be (P, B, C, H, W): P aligned images per sample (a DIANet pair) get
    the same flip and angle. Corners rotated in from outside are 0 (the normalised mean).
    Everything runs on ``batch``'s device (``flip`` and ``angle`` are moved there).
    """
    paired = batch.dim() == 5
    p, b, c, h, w = batch.shape if paired else (1, *batch.shape)
    angle = angle.to(batch.device, batch.dtype)
    cos, sin = torch.cos(angle), torch.sin(angle)
    sign = 1.0 - 2.0 * flip.to(batch.device, batch.dtype)
    # output pixel (x, y) samples the input at R(angle) . (sign * x, y), in normalised
    # coordinates scaled by the aspect ratio so that it is a true rotation on pixels
    aspect = w / h
    theta = torch.stack([
        torch.stack([cos * sign, -sin / aspect, torch.zeros_like(cos)], 1),
        torch.stack([sin * sign * aspect, cos, torch.zeros_like(cos)], 1)], 1)
    grid = _affine_grid(theta, h, w)
    if not paired:
        return F.grid_sample(batch, grid, mode="bilinear", padding_mode="zeros",
                             align_corners=False)
    return torch.stack([F.grid_sample(batch[i], grid, mode="bilinear", padding_mode="zeros",
                                      align_corners=False) for i in range(p)])


def random_flip_rotate(batch: torch.Tensor, generator: torch.Generator,
                       max_degrees: float = MAX_DEGREES) -> torch.Tensor:
    """:func:`flip_rotate` with random draws (:func:`draw_flip_rotate`): each image
    flipped with p = 0.5 and rotated uniformly within +-``max_degrees``."""
    n = batch.shape[1] if batch.dim() == 5 else batch.shape[0]
    return flip_rotate(batch, *draw_flip_rotate(n, generator, max_degrees))
