"""DIANet: a dual-stream network over a clip's onset and offset dynamic images, fused by
cross-attention ("DIANet: A Phase-Aware Dual-Stream Network for Micro-Expression Recognition via
Dynamic Images", arXiv 2510.12219).

What the paper gives: two streams, one CNN each, on the ``onset`` and ``offset`` images; a
cross-attention fusion module in which each stream's features attend to the other's; the fused
features are classified. What is ours (the paper's backbone and fusion internals are not
public), all of it the natural version of that description:

- the backbone: any timm model, ``resnet18`` by default (``backbone=``), built with
  ``num_classes=0, global_pool=''``; its ``forward_features`` map [shape=(B, C, h, w)] is read
  as ``h * w`` tokens of width C (a ViT backbone's patch tokens are used directly, its class
  and register tokens dropped). The two streams have separate weights;
- a linear projection of each stream's tokens to a common width ``d`` (256; tiny: 32) plus a
  fixed 2-D sine-cosine position embedding (MAE-style: half the width encodes the row, half the
  column; 1-D for token sequences), so any input size works;
- fusion, both ways at once from the projected tokens: ``on' = LN(on + MHA(on, off, off))``
  and ``off' = LN(off + MHA(off, on, on))`` with two separate ``nn.MultiheadAttention``
  modules (8 heads; tiny: 2), each with its own LayerNorm;
- classification: mean over tokens of ``on'`` and of ``off'``, concatenated [shape=(B, 2d)],
  dropout 0.5, linear to ``num_classes``.

``forward(onset, offset)``: two tensors [shape=(B, 3, S, S)] -> logits [shape=(B, num_classes)].
Swapping the inputs changes the output: the streams and the two directions have their own
weights.

``pretrained=FILE`` is a local checkpoint of the backbone (e.g. timm's ImageNet ``resnet18``),
loaded into both streams by the timm rules of :mod:`mer_di.training.models.timm_models`: the
checkpoint's classifier is dropped, everything else must fit. Projection, fusion and head are
always randomly initialised.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from mer_di.errors import ModelError
from mer_di.training.models.registry import ModelCfg, register_model
from mer_di.training.models.timm_models import (
    create_timm,
    fixed_size,
    input_side,
    load_timm_weights,
    norm_of,
    obtain_timm,
)

DEFAULT_BACKBONE = "resnet18"
FULL = {"dim": 256, "heads": 8}
TINY = {"dim": 32, "heads": 2}


def sincos_2d(h: int, w: int, dim: int, device=None, dtype=None) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding [shape=(h * w, dim)], rows then columns.

    ``dim`` must be a multiple of 4: a quarter each for sin(row), cos(row), sin(col), cos(col).
    """
    quarter = dim // 4
    freq = 1.0 / (10000 ** (torch.arange(quarter, device=device, dtype=torch.float32) / quarter))
    rows = torch.arange(h, device=device, dtype=torch.float32)[:, None] * freq
    cols = torch.arange(w, device=device, dtype=torch.float32)[:, None] * freq
    rows = torch.cat([rows.sin(), rows.cos()], dim=1)[:, None, :].expand(h, w, 2 * quarter)
    cols = torch.cat([cols.sin(), cols.cos()], dim=1)[None, :, :].expand(h, w, 2 * quarter)
    return torch.cat([rows, cols], dim=2).reshape(h * w, 4 * quarter).to(dtype)


def sincos_1d(n: int, dim: int, device=None, dtype=None) -> torch.Tensor:
    """Fixed 1-D sine-cosine position embedding [shape=(n, dim)], ``dim`` even."""
    half = dim // 2
    freq = 1.0 / (10000 ** (torch.arange(half, device=device, dtype=torch.float32) / half))
    pos = torch.arange(n, device=device, dtype=torch.float32)[:, None] * freq
    return torch.cat([pos.sin(), pos.cos()], dim=1).to(dtype)


