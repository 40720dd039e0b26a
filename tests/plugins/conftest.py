"""Fixtures the HTTP API's tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from arcoflow.kernel import Kernel, LmdbStore


@pytest.fixture
def kernel(store_dir: str) -> Iterator[Kernel]:
    """A kernel on a fresh LMDB store, seeded with the sensors and the schedule the HTTP tests
    query (:func:`http_support.seed`)."""
    try:
        from .http_support import seed  # noqa: PLC0415 (needs arcoflow[http]: only when used)
    except ImportError:  # collected as a rootdir module, not a package
        from http_support import seed  # type: ignore[no-redef]  # noqa: PLC0415
    store = LmdbStore(store_dir)
    try:
        k = Kernel(store)
        seed(k)
        yield k
    finally:
        store.close()
