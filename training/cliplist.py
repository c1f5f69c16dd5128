"""``mer-train cv --clips FILE``: restrict a run to the clips a list names.

A list is a CSV of ``dataset, subject, clip`` and optionally a class, one clip per row:
MEGC2019's ``combined_3class_gt.csv`` itself (no header; ``dataset,subject,filename,class``
with class 0 negative, 1 positive, 2 surprise), or a file with a header naming columns
``dataset``, ``subject``, ``clip`` (or ``filename``) and optionally ``class`` (or
``label``, ``emotion``): a class name, or an index into the run's classes.

Names are matched as the caches spell them, and otherwise with every number's leading
zeros dropped, so the composite's ``s01``/``s01_ne_01`` find SMIC's ``s1``/``s1_ne_01``.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mer_di.data_manifest.classes import MEGC_CLASSES, normalise_emotion
from mer_di.errors import DataError

_CLIP_COLUMNS = ("clip", "filename")
_CLASS_COLUMNS = ("class", "label", "emotion")


@dataclass(frozen=True)
class ListedClip:
    """One row of a clip list: where it is in the file, and what it names."""

    line: int
    dataset: str
    subject: str
    clip: str
    label: str  # as the list writes it ('' when it has no class column)


def loose(name: str) -> str:
    """``name`` with every number's leading zeros dropped, lowercased: ``s01_ne_01`` ->
    ``s1_ne_1``; ``s1_ne_01`` -> ``s1_ne_1``."""
    return re.sub(r"\d+", lambda m: str(int(m.group())), name).lower()


def read_clip_list(path: str | Path) -> list[ListedClip]:
    """The clips a list file names (see the module's docstring); :class:`DataError`
    naming the file and line for an unreadable file, a row without three names, or a clip
    listed twice."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"--clips {path}: cannot read it ({exc})") from None
    rows = [r for r in csv.reader(text.splitlines()) if any(c.strip() for c in r)]
    if not rows:
        raise DataError(f"--clips {path}: no clips in it")
    head = [c.strip().lower() for c in rows[0]]
    if "dataset" in head and "subject" in head and any(c in head for c in _CLIP_COLUMNS):
        at = {name: head.index(name) for name in head}
        cols = (at["dataset"], at["subject"], next(at[c] for c in _CLIP_COLUMNS if c in at),
                next((at[c] for c in _CLASS_COLUMNS if c in at), None))
        body, first_line = rows[1:], 2
    else:  # headerless: dataset, subject, clip[, class] (combined_3class_gt.csv)
        cols, body, first_line = (0, 1, 2, 3), rows, 1
    listed: list[ListedClip] = []
    seen: dict[tuple[str, str, str], int] = {}
    for i, row in enumerate(body):
        line = first_line + i
        cells = [c.strip() for c in row]
        if len(cells) <= max(c for c in cols[:3]) or not all(cells[c] for c in cols[:3]):
            raise DataError(f"--clips {path}, line {line}: {','.join(row)!r} does not name a "
                            "dataset, a subject and a clip")
        label = cells[cols[3]] if cols[3] is not None and cols[3] < len(cells) else ""
        item = ListedClip(line, cells[cols[0]].lower(), cells[cols[1]], cells[cols[2]], label)
        key = (item.dataset, loose(item.subject), loose(item.clip))
        if key in seen:
            raise DataError(f"--clips {path}, line {line}: {item.dataset} {item.subject}/"
                            f"{item.clip} is listed twice (first on line {seen[key]})")
        seen[key] = line
        listed.append(item)
    return listed


def list_class(label: str, classes: list[str], class_set: str) -> str | None:
    """The class a list's ``label`` names: a class name of the run, or an index (for the
    MEGC list, the MEGC order negative, positive, surprise); None when there is none."""
    if not label:
        return None
    if label.isdigit():
        order = list(MEGC_CLASSES) if class_set == "megc" else classes
        k = int(label)
        return order[k] if k < len(order) else f"class #{k}"
    return normalise_emotion(label)


@dataclass
class ListMatch:
    """What a list matched in the caches: ``keep`` (clip keys ``(dataset, subject, clip)``
    as the caches spell them -> the listed clip), ``missing`` (listed clips no cache has)."""

    keep: dict[tuple[str, str, str], ListedClip]
    missing: list[ListedClip]


def match_clips(listed: list[ListedClip],
                available: Iterable[tuple[str, str, str]]) -> ListMatch:
    """Match listed clips to the caches' ``(dataset, subject, clip)``, exactly first, then
    loosely (:func:`loose`); a loose name two clips share is refused."""
    available = list(available)
    exact = set(available)
    by_loose: dict[tuple[str, str, str], list[tuple[str, str, str]]] = {}
    for key in available:
        by_loose.setdefault((key[0], loose(key[1]), loose(key[2])), []).append(key)
    keep: dict[tuple[str, str, str], ListedClip] = {}
    missing: list[ListedClip] = []
    for item in listed:
        key = (item.dataset, item.subject, item.clip)
        if key not in exact:
            found = by_loose.get((item.dataset, loose(item.subject), loose(item.clip)), [])
            if len(found) > 1:
                raise DataError(f"--clips line {item.line}: {item.subject}/{item.clip} could "
                                f"be any of {', '.join('/'.join(k[1:]) for k in found)}")
            if not found:
                missing.append(item)
                continue
            key = found[0]
        keep[key] = item
    return ListMatch(keep, missing)
