"""``mer-prep inspect`` and ``mer-prep show``: what a cache holds, and one clip as a PNG."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from mer_di._paths import check_writable, make_folder
from mer_di.errors import CacheError
from mer_di.pipeline.cache_reader import open_cache
from mer_di.pipeline.store import (
    APEX_VARIANTS,
    FLOW_IMAGES,
    IMAGES,
    JITTER_IMAGES,
    PHASES,
    parse_key,
)

PROVENANCE = ("schema_version", "dataset", "sheet", "sheet_sha256", "weights", "size", "crop",
              "flow", "apex_jitter", "tool_version", "created")


def describe_cache(cache: str | Path) -> str:
    """Provenance, clips per subject, label and image, apex sources, and the skipped clips."""
    return _describe(cache_summary(cache))


def cache_summary(cache: str | Path) -> dict:
    """What :func:`describe_cache` prints, as plain data (``mer-prep inspect --json``):
    ``path``, ``provenance`` (the build's attributes), ``clips``, ``subjects``,
    ``shapes`` ({"HxWxC": count}), ``per_image``, ``apex_from``, ``per_label``,
    ``per_subject`` and ``skipped`` (a list of {key, sheet_row, reason})."""
    with open_cache(cache) as c:
        subjects, labels, images, shapes, sources = (Counter() for _ in range(5))
        spotted: list[dict] = []
        for clip in c:
            subjects[clip.subject] += 1
            labels[clip.label] += 1
            sources[clip.apex_source] += 1
            if clip.apex_source == "spotted":
                spotted.append({"key": clip.key, "spotted_apex": _plain(
                    clip.attrs.get("spotted_apex")), "sheet_apex": _plain(
                    clip.attrs.get("apex")) or None})
            found = c.shapes(clip)
            images.update(found.keys())
            shapes.update("x".join(map(str, s)) for name, s in found.items()
                          if name not in JITTER_IMAGES)  # (2K+1, H, W, C): not an image
        return {
            "path": str(c.path),
            # a parameter that a cache predates reads as its default (flow: none)
            "provenance": {k: _plain(c.attrs.get(k, c.params.get(k))) for k in PROVENANCE},
            "clips": len(c),
            "subjects": len(subjects),
            "shapes": dict(shapes),
            "per_image": {p: images[p] for p in (*IMAGES, *FLOW_IMAGES, *APEX_VARIANTS)
                          if p in IMAGES or images[p]},
            "apex_from": dict(sorted(sources.items())),
            "per_label": dict(sorted(labels.items())),
            "per_subject": dict(sorted(subjects.items())),
            "spotted": spotted,
            "skipped": [{k: _plain(v) for k, v in s.items()} for s in c.skipped],
        }


def _plain(value):
    """An HDF5 attribute as a JSON value (numpy scalars and bytes are not)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _describe(s: dict) -> str:
    lines = [f"cache {s['path']}"]
    lines += [f"  {k:15s} {v}" for k, v in s["provenance"].items()]
    lines.append(f"clips: {s['clips']} from {s['subjects']} subjects; image shapes (H, W, C): "
                 + ", ".join(f"({shape.replace('x', ', ')}) x{n}"
                           for shape, n in s["shapes"].items()))
    lines.append("per image: " + ", ".join(f"{p} {n}" for p, n in s["per_image"].items()))
    lines.append("apex from: " + ", ".join(f"{k} {v}" for k, v in s["apex_from"].items()))
    lines.append("per label: " + ", ".join(f"{k} {v}" for k, v in s["per_label"].items()))
    lines.append("per subject: " + ", ".join(f"{k} {v}" for k, v in s["per_subject"].items()))
    if s["spotted"]:
        lines.append(f"spotted apexes ({len(s['spotted'])}): " + ", ".join(
            f"{x['key']} {x['spotted_apex']}"
            + (f" (sheet {x['sheet_apex']})" if x["sheet_apex"] not in (None, "") else "")
            for x in s["spotted"][:20]) + (" ..." if len(s["spotted"]) > 20 else ""))
    skipped = s["skipped"]
    lines.append(f"skipped clips ({len(skipped)}):" if skipped else "skipped clips: none")
    lines += [f"  row {x['sheet_row']}  {x['key']}: {x['reason']}" for x in skipped]
    return "\n".join(lines)


def _for_view(img: np.ndarray, size: int) -> np.ndarray:
    """Min-max scale to uint8 RGB, resized to ``size`` high."""
    img = img.astype(np.float32)
    if img.ndim == 2:
        img = img[..., None]
    lo, hi = float(img.min()), float(img.max())
    img = (img - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(img)
    img = img.astype(np.uint8)
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    h, w = img.shape[:2]
    return cv2.resize(img, (max(1, round(w * size / h)), size), interpolation=cv2.INTER_AREA)


def _tile(img: np.ndarray, title: str, width: int) -> np.ndarray:
    canvas = np.full((img.shape[0] + 22, width, 3), 255, np.uint8)
    canvas[22:, :img.shape[1]] = img[:, :width]
    cv2.putText(canvas, title, (2, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1,
                cv2.LINE_AA)
    return canvas


def show_clip(cache: str | Path, key: str, out: str | Path, size: int = 224) -> Path:
    """A PNG: the clip's three images (min-max scaled) above its onset, apex, offset frames."""
    out = check_writable(out)
    with open_cache(cache) as c:
        clip = c.get(*parse_key(key, c.path))
        images = c.images(clip, PHASES)
    a = clip.attrs
    top = [(f"{p} image", _for_view(images[p], size)) if p in images
           else (f"{p}: none", np.full((size, size, 3), 200, np.uint8)) for p in PHASES]
    bottom = []
    for name in ("onset", "apex", "offset"):
        n = a.get(name)
        path = Path(str(a["frame_dir"])) / str(a["frame_template"]).format(n=n) if n else None
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR) if path and path.exists() else None
        if frame is None:
            bottom.append((f"{name} frame: not found", np.full((size, size, 3), 200, np.uint8)))
        else:
            bottom.append((f"{name} frame {n}", _for_view(frame[..., ::-1], size)))
    width = max(img.shape[1] for _, img in top + bottom)
    rows = [np.hstack([_tile(img, t, width) for t, img in row]) for row in (top, bottom)]
    sheet = np.vstack(rows)
    header = np.full((26, sheet.shape[1], 3), 255, np.uint8)
    cv2.putText(header, f"{key}  label {a.get('label')}  onset {a.get('onset')} apex "
                f"{a.get('apex')} offset {a.get('offset')}", (4, 18), cv2.FONT_HERSHEY_SIMPLEX,
                0.5, (0, 0, 0), 1, cv2.LINE_AA)
    make_folder(out.parent)
    if not cv2.imwrite(str(out), np.vstack([header, sheet])[..., ::-1]):
        raise CacheError(f"{out}: cannot write the PNG")
    return out
