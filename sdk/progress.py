"""Progress lines on stderr for long operations, shown only to a person watching a terminal.

``verify`` on a large log, or ``apply`` of a large file, would otherwise be silent for
seconds. :class:`Progress` rewrites one line (``\\r``) at most every ``interval`` seconds and
ends it with a newline; when the stream is not a terminal (a pipe, a log file, a test's
capture) it writes nothing, so scripts see exactly what they saw before.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """``progress(done, total)`` updates the line ``what: done/total unit``; ``finish()``
    ends it. ``enabled`` defaults to whether ``stream`` is a terminal."""

    def __init__(
        self,
        what: str,
        unit: str,
        stream: TextIO | None = None,
        *,
        enabled: bool | None = None,
        interval: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self.unit = unit
        self.stream = stream or sys.stderr
        self.enabled = _isatty(self.stream) if enabled is None else enabled
        self.interval = interval
        self.clock = clock
        self._last: float | None = None
        self._shown = ""

    def __call__(self, done: int, total: int | None = None) -> None:
        if not self.enabled:
            return
        now = self.clock()
        if self._last is not None and now - self._last < self.interval:
            return
        self._last = now
        self._show(done, total)

    def finish(self, done: int, total: int | None = None) -> None:
        """Show the final count and end the line (only if a line was started)."""
        if self.enabled and self._shown:
            self._show(done, total)
            self.stream.write("\n")
            self.stream.flush()

    def _show(self, done: int, total: int | None) -> None:
        of = f"/{total:,}" if total is not None else ""
        text = f"{self.what}: {done:,}{of} {self.unit}"
        pad = " " * max(len(self._shown) - len(text), 0)
        self.stream.write(f"\r{text}{pad}")
        self.stream.flush()
        self._shown = text


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream: not a person
        return False
