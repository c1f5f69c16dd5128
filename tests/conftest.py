"""Shared fixtures: the real reference sheets (when present) and small generated datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mer_di.data_manifest.synth import generate_dataset

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "reference" / "annotations"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def reference() -> Path:
    """The folder of real annotation sheets beside the checkout, or skip."""
    if not REFERENCE.is_dir():
        pytest.skip(f"real annotation sheets not found at {REFERENCE} (reference data is "
                    "not shipped with the project)")
    return REFERENCE


SMALL = {"subjects": 3, "clips_per_class": 1, "frame_size": (64, 72), "length": (6, 10)}


@pytest.fixture(scope="session")
def small_datasets(tmp_path_factory) -> dict[str, Path]:
    """One tiny generated dataset per kind (built once per test session)."""
    base = tmp_path_factory.mktemp("synth")
    return {name: generate_dataset(name, base / name, seed=7, **SMALL).root
            for name in ("casme2", "samm", "mmew")}


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    """A generated CASME II cache of 15 clips at 32 px: a tiny run of it trains in about a
    second (issue 18's tests run many)."""
    from mer_di.pipeline.build import BuildOptions, build_cache

    base = tmp_path_factory.mktemp("tiny")
    root = generate_dataset("casme2", base / "casme2", subjects=3, clips_per_class=1,
                            frame_size=(32, 32), length=(6, 8), seed=3).root
    return build_cache("casme2", root, base / "c.h5", options=BuildOptions(size=32)).cache
