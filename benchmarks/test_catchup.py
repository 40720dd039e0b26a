"""The one-year-down evaluation of a minutely schedule against an evaluation with exactly one
due tick. Catch-up is a budget: the first records one tick, one run and one summary row of the
~525,600 missed minutes, so it should cost about the same (ratio ~1), on either store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _bench import Ratios, best_with_setup, min_seconds
from arcoflow.kernel import Kernel, LmdbStore, MemoryStore, RunTemplate, ScheduleDefinition

T0 = 1_735_689_600  # 2025-01-01T00:00:00Z
YEAR = 365 * 86400


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

    def year_down(kernel: Kernel) -> None:
        ticks = kernel.evaluate_schedules(T0 + YEAR + 30)
        assert len(ticks) == 1 and len(kernel.missed("minutely")) == 1

    def one_due(kernel: Kernel) -> None:
        assert len(kernel.evaluate_schedules(T0 + 30)) == 1

    try:
        benchmark.pedantic(year_down, setup=lambda: ((fresh(),), {}), rounds=15, iterations=1)
        baseline = best_with_setup(fresh, one_due, repeat=15)
    finally:
        for store in stores:
            store.close()
    subject = min_seconds(benchmark)
    ratios.record(
        f"year-down minutely / one due tick [{kind}]",
        subject / baseline,
        f"{subject * 1e3:.2f} ms vs {baseline * 1e3:.2f} ms per evaluation",
    )
