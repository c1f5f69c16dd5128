"""``mer-prep spot-apex``: the spotted apex of every clip beside the sheet's, as a table a
user can compare (and decide whether to trust the spotter on their data)."""

from __future__ import annotations

import csv
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mer_di._paths import write_table
from mer_di.data_manifest import build_manifest
from mer_di.errors import CacheError
from mer_di.options import CROPS, check
from mer_di.pipeline.apex import spot_apex
from mer_di.pipeline.frames import FrameError, load_clip
from mer_di.pipeline.store import usable_apex

SPOT_FIELDS = ("dataset", "subject", "clip", "sheet_row", "onset", "offset", "n_frames",
               "sheet_apex", "sheet_apex_usable", "spotted_apex", "difference",
               "difference_fraction", "problem")
SPOT_SIZE = 112  # pixels: the spotter averages to a 48-cell grid, more detail is wasted


def spot_clips(dataset: str, root: str | Path, sheet: str | Path | None = None,
               crop: str = "none", workers: int | None = None,
               progress: bool = False) -> list[dict[str, object]]:
    """One record per clip of the dataset at ``root`` (fields :data:`SPOT_FIELDS`):
    frame numbers, the sheet's apex and whether it is usable, the spotted apex (frame
    number), ``difference`` = spotted - sheet (frames) and its fraction of the clip's
    length; ``problem`` says why a clip has no spotted apex (its frames can't be read)."""
    check("crop", crop, CROPS, CacheError)
    manifest = build_manifest(dataset, root, sheet=sheet, classes="all")
    records: list[dict[str, object]] = []
    bar = None
    usable = [r for r in manifest.rows if r.full_ok]
    if progress and usable:
        from mer_di._progress import progress_bar

        bar = progress_bar(len(usable), "spotting apexes", "clip")
    with ThreadPoolExecutor(workers) as decoders:
        for row in manifest.rows:
            sheet_ok = usable_apex(row.onset, row.apex, row.offset, True, True) is not None
            rec: dict[str, object] = {
                "dataset": row.dataset, "subject": row.subject, "clip": row.clip,
                "sheet_row": row.sheet_row, "onset": row.onset, "offset": row.offset,
                "n_frames": row.n_frames, "sheet_apex": row.apex,
                "sheet_apex_usable": sheet_ok, "spotted_apex": None, "difference": None,
                "difference_fraction": None, "problem": "" if row.full_ok else row.problems}
            records.append(rec)
            if not row.full_ok:
                continue
            paths = [(n, row.frame_path(n)) for n in range(row.onset, row.offset + 1)]
            try:
                clip = load_clip(paths, SPOT_SIZE, crop, decoders)
            except FrameError as exc:
                rec["problem"] = str(exc)
                continue
            finally:
                if bar:
                    bar.update()
            rec["spotted_apex"] = row.onset + spot_apex(clip.frames)  # middle below 3 frames
            if sheet_ok:
                rec["difference"] = rec["spotted_apex"] - row.apex
                rec["difference_fraction"] = round(rec["difference"] / len(clip.frames), 4)
    if bar:
        bar.close()
    return records


def write_spotted(records: list[dict[str, object]], out: str | Path) -> None:
    """The records as CSV at ``out`` (``-``: standard output), written whole or not at all."""
    write_table(out, lambda fh: _write(records, fh))


def _write(records, fh) -> None:
    writer = csv.DictWriter(fh, SPOT_FIELDS)
    writer.writeheader()
    for rec in records:
        writer.writerow({k: "" if v is None else v for k, v in rec.items()})


def summarise_spotted(records: list[dict[str, object]]) -> str:
    """Clips spotted, and how far the spotter is from the sheet where the sheet has one."""
    spotted = [r for r in records if r["spotted_apex"] is not None]
    compared = sorted(abs(float(r["difference_fraction"])) for r in spotted
                      if r["difference_fraction"] is not None)
    lines = [f"{len(spotted)} of {len(records)} clips spotted"]
    if compared:
        median = compared[len(compared) // 2]
        p90 = compared[min(len(compared) - 1, int(0.9 * len(compared)))]
        within = sum(f <= 0.1 for f in compared)
        lines.append(f"against the sheet's apex ({len(compared)} clips): median |difference| "
                     f"{100 * median:.1f}% of the clip, 90th percentile {100 * p90:.1f}%, "
                     f"{within} within 10%")
    else:
        lines.append("no clip has a usable apex in the sheet to compare with")
    return "\n".join(lines)
