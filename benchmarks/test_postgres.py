"""PostgreSQL (issue 11): the ``pg-*`` targets of ``report.py``, run under pytest-benchmark,
and one figure that is not a target: ``Kernel.ingest`` whole (its read transactions included)
against the same raw ``INSERT`` + ``COMMIT``.

The server is ``ARCOFLOW_TEST_POSTGRES``; without it every test here is skipped with that
reason. Each side and its baseline are sampled in alternating rounds (the baseline as the
untimed ``pedantic`` setup), and the median per-round ratio is recorded.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterator
from typing import Any

import pytest
import report
from _bench import Ratios
from arcoflow.kernel import Kernel, RunTemplate, SensorDefinition

ROUNDS = 7


@pytest.fixture
def stack() -> Iterator[contextlib.ExitStack]:
    with contextlib.ExitStack() as resources:
        yield resources


def _target(name: str) -> report.Target:
    return next(t for t in report.TARGETS if t.name == name)


def _pair(target: report.Target, stack: contextlib.ExitStack) -> report.Pair:
    assert target.measure is not None
    try:
        return target.measure(False, stack)
    except report.Unavailable as exc:
        pytest.skip(str(exc))


def _interleaved(benchmark: Any, pair: report.Pair, direction: report.Direction) -> float:
    """The median per-round ratio (as ``report.interleave`` computes it), the workload timed
    by pytest-benchmark and its baseline sampled just before each round."""
    base: list[float] = []
    work: list[float] = []
    benchmark.pedantic(
        lambda: work.append(pair.workload()),
        setup=lambda: base.append(pair.baseline()),
        rounds=ROUNDS,
        iterations=1,
    )
    pairs = zip(work, base, strict=True)
    if direction is report.Direction.AT_LEAST:
        return statistics.median(b / w for w, b in pairs)
    return statistics.median(w / b for w, b in pairs)


@pytest.mark.parametrize("name", ["pg-append", "pg-writers-4", "pg-due-100k"])
def test_postgres_target(
    benchmark: Any, ratios: Ratios, stack: contextlib.ExitStack, name: str
) -> None:
    target = _target(name)
    pair = _pair(target, stack)
    ratio = _interleaved(benchmark, pair, target.direction)
    goal = f"{target.direction.value} {target.target:g}x"
    ratios.record(
        f"{name} ({goal})", ratio, f"{target.workload} / {target.baseline}; {pair.detail}"
    )


def test_kernel_ingest_against_a_raw_insert(
    benchmark: Any, ratios: Ratios, stack: contextlib.ExitStack
) -> None:
    """Not a target: the whole ``Kernel.ingest`` also reads the sensor, looks the message up
    and reads the evaluation back, three read transactions of two round trips each."""
    raw = _pair(_target("pg-append"), stack).baseline
    _, open_store = report.postgres(stack)
    kernel = Kernel(open_store(pool_size=1))
    kernel.define_sensor(SensorDefinition("hook", "push", RunTemplate("etl")), now=report.T0)
    counter = iter(range(1 << 62))

    def ingest() -> float:
        start = time.perf_counter()
        for _ in range(report.PG_APPENDS):
            i = next(counter)
            kernel.ingest("hook", f"m-{i}", {"file": f"f{i}.csv"}, now=report.T0 + i)
        return time.perf_counter() - start

    ratio = _interleaved(benchmark, report.Pair(ingest, raw), report.Direction.AT_LEAST)
    ratios.record("Kernel.ingest / raw INSERT+COMMIT (PostgreSQL)", ratio, "no target")
