"""The look-alike datasets: official layouts, exact ground truth, planted quirks, seeds."""

from __future__ import annotations

import hashlib
import shutil

import cv2
import numpy as np
import pytest

from mer_di.data_manifest import build_manifest
from mer_di.data_manifest.synth import QUIRKS, SynthError, generate_dataset, read_ground_truth
from tests.conftest import SMALL

EXPECTED_PROBLEM = {
    "apex_slash": "apex '/' is not a frame number: no onset or offset image (full image possible)",
    "apex_equals_onset": "apex == onset",
    "apex_after_offset": "after offset",
    "emotion_outside_five": "is not in class set 'five'",
}


@pytest.mark.parametrize("dataset", ["casme2", "samm", "mmew"])
def test_manifest_reproduces_ground_truth(small_datasets, dataset):
    root = small_datasets[dataset]
    truth = read_ground_truth(root)
    m = build_manifest(dataset, root)
    assert m.frames_found
    assert len(m.rows) == len(truth) == 3 * 5 * 1 + 1
    for row, gt in zip(m.rows, truth, strict=True):
        assert (row.subject, row.clip, row.sheet_row) == (gt["subject"], gt["clip"],
                                                          int(gt["sheet_row"]))
        assert row.onset == int(gt["onset"]) and row.offset == int(gt["offset"])
        assert row.apex == (int(gt["apex"]) if gt["apex"] else None)
        assert row.emotion == gt["emotion"] and row.n_frames == int(gt["n_frames"])
        if gt["quirk"]:
            assert EXPECTED_PROBLEM[gt["quirk"]] in row.problems, (gt, row.problems)
            assert ";" not in row.problems  # the planted quirk and nothing else
        else:
            assert row.problems == "" and row.full_ok and row.onset_ok and row.offset_ok
    assert sorted(g["quirk"] for g in truth if g["quirk"]) == sorted(QUIRKS)


@pytest.mark.parametrize("dataset", ["casme2", "samm", "mmew"])
def test_frames_on_disk(small_datasets, dataset):
    root = small_datasets[dataset]
    m = build_manifest(dataset, root)
    for row, gt in zip(m.rows, read_ground_truth(root), strict=True):
        first, last = int(gt["first_frame"]), int(gt["last_frame"])
        files = sorted(p.name for p in row.frame_path(first).parent.iterdir())
        assert len(files) == last - first + 1
        if dataset == "mmew":
            assert first == row.onset == 1 and last == row.offset
        else:  # real CASME II and SAMM folders hold frames around the clip
            assert first < row.onset and last > row.offset
    img = cv2.imread(str(m.rows[0].frame_path(m.rows[0].onset)), cv2.IMREAD_UNCHANGED)
    assert img.shape[:2] == (72, 64)
    assert img.ndim == (2 if dataset == "samm" else 3)  # SAMM frames are greyscale


def test_layout_paths(small_datasets):
    casme = build_manifest("casme2", small_datasets["casme2"]).rows[0]
    assert casme.frame_dir.endswith(f"Cropped/{casme.subject}/{casme.clip}")
    assert casme.frame_template == "reg_img{n}.jpg"
    samm = build_manifest("samm", small_datasets["samm"])
    assert samm.header_row == 14 and samm.sheet_name == "MICRO_ONLY"
    assert samm.rows[0].frame_path(5).name == f"{samm.rows[0].subject}_00005.jpg"
    mmew = build_manifest("mmew", small_datasets["mmew"]).rows[0]
    assert "/Micro_Expression/" in mmew.frame_dir


def test_mmew_subject_layout_and_repression_folder(tmp_path):
    root = generate_dataset("mmew", tmp_path / "m", layout="subject", seed=3, **SMALL).root
    others = list(root.glob("S*/others"))
    assert others
    for folder in others:
        folder.rename(folder.with_name("repression"))
    m = build_manifest("mmew", root)
    assert m.layout.name == "subject"
    truth = read_ground_truth(root)
    assert [r.problems == "" for r in m.rows] == [not g["quirk"] for g in truth]
    assert any("/repression/" in r.frame_dir for r in m.rows)


