"""Fixtures for the schedule tests: every kernel test runs on both stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from arcoflow.kernel import Kernel

from .helpers import STORE_KINDS, open_store


@pytest.fixture(params=STORE_KINDS)
def kernel(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Kernel]:
    """A kernel over a fresh store of each kind: in memory, and LMDB in a new directory."""
    store = open_store(request.param, str(tmp_path / "store"))
    try:
        yield Kernel(store)
    finally:
        store.close()
