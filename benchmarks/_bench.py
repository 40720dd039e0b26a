"""Timing helpers shared by the benchmarks (imported as ``_bench``: pytest puts this folder on
``sys.path`` because it is not a package)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

__all__ = ["RATIOS", "Ratio", "Ratios", "best_of", "best_with_setup", "min_seconds"]


class Ratio(NamedTuple):
    name: str
    value: float
    detail: str


#: Every ratio recorded in this session, printed at its end by ``conftest.py``.
RATIOS: list[Ratio] = []


class Ratios:
    """Records one benchmark's ratios: in the end-of-session table and in ``extra_info`` (so
    ``--benchmark-json`` keeps them)."""

    def __init__(self, benchmark: Any) -> None:
        self.benchmark = benchmark

    def record(self, name: str, value: float, detail: str = "") -> float:
        RATIOS.append(Ratio(name, value, detail))
        self.benchmark.extra_info[name] = round(value, 3)
        if detail:
            self.benchmark.extra_info[name + " (detail)"] = detail
        return value


def best_of(fn: Callable[[], object], *, number: int = 1, repeat: int = 5) -> float:
    """Seconds per call of ``fn``: the best of ``repeat`` timings of ``number`` calls each
    (the minimum is the least noisy estimate of the cost on a shared machine)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best


def best_with_setup(setup: Callable[[], Any], fn: Callable[[Any], object], repeat: int) -> float:
    """Seconds of ``fn(setup())``, best of ``repeat``, the setup not timed."""
    best = float("inf")
    for _ in range(repeat):
        arg = setup()
        start = time.perf_counter()
        fn(arg)
        best = min(best, time.perf_counter() - start)
    return best


def min_seconds(benchmark: Any) -> float:
    """The fastest round ``benchmark`` measured, in seconds."""
    return float(benchmark.stats.stats.min)
