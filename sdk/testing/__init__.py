"""Helpers for testing arcoflow plugins and embeddings in your own pytest suite.

* :func:`temporary_kernel` — a kernel on a throwaway LMDB (or memory) store;
* :class:`Clock` — time that moves only when told to (``clock.advance("5m")``);
* :func:`poll_once`, :func:`push`, :func:`launch_once` — one connector or launcher call
  through the runtime's real code path (timeouts, isolation, recording);
* :class:`MemoryBroker`, :class:`MemorySource` — an at-least-once broker double and its source;
  :class:`SourceKit` — conformance checks for any broker source.

The pytest plugin (installed with arcoflow, nothing to configure) provides the fixtures
``arcoflow_kernel``, ``arcoflow_clock`` and ``arcoflow_plugins``. See ``docs/plugins.md``.
"""

from ._clock import Clock
from ._drive import launch_once, poll_once, push
from ._kernel import temporary_kernel
from ._sources import MemoryBroker, MemorySource, SourceKit

__all__ = [
    "Clock",
    "MemoryBroker",
    "MemorySource",
    "SourceKit",
    "launch_once",
    "poll_once",
    "push",
    "temporary_kernel",
]
