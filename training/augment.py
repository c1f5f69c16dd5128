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


def random_flip_rotate(batch: torch.Tensor, generator: torch.Generator,
                       max_degrees: float = MAX_DEGREES) -> torch.Tensor:
    """Flip each image horizontally with p = 0.5 and rotate it by a uniform angle in
    +-``max_degrees`` about its centre [shape=(B, C, H, W) -> same].

    ``batch`` may also be (P, B, C, H, W): P aligned images per sample (a DIANet pair) get
    the same flip and angle. Corners rotated in from outside are 0 (the normalised mean).
    The random draws come from ``generator`` (on the CPU), so a seed fixes them on every
    device.
    """
    paired = batch.dim() == 5
    x = batch if paired else batch.unsqueeze(0)
    p, b, c, h, w = x.shape
    flip = torch.rand(b, generator=generator) < 0.5
    angle = (torch.rand(b, generator=generator) * 2 - 1) * math.radians(max_degrees)
    cos, sin = torch.cos(angle), torch.sin(angle)
    sign = torch.where(flip, -1.0, 1.0)
    # output pixel (x, y) samples input at R(-angle) . (sign * x, y); normalised coordinates
    # are scaled by the aspect ratio so that the rotation is a true rotation on pixels
    aspect = w / h
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = cos * sign
    theta[:, 0, 1] = -sin / aspect
    theta[:, 1, 0] = sin * sign * aspect
    theta[:, 1, 1] = cos
    theta = theta.to(batch.device, batch.dtype)
    grid = F.affine_grid(theta, [b, c, h, w], align_corners=False)
    out = torch.stack([F.grid_sample(x[i], grid, mode="bilinear", padding_mode="zeros",
                                     align_corners=False) for i in range(p)])
    return out if paired else out[0]
