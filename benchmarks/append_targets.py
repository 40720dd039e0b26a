"""The append targets of issue 13 (ingest, due tick, 16 threads, ingest_many, duplicates), as
``measure`` functions for :data:`benchmarks.report.TARGETS`.

Every store here is a durable LMDB store (the default: two device flushes per commit) in a
directory on the same file system as its baseline's. The raw baselines put records of the
kernel's own byte volume per append (every key and value it added to every table, measured on
the workload's store), so the comparison is between the same bytes written two ways.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import lmdb
from arcoflow.kernel import (
    Ingested,
    Kernel,
    LmdbStore,
    RunTemplate,
    ScheduleDefinition,
    SensorDefinition,
)
from arcoflow.kernel.rows import Table

from benchmarks.pairs import Pair, Sampler, timed

__all__ = ["due_tick", "duplicate", "ingest", "ingest_many", "threads"]

T0 = 1_735_689_600  # 2025-01-01T00:00:00Z
MINUTE = 60


def _directory(stack: contextlib.ExitStack) -> str:
    # Beside the working directory's file system (a disk), never a tmpfs: flushes must cost.
    return stack.enter_context(tempfile.TemporaryDirectory(prefix="arcoflow-report-", dir="."))


def _volume(store: LmdbStore) -> int:
    with store.read() as txn:
        return sum(len(k) + len(v) for table in Table for k, v in txn.scan(table))


class _Pusher:
    """A durable store with the push sensor ``hook`` and fresh message ids on demand."""

    def __init__(self, stack: contextlib.ExitStack) -> None:
        self.store = stack.enter_context(LmdbStore(_directory(stack)))
        self.kernel = Kernel(self.store)
        definition = SensorDefinition("hook", "push", RunTemplate("etl.ingest"))
        self.kernel.define_sensor(definition, now=T0)
        self.ids = itertools.count()

    def message(self) -> tuple[str, dict[str, Any]]:
        i = next(self.ids)
        return f"msg-{i}", {"file": f"f{i}.csv", "size": i}

    def ingest(self, count: int) -> list[str]:
        sent = []
        for _ in range(count):
            message_id, payload = self.message()
            got = self.kernel.ingest("hook", message_id, payload, now=T0 + 1)
            if got.duplicate:
                raise AssertionError(f"{message_id} was new")
            sent.append(message_id)
        return sent

    def bytes_per_message(self, count: int) -> int:
        before = _volume(self.store)
        self.ingest(count)
        return (_volume(self.store) - before) // count


class _Raw:
    """A raw durable LMDB environment: records of ``size`` random bytes under fresh keys."""

    def __init__(self, stack: contextlib.ExitStack, size: int) -> None:
        self.env = lmdb.open(_directory(stack), map_size=1 << 30, sync=True, metasync=True)
        stack.callback(self.env.close)
        self.value = os.urandom(size)
        self.keys = itertools.count()

    def puts(self, count: int) -> float:
        """``count`` puts, one transaction each."""
        start = time.perf_counter()
        for _ in range(count):
            with self.env.begin(write=True) as txn:
                txn.put(b"m%012d" % next(self.keys), self.value)
        return time.perf_counter() - start

    def batch(self, count: int) -> float:
        """``count`` puts in one transaction."""
        start = time.perf_counter()
        with self.env.begin(write=True) as txn:
            for _ in range(count):
                txn.put(b"m%012d" % next(self.keys), self.value)
        return time.perf_counter() - start


def _per(run: Callable[[], object]) -> Sampler:
    return lambda: timed(run)


def ingest(quick: bool, stack: contextlib.ExitStack) -> Pair:
    count = 20 if quick else 50
    pusher = _Pusher(stack)
    size = pusher.bytes_per_message(count)
    raw = _Raw(stack, size)
    return Pair(
        _per(lambda: pusher.ingest(count)),
        lambda: raw.puts(count),
        f"{count} messages a round, {size} B each",
    )


def due_tick(quick: bool, stack: contextlib.ExitStack) -> Pair:
    """A minutely schedule evaluated once a minute: each evaluation records one due tick and
    its run request (tick row, run row, schedule row, indexes, log, idempotency keys)."""
    count = 20 if quick else 50
    store = stack.enter_context(LmdbStore(_directory(stack)))
    kernel = Kernel(store)
    kernel.define_schedule(ScheduleDefinition("m", "* * * * *", RunTemplate("etl")), now=T0)
    minutes = itertools.count(1)

    def ticks() -> None:
        for _ in range(count):
            now = T0 + next(minutes) * MINUTE + 1
            if len(kernel.evaluate_schedules(now)) != 1:
                raise AssertionError(f"no due tick at {now}")

    before = _volume(store)
    ticks()
    size = (_volume(store) - before) // count
    raw = _Raw(stack, size)
    return Pair(_per(ticks), lambda: raw.puts(count), f"{count} ticks a round, {size} B each")


def threads(quick: bool, stack: contextlib.ExitStack) -> Pair:
    """16 threads each ingesting its share of distinct messages, every call returning once
    its append is durable (group commit shares the commits), against one thread ingesting as
    many, one at a time, into the same store."""
    count, width = (160 if quick else 320), 16
    pusher = _Pusher(stack)
    pusher.ingest(count)  # warm: the same number of rows in the tree for both sides
    group = pusher.store._env.group
    shared = {"commits": 0, "appends": 0}

    def concurrent() -> float:
        messages = [[pusher.message() for _ in range(count // width)] for _ in range(width)]
        commits, appends = group.commits, group.requests

        def push(mine: list[tuple[str, Any]]) -> None:
            for message_id, payload in mine:
                pusher.kernel.ingest("hook", message_id, payload, now=T0 + 1)

        workers = [threading.Thread(target=push, args=(m,)) for m in messages]
        start = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        seconds = time.perf_counter() - start
        shared["commits"] += group.commits - commits
        shared["appends"] += group.requests - appends
        return seconds

    def detail() -> str:
        per = shared["appends"] / max(1, shared["commits"])
        return f"{count} messages a round; {per:.1f} appends per commit with 16 threads"

    return Pair(concurrent, _per(lambda: pusher.ingest(count)), detail)


def ingest_many(quick: bool, stack: contextlib.ExitStack) -> Pair:
    count = 1000
    pusher = _Pusher(stack)
    size = pusher.bytes_per_message(50)
    raw = _Raw(stack, size)

    def many() -> None:
        outcomes = pusher.kernel.ingest_many(
            "hook", [pusher.message() for _ in range(count)], now=T0 + 1
        )
        if not all(isinstance(o, Ingested) and not o.duplicate for o in outcomes):
            raise AssertionError("ingest_many did not record every message")

    return Pair(
        _per(many),
        lambda: raw.batch(count),
        f"{count:,} messages in one call vs {count:,} puts of {size} B in one transaction",
    )


def duplicate(quick: bool, stack: contextlib.ExitStack) -> Pair:
    """Re-deliveries of messages already recorded (each answered with its original
    evaluation, nothing written) against new messages, one at a time."""
    count = 20 if quick else 50
    pusher = _Pusher(stack)
    seen = [(m, {"again": True}) for m in pusher.ingest(count)]

    def again() -> None:
        for message_id, payload in seen:
            if not pusher.kernel.ingest("hook", message_id, payload, now=T0 + 2).duplicate:
                raise AssertionError(f"{message_id} was not a duplicate")

    return Pair(
        _per(again),
        _per(lambda: pusher.ingest(count)),
        f"{count} messages a round",
    )
