"""SMIC-HS: clips read from the folders (no sheet), BMP frames with the camera's numbers,
no apex; its look-alike; BMP and PNG frames through the frame decoder."""

from __future__ import annotations

import hashlib
import shutil
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from mer_di.data_manifest import ManifestError, build_manifest, class_names, summarise
from mer_di.data_manifest.classes import map_label
from mer_di.data_manifest.smic import frame_pattern
from mer_di.data_manifest.synth import generate_dataset, read_ground_truth
from mer_di.errors import FrameError
from mer_di.pipeline.cli import main as mer_prep
from mer_di.pipeline.frames import load_clip

SMALL = {"subjects": 3, "clips_per_class": 2, "frame_size": (48, 56), "length": (6, 12)}
GAP = "frame files missing in ["


@pytest.fixture(scope="module")
def smic(tmp_path_factory):
    return generate_dataset("smic", tmp_path_factory.mktemp("smic") / "smic", seed=5,
                            **SMALL).root


def test_manifest_reproduces_ground_truth(smic):
    truth = read_ground_truth(smic)
    m = build_manifest("smic", smic)
    assert m.from_folders and m.frames_found and m.layout.name == "cropped"
    assert m.sheet == smic / "SMIC_all_cropped" / "HS" and m.sheet_name == "(folders)"
    assert m.header_row == 0 and m.class_set == "all"
    assert m.classes == ["negative", "positive", "surprise"]
    assert len(m.rows) == len(truth) == 3 * 3 * 2
    for i, (row, gt) in enumerate(zip(m.rows, truth, strict=True), 1):
        assert (row.subject, row.clip, row.sheet_row) == (gt["subject"], gt["clip"], i)
        assert int(gt["sheet_row"]) == i
        assert row.emotion == row.label == gt["emotion"]
        assert (row.onset, row.offset) == (int(gt["first_frame"]), int(gt["last_frame"]))
        assert row.onset > 10_000  # the camera's numbers, not 1..N
        assert row.apex is None and gt["apex"] == ""  # no apex anywhere ...
        assert row.onset < int(gt["true_apex"]) < row.offset  # ... but the truth has it
        assert not row.onset_ok and not row.offset_ok
        assert row.frame_template == "reg_image{n:06d}.bmp"
        assert row.frame_path(row.onset).is_file()
        if gt["quirk"]:
            assert gt["quirk"] == "frame_gap"
            assert row.problem_list == [row.problems] and row.problems.startswith(GAP)
            assert f"]: 1 of {row.n_frames} (first: reg_image0" in row.problems
            assert row.problems.endswith(": no image possible") and not row.full_ok
        else:
            assert row.problems == "" and row.full_ok
    assert sum(bool(g["quirk"]) for g in truth) == 1
    # non_micro/ holds clips too, with names of micro clips: none is read
    hs = smic / "SMIC_all_cropped" / "HS"
    assert list(hs.glob("*/non_micro/*/*/*.bmp"))
    assert not any("non_micro" in r.frame_dir for r in m.rows)


def test_summary_and_messages_read_for_a_sheetless_dataset(smic, tmp_path):
    m = build_manifest("smic", smic)
    text = summarise(m)
    assert text.startswith(f"SMIC-HS manifest: 18 clips, 3 subjects, clips read from the "
                           f"folders under {smic / 'SMIC_all_cropped' / 'HS'}")
    assert "(the dataset annotates no apex)" in text and "sheet rows" not in text
    assert "clips per subject (rows in the set):\n  s1: 6   s2: 6   s3: 6" in text
    (tmp_path / "HS").mkdir()
    empty = build_manifest("smic", tmp_path)
    assert empty.why_no_clip() == ("SMIC-HS: no usable clip: no clip folder "
                                   f"(<subject>/micro/<emotion>/<clip>/) in {tmp_path / 'HS'}")
    high = build_manifest("smic", smic.parent)  # one folder too high
    assert not high.frames_found
    assert high.why_no_clip().endswith(f"{smic} holds SMIC-HS's folders: is that the --root?")
    with pytest.raises(ManifestError, match="no annotation sheet"):
        build_manifest("smic", smic, sheet=smic / "synth_ground_truth.csv")


