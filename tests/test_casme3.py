"""CAS(ME)^3 part A: several micro-expressions per video, clips named <Filename>_<Onset>,
the sheet's quirks as row problems, its class sets; its look-alike."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner

from mer_di.data_manifest import ManifestError, build_manifest, class_names, get_reader
from mer_di.data_manifest.classes import map_label
from mer_di.data_manifest.synth import generate_dataset, read_ground_truth
from mer_di.data_manifest.synth.casme3 import QUIRKS
from mer_di.pipeline.cli import main as mer_prep

SMALL = {"subjects": 3, "clips_per_class": 1, "frame_size": (64, 48), "length": (6, 9)}
SHEET = "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"
HEADER = ["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class", "emotion"]


@pytest.fixture(scope="module")
def casme3(tmp_path_factory):
    return generate_dataset("casme3", tmp_path_factory.mktemp("c3") / "casme3", seed=2,
                            **SMALL).root


def _expected(gt) -> list[str]:
    """The exact problems of a planted quirk's row."""
    onset, apex, offset, n = (int(gt[k]) for k in ("onset", "apex", "offset", "n_frames"))
    if gt["quirk"] == "apex_equals_onset":
        return [f"apex == onset ({onset}): the onset phase is one frame, no onset image "
                "(full and offset images possible)"]
    if gt["quirk"] == "offset_zero":
        return ["offset is 0 (not annotated): no image possible"]
    if gt["quirk"] == "onset_after_offset":
        return [f"onset {onset} > offset "]  # the typo's value is checked below
    if gt["quirk"] == "apex_outside":
        return [f"apex {apex} after offset (outside [{onset}, {offset}]): no onset or offset "
                "image (full image possible)"]
    if gt["quirk"] == "filename_case":
        return [f"Filename {gt['filename']!r} is spelled {gt['filename'].lower()!r} on disk: "
                f"frames read from {gt['filename'].lower()}/"]
    assert gt["quirk"] == "long_clip"
    return [f"onset {onset} to offset {offset} is {n} frames ({n / 30:.1f} s at 30 fps), longer "
            "than a micro-expression lasts (under 0.5 s: more than 30 frames is doubtful): "
            "frame numbers doubtful, the images are still made"]


def test_manifest_reproduces_ground_truth(casme3):
    truth = read_ground_truth(casme3)
    m = build_manifest("casme3", casme3)
    assert m.sheet_name == "label" and m.header_row == 1 and m.layout.name == "root"
    assert m.class_set == "four" and m.classes == ["negative", "positive", "surprise", "others"]
    assert len(m.rows) == len(truth) == 3 * 7
    for row, gt in zip(m.rows, truth, strict=True):
        assert (row.subject, row.clip, row.sheet_row) == (gt["subject"], gt["clip"],
                                                          int(gt["sheet_row"]))
        assert row.subject.startswith("spNO.") and row.clip == f"{gt['filename'].lower()}_" \
            f"{gt['onset']}"
        assert row.emotion == gt["emotion"]
        assert row.label == map_label("casme3", "four", gt["emotion"])
        assert row.frame_dir == str(casme3 / row.subject / gt["filename"].lower() / "color")
        assert row.frame_template == "{n}.jpg" and row.onset == int(gt["onset"])
        if gt["quirk"] in ("offset_zero", "onset_after_offset"):
            assert not row.full_ok
        else:
            assert (row.offset, row.n_frames) == (int(gt["offset"]), int(gt["n_frames"]))
        if gt["quirk"]:
            expected = _expected(gt)
            assert len(row.problem_list) == 1, row.problems
            assert row.problems.startswith(expected[0]), (row.problems, expected)
        else:
            assert row.problems == "" and row.full_ok and row.onset_ok and row.offset_ok
            assert row.apex == int(gt["apex"]) == int(gt["true_apex"])
    assert sorted(g["quirk"] for g in truth if g["quirk"]) == sorted(QUIRKS)
    typo = next(r for r, g in zip(m.rows, truth, strict=True)
                if g["quirk"] == "onset_after_offset")
    assert typo.offset < typo.onset and typo.problems == (
        f"onset {typo.onset} > offset {typo.offset}: no image possible")


def test_videos_hold_several_clips(casme3):
    m = build_manifest("casme3", casme3)
    per_video = Counter(r.frame_dir for r in m.rows)
    assert max(per_video.values()) >= 2  # several rows share a video's color/ folder
    assert len({r.key for r in m.rows}) == len(m.rows)
    video = casme3 / m.rows[0].subject / Path(m.rows[0].frame_dir).parent.name
    assert (video / "depth").is_dir()  # depth/ beside color/ is there and not used
    assert not any("depth" in r.frame_dir for r in m.rows)
    # the clips of one video are apart: frames on disk between them are not all there
    for folder in per_video:
        numbers = sorted(int(p.stem) for p in Path(folder).glob("*.jpg"))
        assert numbers == sorted(set(numbers))


def test_the_sheet_is_text_in_sheet_label(casme3):
    wb = openpyxl.load_workbook(casme3 / SHEET)
    assert wb.sheetnames == ["label", "Sheet2", "Sheet3"]
    rows = list(wb["label"].iter_rows(values_only=True))
    assert list(rows[0]) == HEADER
    assert all(isinstance(v, str) for r in rows[1:] for v in r)
    assert len({(r[0], r[1].lower()) for r in rows[1:]}) < len(rows) - 1  # repeated videos


