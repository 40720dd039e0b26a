"""Exhaustive small-scope exploration: every interleaving of two concurrent actors (read,
decide, append as separate steps) is linearizable and leaves every invariant intact."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from math import comb

import postgres_support
import pytest
from arcoflow.kernel import MemoryStore, Store
from arcoflow.spec.explore import LARGE_SCENARIOS, SCENARIOS, Scenario, explore
from hypothesis import settings


@pytest.fixture(params=["memory", "postgres"])
def backend(request: pytest.FixtureRequest) -> Iterator[Callable[[], Store]]:
    """An empty store for each path: a new MemoryStore, or one PostgreSQL schema emptied."""
    if request.param == "memory":
        yield MemoryStore
        return
    reused = postgres_support.Reused()
    try:
        yield reused
    finally:
        reused.close()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_every_interleaving_is_linearizable(
    scenario: Scenario, backend: Callable[[], Store]
) -> None:
    report = explore(scenario, backend)
    # Two actors of three steps each have C(6, 3) = 20 interleavings; a lost compare-and-set
    # adds steps (a re-read), never fewer paths.
    assert report.interleavings >= comb(6, 3)
    print(f"{report.scenario}: {report.interleavings} interleavings checked")


def test_a_lost_race_is_seen_in_some_interleaving() -> None:
    """The exploration really interleaves: racing pollers with different answers end in a
    Conflict for one of them in some interleavings, and both succeed in others."""
    scenario = next(s for s in SCENARIOS if "different answers" in s.name)
    outcomes = explore(scenario).outcomes
    assert any("conflict" in k for k in outcomes)
    assert any(k.endswith(": ok") for k in outcomes)


@pytest.mark.skipif(
    settings.default.max_examples < 1000, reason="three actors: the thorough profile only"
)
@pytest.mark.parametrize("scenario", LARGE_SCENARIOS, ids=lambda s: s.name)
def test_three_actors(scenario: Scenario) -> None:
    report = explore(scenario)
    assert report.interleavings >= comb(9, 3) * comb(6, 3)
