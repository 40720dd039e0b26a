"""Shared fixtures and the Hypothesis profiles.

``ci`` (the default) keeps the whole suite within minutes and is *derandomized*: every run
draws the same examples, so whether a bug is caught never depends on the seed (the rules a
random budget could miss have explicit examples at their boundaries). ``thorough`` is the long
hunt, random and with far more examples: ``pytest --hypothesis-profile thorough``. ``dev`` is
for quick local loops.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import postgres_support
import pytest
from arcoflow.kernel.store.postgres import PostgresStore
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
# derandomize=False said outright: with CI set in the environment, Hypothesis's own defaults
# (which a profile inherits) are derandomized, and the long hunt must stay random.
settings.register_profile(
    "thorough",
    max_examples=2000,
    deadline=None,
    derandomize=False,
    suppress_health_check=list(HealthCheck),
)
settings.register_profile("dev", max_examples=10, deadline=None, derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def store_dir(tmp_path: Path) -> Iterator[str]:
    """A fresh directory for an LMDB store."""
    path = tmp_path / "store"
    yield str(path)


@pytest.fixture
def postgres_store() -> Iterator[PostgresStore]:
    """A :class:`PostgresStore` on a fresh schema of its own, dropped afterwards (the server:
    ``ARCOFLOW_TEST_POSTGRES``, see ``postgres_support``; unreachable fails the test)."""
    schema = postgres_support.fresh_schema()
    store = postgres_support.open_store(schema)
    try:
        yield store
    finally:
        store.close()
        postgres_support.drop_schema(schema)
