"""What the two commands share: the project's errors become clean messages.

A :class:`MerError` (bad input, a refused request) ends the command with ``Error: <message>``
and exit code 1, never a traceback; click's own usage errors exit with 2. Anything else
is a bug and keeps its traceback.

An option that takes one value refuses to be given twice (click would keep the last one
silently: ``--lr 1 --lr 2`` trained with 2, ``--figures --no-figures`` without figures);
options that take several values (``--seeds``, ``--cache``, ``--model``) add up.
"""

from __future__ import annotations

import click

from mer_di.errors import MerError

CONTEXT = {"help_option_names": ["-h", "--help"]}


def example(*commands: str) -> str:
    """The closing lines of a command's --help: ``Example:`` and commands as given
    (``\\b`` keeps click from rewrapping them)."""
    return "\b\nExample" + ("s" if len(commands) > 1 else "") + ":\n" + "\n".join(
        f"  {c}" for c in commands)


class OnceOptions(click.Command):
    """A command whose single-valued options may be given at most once."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not ctx.resilient_parsing:
            # the parser lists an option once per occurrence (click's own parse keeps the
            # last value only); parsing a copy here raises exactly what the real parse would
            _, _, order = self.make_parser(ctx).parse_args(args=list(args))
            for param in dict.fromkeys(order):
                given = sum(p is param for p in order)
                if (isinstance(param, click.Option) and given > 1 and not param.multiple
                        and not param.count):
                    names = "/".join(param.opts + param.secondary_opts)
                    times = "twice" if given == 2 else f"{given} times"
                    raise click.UsageError(f"{names} is given {times}; give it once", ctx)
        return super().parse_args(ctx, args)


class CleanErrors(click.Group):
    """A command group whose commands turn :class:`MerError` into a clean exit, and refuse
    a single-valued option given twice (:class:`OnceOptions`)."""

    command_class = OnceOptions

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MerError as exc:
            raise click.ClickException(str(exc)) from None
