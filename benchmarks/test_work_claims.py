"""What work sharing costs a daemon on PostgreSQL: a cycle that polls 40 due sensors with the
store's ``FOR UPDATE SKIP LOCKED`` claims (a claim transaction per chunk of 4, held over the
polls), against the same cycle taking everything due from the index (``AllDue``, what LMDB
does), each on a schema of its own on the same server; and an idle cycle (nothing due) both
ways. Needs the PostgreSQL server (``ARCOFLOW_TEST_POSTGRES``, default the local one)."""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from _bench import Ratios, best_of, min_seconds
from arcoflow.kernel import Kernel, RunTemplate, SensorDefinition
from arcoflow.kernel.store.postgres import PostgresStore
from arcoflow.kernel.store.work import AllDue
from arcoflow.sdk import Plugins, PollContext, PollResult, Runtime, hookimpl
from arcoflow.sdk.runtime import CycleReport
from psycopg import sql

DSN = os.environ.get("ARCOFLOW_TEST_POSTGRES") or "postgresql://postgres@127.0.0.1:5432/test"
T0 = 1_735_689_600  # 2025-01-01T00:00:00Z
SENSORS = 40
STEP = 120  # past every sensor's minimum interval: all due again at the next instant


class _Quiet:
    @hookimpl
    def arcoflow_poll(self, context: PollContext) -> PollResult:
        return PollResult(skip_reason="nothing new")


@pytest.fixture
def schemas() -> Iterator[list[str]]:
    names = [f"arcoflow_bench_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    yield names
    with psycopg.connect(DSN, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def _runtime(schema: str, shared: bool) -> tuple[PostgresStore, Runtime]:
    store = PostgresStore(DSN, schema=schema)
    kernel = Kernel(store)
    for i in range(SENSORS):
        definition = SensorDefinition(
            f"s{i:02d}", "poll", RunTemplate("t"), connector="quiet", minimum_interval=60
        )
        kernel.define_sensor(definition, now=T0)
    plugins = Plugins()
    plugins.register(_Quiet(), "quiet")
    return store, Runtime(kernel, plugins, work=None if shared else AllDue(store))


def test_claimed_polls_against_everything_due(
    benchmark: Any, ratios: Ratios, schemas: list[str]
) -> None:
    claimed_store, claimed = _runtime(schemas[0], shared=True)
    all_store, everything = _runtime(schemas[1], shared=False)
    try:
        assert claimed.work.exclusive and not everything.work.exclusive
        instants = (T0 + n * STEP for n in itertools.count(1))
        baseline: list[float] = []

        def poll_claimed(now: int) -> None:
            assert len(claimed.poll_sensors(now, CycleReport(now))) == SENSORS

        def poll_all(now: int) -> None:
            assert len(everything.poll_sensors(now, CycleReport(now))) == SENSORS

        def setup() -> tuple[tuple[int], dict[str, Any]]:
            now = next(instants)
            baseline.append(best_of(lambda: poll_all(now), repeat=1))
            return (now,), {}

        benchmark.pedantic(poll_claimed, setup=setup, rounds=9, iterations=1)
        subject = min_seconds(benchmark)
        ratios.record(
            f"a cycle polling {SENSORS} due sensors: SKIP LOCKED claims / everything due",
            subject / min(baseline),
            f"{subject * 1e3:.1f} ms vs {min(baseline) * 1e3:.1f} ms",
        )
        idle = T0 - 1  # nothing is due before the sensors were defined
        idle_claimed = idle_all = float("inf")
        for _ in range(40):  # alternating, so a noisy neighbour slows both alike
            idle_claimed = min(idle_claimed, best_of(lambda: claimed.cycle(idle), repeat=1))
            idle_all = min(idle_all, best_of(lambda: everything.cycle(idle), repeat=1))
        ratios.record(
            "an idle cycle: SKIP LOCKED claims / everything due",
            idle_claimed / idle_all,
            f"{idle_claimed * 1e3:.2f} ms vs {idle_all * 1e3:.2f} ms",
        )
    finally:
        claimed_store.close()
        all_store.close()
