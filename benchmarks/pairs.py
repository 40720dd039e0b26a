"""What a target of :mod:`benchmarks.report` measures: a workload and its baseline, each a
sampler returning the seconds one sample took."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

__all__ = ["Pair", "Sampler", "Unavailable", "timed"]

#: A sampler returns the seconds one sample took (its own untimed setup excluded), or another
#: figure of one sample when its :class:`Pair` says how to show it (memory, for ``rss``).
Sampler = Callable[[], float]


class Unavailable(Exception):
    """A target's ``measure`` cannot run here (a service is not configured): the reason."""


class Pair(NamedTuple):
    """The two sides of a target, sampled in alternating rounds."""

    workload: Sampler
    baseline: Sampler
    #: What was checked or built, for the report line; a function when it is known only
    #: after sampling (e.g. how many appends shared a commit).
    detail: str | Callable[[], str] = ""
    show: Callable[[float], str] | None = None  # how a sample reads (default: a duration)

    def describe(self) -> str:
        return self.detail() if callable(self.detail) else self.detail


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