class Stream(nn.Module):
    """A backbone and its token projection: image [shape=(B, 3, S, S)] -> tokens
    [shape=(B, N, d)] with position embedding added."""

    def __init__(self, backbone: nn.Module, dim: int):
        super().__init__()
        self.backbone = backbone
        self.proj = nn.Linear(backbone.num_features, dim)
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.backbone.forward_features(x)
        if f.dim() == 4:  # (B, C, h, w) map
            _, _, h, w = f.shape
            tokens = self.proj(f.flatten(2).transpose(1, 2))
            pos = sincos_2d(h, w, self.dim, tokens.device, tokens.dtype)
        else:  # (B, N, C) tokens, e.g. a ViT's
            f = f[:, getattr(self.backbone, "num_prefix_tokens", 0):]
            tokens = self.proj(f)
            pos = sincos_1d(tokens.shape[1], self.dim, tokens.device, tokens.dtype)
        return tokens + pos


class CrossAttention(nn.Module):
    """``LN(q + MHA(q, kv, kv))``: tokens q [shape=(B, N, d)] attend to kv [shape=(B, M, d)]."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(dim)

    def forward(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        out, _ = self.attn(q, kv, kv, need_weights=False)
        return self.norm(q + out)


class DIANet(nn.Module):
    """Two streams, cross-attention both ways, pooled and concatenated, linear head."""

    pair = True

    def __init__(self, onset_backbone: nn.Module, offset_backbone: nn.Module, num_classes: int,
                 dim: int = FULL["dim"], heads: int = FULL["heads"], dropout: float = 0.5):
        super().__init__()
        if dim % 4 or dim % heads:
            raise ValueError(f"dim {dim} must be a multiple of 4 and of heads {heads}")
        self.onset_stream = Stream(onset_backbone, dim)
        self.offset_stream = Stream(offset_backbone, dim)
        self.onset_to_offset = CrossAttention(dim, heads)  # onset tokens attend to offset's
        self.offset_to_onset = CrossAttention(dim, heads)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * dim, num_classes)

    def forward(self, onset: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        on = self.onset_stream(onset)
        off = self.offset_stream(offset)
        on_fused = self.onset_to_offset(on, off)
        off_fused = self.offset_to_onset(off, on)
        pooled = torch.cat([on_fused.mean(dim=1), off_fused.mean(dim=1)], dim=1)
        return self.head(self.dropout(pooled))


def build_dianet(num_classes: int, *, pretrained: str | Path | None = None, tiny: bool = False,
                 backbone: str | None = None) -> DIANet:
    """A DIANet over two ``backbone`` streams (default ``resnet18``); tiny: the backbone's
    tiny variant (see :mod:`mer_di.training.models.timm_models`) with d = 32 and 2 heads.
    Its input side is :func:`dianet_cfg`'s."""
    name = _backbone(backbone)
    streams = [create_timm(name, 0, tiny=tiny, global_pool="")[0] for _ in range(2)]
    if pretrained is not None:
        load_timm_weights(streams[0], name, pretrained, what=f"dianet backbone {name}")
        streams[1].load_state_dict(streams[0].state_dict())
    cfg = TINY if tiny else FULL
    return DIANet(streams[0], streams[1], num_classes, cfg["dim"], cfg["heads"])


def _backbone(backbone: str | None) -> str:
    name = backbone or DEFAULT_BACKBONE
    if not timm.is_model(name):
        raise ModelError(f"dianet: backbone {name!r} is not a timm model name")
    return name


def dianet_cfg(name: str, tiny: bool, backbone: str | None) -> ModelCfg:
    """The backbone's input side (224 for resnet18) and normalisation; tiny: 64 where the
    backbone takes any size (so a stride-32 CNN gives 2x2 = 4 tokens per stream, not one)."""
    stream = _backbone(backbone)
    side = input_side(stream, tiny)
    if tiny and side < 64 and not fixed_size(stream, tiny):
        side = 64
    mean, std = norm_of(stream)
    return ModelCfg(name, side, mean, std, pair=True, weights_file=f"{stream}.pth")


register_model("dianet", dianet_cfg,
               lambda name, n, pretrained, tiny, backbone: build_dianet(
                   n, pretrained=pretrained, tiny=tiny, backbone=backbone),
               takes_backbone=True,
               obtain=lambda name, backbone: "DIANet loads its backbone's ImageNet weights "
               "into both streams: " + obtain_timm(backbone or DEFAULT_BACKBONE))
