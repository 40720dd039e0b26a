"""The one-year-down evaluation of a minutely schedule against an evaluation with exactly one
due tick, and against a one-day-down evaluation. Catch-up is a budget: a year down records one
tick, one run and one summary row of the ~525,600 missed minutes. The cost must not grow with
the time down (year / day ~1); against a plain on-time tick it pays a constant extra for the
summary (a few more cron steps for the missed ranges, and one more event)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from _bench import Ratios, min_seconds
from arcoflow.kernel import Kernel, LmdbStore, MemoryStore, RunTemplate, ScheduleDefinition

T0 = 1_735_689_600  # 2025-01-01T00:00:00Z
DAY = 86400


@pytest.mark.parametrize("kind", ["memory", "lmdb"])
def test_year_down_vs_one_due_tick(
    benchmark: Any, ratios: Ratios, tmp_path: Path, kind: str
) -> None:
    stores: list[Any] = []

    def fresh() -> Kernel:
        store = MemoryStore() if kind == "memory" else LmdbStore(str(tmp_path / f"s{len(stores)}"))
        stores.append(store)
        kernel = Kernel(store)
        definition = ScheduleDefinition("minutely", "* * * * *", RunTemplate("etl"))
        kernel.define_schedule(definition, now=T0)
        return kernel

    def timed(now: int, due: int) -> float:
        kernel = fresh()
        start = time.perf_counter()
        assert len(kernel.evaluate_schedules(now)) == due
        return time.perf_counter() - start

    baseline: dict[str, list[float]] = {"one due tick": [], "a day down": []}

    def setup() -> tuple[tuple[Kernel], dict[str, Any]]:
        # Untimed: the baselines' rounds interleave with the subject's.
        baseline["one due tick"].append(timed(T0 + 30, 1))
        baseline["a day down"].append(timed(T0 + DAY + 30, 1))
        return (fresh(),), {}

    def year_down(kernel: Kernel) -> None:
        assert len(kernel.evaluate_schedules(T0 + 365 * DAY + 30)) == 1

    try:
        benchmark.pedantic(year_down, setup=setup, rounds=15, iterations=1)
    finally:
        for store in stores:
            store.close()
    subject = min_seconds(benchmark)
    for name, times in baseline.items():
        ratios.record(
            f"year-down minutely / {name} [{kind}]",
            subject / min(times),
            f"{subject * 1e3:.2f} ms vs {min(times) * 1e3:.2f} ms per evaluation",
        )
