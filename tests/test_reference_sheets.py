"""The readers against the real, public annotation sheets (skipped when absent)."""

from __future__ import annotations

import csv
from collections import Counter

import pytest

from mer_di.data_manifest import build_manifest

MEGC_CLASS = {"0": "negative", "1": "positive", "2": "surprise"}


@pytest.fixture(scope="module")
def empty_root(tmp_path_factory):
    return tmp_path_factory.mktemp("empty")


def _rows(manifest):
    return {(r.subject, r.clip): r for r in manifest.rows}


def _composite(reference, dataset):
    with (reference / "combined_3class_gt.csv").open() as fh:
        return [r for r in csv.reader(fh) if r and r[0] == dataset]


def test_casme2_2019_facts(reference, empty_root):
    m = build_manifest("casme2", empty_root,
                       sheet=reference / "CASME2-coding-20190701.xlsx", classes="all")
    rows = _rows(m)
    assert len(m.rows) == 255 and len({r.subject for r in m.rows}) == 26
    assert Counter(r.label for r in m.rows) == {
        "others": 99, "disgust": 63, "happiness": 32, "surprise": 28, "repression": 27,
        "sadness": 4, "fear": 2}
    assert rows[("sub01", "EP02_01f")].onset == 46  # subject '01' -> sub01
    slash = rows[("sub04", "EP12_01f")]
    assert slash.apex is None and "apex '/' is not a frame number" in slash.problems
    assert not slash.onset_ok and not slash.offset_ok
    eq_onset = rows[("sub05", "EP09_05f")]
    assert eq_onset.apex == eq_onset.onset and "apex == onset" in eq_onset.problems
    for key in [("sub05", "EP16_04f"), ("sub12", "EP09_06"), ("sub20", "EP16_01"),
                ("sub25", "EP18_04f")]:
        assert rows[key].apex == rows[key].offset and "apex == offset" in rows[key].problems
    lengths = [r.n_frames for r in m.rows]
    assert min(lengths) == 24 and max(lengths) == 141
    # with no frames at hand, every clip folder is reported missing, named by path
    assert all("clip folder missing" in r.problems and not r.full_ok for r in m.rows)
    assert m.rows[0].sheet_row == 2


def test_casme2_five_classes(reference, empty_root):
    m = build_manifest("casme2", empty_root, sheet=reference / "CASME2-coding-20190701.xlsx")
    outside = [r for r in m.rows if not r.label]
    assert len(outside) == 6  # sadness 4 + fear 2 in the 2019 revision
    assert all("is not in class set 'five'" in r.problems for r in outside)
    assert m.classes == ["happiness", "disgust", "surprise", "repression", "others"]


def test_samm_facts(reference, empty_root):
    m = build_manifest("samm", empty_root, sheet=reference / "SAMM_Micro_FACS_Codes_v2.xlsx",
                       classes="all")
    assert m.sheet_name == "MICRO_ONLY" and m.header_row == 14
    assert len(m.rows) == 159 and len({r.subject for r in m.rows}) == 29
    assert m.rows[0].sheet_row == 15 and m.rows[0].key == "006/006_1_2"
    assert Counter(r.emotion for r in m.rows) == {
        "Anger": 57, "Other": 26, "Happiness": 26, "Surprise": 15, "Contempt": 12,
        "Disgust": 9, "Fear": 8, "Sadness": 6}
    rows = _rows(m)
    assert "apex 1143 after offset" in rows[("028", "028_4_1")].problems
    assert "apex 1930 before onset" in rows[("032", "032_3_1")].problems
    # Duration == offset - onset + 1 on every row: the reader would say otherwise
    assert not any("duration" in r.problems for r in m.rows)
    assert rows[("006", "006_1_2")].frame_path(5562).name == "006_05562.jpg"


def test_megc_casme2_reproduces_the_composite(reference, empty_root):
    m = build_manifest("casme2", empty_root, sheet=reference / "CASME2-coding-20190701.xlsx",
                       classes="megc")
    ours = {(r.subject, r.clip): r.label for r in m.rows if r.label}
    assert len(ours) == 150
    composite = {(s, f): MEGC_CLASS[c] for _, s, f, c in _composite(reference, "casme2")}
    assert len(composite) == 145
    assert Counter(composite.values()) == {"negative": 88, "positive": 32, "surprise": 25}
    extra = set(ours) - set(composite)
    assert extra == {("sub04", "EP12_01f"), ("sub05", "EP09_05f"), ("sub24", "EP07_01"),
                     ("sub24", "EP07_04f"), ("sub24", "EP10_03")}
    assert {k: ours[k] for k in composite} == composite  # every label agrees
    # the two the composite leaves out are exactly the rows whose apex is unusable
    assert all("apex" in _rows(m)[k].problems for k in [("sub04", "EP12_01f"),
                                                        ("sub05", "EP09_05f")])


def test_megc_samm_reproduces_the_composite(reference, empty_root):
    m = build_manifest("samm", empty_root, sheet=reference / "SAMM_Micro_FACS_Codes_v2.xlsx",
                       classes="megc")
    ours = {(str(int(r.subject)), r.clip): r.label for r in m.rows if r.label}
    composite = {(s, f): MEGC_CLASS[c] for _, s, f, c in _composite(reference, "samm")}
    assert len(composite) == 133
    assert Counter(composite.values()) == {"negative": 92, "positive": 26, "surprise": 15}
    assert ours == composite
    assert all(r.emotion == "Other" for r in m.rows if not r.label)


def test_mmew_export(reference, empty_root):
    m = build_manifest("mmew", empty_root,
                       sheet=reference / "MMEW_Micro_Exp_export_without_others.csv",
                       classes="all")
    assert len(m.rows) == 234
    assert all(r.onset == 1 for r in m.rows)
    assert m.rows[0].key == "S01/S01-01-001" and m.rows[0].frame_template == "{n}.jpg"
    assert Counter(r.label for r in m.rows) == {"surprise": 89, "disgust": 72,
                                                "happiness": 36, "fear": 16, "sadness": 13,
                                                "anger": 8}
    lengths = [r.n_frames for r in m.rows]
    assert min(lengths) >= 14 and max(lengths) <= 77
