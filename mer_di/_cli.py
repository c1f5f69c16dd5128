"""What the two commands share: the project's errors become clean messages.

A :class:`MerError` (bad input, a refused request) ends the command with ``Error: <message>``
and exit code 1, never a traceback; click's own usage errors exit with 2. Anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import click

from mer_di.errors import MerError


class CleanErrors(click.Group):
    """A command group whose commands turn :class:`MerError` into a clean exit."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MerError as exc:
            raise click.ClickException(str(exc)) from None
