"""The arithmetic fast path of ``next_tick`` for the common fixed-time shapes in a DST zone,
against croniter with one reused iterator (the issue's target: >= 6x faster, same ticks) and
against the croniter walk it replaces (``_general_next_tick``). The walks run from 1 June 2025
in New York and end before the November transition, where croniter's answers are not the
policy's."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from _bench import Ratios, best_of, min_seconds
from arcoflow.kernel.cron import (
    DstFold,
    DstGap,
    _general_next_tick,
    next_tick,
    parse_cron,
    zone,
)
from croniter import croniter

NY = zone("America/New_York")
START = 1_748_750_400  # 2025-06-01T04:00:00Z, midnight in New York


@pytest.mark.parametrize(
    ("expr", "count"),
    [("0 * * * *", 500), ("30 2 * * *", 100), ("0 9 * * 1", 20), ("30 9 * * 1-5", 100)],
)
def test_next_tick_fast_path_vs_croniter(
    benchmark: Any, ratios: Ratios, expr: str, count: int
) -> None:
    cron = parse_cron(expr)
    start = datetime.fromtimestamp(START, NY)
    it = croniter(expr, start)

    def walk(step: Any) -> list[int]:
        out, at = [], START
        for _ in range(count):
            at = step(cron, NY, at, DstGap.TRANSITION, DstFold.FIRST).at
            out.append(at)
        return out

    def theirs() -> list[int]:
        it.set_current(start, force=True)
        return [int(it.get_next(float)) for _ in range(count)]

    assert walk(next_tick) == theirs() == walk(_general_next_tick)
    croniter_times: list[float] = []
    general_times: list[float] = []

    def baselines() -> None:  # untimed setup: the baselines' rounds interleave with the subject's
        croniter_times.append(best_of(theirs, repeat=1))
        general_times.append(best_of(lambda: walk(_general_next_tick), repeat=1))

    benchmark.pedantic(lambda: walk(next_tick), setup=baselines, rounds=7, iterations=1)
    fast = min_seconds(benchmark)
    ratios.record(
        f"croniter reused iterator / next_tick [{expr}]",
        min(croniter_times) / fast,
        f"{fast / count * 1e6:.1f} us vs {min(croniter_times) / count * 1e6:.1f} us per tick",
    )
    ratios.record(
        f"croniter walk / fast path [{expr}]",
        min(general_times) / fast,
        f"{min(general_times) / count * 1e6:.1f} us per tick by the croniter walk",
    )
