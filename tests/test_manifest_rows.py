"""Row validation and frame resolution on a hand-made CASME II tree."""

from __future__ import annotations

import openpyxl
import pytest

from mer_di.data_manifest import ManifestError, build_manifest, read_manifest, write_manifest

HEADER = ["Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None,
          "Action Units", "Estimated Emotion"]


@pytest.fixture
def casme_tree(tmp_path):
    """A CASME II root whose sheet has one row of each kind of problem."""
    rows = [
        ["01", "EP_ok", None, 10, 12, 15, None, 12, "happiness"],          # fine
        [2, "EP_missing_onset", None, None, 12, 15, None, 4, "disgust"],
        ["02", "EP_text_offset", None, 10, 12, "n/a", None, 4, "disgust"],
        ["02", "EP_reversed", None, 15, 12, 10, None, 4, "disgust"],
        ["03", "EP_apex_out", None, 10, 20, 15, None, 4, "others"],
        ["03", "EP_no_folder", None, 10, 12, 15, None, 4, "others"],
        ["03", "EP_gap", None, 10, 12, 15, None, 4, "others"],
        ["01", "EP_ok", None, 10, 12, 15, None, 12, "happiness"],          # duplicate
        ["04", "EP_fear", None, 10, 12, 15, None, 4, "Fear"],
        ["04", "EP_apex_end", None, 10, 15, 15, None, 4, "surprise"],
        [None, None, None, None, None, None, None, None, "junk"],         # skipped
    ]
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(HEADER)
    for r in rows:
        ws.append(r)
    wb.save(tmp_path / "CASME2-coding-20140508.xlsx")
    for subject, clip in [("sub01", "EP_ok"), ("sub02", "EP_missing_onset"),
                          ("sub02", "EP_text_offset"), ("sub02", "EP_reversed"),
                          ("sub03", "EP_apex_out"), ("sub03", "EP_gap"), ("sub04", "EP_fear"),
                          ("sub04", "EP_apex_end")]:
        d = tmp_path / "Cropped" / subject / clip
        d.mkdir(parents=True)
        for n in range(5, 20):
            if not (clip == "EP_gap" and n in (13, 14)):
                (d / f"reg_img{n}.jpg").write_bytes(b"x")
    return tmp_path


def test_every_problem_is_reported(casme_tree):
    m = build_manifest("casme2", casme_tree)
    by_clip = {}
    for r in m.rows:
        by_clip.setdefault(r.clip, []).append(r)
    assert len(m.rows) == 10  # the junk row without a subject is skipped
    ok = by_clip["EP_ok"][0]
    assert ok.problems == "" and ok.full_ok and ok.onset_ok and ok.offset_ok
    assert ok.n_frames == 6
    assert ok.frame_path(10) == casme_tree / "Cropped/sub01/EP_ok/reg_img10.jpg"
    assert "onset missing: no image possible" in by_clip["EP_missing_onset"][0].problems
    assert by_clip["EP_missing_onset"][0].subject == "sub02"  # 2 and '02' alike
    assert "offset 'n/a' is not a frame number" in by_clip["EP_text_offset"][0].problems
    assert "onset 15 > offset 10" in by_clip["EP_reversed"][0].problems
    apex_out = by_clip["EP_apex_out"][0]
    assert "apex 20 after offset" in apex_out.problems
    assert "(full image possible)" in apex_out.problems
    assert apex_out.full_ok and not apex_out.onset_ok and not apex_out.offset_ok
    assert "clip folder missing" in by_clip["EP_no_folder"][0].problems
    gap = by_clip["EP_gap"][0]
    assert "frame files missing in [10, 15]: 2 of 6 (first: reg_img13.jpg)" in gap.problems
    assert not gap.full_ok
    dup = by_clip["EP_ok"][1]
    assert "duplicate clip (first on sheet row 2)" in dup.problems and not dup.full_ok
    fear = by_clip["EP_fear"][0]
    assert fear.label == "" and "emotion 'fear' is not in class set 'five'" in fear.problems
    end = by_clip["EP_apex_end"][0]
    assert "apex == offset (15)" in end.problems and end.onset_ok and not end.offset_ok
    assert all(r.problems for r in m.rows if r is not ok)


def test_class_sets_change_only_labels(casme_tree):
    m = build_manifest("casme2", casme_tree, classes="megc")
    labels = {r.clip: r.label for r in m.rows}
    assert labels["EP_ok"] == "positive" and labels["EP_gap"] == ""  # others left out
    assert build_manifest("casme2", casme_tree, classes="all").rows[8].label == "fear"


def test_manifest_csv_round_trip(casme_tree, tmp_path):
    rows = build_manifest("casme2", casme_tree).rows
    write_manifest(rows, tmp_path / "m.csv")
    assert read_manifest(tmp_path / "m.csv") == rows
    assert not (tmp_path / "m.csv.partial").exists()


def test_missing_sheet_names_what_was_looked_for(tmp_path):
    with pytest.raises(ManifestError, match="CASME2-coding-20140508.xlsx"):
        build_manifest("casme2", tmp_path)


def test_unknown_dataset_and_class_set(tmp_path):
    with pytest.raises(ManifestError, match="unknown dataset 'casme1'"):
        build_manifest("casme1", tmp_path)
    with pytest.raises(ManifestError, match="unknown class set"):
        build_manifest("casme2", tmp_path, classes="seven")
