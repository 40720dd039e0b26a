"""Stores filled fast for the benchmarks and the report: events appended straight to the store in
transactions of 1,000 (what the kernel itself would record, without its per-command cost).
Imported as ``fill`` by the benchmark tests (pytest puts this folder on ``sys.path``) and as
``benchmarks.fill`` by ``python -m benchmarks.report``."""

from __future__ import annotations

from collections.abc import Iterable

from arcoflow.kernel import Pending, ScheduleDefinition, Store, decide
from arcoflow.kernel.events import TickRecorded

__all__ = ["BATCH", "T0", "define_all", "record_minutely_ticks"]

T0 = 1_735_689_600  # 2025-01-01T00:00:00Z
#: Records per transaction.
BATCH = 1000


def record_minutely_ticks(store: Store, ticks: int, prefix: str = "bench") -> None:
    """``ticks`` TRIGGERED ticks of the schedule ``minutely``, one a minute from ``T0``."""
    for lo in range(0, ticks, BATCH):
        batch = [
            Pending(
                f"{prefix}/tick/{i}",
                TickRecorded(
                    decide.tick_id("minutely", T0 + 60 * i),
                    "minutely",
                    T0 + 60 * i,
                    "TRIGGERED",
                    definition_version=1,
                    attempt=1,
                    run_keys=(f"schedule:minutely:{i}",),
                ),
            )
            for i in range(lo, min(ticks, lo + BATCH))
        ]
        store.append(batch, T0 + 60 * lo)


def define_all(store: Store, definitions: Iterable[ScheduleDefinition], at: int) -> None:
    """Each schedule defined (new) at ``at``, ``BATCH`` records per transaction."""
    batch: list[Pending] = []
    for definition in definitions:
        batch += decide.define_schedule(None, definition, at)
        if len(batch) >= BATCH:
            store.append(batch, at)
            batch = []
    if batch:
        store.append(batch, at)