def test_class_sets(casme3):
    seven = ["anger", "disgust", "fear", "happy", "others", "sad", "surprise"]
    assert build_manifest("casme3", casme3, classes="all").classes == seven
    assert class_names("casme3", "all") == seven
    megc = build_manifest("casme3", casme3, classes="megc")
    assert megc.classes == ["negative", "positive", "surprise"]
    others = [r for r in megc.rows if r.emotion == "others"]
    assert others and all(r.label == "" and "is not in class set 'megc'" in r.problems
                          for r in others)
    assert map_label("casme3", "four", "sad") == "negative"
    assert map_label("casme3", "four", "Others ") == "others"
    with pytest.raises(ManifestError, match="class set 'five' is not defined for casme3; its "
                       "class sets are four, all, megc"):
        build_manifest("casme3", casme3, classes="five")
    for dataset in ("casme2", "samm", "mmew"):
        with pytest.raises(ManifestError, match=f"'four' is not defined for {dataset}"):
            map_label(dataset, "four", "happiness")
        assert get_reader(dataset).default_classes == "five"
    assert get_reader("casme3").default_classes == "four"
    assert get_reader("smic").default_classes == "all"


@pytest.mark.parametrize("base", ["part_A", "data/part_A"])
def test_part_a_layouts(casme3, tmp_path, base):
    root = tmp_path / "r"
    shutil.copytree(casme3, root / base)
    shutil.move(str(root / base / SHEET), str(root / SHEET))
    m = build_manifest("casme3", root)
    assert m.layout.base == base
    assert [r.problems for r in m.rows] == [r.problems for r in build_manifest(
        "casme3", casme3).rows]


def _sheet(path: Path, rows: list[list[object]]) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "label"
    ws.append(HEADER)
    for r in rows:
        ws.append(r)
    wb.create_sheet("empty")
    wb.save(path / SHEET)
    return path


def test_hand_made_rows(tmp_path):
    for video, numbers in [("spNO.1/e", range(50, 131)), ("spNO.2/A", range(1, 20))]:
        color = tmp_path / video / "color"
        color.mkdir(parents=True)
        for n in numbers:
            (color / f"{n}.jpg").write_bytes(b"x")
    root = _sheet(tmp_path, [
        ["spNO.1", "e", "62", "66", "70", "AU4", "I", "anger"],
        [1, "e", 80, 85, 90, "AU12", "III", "happy"],           # numbers, subject 1
        ["spNO.1", "e", "", "66", "70", "", "", "disgust"],     # no onset
        ["spNO.1", "e", "62", "66", "70", "AU4", "I", "anger"],  # duplicate
        ["spNO.1", "e", "95", "100", "130", "", "", "sad"],      # 36 frames
        ["spNO.2", "a", "2", "5", "9", "", "", "surprise"],      # folder 'A'
        ["spNO.2", "A", "12", "5", "0", "", "", "fear"],         # offset 0
        ["spNO.2", "../x", "2", "5", "9", "", "", "fear"],       # not a name
        ["spNO.3", "b", "2", "5", "9", "", "", "happy"],         # no folder
    ])
    m = build_manifest("casme3", root)
    rows = {(r.sheet_row, r.key): r for r in m.rows}
    assert list(rows) == [(2, "spNO.1/e_62"), (3, "spNO.1/e_80"), (4, "spNO.1/e_row4"),
                          (5, "spNO.1/e_62"), (6, "spNO.1/e_95"), (7, "spNO.2/A_2"),
                          (8, "spNO.2/A_12"), (9, "spNO.2/../x_2"), (10, "spNO.3/b_2")]
    problems = [r.problems for r in m.rows]
    assert problems[0] == problems[1] == ""
    assert m.rows[1].action_units == "AU12"
    assert problems[2] == "onset missing: no image possible"
    assert problems[3] == "duplicate clip (first on sheet row 2): not used"
    assert problems[4].startswith("onset 95 to offset 130 is 36 frames (1.2 s at 30 fps)")
    assert m.rows[4].full_ok and m.rows[4].onset_ok and m.rows[4].offset_ok
    assert problems[5] == "Filename 'a' is spelled 'A' on disk: frames read from A/"
    assert m.rows[5].full_ok and m.rows[5].frame_dir == str(tmp_path / "spNO.2/A/color")
    assert problems[6] == "offset is 0 (not annotated): no image possible"
    assert "holds a path separator" in problems[7] and not m.rows[7].full_ok
    assert problems[8].startswith("clip folder missing: ")


def test_cli_default_class_set(casme3, tmp_path):
    result = CliRunner().invoke(mer_prep, ["manifest", "--dataset", "casme3", "--root",
                                           str(casme3), "--out", str(tmp_path / "m.csv")])
    assert result.exit_code == 0, result.output
    assert "class set 'four' (negative, positive, surprise, others)" in result.output
    assert "problem rows (6):" in result.output
    out = tmp_path / "gen"
    result = CliRunner().invoke(mer_prep, ["synth", "--dataset", "casme3", "--out", str(out),
                                           "--subjects", "1", "--clips-per-class", "1",
                                           "--frame-size", "48x48", "--length", "5:6",
                                           "--layout", "part_A", "--quiet"])
    assert result.exit_code == 0, result.output
    assert (out / "part_A" / "spNO.1").is_dir() and "long_clip" in result.output
    assert build_manifest("casme3", out).layout.name == "part_A"
