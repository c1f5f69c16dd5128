"""The human summary of a manifest that ``mer-prep manifest`` prints."""

from __future__ import annotations

import re
from collections import Counter

from mer_di.data_manifest.reader import Manifest


def _columns(items: list[str], width: int = 96) -> list[str]:
    """Lay short ``items`` out in as many aligned columns as fit in ``width``."""
    if not items:
        return []
    cell = max(len(s) for s in items) + 3
    per_line = max(1, width // cell)
    return ["  " + "".join(s.ljust(cell) for s in items[i:i + per_line]).rstrip()
            for i in range(0, len(items), per_line)]


def _natural(name: str) -> tuple[list[object], str]:
    """Sort key with numbers compared as numbers: ``s2`` before ``s11``, ``spNO.2`` before
    ``spNO.10`` (zero-padded names, ``sub02``, sort as before)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)], name


def summarise(manifest: Manifest) -> str:
    """Clips per label and per subject, usable images, and every problem row with reasons."""
    rows = manifest.rows
    in_set = [r for r in rows if r.label]
    if manifest.from_folders:
        lines = [f"{manifest.title} manifest: {len(rows)} clips, "
                 f"{len({r.subject for r in rows})} subjects, {manifest.source}"]
    else:
        lines = [
            f"{manifest.title} manifest: {len(rows)} sheet rows, {len({r.subject for r in rows})} "
            f"subjects, from {manifest.sheet} (sheet {manifest.sheet_name!r}, header on row "
            f"{manifest.header_row})",
        ]
    if manifest.frames_found:
        lines.append(f"frames: {manifest.frames_root} (layout {manifest.layout.name}: "
                     f"{manifest.layout.description})")
    else:
        lines.append(f"frames: no frame folder under {manifest.root} "
                     f"(looked for {'; '.join(manifest.layouts_tried)})")
    lines.append(
        f"class set {manifest.class_set!r} ({', '.join(manifest.classes)}): {len(in_set)} rows "
        f"in the set, {len(rows) - len(in_set)} outside"
    )
    n_full = sum(r.full_ok and bool(r.label) for r in rows)
    n_dual = sum(r.full_ok and r.onset_ok and r.offset_ok and bool(r.label) for r in rows)
    no_apex = "" if manifest.apex_annotated else " (the dataset annotates no apex)"
    lines.append(f"usable in the set: {n_full} clips with a full image, {n_dual} with both "
                 f"phase images{no_apex}; {len(manifest.problem_rows)} rows with problems")
    # a usable clip without a usable apex gets its phase images from a spotted apex
    # (mer-prep build-cache --apex auto, the default)
    spot = sum(r.full_ok and not (r.onset_ok or r.offset_ok) and bool(r.label) for r in rows)
    lines.append(f"apex: {n_full - spot} clips from the sheet, {spot} need spotting from "
                 "their frames (build-cache --apex auto spots them; --apex sheet leaves them "
                 "without phase images)")

    lines.append("")
    lines.append("clips per label (rows in the set / with a full image):")
    total = Counter(r.label for r in in_set)
    usable = Counter(r.label for r in in_set if r.full_ok)
    width = max([len(c) for c in manifest.classes] + [5])
    for label in manifest.classes:
        lines.append(f"  {label.ljust(width)}  {total[label]:4d} / {usable[label]:4d}")
    lines.append(f"  {'total'.ljust(width)}  {len(in_set):4d} / {sum(usable.values()):4d}")

    lines.append("")
    lines.append("clips per subject (rows in the set):")
    per_subject = Counter(r.subject for r in in_set)
    subjects = sorted({r.subject for r in rows}, key=_natural)
    lines.extend(_columns([f"{s}: {per_subject[s]}" for s in subjects]))

    problems = manifest.problem_rows
    lines.append("")
    lines.append(f"problem rows ({len(problems)}):" if problems else "problem rows: none")
    for r in problems:
        lines.append(f"  row {r.sheet_row:4d}  {r.key}: {r.problems}")
    return "\n".join(lines)