def test_roots_accepted(smic, tmp_path):
    hs = smic / "SMIC_all_cropped" / "HS"
    keys = [r.key for r in build_manifest("smic", smic).rows]
    for root, layout in [(hs, "root"), (smic / "SMIC_all_cropped", "hs")]:
        m = build_manifest("smic", root)
        assert m.layout.name == layout and [r.key for r in m.rows] == keys
    raw = generate_dataset("smic", tmp_path / "raw", layout="raw", seed=5, **SMALL).root
    m = build_manifest("smic", raw)
    assert m.layout.name == "raw" and m.rows[0].frame_template == "image{n:06d}.bmp"
    assert "/SMIC_all_raw/HS/" in m.rows[0].frame_dir


def test_class_sets(smic):
    assert [r.label for r in build_manifest("smic", smic, classes="megc").rows] == \
        [r.emotion for r in build_manifest("smic", smic).rows]
    for undefined in ("five", "four"):
        with pytest.raises(ManifestError, match=rf"class set '{undefined}' is not defined for "
                           "smic; its class sets are all, megc"):
            build_manifest("smic", smic, classes=undefined)
        with pytest.raises(ManifestError, match="not defined for smic"):
            map_label("smic", undefined, "negative")
        with pytest.raises(ManifestError, match="not defined for smic"):
            class_names("smic", undefined)


@pytest.mark.parametrize("names,template,numbers", [
    (["reg_image046623.bmp", "reg_image046625.bmp", "reg_image046624.bmp"],
     "reg_image{n:06d}.bmp", [46623, 46624, 46625]),
    (["image99999.bmp", "image100000.bmp", "Thumbs.db"], "image{n}.bmp", [99999, 100000]),
    (["reg_00001.bmp", "reg_00002.bmp"], "reg_{n:05d}.bmp", [1, 2]),
    (["a{b}7.png", "a{b}8.png"], "a{{b}}{n}.png", [7, 8]),
    (["50%_01.png", "50%_02.png"], "50%_{n:02d}.png", [1, 2]),
    (["46623.JPG", "46624.JPG"], "{n}.JPG", [46623, 46624]),
])
def test_frame_pattern(names, template, numbers):
    assert frame_pattern(names) == (template, numbers, "")
    assert template.format(n=numbers[0]) in names


@pytest.mark.parametrize("names,why", [
    ([], "no frame files (.bmp, .jpg, .jpeg, .png) in the clip folder"),
    (["notes.txt"], "no frame files"),
    (["reg_image000001.bmp", "image000002.bmp"], "follow 2 patterns"),
    (["img001.bmp", "img0002.bmp"], "numbers (imgN.bmp) are zero-padded to 2 widths (3, 4)"),
    (["img001.bmp", "face.bmp"], "follow 2 patterns (img{n:03d}.bmp: 1 file, face.bmp: 1"),
])
def test_frame_pattern_problems(names, why):
    template, numbers, problem = frame_pattern(names)
    assert (template, numbers) == ("", []) and why in problem
    assert problem.endswith(": no image possible")


def test_folder_quirks_are_row_problems(smic, tmp_path):
    root = tmp_path / "s"
    shutil.copytree(smic, root)
    m = build_manifest("smic", root)
    first, second = m.rows[0], m.rows[1]
    folder = root / "SMIC_all_cropped/HS/s1/micro"
    (folder / "negative" / "s1_ne_03").mkdir()  # an empty clip folder
    for p in list((folder / first.emotion / first.clip).iterdir())[:3]:
        p.rename(p.with_name("x" + p.name))  # a second name pattern
    one = folder / second.emotion / second.clip
    for p in sorted(one.iterdir())[1:]:
        p.unlink()  # one frame left
    shutil.copytree(folder / "positive" / "s1_po_01", folder / "surprise" / "s1_po_01")
    (folder / "Thumbs.db").write_bytes(b"x")
    (folder / "other").mkdir()
    by_key = {}
    for r in build_manifest("smic", root).rows:
        by_key.setdefault(r.key, []).append(r)
    assert "follow 2 patterns" in by_key[first.key][0].problems
    assert "one frame file (" in by_key[second.key][0].problems
    assert "no frame files" in by_key["s1/s1_ne_03"][0].problems
    pos, dup = by_key["s1/s1_po_01"]
    assert pos.emotion == "positive" and pos.problems == "" and pos.full_ok
    assert dup.emotion == "surprise" and not dup.full_ok
    assert dup.problems == f"duplicate clip (first as row {pos.sheet_row}): not used"


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_and_bmp_frames(smic, tmp_path):
    again = generate_dataset("smic", tmp_path / "again", seed=5, **SMALL).root
    assert _digest(again) == _digest(smic)
    row = build_manifest("smic", smic).rows[0]
    data = row.frame_path(row.onset).read_bytes()
    assert data[:2] == b"BM"
    img = cv2.imread(str(row.frame_path(row.onset)), cv2.IMREAD_UNCHANGED)
    assert img.shape == (56, 48, 3)


