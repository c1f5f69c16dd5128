"""What the two commands share: the project's errors become clean messages.

A :class:`MerError` (bad input, a refused request) ends the command with ``Error: <message>``
and exit code 1, never a traceback; click's own usage errors exit with 2. Anything else
is a bug and keeps its traceback.

An option that takes one value refuses to be given twice (click would keep the last one
silently: ``--lr 1 --lr 2`` trained with 2, ``--figures --no-figures`` without figures);
options that take several values (``--seeds``, ``--cache``, ``--model``) add up.

Ctrl-C or SIGTERM at any point of a command (parsing, importing torch, training, writing)
prints ``interrupted`` and exits with 130, no traceback: the interrupt unwinds the
command, so every writer removes its temporary files on the way out and only whole files
stay under their final names.
"""

from __future__ import annotations

import signal
import threading

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


INTERRUPTED = 130  # the shell's code for a command ended by Ctrl-C


class Interrupted(click.ClickException):
    """Ctrl-C or SIGTERM: ``interrupted`` on standard error, exit code 130."""

    exit_code = INTERRUPTED

    def __init__(self) -> None:
        super().__init__("interrupted")

    def show(self, file=None) -> None:
        click.echo("interrupted", err=True)


def _terminate(signum, frame) -> None:
    """SIGTERM unwinds the command as Ctrl-C does."""
    raise KeyboardInterrupt


class CleanErrors(click.Group):
    """A command group whose commands turn :class:`MerError` into a clean exit and an
    interrupt (Ctrl-C, SIGTERM) into ``interrupted`` and exit code 130, and refuse a
    single-valued option given twice (:class:`OnceOptions`)."""

    command_class = OnceOptions

    def main(self, *args, **kwargs):
        main_thread = threading.current_thread() is threading.main_thread()
        before = None
        if main_thread:  # signals can only be caught in the main thread
            before = signal.signal(signal.SIGTERM, _terminate)
        try:
            return super().main(*args, **kwargs)
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, signal.SIG_DFL if before is None else before)

    def make_context(self, *args, **kwargs) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except KeyboardInterrupt:
            raise Interrupted() from None

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MerError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            raise Interrupted() from None
