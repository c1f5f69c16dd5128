"""Metrics against scikit-learn, folds, and reading caches into a training set."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score

from mer_di.data_manifest.synth import generate_dataset
from mer_di.pipeline.build import BuildOptions, build_cache
from mer_di.training.data import DataError, load_caches
from mer_di.training.folds import FoldError, make_folds, small_class_notes, validation_split
from mer_di.training.metrics import confusion, mean_std, scores


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.parametrize("n_classes", [2, 3, 5])
def test_metrics_match_sklearn(rng, n_classes):
    for _ in range(20):
        n = int(rng.integers(1, 40))
        y = rng.integers(0, n_classes, n)
        p = np.where(rng.random(n) < 0.5, y, rng.integers(0, n_classes, n))
        s = scores(y, p, n_classes)
        assert s.accuracy == pytest.approx(accuracy_score(y, p))
        assert s.uf1 == pytest.approx(f1_score(y, p, average="macro", zero_division=0))
        assert s.uar == pytest.approx(balanced_accuracy_score(y, p))
        np.testing.assert_array_equal(confusion(y, p, n_classes),
                                      confusion_matrix(y, p, labels=range(n_classes)))
    assert mean_std([0.5]) == (0.5, 0.0)
    assert mean_std([0.2, 0.4])[1] == pytest.approx(np.std([0.2, 0.4], ddof=1))


def _toy(rng, n_subjects=8, per=10, n_classes=4):
    subjects = np.repeat([f"s{i}" for i in range(n_subjects)], per)
    labels = rng.integers(0, n_classes, len(subjects))
    return labels, subjects


@pytest.mark.parametrize("protocol", ["kfold", "subject-kfold", "loso"])
def test_folds_partition_and_repeat(rng, protocol):
    labels, subjects = _toy(rng)
    folds = make_folds(protocol, labels, subjects, n_folds=4, seed=3)
    assert np.array_equal(np.sort(np.concatenate(folds)), np.arange(len(labels)))
    again = make_folds(protocol, labels, subjects, n_folds=4, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(folds, again, strict=True))
    if protocol != "kfold":
        for test in folds:
            train = np.setdiff1d(np.arange(len(labels)), test)
            assert not set(subjects[test]) & set(subjects[train])
    assert len(folds) == (8 if protocol == "loso" else 4)


def test_validation_split_comes_from_training_and_respects_subjects(rng):
    labels, subjects = _toy(rng)
    test = make_folds("subject-kfold", labels, subjects, n_folds=4, seed=0)[0]
    train = np.setdiff1d(np.arange(len(labels)), test)
    fit, val = validation_split(train, labels, subjects, subject_disjoint=True, seed=0)
    assert set(fit) | set(val) == set(train) and not set(fit) & set(val)
    assert not set(val) & set(test)
    assert not set(subjects[fit]) & set(subjects[val])


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("protocol", ["kfold", "subject-kfold"])
def test_a_class_with_fewer_clips_than_folds_is_our_note_not_sklearns(protocol):
    """scikit-learn's 'least populated class in y has only 2 members' UserWarning (with a
    path inside site-packages) reached the terminal; now the run's note says it."""
    labels = np.array([0] * 12 + [1] * 12 + [2] * 2)
    subjects = np.array([f"s{i % 6}" for i in range(len(labels))])
    folds = make_folds(protocol, labels, subjects, n_folds=5, seed=0)
    assert sum(len(f) for f in folds) == len(labels)
    train = np.setdiff1d(np.arange(len(labels)), folds[0])
    validation_split(train, labels, subjects, subject_disjoint=protocol != "kfold")
    (note,) = small_class_notes(protocol, 5, labels, ["happiness", "others", "fear"])
    assert note.startswith("class 'fear' has 2 clips, fewer than the 5 folds")
    assert "at least 3 test folds hold no clip of it" in note and "per-fold" in note
    assert small_class_notes("loso", 5, labels, ["a", "b", "c"]) == []
    assert small_class_notes(protocol, 2, labels, ["a", "b", "c"]) == []


def test_fold_errors(rng):
    labels, subjects = _toy(rng, n_subjects=3)
    with pytest.raises(FoldError, match="3 subjects cannot make 5"):
        make_folds("subject-kfold", labels, subjects)
    with pytest.raises(FoldError, match="unknown protocol"):
        make_folds("holdout", labels, subjects)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    base = tmp_path_factory.mktemp("cache")
    root = generate_dataset("casme2", base / "d", subjects=2, clips_per_class=1,
                            frame_size=(40, 40), length=(6, 8), seed=9).root
    return build_cache("casme2", root, base / "c.h5", options=BuildOptions(size=16)).cache


def test_load_cache_class_sets(cache):
    five = load_caches([cache], "five")
    assert five.classes == ["happiness", "disgust", "surprise", "repression", "others"]
    assert len(five) == 10 and five.full.shape == (10, 16, 16, 3)
    assert np.bincount(five.labels).tolist() == [2, 2, 2, 2, 2]
    assert len(load_caches([cache], "all")) == 11  # the 'fear' clip too
    with pytest.raises(DataError, match="leaves no clips in class"):
        _only_some(cache)


def _only_some(cache):
    """A cache whose surprise clips were removed: the MEGC set then has an empty class."""
    import shutil

    copy = cache.with_name("partial.h5")
    shutil.copy(cache, copy)
    with h5py.File(copy, "r+") as f:
        for subject in list(f):
            for clip in list(f[subject]):
                if f[subject][clip].attrs["emotion"] == "surprise":
                    del f[subject][clip]
    return load_caches([copy], "megc")


