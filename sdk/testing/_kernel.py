"""A throwaway kernel for tests: LMDB in a temporary directory (the default) or memory."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from arcoflow.kernel import InputError, Kernel, LmdbStore, MemoryStore

__all__ = ["temporary_kernel"]


@contextmanager
def temporary_kernel(backend: Literal["lmdb", "memory"] = "lmdb") -> Iterator[Kernel]:
    """A :class:`~arcoflow.kernel.Kernel` on a fresh store, closed and deleted afterwards.

    ``lmdb`` (default) exercises the real store, in a temporary directory; ``memory`` is the
    reference store, a little faster.

    >>> with temporary_kernel() as kernel:
    ...     kernel.schedules()
    []
    """
    if backend == "memory":
        store: LmdbStore | MemoryStore = MemoryStore()
        try:
            yield Kernel(store)
        finally:
            store.close()
        return
    if backend != "lmdb":
        raise InputError(f"backend {backend!r} must be 'lmdb' or 'memory'")
    path = tempfile.mkdtemp(prefix="arcoflow-test-")
    try:
        store = LmdbStore(path)
        try:
            yield Kernel(store)
        finally:
            store.close()
    finally:
        shutil.rmtree(path, ignore_errors=True)