def test_casme2_raw_layout(tmp_path):
    root = generate_dataset("casme2", tmp_path / "c", layout="raw", seed=1,
                            **{**SMALL, "frame_size": (96, 72)}).root
    m = build_manifest("casme2", root)
    assert m.layout.name == "raw" and m.rows[0].frame_template == "img{n}.jpg"
    assert "/CASME2_RAW_selected/" in m.rows[0].frame_dir


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes(tmp_path, small_datasets):
    again = generate_dataset("samm", tmp_path / "again", seed=7, **SMALL).root
    assert _digest(again) == _digest(small_datasets["samm"])
    other = generate_dataset("samm", tmp_path / "other", seed=8, **SMALL).root
    assert _digest(other) != _digest(again)


def test_motion_is_small_local_and_peaks_at_apex(small_datasets):
    """The face moves by about 1-2 px, only around the class's feature, most at the apex."""
    root = small_datasets["casme2"]
    m = build_manifest("casme2", root)
    row = next(r for r in m.rows if not r.problems)

    def frame(n):
        return cv2.imread(str(row.frame_path(n)), cv2.IMREAD_GRAYSCALE).astype(np.float32)

    before = frame(row.onset - 2)
    # the strongest local change (sensor noise is everywhere, the motion at one feature)
    change = [np.percentile(np.abs(cv2.GaussianBlur(frame(n) - before, (0, 0), 1.0)), 99.5)
              for n in range(row.onset, row.offset + 1)]
    assert int(np.argmax(change)) + row.onset in range(row.apex - 2, row.apex + 3)
    assert max(change) > 2 * min(change[:1] + change[-1:])


def test_refuses_a_non_empty_out(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    with pytest.raises(SynthError, match="not an empty folder"):
        generate_dataset("casme2", tmp_path / "x", **SMALL)
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"


def test_interrupted_run_leaves_nothing(tmp_path, monkeypatch):
    from mer_di.data_manifest.synth import generate

    calls = {"n": 0}
    real = generate.render_clip

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(generate, "render_clip", failing)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset("casme2", tmp_path / "d", **SMALL)
    assert list(tmp_path.iterdir()) == []
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_every_reader_has_a_generator_that_follows_it(tmp_path):
    """The generators take layouts, names and classes from the readers: a SAMM look-alike
    in the reader's second layout (frames at the root) reads back whole."""
    from mer_di.data_manifest import DATASETS, get_reader
    from mer_di.data_manifest.synth.registry import SPECS, get_spec

    assert set(SPECS) == set(DATASETS)
    for name in DATASETS:
        spec = get_spec(name)
        assert spec.layouts == tuple(x.name for x in get_reader(name).layouts)
    root = generate_dataset("samm", tmp_path / "samm", layout="root", subjects=2,
                            clips_per_class=1, frame_size=(96, 64), length=(5, 6), seed=1).root
    manifest = build_manifest("samm", root)
    assert manifest.layout.name == "root"
    truth = {(r["subject"], r["clip"]) for r in read_ground_truth(root)}
    assert {(r.subject, r.clip) for r in manifest.rows if r.full_ok} == truth
    with pytest.raises(SynthError, match="unknown dataset"):
        get_spec("casme1")


def test_every_spec_takes_its_classes_and_layouts_from_its_reader():
    """Each spec gives a motion to exactly the emotions of its reader's default class set
    (CASME II, SAMM, MMEW: the five classes) and its one extra emotion (if any), and names
    only its reader's layouts as face-cropped."""
    from mer_di.data_manifest.classes import CLASS_SETS, normalise_emotion
    from mer_di.data_manifest.synth.registry import SPECS

    for name, spec in SPECS.items():
        emotions = list(CLASS_SETS[name][spec.reader.default_classes])
        assert [normalise_emotion(e) for e in spec.emotions] == emotions
        assert spec.extra_class not in emotions
        assert set(spec.motions) == {*emotions, *([spec.extra_class] * bool(spec.extra_class))}
        assert set(spec.cropped_layouts) <= set(spec.layouts)
    assert {n for n, s in SPECS.items() if s.reader.default_classes == "five"} == \
        {"casme2", "samm", "mmew"}
