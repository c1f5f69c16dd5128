"""Class sets: which sheet emotions a task keeps, and under which class name.

- ``five``: the dataset's usual 5-class task (the default).
- ``all``: every emotion the sheet uses, unchanged (lowercased).
- ``megc``: the MEGC2019 3-class composite (negative / positive / surprise).

MMEW has no official 5-class or MEGC task; ours are stated here and in the README:
``five`` keeps its five largest classes and ``megc`` maps by analogy with SAMM.
"""

from __future__ import annotations

from mer_di.errors import ManifestError
from mer_di.options import CLASS_SET_NAMES, check

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
}

MEGC_CLASSES = ("negative", "positive", "surprise")  # 0, 1, 2 in combined_3class_gt.csv


def normalise_emotion(text: str) -> str:
    """The sheet's emotion, lowercased and stripped (``'Other '`` -> ``'other'``)."""
    return " ".join(str(text).split()).lower()


def map_label(dataset: str, class_set: str, emotion: str) -> str | None:
    """The class name of ``emotion`` in ``class_set``, or None when the set leaves it out."""
    check_class_set(class_set)
    norm = normalise_emotion(emotion)
    if class_set == "all":
        return norm or None
    return CLASS_SETS[dataset][class_set].get(norm)


def class_names(dataset: str, class_set: str, emotions: list[str] | None = None) -> list[str]:
    """Class names of ``class_set`` in index order.

    For ``all`` the classes are the sorted emotions present (``emotions`` is required).
    """
    check_class_set(class_set)
    if class_set == "all":
        if emotions is None:
            raise ManifestError("class set 'all' takes its classes from the sheet's emotions")
        return sorted({normalise_emotion(e) for e in emotions if normalise_emotion(e)})
    if class_set == "megc":
        return list(MEGC_CLASSES)
    return list(dict.fromkeys(CLASS_SETS[dataset][class_set].values()))


def check_class_set(class_set: str) -> None:
    """:class:`ManifestError` for a class set that is not one of ours."""
    check("class set", class_set, CLASS_SET_NAMES, ManifestError)
