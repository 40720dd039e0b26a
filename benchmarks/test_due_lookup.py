"""Due work is found through the ``next_fire_at`` index, not by scanning definitions: the
lookup and a whole evaluation cycle with 10,000 defined-but-not-due schedules cost about the
same as with 10 (ratio ~1). One hourly schedule is due at each measured instant; the idle ones
are daily at midnight and the cycles run between 01:00 and 23:00."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from _bench import Ratios, best_of, min_seconds
from arcoflow.kernel import Kernel, LmdbStore, RunTemplate, ScheduleDefinition
from fill import T0, define_all

HOUR = 3600


def _store(path: str, idle: int) -> tuple[LmdbStore, Kernel]:
    store = LmdbStore(path, durable=False)
    kernel = Kernel(store)
    idle_ones = (
        ScheduleDefinition(f"idle-{i:05d}", "0 0 * * *", RunTemplate("etl")) for i in range(idle)
    )
    define_all(store, idle_ones, T0 + 1)
    kernel.define_schedule(ScheduleDefinition("hourly", "0 * * * *", RunTemplate("etl")), T0 + 1)
    return store, kernel


def test_due_lookup_with_10_vs_10000_idle_schedules(
    benchmark: Any, ratios: Ratios, tmp_path: Path
) -> None:
    few_store, few = _store(str(tmp_path / "few"), 10)
    many_store, many = _store(str(tmp_path / "many"), 10_000)
    try:
        assert len(many.schedules()) == 10_001
        now = T0 + HOUR + 5
        assert few.due_schedules(now) == many.due_schedules(now) == ["hourly"]
        lookup_few = best_of(lambda: few.due_schedules(now), number=200, repeat=10)
        lookup_many = best_of(lambda: many.due_schedules(now), number=200, repeat=10)

        hours_many, hours_few = itertools.count(1), itertools.count(1)
        few_times: list[float] = []

        def cycle_many() -> None:
            assert len(many.evaluate_schedules(T0 + next(hours_many) * HOUR + 5)) == 1

        def cycle_few() -> None:
            # Untimed setup of each measured round: the baseline's rounds interleave with the
            # subject's, so disk noise hits both alike.
            few_times.append(
                best_of(lambda: few.evaluate_schedules(T0 + next(hours_few) * HOUR + 5), repeat=1)
            )

        benchmark.pedantic(cycle_many, setup=cycle_few, rounds=15, iterations=1)
    finally:
        few_store.close()
        many_store.close()
    ratios.record(
        "due_schedules lookup: 10,000 idle / 10 idle",
        lookup_many / lookup_few,
        f"{lookup_many * 1e6:.1f} us vs {lookup_few * 1e6:.1f} us",
    )
    cycle = min_seconds(benchmark)
    ratios.record(
        "evaluation cycle: 10,000 idle / 10 idle",
        cycle / min(few_times),
        f"{cycle * 1e3:.2f} ms vs {min(few_times) * 1e3:.2f} ms",
    )
