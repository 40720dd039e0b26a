"""Plugins cannot write on the CLI's standard output: it carries the command's document.

Two routes reach stdout, and each is closed where it is shared:

* ``sys.stdout`` is one object for every thread, and plugin calls run in worker threads (which
  may outlive a call that timed out). ``contextlib.redirect_stdout`` would swap it for the
  whole process, racing with the main thread. Instead ``sys.stdout`` becomes a
  :class:`RoutedStdout`, which sends the writes of a thread running plugin code
  (:func:`plugin_code`) to stderr, the log, and everyone else's to the stream it wraps;
  while a CLI command runs, only the thread running it writes to stdout (a plugin's own
  threads are not marked as plugin code).
* File descriptor 1 is what subprocesses (a launcher's, a connector's) and C code write to.
  While a CLI command runs (:func:`document_stdout`), fd 1 points at stderr and the command's
  own output goes to a duplicate of the real stdout taken first.

Plugin *commands* (``arcoflow serve``) are the command, not plugin code: they print as usual.
"""

from __future__ import annotations

import io
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any, TextIO

__all__ = ["RoutedStdout", "document_stdout", "plugin_code", "routed_stdout"]

_local = threading.local()


def _in_plugin_code() -> bool:
    return bool(getattr(_local, "depth", 0))


class RoutedStdout(io.TextIOBase):
    """``sys.stdout`` that sends the writes of plugin code to stderr (see the module doc)."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream
        #: The thread running a CLI command: while there is one, only it writes to stdout.
        self.owner: int | None = None

    def _target(self) -> TextIO:
        if _in_plugin_code() or self.owner not in (None, threading.get_ident()):
            return sys.stderr
        return self.stream

    def write(self, text: str) -> int:
        return self._target().write(text)

    def writelines(self, lines: Any) -> None:
        self._target().writelines(lines)

    def flush(self) -> None:
        self._target().flush()

    def fileno(self) -> int:
        return self._target().fileno()

    def isatty(self) -> bool:
        return self._target().isatty()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self.stream.encoding

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return self.stream.errors

    def __getattr__(self, name: str) -> Any:  # ``buffer``, ``line_buffering``...
        return getattr(self._target(), name)


def routed_stdout() -> RoutedStdout:
    """``sys.stdout``, made a :class:`RoutedStdout` if it is not one yet."""
    current = sys.stdout
    if not isinstance(current, RoutedStdout):
        current = sys.stdout = RoutedStdout(current)
    return current


@contextmanager
def plugin_code() -> Iterator[None]:
    """Run plugin code on this thread: what it prints goes to stderr, never to stdout."""
    routed_stdout()
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        yield
    finally:
        _local.depth -= 1


@contextmanager
def document_stdout() -> Iterator[TextIO]:
    """For one CLI command: the stream for its output. Meanwhile fd 1 (inherited by
    subprocesses) points at stderr when the output is the process's real stdout, and plugin
    threads print to stderr. Everything is put back after (plugin threads abandoned after a
    timeout keep printing to stderr)."""
    routed = routed_stdout()
    original = routed.stream
    try:
        real_fd = original.fileno() == 1
    except (AttributeError, OSError, ValueError):  # a StringIO, pytest's capture
        real_fd = False
    routed.owner = threading.get_ident()
    if not real_fd:
        try:
            yield original
        finally:
            routed.owner = None
        return
    original.flush()
    saved = os.dup(1)
    stream = os.fdopen(os.dup(saved), "w", encoding=original.encoding, errors=original.errors)
    os.dup2(2, 1)
    routed.stream = stream
    try:
        yield stream
    finally:
        with suppress(OSError):  # a closed pipe: the CLI reports it
            stream.flush()
        os.dup2(saved, 1)
        os.close(saved)
        routed.stream = original
        routed.owner = None
        with suppress(OSError):
            stream.close()
