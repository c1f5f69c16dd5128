"""Progress for long commands: a redrawn bar on a terminal, plain lines elsewhere.

A tqdm bar redraws itself with carriage returns, which a log file, a CI console or a
SLURM output file keeps as thousands of fragments. When the stream is not a terminal, a
:class:`PlainProgress` writes one complete line at most every :data:`PLAIN_EVERY_S`
seconds (and one when it finishes) instead.
"""

from __future__ import annotations

import sys
import time
from typing import IO

PLAIN_EVERY_S = 10.0  # seconds between two plain progress lines of one bar


def progress_bar(total: int, desc: str, unit: str, *, position: int = 0, leave: bool = True,
                 stream: IO[str] | None = None):
    """A bar with tqdm's ``update``, ``set_postfix`` and ``close``: tqdm on a terminal,
    :class:`PlainProgress` otherwise. ``stream`` defaults to standard error."""
    stream = stream or sys.stderr
    if _is_terminal(stream):
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit, position=position, leave=leave,
                    file=stream)
    return PlainProgress(total, desc, unit, stream=stream, leave=leave)


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or stand-in stream
        return False


class PlainProgress:
    """``desc: n/total unit (p%), elapsed, ~left`` as a line of its own, at most every
    :data:`PLAIN_EVERY_S` seconds; a final line on :meth:`close` when ``leave``."""

    def __init__(self, total: int, desc: str, unit: str, *, stream: IO[str],
                 leave: bool = True, every: float | None = None):
        self.total, self.desc, self.unit, self.stream, self.leave = total, desc, unit, stream, leave
        self.every = PLAIN_EVERY_S if every is None else every
        self.n = 0
        self.postfix = ""
        self.start = self.last = time.monotonic()
        self.closed = False

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self._write(now)

    def set_postfix(self, refresh: bool = False, **values) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.leave:
                self._write(time.monotonic(), done=True)

    def _write(self, now: float, done: bool = False) -> None:
        elapsed = now - self.start
        parts = [f"{self.desc}: {self.n}/{self.total} {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f}%)"
        parts.append(f"{_clock(elapsed)} elapsed")
        if not done and 0 < self.n < self.total:
            parts.append(f"~{_clock(elapsed / self.n * (self.total - self.n))} left")
        if self.postfix:
            parts.append(self.postfix)
        print(", ".join(parts), file=self.stream, flush=True)


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"
