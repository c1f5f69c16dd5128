"""The project's build backend: setuptools, building a wheel in a temporary copy.

setuptools writes ``build/`` and ``mer_di.egg-info/`` into the folder it builds from, so
``pip install .`` from a checkout used to leave them behind (and a stale ``build/`` can put
deleted modules into the next wheel). Here a wheel, and the metadata pip asks for first,
are built from a copy of the checkout in a temporary folder that is removed afterwards.
Editable installs and sdists are setuptools' own (an editable install must point at the
real folders); the editable one without setuptools' note that folders named like the package
in the working directory may shadow it, which every first install printed as a warning: here
that folder is the package itself.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from contextlib import contextmanager

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403  (every hook not redefined below)
from setuptools.warnings import InformationOnly

_LEAVE_OUT = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
    ".ruff_cache", "demo_out", "runs", "*.h5")


@contextmanager
def _in_a_copy():
    here = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="mer-di-build-") as tmp:
        copy = os.path.join(tmp, "src")
        shutil.copytree(here, copy, ignore=_LEAVE_OUT)
        os.chdir(copy)
        try:
            yield
        finally:
            os.chdir(here)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    wheel_directory = os.path.abspath(wheel_directory)
    with _in_a_copy():
        return _setuptools.build_wheel(wheel_directory, config_settings, None)


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    metadata_directory = os.path.abspath(metadata_directory)
    with _in_a_copy():
        return _setuptools.prepare_metadata_for_build_wheel(metadata_directory,
                                                            config_settings)


def get_requires_for_build_wheel(config_settings=None):
    with _in_a_copy():
        return _setuptools.get_requires_for_build_wheel(config_settings)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Editable installation", InformationOnly)
        return _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)
