"""SAMM: ``SAMM_Micro_FACS_Codes_v2.xlsx``, sheet ``MICRO_ONLY``, header on Excel row 14.

Frames: ``SAMM/<subject>/<Filename>/<subject>_<frame:05d>.jpg`` (greyscale 2040x1088), for
example ``006/006_1_2/006_05562.jpg``. ``--root`` may be the folder holding ``SAMM/`` or
``SAMM/`` itself.
"""

from __future__ import annotations

from mer_di.data_manifest.reader import DatasetReader, Layout, parse_frame_number
from mer_di.data_manifest.records import ManifestRow

FRAME = "{subject}_{n:05d}.jpg"
IN_SAMM = Layout("samm", "SAMM", "SAMM/<subject>/<clip>/<subject>_NNNNN.jpg", FRAME)
AT_ROOT = Layout("root", "", "<subject>/<clip>/<subject>_NNNNN.jpg", FRAME)


class SammReader(DatasetReader):
    name, title = "samm", "SAMM"
    sheet_files = ("SAMM_Micro_FACS_Codes_v2.xlsx",)
    # its 'Onset Frame', 'Apex Frame', 'Offset Frame' are the shared names (spaces ignored)
    optional_columns = {**DatasetReader.optional_columns, "duration": ("Duration",)}
    layouts = (IN_SAMM, AT_ROOT)
    subject_format = "{:03d}"

    def row_checks(self, row: ManifestRow, cells: dict[str, object]) -> list[str]:
        """The sheet's ``Duration`` must equal ``offset - onset + 1`` (catches typos)."""
        duration, _ = parse_frame_number(cells.get("duration"))
        if duration is None or row.onset is None or row.offset is None:
            return []
        if row.onset <= row.offset and duration != row.offset - row.onset + 1:
            return [f"duration {duration} != offset - onset + 1 = "
                    f"{row.offset - row.onset + 1}: frame numbers doubtful"]
        return []
