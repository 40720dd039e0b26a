"""Helpers for testing arcoflow plugins and embeddings in your own pytest suite.

* :func:`temporary_kernel` — a kernel on a throwaway LMDB (or memory) store;
* :class:`Clock` — time that moves only when told to (``clock.advance("5m")``).

The pytest plugin (installed with arcoflow, no configuration needed) provides the fixtures
``arcoflow_kernel`` and ``arcoflow_clock``.
"""

from ._clock import Clock
from ._kernel import temporary_kernel

__all__ = ["Clock", "temporary_kernel"]