def test_dual_phase_samples_train_only(cache):
    from mer_di.training.samples import ImageBank, unit_samples

    clips = load_caches([cache], "five")
    bank = ImageBank(clips, 16, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    train = np.arange(6)
    samples = unit_samples(clips, bank, train, pair=False, dual=False)
    x, y = samples.index.numpy(), samples.labels.numpy()
    assert len(x) == 6
    samples = unit_samples(clips, bank, train, pair=False, dual=True)
    x, y = samples.index.numpy(), samples.labels.numpy()
    n_phase = clips.has_onset[train].sum() + clips.has_offset[train].sum()
    assert len(x) == 6 + n_phase and n_phase < 12  # quirk clips have fewer phase images
    assert np.bincount(y, minlength=5).sum() == len(x)


def test_image_bank_rows_are_the_images_asked_for(cache):
    """Each (image, clip) row of the bank is that clip's image, prepared."""
    from mer_di.training.augment import prepare_images
    from mer_di.training.samples import ImageBank, unit_samples

    clips = load_caches([cache], "five")
    bank = ImageBank(clips, 16, (0.1, 0.2, 0.3), (0.5, 0.5, 0.5))
    idx = np.array([1, 4, 7])
    for name in ("full", "onset", "offset", "apex_frame"):
        want = prepare_images(clips.images(name)[idx], 16, (0.1, 0.2, 0.3), (0.5, 0.5, 0.5))
        got = bank.tensor[torch.from_numpy(bank.rows(name, idx))]
        torch.testing.assert_close(got, want)
    pair = unit_samples(clips, bank, idx, pair=True, dual=False).index.numpy()
    on = np.where(clips.has_onset[idx], bank.rows("onset", idx), bank.rows("full", idx))
    np.testing.assert_array_equal(pair[:, 0], on)
    still = unit_samples(clips, bank, idx, pair=False, dual=False, apex_frame=True)
    np.testing.assert_array_equal(still.index.numpy(), bank.rows("apex_frame", idx))


def test_bad_caches(tmp_path):
    with pytest.raises(DataError, match="cache not found"):
        load_caches([tmp_path / "nope.h5"])
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(DataError, match="not a dynamic-image cache"):
        load_caches([foreign])


@pytest.mark.parametrize("per_class", [1, 2, 4, 9])
def test_validation_split_works_for_small_training_sets(per_class):
    labels = np.repeat(np.arange(5), per_class)
    subjects = np.array([f"s{i % 2}" for i in range(len(labels))])
    train = np.arange(len(labels))
    fit, val = validation_split(train, labels, subjects, subject_disjoint=True, seed=0)
    assert len(val) and len(fit)
    assert np.array_equal(np.sort(np.concatenate([fit, val])), train)


def test_grey_and_colour_caches_combine(small_datasets, tmp_path):
    """The MEGC composite: greyscale SAMM beside colour CASME II and MMEW."""
    caches = [build_cache(name, small_datasets[name], tmp_path / f"{name}.h5",
                          options=BuildOptions(size=16)).cache
              for name in ("casme2", "samm", "mmew")]
    clips = load_caches(caches, "megc")
    assert clips.full.shape[1:] == (16, 16, 3)
    assert clips.classes == ["negative", "positive", "surprise"]
    assert set(clips.datasets) == {"casme2", "samm", "mmew"}
    samm = np.flatnonzero(clips.datasets == "samm")
    np.testing.assert_array_equal(clips.full[samm, ..., 0], clips.full[samm, ..., 2])


def test_combining_caches_refuses_duplicates_and_mixed_class_names(small_datasets, tmp_path):
    """The same cache twice (by path or content) or an overlapping clip would train clips
    twice (under kfold, in training and test at once); CASME II's 'others' and SAMM's
    'other' are two classes only by accident of spelling."""
    import shutil

    casme = build_cache("casme2", small_datasets["casme2"], tmp_path / "c.h5",
                        options=BuildOptions(size=16)).cache
    samm = build_cache("samm", small_datasets["samm"], tmp_path / "s.h5",
                       options=BuildOptions(size=16)).cache
    with pytest.raises(DataError, match="is given twice"):
        load_caches([casme, casme])
    copy = shutil.copy(casme, tmp_path / "copy.h5")
    with pytest.raises(DataError, match="same content as"):
        load_caches([casme, copy])
    other = build_cache("casme2", small_datasets["casme2"], tmp_path / "c2.h5",
                        options=BuildOptions(size=16, weights="harmonic")).cache  # same clips
    with pytest.raises(DataError, match="is in more than one of"):
        load_caches([casme, other], "megc")
    for class_set in ("five", "all"):
        with pytest.raises(DataError, match="--classes megc"):
            load_caches([casme, samm], class_set)
    assert set(load_caches([casme, samm], "megc").datasets) == {"casme2", "samm"}


def test_a_non_finite_pixel_is_refused_by_clip_and_image(cache, tmp_path):
    import shutil

    bad = shutil.copy(cache, tmp_path / "inf.h5")
    with h5py.File(bad, "r+") as f:
        subject, clip = next((s, c) for s in sorted(f) for c in sorted(f[s])
                             if "onset" in f[s][c])
        image = f[subject][clip]["onset"]
        data = image[()]
        data[0, 0, 0] = np.inf
        image[...] = data
    with pytest.raises(DataError, match=rf"clip {subject}/{clip}, image 'onset', holds non-fin"):
        load_caches([bad])