def test_cli_synth_and_manifest(tmp_path):
    out = tmp_path / "d"
    result = CliRunner().invoke(mer_prep, ["synth", "--dataset", "smic", "--out", str(out),
                                           "--subjects", "1", "--clips-per-class", "1",
                                           "--frame-size", "48x48", "--length", "6:8",
                                           "--quiet"])
    assert result.exit_code == 0, result.output
    assert "no annotation sheet: the clips are read from the folders under" in result.output
    assert "clip 1  s1/s1_ne_01: frame_gap" in result.output
    result = CliRunner().invoke(mer_prep, ["manifest", "--dataset", "smic", "--root", str(out),
                                           "--out", str(tmp_path / "m.csv")])
    assert result.exit_code == 0, result.output
    assert "class set 'all' (negative, positive, surprise)" in result.output
    bad = CliRunner().invoke(mer_prep, ["manifest", "--dataset", "smic", "--root", str(out),
                                        "--classes", "five", "--out", str(tmp_path / "x.csv")])
    assert bad.exit_code == 1 and "not defined for smic" in bad.output
    assert "Traceback" not in bad.output


# -- BMP and PNG frames through the frame decoder ------------------------------------------

def _frames(tmp_path, suffix, shapes):
    paths = []
    for n, shape in enumerate(shapes):
        path = tmp_path / f"f{n}{suffix}"
        cv2.imwrite(str(path), np.full(shape, 40 * n, np.uint8))
        paths.append((n, path))
    return paths


@pytest.mark.parametrize("suffix", [".bmp", ".png"])
def test_bmp_and_png_frames_decode_reduced_and_checked(tmp_path, suffix):
    with ThreadPoolExecutor(2) as pool:
        paths = _frames(tmp_path, suffix, [(171, 141, 3)] * 4)
        clip = load_clip(paths, 64, "none", pool)
        assert clip.frames.shape == (4, 85, 70, 3) and clip.reduce == 2
        assert [int(f.mean()) for f in clip.frames] == [0, 40, 80, 120]
        # a frame of another size is a bad frame (it was cropped silently)
        paths = _frames(tmp_path, suffix, [(100, 80, 3), (100, 80, 3), (120, 90, 3)])
        with pytest.raises(FrameError, match=r"frame 2 .*size 90x120 differs"):
            load_clip(paths, None, "none", pool)
        if suffix == ".png":  # a greyscale frame in a colour clip is named
            paths = _frames(tmp_path, suffix, [(100, 80, 3), (100, 80)])
            assert "greyscale in a colour clip" in load_clip(paths, None, "none", pool).notes[0]


def test_a_bmp_header_claiming_65000x65000_is_a_bad_frame(tmp_path):
    (_, path), = _frames(tmp_path, ".bmp", [(10, 8, 3)])
    data = bytearray(path.read_bytes())
    data[18:22] = (65000).to_bytes(4, "little")
    data[22:26] = (-65000).to_bytes(4, "little", signed=True)  # top-down
    path.write_bytes(bytes(data))
    with ThreadPoolExecutor(1) as pool, pytest.raises(FrameError, match="65000x65000"):
        load_clip([(0, path)], None, "none", pool)


def test_build_cache_of_smic(smic, tmp_path):
    from mer_di.pipeline.build import BuildOptions, build_cache
    from mer_di.pipeline.cache_reader import open_cache

    report = build_cache("smic", smic, tmp_path / "c.h5", options=BuildOptions(size=32))
    assert report.built == 17
    with open_cache(tmp_path / "c.h5") as cache:
        assert len(cache) == 17
