"""Class sets: which sheet emotions a task keeps, and under which class name.

- ``five``: the dataset's usual 5-class task (CASME II, SAMM, MMEW; their default).
- ``four``: CAS(ME)^3's 4-class task (negative / positive / surprise / others; its default).
- ``all``: every emotion the sheet uses, unchanged (lowercased); for SMIC its three classes
  (its default) and for CAS(ME)^3 its seven emotions, each a fixed list.
- ``megc``: the MEGC2019 3-class composite (negative / positive / surprise).

A set is defined only where it is listed for the dataset (``all`` everywhere): asking for
``five`` of SMIC or ``four`` of CASME II is a :class:`ManifestError` naming the sets the
dataset has. MMEW has no official 5-class or MEGC task; ours are stated here and in the
README: ``five`` keeps its five largest classes and ``megc`` maps by analogy with SAMM.
"""

from __future__ import annotations

from mer_di.errors import ManifestError
from mer_di.options import CLASS_SET_NAMES, check

_CASME3_FOUR = {"disgust": "negative", "fear": "negative", "anger": "negative",
                "sad": "negative", "happy": "positive", "surprise": "surprise",
                "others": "others"}

# dataset -> class set -> {normalised sheet emotion: class name}, in class-index order.
CLASS_SETS: dict[str, dict[str, dict[str, str]]] = {
    "casme2": {
        "five": {e: e for e in ("happiness", "disgust", "surprise", "repression", "others")},
        "megc": {
            "disgust": "negative",
            "repression": "negative",
            "happiness": "positive",
            "surprise": "surprise",
        },
    },
    "samm": {
        "five": {e: e for e in ("happiness", "anger", "surprise", "contempt", "other")},
        "megc": {
            "anger": "negative",
            "contempt": "negative",
            "disgust": "negative",
            "fear": "negative",
            "sadness": "negative",
            "happiness": "positive",
            "surprise": "surprise",
        },
    },
    "mmew": {
        "five": {e: e for e in ("happiness", "surprise", "disgust", "fear", "others")},
        "megc": {
            "anger": "negative",
            "disgust": "negative",
            "fear": "negative",
            "sadness": "negative",
            "happiness": "positive",
            "surprise": "surprise",
        },
    },
    # SMIC-HS: the emotion folders are the classes (negative, positive, surprise)
    "smic": {
        "all": {e: e for e in ("negative", "positive", "surprise")},
        "megc": {e: e for e in ("negative", "positive", "surprise")},
    },
    # CAS(ME)^3 part A: seven lowercase emotions; 4 and 7 classes are both reported
    "casme3": {
        "all": {e: e for e in ("disgust", "surprise", "others", "fear", "anger", "sad",
                               "happy")},
        "four": _CASME3_FOUR,
        # megc: the four classes less others
        "megc": {e: c for e, c in _CASME3_FOUR.items() if c != "others"},
    },
}

MEGC_CLASSES = ("negative", "positive", "surprise")  # 0, 1, 2 in combined_3class_gt.csv


def normalise_emotion(text: str) -> str:
    """The sheet's emotion, lowercased and stripped (``'Other '`` -> ``'other'``)."""
    return " ".join(str(text).split()).lower()


def map_label(dataset: str, class_set: str, emotion: str) -> str | None:
    """The class name of ``emotion`` in ``class_set``, or None when the set leaves it out.

    :class:`ManifestError` for a class set the dataset does not define."""
    mapping = _mapping(dataset, class_set)
    norm = normalise_emotion(emotion)
    if mapping is None:  # 'all' of a dataset without a fixed list: the sheet's emotions
        return norm or None
    return mapping.get(norm)


def class_names(dataset: str, class_set: str, emotions: list[str] | None = None) -> list[str]:
    """Class names of ``class_set`` in index order.

    For ``all`` the classes are sorted: the dataset's fixed list where it has one (SMIC,
    CAS(ME)^3), otherwise the emotions present (``emotions`` is then required).
    """
    mapping = _mapping(dataset, class_set)
    if class_set == "all":
        if mapping is not None:
            return sorted(set(mapping.values()))
        if emotions is None:
            raise ManifestError("class set 'all' takes its classes from the sheet's emotions")
        return sorted({normalise_emotion(e) for e in emotions if normalise_emotion(e)})
    if class_set == "megc":
        return list(MEGC_CLASSES)
    return list(dict.fromkeys(mapping.values()))


def class_sets_of(dataset: str) -> tuple[str, ...]:
    """The class sets ``dataset`` defines, in the options' order (``all`` always)."""
    defined = CLASS_SETS.get(dataset, {})
    return tuple(s for s in CLASS_SET_NAMES if s == "all" or s in defined)


def check_class_set(class_set: str, dataset: str | None = None) -> None:
    """:class:`ManifestError` for a class set that is not one of ours, or (``dataset``
    given) one that dataset does not define."""
    check("class set", class_set, CLASS_SET_NAMES, ManifestError)
    if dataset is not None and class_set not in class_sets_of(dataset):
        raise ManifestError(f"class set {class_set!r} is not defined for {dataset}; its class "
                            f"sets are {', '.join(class_sets_of(dataset))}")


def _mapping(dataset: str, class_set: str) -> dict[str, str] | None:
    """The dataset's mapping for ``class_set``; None for the open ``all`` (the sheet's
    emotions). Raises :class:`ManifestError` for a set the dataset does not define."""
    check_class_set(class_set, dataset)
    return CLASS_SETS.get(dataset, {}).get(class_set)
