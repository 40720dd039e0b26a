"""Fixtures for the kernel tests: every store test runs on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from arcoflow.kernel import Kernel, Store

from .helpers import STORE_KINDS, open_store


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh store of each kind: in memory, and LMDB in a new directory."""
    opened = open_store(request.param, str(tmp_path / "store"))
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def kernel(store: Store) -> Kernel:
    return Kernel(store)
