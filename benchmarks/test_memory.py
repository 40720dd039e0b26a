"""Memory stays O(rows touched): the allocation peak (``tracemalloc``) and the time of one
schedule evaluation after 10 recorded ticks against after 100,000. The history is built with
batched appends (1,000 tick events per transaction), then the schedule is advanced so that the
measured evaluation has exactly one due tick in both cases."""

from __future__ import annotations

import itertools
import os
import tracemalloc
from pathlib import Path
from typing import Any

from _bench import Ratios, best_of, min_seconds
from arcoflow.kernel import Kernel, LmdbStore, Pending, RunTemplate, ScheduleDefinition
from arcoflow.kernel.events import ScheduleAdvanced
from fill import T0, record_minutely_ticks


def _history(path: str, ticks: int) -> tuple[LmdbStore, Kernel, int]:
    """A store whose minutely schedule has ``ticks`` recorded ticks; returns the last one."""
    store = LmdbStore(path, durable=False)
    kernel = Kernel(store)
    kernel.define_schedule(ScheduleDefinition("minutely", "* * * * *", RunTemplate("etl")), T0)
    record_minutely_ticks(store, ticks)
    last = T0 + 60 * (ticks - 1)
    version = kernel.schedule("minutely").state_version
    advance = ScheduleAdvanced("minutely", version, last, last + 60)
    store.append([Pending("bench/advance", advance)], last)
    return store, kernel, last


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak(kernel: Kernel, now: int) -> tuple[int, int]:
    """Allocation peak and RSS growth of one evaluation at ``now`` (one due tick)."""
    rss = _rss()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        assert len(kernel.evaluate_schedules(now)) == 1
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak, _rss() - rss


def test_one_evaluation_after_10_vs_100k_ticks(
    benchmark: Any, ratios: Ratios, tmp_path: Path
) -> None:
    small_store, small, small_last = _history(str(tmp_path / "small"), 10)
    big_store, big, big_last = _history(str(tmp_path / "big"), 100_000)
    try:
        assert len(big.ticks("minutely", limit=1000)) == 1000
        # Warm caches (zone, cron walker, readers) the same way on both, then measure.
        for kernel, last in ((small, small_last), (big, big_last)):
            assert len(kernel.evaluate_schedules(last + 60)) == 1
        small_peak, small_rss = _peak(small, small_last + 120)
        big_peak, big_rss = _peak(big, big_last + 120)

        big_minutes, small_minutes = itertools.count(3), itertools.count(3)
        small_times: list[float] = []

        def evaluate_big() -> None:
            big.evaluate_schedules(big_last + 60 * next(big_minutes))

        def evaluate_small() -> None:
            # Untimed setup of each measured round: the baseline's rounds interleave with the
            # subject's, so disk noise hits both alike.
            small_times.append(
                best_of(
                    lambda: small.evaluate_schedules(small_last + 60 * next(small_minutes)),
                    repeat=1,
                )
            )

        benchmark.pedantic(evaluate_big, setup=evaluate_small, rounds=20, iterations=1)
    finally:
        small_store.close()
        big_store.close()
    big_time, small_time = min_seconds(benchmark), min(small_times)
    ratios.record(
        "eval alloc peak: 100k ticks / 10 ticks",
        big_peak / small_peak,
        f"{big_peak / 1024:.1f} KiB vs {small_peak / 1024:.1f} KiB "
        f"(RSS growth {big_rss // 1024} KiB vs {small_rss // 1024} KiB)",
    )
    ratios.record(
        "eval time: 100k ticks / 10 ticks",
        big_time / small_time,
        f"{big_time * 1e3:.2f} ms vs {small_time * 1e3:.2f} ms",
    )
