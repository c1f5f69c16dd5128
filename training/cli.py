"""``mer-train``: cross-validated training from the dynamic-image cache."""

from __future__ import annotations

import click

from pipeline import __version__


@click.group()
@click.version_option(__version__, prog_name="mer-train")
def main() -> None:
    """Train and evaluate micro-expression models on a dynamic-image cache."""
