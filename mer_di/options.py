"""Every option value the tool accepts, defined once, each with the sentence that explains it.

The commands take their choices and help texts from here, the library checks arguments
against the same names (:func:`check`), and a test holds the README to them. This module
imports nothing heavy, so a command's ``--help`` stays fast.
"""

from __future__ import annotations

from mer_di.errors import MerError

CROPS: dict[str, str] = {
    "none": "the whole frame (squashed to the square size)",
    "haar": "one square face box per clip, found on its onset frame by OpenCV's frontal-face "
            "cascade, with a 15% margin (no face: a centre crop, reported)",
}
WEIGHTS: dict[str, str] = {
    "linear": "a_t = 2t - T - 1 (the paper's Eq. 1)",
    "harmonic": "Bilen et al.'s weights, a_t = 2(T - t + 1) - (T + 1)(H_T - H_{t-1})",
}
CLASS_SETS: dict[str, str] = {
    "five": "the dataset's usual 5-class task (CASME II, SAMM, MMEW; their default)",
    "four": "CAS(ME)^3's 4-class task: negative, positive, surprise, others (its default)",
    "all": "every emotion the sheet uses (SMIC: its 3 classes, its default; CAS(ME)^3: its "
           "7 emotions)",
    "megc": "the MEGC2019 3-class composite (negative, positive, surprise)",
}
PROTOCOLS: dict[str, str] = {
    "kfold": "stratified over clips (the paper's)",
    "subject-kfold": "stratified, no subject in two folds",
    "loso": "leave one subject out (subjects are per dataset)",
    "lodo": "leave one dataset out: train on the other caches' datasets, test on it",
}
CONFIGS: dict[str, str] = {
    "baseline": "the full image of every training clip",
    "fliprot": "the full image, randomly flipped and rotated within +-10 degrees",
    "dualdi": "the full, onset and offset images of each training clip as three samples",
    "dualdi+fliprot": "both",
}
APEX_MODES: dict[str, str] = {
    "auto": "the sheet's apex where it is usable, otherwise spotted from the frames",
    "sheet": "the sheet's apex only (a clip without a usable one gets no phase images)",
    "spot": "spotted from the frames for every clip (the sheet's apex is kept beside it)",
    "middle": "the middle frame of every clip",
}
INPUTS: dict[str, str] = {
    "di": "the dynamic images",
    "apex": "each clip's apex frame alone, the motion-free control",
}

CROP_NAMES = tuple(CROPS)
WEIGHT_NAMES = tuple(WEIGHTS)
CLASS_SET_NAMES = tuple(CLASS_SETS)
PROTOCOL_NAMES = tuple(PROTOCOLS)
CONFIG_NAMES = tuple(CONFIGS)


def describe(choices: dict[str, str]) -> str:
    """``'a: what a; b: what b'``, for a command's help text."""
    return "; ".join(f"{name}: {text}" for name, text in choices.items())


def check(kind: str, value: str, choices: dict[str, str] | tuple[str, ...],
          error: type[MerError] = MerError) -> str:
    """``value`` when it is one of ``choices``; otherwise ``error`` naming ``kind`` and the
    choices."""
    if value not in choices:
        raise error(f"unknown {kind} {value!r}; choose one of {', '.join(choices)}")
    return value
