"""``mer-prep synth --from-sheet``: look-alike datasets named exactly as the real ones, from
the real sheets (skipped without ../shared) and from hand-made ones."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter

import openpyxl
import pytest
from click.testing import CliRunner

from mer_di.data_manifest import build_manifest
from mer_di.data_manifest.synth import generate_dataset, read_ground_truth
from mer_di.data_manifest.synth.from_sheet import MAX_DRAWN, generate_from_sheet
from mer_di.errors import SynthError
from mer_di.pipeline.cli import main as mer_prep

SIZE = (48, 48)
SHEETS = {"casme2": "CASME2-coding-20190701.xlsx", "samm": "SAMM_Micro_FACS_Codes_v2.xlsx",
          "smic": "combined_3class_gt.csv"}
MEGC = {"0": "negative", "1": "positive", "2": "surprise"}


@pytest.fixture(scope="module")
def megc(reference, tmp_path_factory):
    """CASME II, SAMM and SMIC look-alikes from the real sheets (small frames)."""
    base = tmp_path_factory.mktemp("megc")
    return {d: generate_from_sheet(d, base / d, reference / f, frame_size=SIZE, seed=1)
            for d, f in SHEETS.items()}


def test_manifests_of_the_megc_datasets(megc):
    counts = {}
    for dataset, result in megc.items():
        assert result.not_drawn == []
        m = build_manifest(dataset, result.root, classes="megc")
        assert all(r.full_ok for r in m.rows)
        assert not any("missing" in r.problems for r in m.rows)
        counts[dataset] = Counter(r.label for r in m.rows if r.label)
    assert counts["casme2"] == {"negative": 90, "positive": 32, "surprise": 28}  # 145 + 5
    assert counts["samm"] == {"negative": 92, "positive": 26, "surprise": 15}
    assert counts["smic"] == {"negative": 70, "positive": 51, "surprise": 43}
    assert len(build_manifest("casme2", megc["casme2"].root).rows) == 255
    assert len(build_manifest("samm", megc["samm"].root).rows) == 159


def test_every_composite_clip_is_there_with_its_label(megc, reference):
    labels = {d: {r.key: r.label for r in build_manifest(d, megc[d].root, classes="megc").rows}
              for d in SHEETS}
    with (reference / "combined_3class_gt.csv").open() as fh:
        composite = [r for r in csv.reader(fh) if r]
    assert Counter(r[0] for r in composite) == {"casme2": 145, "samm": 133, "smic": 164}
    for dataset, subject, clip, cls in composite:
        if dataset == "samm":
            subject = f"{int(subject):03d}"
        elif dataset == "smic":
            subject = f"s{int(subject[1:])}"
            clip = f"{subject}_{clip.split('_', 1)[1]}"
        assert labels[dataset][f"{subject}/{clip}"] == MEGC[cls], (dataset, subject, clip)


def test_ground_truth_sheet_and_frames(megc, reference):
    for dataset in ("casme2", "samm"):
        result = megc[dataset]
        assert result.sheet == result.root / SHEETS[dataset]
        assert result.sheet.read_bytes() == (reference / SHEETS[dataset]).read_bytes()
        truth = read_ground_truth(result.root)
        m = build_manifest(dataset, result.root, classes="all")
        assert len(truth) == len(m.rows)
        for row, gt in zip(m.rows, truth, strict=True):
            assert (row.key, row.sheet_row, row.onset, row.offset, row.emotion) == (
                f"{gt['subject']}/{gt['clip']}", int(gt["sheet_row"]), int(gt["onset"]),
                int(gt["offset"]), gt["emotion"])
            first, last = int(gt["first_frame"]), int(gt["last_frame"])
            assert row.onset - 3 <= first < row.onset and row.offset < last <= row.offset + 3
            assert len(list(row.frame_path(row.onset).parent.iterdir())) == last - first + 1
            if row.apex is not None and row.onset <= row.apex <= row.offset:
                assert int(gt["true_apex"]) == row.apex
    smic = megc["smic"]
    assert not smic.has_sheet and smic.sheet == smic.root / "SMIC_all_cropped" / "HS"
    rows = build_manifest("smic", smic.root).rows
    assert rows[0].key == "s1/s1_ne_01" and rows[0].frame_template == "reg_image{n:06d}.bmp"
    assert all(20 <= r.n_frames <= 50 for r in rows)


def test_mmew_from_its_csv_export(reference, tmp_path):
    sheet = reference / "MMEW_Micro_Exp_export_without_others.csv"
    result = generate_from_sheet("mmew", tmp_path / "m", sheet, frame_size=SIZE)
    assert result.sheet.name == "MMEW_Micro_Exp.csv" and result.not_drawn == []
    m = build_manifest("mmew", result.root, classes="all")
    assert len(m.rows) == 234 and all(r.full_ok for r in m.rows)
    assert all(r.onset == 1 for r in m.rows)


# -- hand-made sheets ----------------------------------------------------------------------

HEADER = ["Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None,
          "Action Units", "Estimated Emotion"]


def _casme2_sheet(path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(HEADER)
    for row in [
        ["01", "EP01_01", None, 10, 14, 20, None, "12", "happiness"],     # row 2: drawn
        ["01", "EP01_02", None, None, 14, 20, None, "4", "disgust"],      # 3: no onset
        ["02", "EP02_01", None, 30, 25, 20, None, "4", "disgust"],        # 4: onset > offset
        ["02", "EP02_02", None, 1, 5, MAX_DRAWN + 100, None, "4", "others"],  # 5: too long
        ["02", "../x", None, 1, 5, 9, None, "4", "others"],               # 6: no folder name
        ["01", "EP01_01", None, 10, 14, 20, None, "12", "happiness"],     # 7: duplicate
        ["03", "EP03_01", None, 5, "/", 12, None, "1+2", "surprise"],     # 8: drawn, apex '/'
        ["03", "EP03_02", None, 5, 7, 12, None, "1+2", "sadness"],        # 9: drawn, outside 5
        [None, "junk", None, None, None, None, None, None, None],        # skipped
    ]:
        ws.append(row)
    wb.save(path)
    return path


def test_rows_that_cannot_be_drawn_are_reported(tmp_path):
    sheet = _casme2_sheet(tmp_path / "my copy.xlsx")
    result = generate_from_sheet("casme2", tmp_path / "d", sheet, frame_size=SIZE, seed=3)
    assert result.sheet == result.root / "CASME2-coding-20140508.xlsx"  # the official name
    assert [(row, key) for row, key, _ in result.not_drawn] == [
        (3, "sub01/EP01_02"), (4, "sub02/EP02_01"), (5, "sub02/EP02_02"), (6, "sub02/../x"),
        (7, "sub01/EP01_01")]
    why = [w for _, _, w in result.not_drawn]
    assert why[0] == "onset missing: no image possible"
    assert why[1] == "onset 30 > offset 20: no image possible"
    assert why[2] == (f"onset 1 to offset {MAX_DRAWN + 100} is {MAX_DRAWN + 100} frames, more "
                      f"than the {MAX_DRAWN} the generator draws")
    assert "path separator" in why[3] and why[4].startswith("duplicate clip")
    text = result.describe()
    assert "rows left without frames (5):\n  row 3  sub01/EP01_02: onset missing" in text
    assert [c.key if hasattr(c, "key") else f"{c.subject}/{c.clip}" for c in result.clips] == [
        "sub01/EP01_01", "sub03/EP03_01", "sub03/EP03_02"]
    m = build_manifest("casme2", result.root)
    by_row = {r.sheet_row: r for r in m.rows}
    assert by_row[2].problems == "" and by_row[2].full_ok
    assert "apex '/'" in by_row[8].problems and by_row[8].full_ok
    assert by_row[9].full_ok and "not in class set 'five'" in by_row[9].problems
    assert "clip folder missing" in by_row[5].problems  # the reader reports it too
    assert "onset missing" in by_row[3].problems and "onset 30 > offset 20" in \
        by_row[4].problems
    truth = {int(g["sheet_row"]): g for g in read_ground_truth(result.root)}
    assert truth[5]["quirk"].startswith("not drawn: onset 1 to offset")
    assert truth[5]["first_frame"] == "" and truth[2]["quirk"] == ""
    # the same seed gives the same bytes
    again = generate_from_sheet("casme2", tmp_path / "e", sheet, frame_size=SIZE, seed=3)
    assert _digest(again.root) == _digest(result.root)


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_smic_rows_of_a_composite_file(tmp_path):
    sheet = tmp_path / "gt.csv"
    sheet.write_text("casme2,sub01,EP02_01f,1\nsmic,s01,s01_ne_01,0\nsmic,s02,s02_po_01,1\n"
                     "smic,s11,s11_sur_02,2\nsmic,s03,s03_ne_01,5\nsmic,s03,s04_ne_01,0\n"
                     "smic,s01,s01_ne_01,0\nsmic,x,y,0\n")
    result = generate_from_sheet("smic", tmp_path / "s", sheet, frame_size=SIZE, length=(8, 9))
    assert [(line, key) for line, key, _ in result.not_drawn] == [
        (5, "s3/s3_ne_01"), (6, "s3/s4_ne_01"), (7, "s1/s1_ne_01"), (8, "x/y")]
    assert "class '5' is not 0, 1 or 2" in result.not_drawn[0][2]
    m = build_manifest("smic", result.root)
    assert [(r.key, r.label, r.n_frames in (8, 9)) for r in m.rows] == [
        ("s1/s1_ne_01", "negative", True), ("s2/s2_po_01", "positive", True),
        ("s11/s11_sur_02", "surprise", True)]
    assert all(r.problems == "" for r in m.rows)
    (tmp_path / "c.csv").write_text("Subject,Filename,OnsetFrame\n01,EP01_01,10\n")
    with pytest.raises(SynthError, match="no smic rows"):
        generate_from_sheet("smic", tmp_path / "t", tmp_path / "c.csv")
    with pytest.raises(SynthError, match="combined_3class_gt.csv"):
        generate_from_sheet("smic", tmp_path / "t", _casme2_sheet(tmp_path / "c.xlsx"))


def test_casme3_round_trip(tmp_path):
    """A CAS(ME)^3 look-alike's sheet drawn again: the same clips, the two rows without
    frame numbers (offset 0, onset > offset) left out."""
    first = generate_dataset("casme3", tmp_path / "a", subjects=2, clips_per_class=1,
                             frame_size=SIZE, length=(5, 7), seed=4)
    result = generate_from_sheet("casme3", tmp_path / "b", first.sheet, frame_size=SIZE)
    quirk = {int(g["sheet_row"]): g["quirk"] for g in read_ground_truth(first.root)}
    assert sorted(quirk[row] for row, _, _ in result.not_drawn) == [
        "offset_zero", "onset_after_offset"]
    a = build_manifest("casme3", first.root)
    b = build_manifest("casme3", result.root)
    assert [r.key.lower() for r in a.rows] == [r.key.lower() for r in b.rows]
    assert [(r.onset, r.offset) for r in a.rows] == [(r.onset, r.offset) for r in b.rows]
    assert sum(r.full_ok for r in b.rows) == len(b.rows) - 2


def test_cli(tmp_path):
    sheet = _casme2_sheet(tmp_path / "s.xlsx")
    runner = CliRunner()
    result = runner.invoke(mer_prep, ["synth", "--dataset", "casme2", "--out",
                                      str(tmp_path / "d"), "--from-sheet", str(sheet),
                                      "--frame-size", "48x48", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "from the rows of" in result.output and "rows left without frames (5):" in \
        result.output
    for extra, message in [(["--subjects", "3"], "--subjects: not used with --from-sheet"),
                           (["--length", "5:9"], "--length does not apply with --from-sheet")]:
        bad = runner.invoke(mer_prep, ["synth", "--dataset", "casme2", "--out",
                                       str(tmp_path / "x"), "--from-sheet", str(sheet), *extra])
        assert bad.exit_code != 0 and message in bad.output and "Traceback" not in bad.output
        assert not (tmp_path / "x").exists()
    (tmp_path / "n.csv").write_text("Subject,Filename\n6,S06-01-001\n")
    for dataset, message in [("samm", "a .csv file cannot stand for SAMM's sheet"),
                             ("mmew", "no sheet has a header row")]:
        bad = runner.invoke(mer_prep, ["synth", "--dataset", dataset, "--out",
                                       str(tmp_path / "y"), "--from-sheet",
                                       str(tmp_path / "n.csv")])
        assert bad.exit_code == 1 and message in bad.output, bad.output
        assert not (tmp_path / "y").exists()
    assert not (tmp_path / "y").exists()
