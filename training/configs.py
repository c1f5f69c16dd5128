"""The four training configurations of the paper's Table I, and which models take them.

- ``baseline``: the ``full`` image of every training clip.
- ``fliprot``: the same, each batch randomly flipped (horizontally, p = 0.5) and rotated
  (uniform in +-10 degrees).
- ``dualdi``: the ``full``, ``onset`` and ``offset`` images of each training clip, each an
  independent sample with the clip's label; a clip without valid phase images gives its
  ``full`` image only.
- ``dualdi+fliprot``: both.

Test and validation clips always give their ``full`` image only. A pair model (DIANet)
takes a clip's (``onset``, ``offset``) pair in training and at test, so the dual-phase
configurations, which add the phase images as extra single-image samples, do not apply to
it: it runs ``baseline`` and ``fliprot``.
"""

from __future__ import annotations

from dataclasses import dataclass

from mer_di.errors import ConfigError
from mer_di.options import CONFIG_NAMES, check

PAIR_CONFIGS = ("baseline", "fliprot")


@dataclass(frozen=True)
class Config:
    name: str
    dual: bool  # add the phase images of training clips as samples
    fliprot: bool  # random flip and rotation of training batches


def get_config(name: str) -> Config:
    """The configuration called ``name`` (raises :class:`ConfigError` for others)."""
    check("configuration", name, CONFIG_NAMES, ConfigError)
    return Config(name, dual=name.startswith("dualdi"), fliprot=name.endswith("fliprot"))


def applies(config: str, pair_model: bool) -> bool:
    """Whether a model (a pair model or not) can be trained under ``config``."""
    return config in PAIR_CONFIGS if pair_model else config in CONFIG_NAMES
