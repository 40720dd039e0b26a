"""Shared helpers for the kernel tests: table dumps, raw writes, definitions and strategies.

``dump`` reads every table through the public ``store.read()`` snapshot, so a test can assert
that an operation changed nothing at all (log, rows, idempotency keys and indexes alike).
``raw_put`` writes bytes behind the kernel's back, to simulate corruption or drift.
"""

from __future__ import annotations

import os
import tempfile
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import msgspec
import postgres_support
from arcoflow.kernel import (
    Backoff,
    DstFold,
    DstGap,
    Kernel,
    LmdbStore,
    MemoryStore,
    RunTemplate,
    ScheduleDefinition,
    SensorDefinition,
    Store,
)
from arcoflow.kernel import events as ev
from arcoflow.kernel.definitions import MAX_CATCHUP_TICKS
from arcoflow.kernel.retention import RetentionPolicy
from arcoflow.kernel.rows import Table
from arcoflow.kernel.store.memory import _Write
from arcoflow.kernel.store.postgres import PostgresStore
from hypothesis import settings
from hypothesis import strategies as st

Dump = dict[Table, tuple[tuple[bytes, bytes], ...]]

STORE_KINDS = ("memory", "lmdb", "postgres")


def examples(fraction: float = 1.0, at_least: int = 10) -> int:
    """An example count that follows the selected Hypothesis profile (``ci``, ``thorough``):
    a test that is costly per example takes a fraction of the profile's count."""
    return max(at_least, int(settings.default.max_examples * fraction))


def open_store(kind: str, path: str, **options: Any) -> Store:
    """A store of ``kind`` (``memory``, ``lmdb`` or ``postgres``); ``path`` names the LMDB
    directory, or the example whose PostgreSQL schema a reopen finds again."""
    if kind == "memory":
        return MemoryStore()
    if kind == "postgres":
        return postgres_support.store_on(path)
    return LmdbStore(path, **options)


def dump(store: Store) -> Dump:
    """Every table, every key and value, read through one snapshot of the public read API."""
    with store.read() as txn:
        return {table: tuple(txn.scan(table)) for table in Table}


def last_seq(store: Store) -> int:
    with store.read() as txn:
        last = next(txn.scan(Table.LOG, reverse=True), None)
    return 0 if last is None else int.from_bytes(last[0], "big")


def log_seqs(store: Store) -> list[int]:
    with store.read() as txn:
        return [int.from_bytes(k, "big") for k, _ in txn.scan(Table.LOG)]


def raw_put(store: Store, table: Table, key: bytes, value: bytes) -> None:
    """Write bytes into a table directly, bypassing ``apply_batch`` (corruption, drift)."""
    _raw(store, lambda txn: txn.put(table, key, value))


def raw_delete(store: Store, table: Table, key: bytes) -> None:
    _raw(store, lambda txn: txn.delete(table, key))


def scratch_dir() -> tempfile.TemporaryDirectory[str]:
    """A temporary directory in memory when the machine has one: Hypothesis examples that open
    LMDB many times should not wait for a disk flush on every commit."""
    shm = "/dev/shm"
    return tempfile.TemporaryDirectory(dir=shm if os.path.isdir(shm) else None)


def raw_write(store: Store, write: Callable[[Any], None]) -> None:
    """Run ``write(txn)`` in one raw write transaction (puts and deletes, no apply step)."""
    _raw(store, write)


def _raw(store: Store, write: Callable[[Any], None]) -> None:
    if isinstance(store, LmdbStore | PostgresStore):
        store._write(write)
    elif isinstance(store, MemoryStore):
        with store._lock:
            txn = _Write(store._tables)
            write(txn)
            txn.commit()
    else:  # pragma: no cover - only the two backends exist
        raise TypeError(type(store).__name__)


@contextmanager
def kernel_on(kind: str, path: str, **options: Any) -> Iterator[Kernel]:
    store = open_store(kind, path, **options)
    try:
        yield Kernel(store)
    finally:
        store.close()


# -- definitions -----------------------------------------------------------------------------


def schedule(
    sid: str = "hourly", cron: str = "0 * * * *", target: str = "etl", **kw: Any
) -> ScheduleDefinition:
    return ScheduleDefinition(sid, cron, RunTemplate(target), **kw)


def poll_sensor(
    sid: str = "files",
    *,
    minimum_interval: int = 30,
    base: int = 10,
    cap: int = 600,
    jitter: float = 0.0,
    target: str = "ingest",
    **kw: Any,
) -> SensorDefinition:
    return SensorDefinition(
        sid,
        "poll",
        RunTemplate(target),
        connector="test",
        minimum_interval=minimum_interval,
        backoff=Backoff(base=base, cap=cap, jitter=jitter),
        **kw,
    )


def push_sensor(sid: str = "hook", target: str = "ingest", **kw: Any) -> SensorDefinition:
    return SensorDefinition(sid, "push", RunTemplate(target), **kw)


# -- strategies ------------------------------------------------------------------------------

ids = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True)
ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)  # JSON integers fit 64 bits
epochs = st.integers(min_value=0, max_value=2**40)
naturals = st.integers(min_value=0, max_value=2**31)
texts = st.text(max_size=20)
maybe_text = st.none() | texts

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | ints
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
configs = st.dictionaries(st.text(max_size=8), json_values, max_size=3)
tags = st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3)

templates = st.builds(
    RunTemplate,
    target=st.text(min_size=1, max_size=10),
    launcher=st.none() | st.sampled_from(["subprocess", "memory"]),
    config=configs,
    tags=tags,
)

CRONS = ("0 * * * *", "*/15 * * * *", "30 1 * * *", "0 */2 * * *", "0 0 * * 1", "@daily")
ZONES = ("UTC", "America/New_York", "Europe/London", "Australia/Lord_Howe", "Asia/Kolkata")

retention_policies = st.builds(
    RetentionPolicy,
    history=st.none() | st.integers(1, 100 * 366 * 86400),
    dedupe_horizon=st.none() | st.integers(1, 100 * 366 * 86400),
)

schedule_definitions = st.builds(
    ScheduleDefinition,
    id=ids,
    cron=st.sampled_from(CRONS),
    run=templates,
    timezone=st.sampled_from(ZONES),
    catchup_window=st.integers(1, 366 * 86400),
    max_catchup_ticks=st.integers(1, MAX_CATCHUP_TICKS),
    catchup_order=st.sampled_from(["newest", "oldest"]),
    dst_gap=st.sampled_from(DstGap),
    dst_fold=st.sampled_from(DstFold),
    max_tick_retries=st.integers(0, 100),
    evaluator=st.none() | ids,
    enabled=st.booleans(),
    retention=st.none() | retention_policies,
)

backoffs = st.builds(
    Backoff,
    base=st.integers(1, 366 * 86400),
    cap=st.integers(1, 366 * 86400),
    jitter=st.floats(0.0, 1.0),
)


@st.composite
def sensor_definitions(draw: st.DrawFn) -> SensorDefinition:
    kind = draw(st.sampled_from(["poll", "push"]))
    return SensorDefinition(
        draw(ids),
        "poll" if kind == "poll" else "push",
        draw(templates),
        connector=draw(ids) if kind == "poll" else draw(st.none() | ids),
        config=draw(configs),
        minimum_interval=draw(st.integers(1, 366 * 86400)),
        timeout=draw(st.integers(1, 366 * 86400)),
        backoff=draw(backoffs),
        max_payload_bytes=draw(st.integers(1, 2**20)),
        enabled=draw(st.booleans()),
        retention=draw(st.none() | retention_policies),
    )


cursors = st.builds(
    ev.Cursor.of, st.text(max_size=20) | st.binary(max_size=20), st.integers(1, 2**31)
)
retries = st.builds(ev.Retry, epochs, st.integers(1, 1000))
missed_ranges = st.builds(
    ev.MissedRange,
    st.sampled_from(typing.get_args(typing.get_type_hints(ev.MissedRange)["reason"])),
    epochs,
    epochs,
)
key_tuples = st.lists(texts, max_size=3).map(tuple)
maybe_epoch = st.none() | epochs

#: One strategy per event class: ``test_every_event_type_has_a_strategy`` keeps it complete.
EVENT_STRATEGIES: dict[type[Any], st.SearchStrategy[Any]] = {
    ev.ScheduleDefined: st.builds(
        ev.ScheduleDefined, ids, schedule_definitions, naturals, naturals, epochs, maybe_epoch
    ),
    ev.ScheduleToggled: st.builds(
        ev.ScheduleToggled, ids, st.booleans(), naturals, epochs, maybe_epoch
    ),
    ev.ScheduleDeleted: st.builds(ev.ScheduleDeleted, ids, naturals),
    ev.ScheduleAdvanced: st.builds(
        ev.ScheduleAdvanced,
        ids,
        naturals,
        maybe_epoch,
        maybe_epoch,
        st.lists(retries, max_size=3).map(tuple),
    ),
    ev.TickRecorded: st.builds(
        ev.TickRecorded,
        texts,
        ids,
        epochs,
        st.sampled_from(["TRIGGERED", "SKIPPED", "FAILED"]),
        naturals,
        naturals,
        reason=maybe_text,
        run_keys=key_tuples,
        dst=maybe_text,
        final=st.booleans(),
    ),
    ev.TicksMissed: st.builds(ev.TicksMissed, ids, st.lists(missed_ranges, max_size=3).map(tuple)),
    ev.SensorDefined: st.builds(
        ev.SensorDefined, ids, sensor_definitions(), naturals, naturals, maybe_epoch
    ),
    ev.SensorToggled: st.builds(ev.SensorToggled, ids, st.booleans(), maybe_epoch),
    ev.SensorDeleted: st.builds(ev.SensorDeleted, ids),
    ev.SensorEvaluated: st.builds(
        ev.SensorEvaluated,
        texts,
        ids,
        st.sampled_from(["push", "poll"]),
        st.sampled_from(["REQUESTED", "NO_DATA", "SKIPPED", "FAILED"]),
        reason=maybe_text,
        message_id=maybe_text,
        expected_state_version=st.none() | naturals,
        cursor_before=st.none() | cursors,
        cursor_after=st.none() | cursors,
        run_keys=key_tuples,
        failures=naturals,
        next_eval_at=maybe_epoch,
    ),
    ev.RunRequested: st.builds(
        ev.RunRequested,
        run_id=texts,
        run_key=texts,
        fingerprint=texts,
        origin=texts,
        requested_by=texts,
        target=texts,
        launcher=maybe_text,
        config=configs,
        tags=tags,
    ),
    ev.RunClaimed: st.builds(ev.RunClaimed, texts, naturals, texts, epochs, epochs),
    ev.RunLaunched: st.builds(
        ev.RunLaunched, texts, naturals, maybe_text, maybe_text, st.booleans()
    ),
    ev.RunLaunchFailed: st.builds(
        ev.RunLaunchFailed, texts, naturals, texts, maybe_epoch, maybe_text, st.booleans()
    ),
    ev.RunCompleted: st.builds(
        ev.RunCompleted, texts, st.sampled_from(["SUCCEEDED", "FAILED"]), maybe_text
    ),
    ev.SensorCursorSet: st.builds(
        ev.SensorCursorSet, ids, naturals, st.none() | cursors, st.none() | cursors, texts
    ),
    ev.RunRetried: st.builds(ev.RunRetried, texts, naturals, texts),
    ev.ScheduleBackfilled: st.builds(ev.ScheduleBackfilled, ids, epochs, epochs, naturals, texts),
    ev.RetentionSet: st.builds(ev.RetentionSet, retention_policies, naturals),
    ev.HistoryPruned: st.builds(
        ev.HistoryPruned,
        st.lists(
            st.builds(
                ev.PrunedRef,
                st.sampled_from(["ticks", "evals", "missed", "conflicts", "runs", "links"]),
                st.binary(max_size=40),
                epochs,
            ),
            max_size=3,
        ).map(tuple),
        st.lists(
            st.builds(ev.ExpiredKey, epochs, naturals, st.binary(max_size=40)), max_size=3
        ).map(tuple),
        st.lists(
            st.builds(
                ev.PruneMarkRef, st.sampled_from(["schedule", "sensor", "store"]), ids, epochs
            ),
            max_size=3,
        ).map(tuple),
    ),
}

events: st.SearchStrategy[Any] = st.one_of(*EVENT_STRATEGIES.values())


def event_types() -> set[type[Any]]:
    """Every member of the ``Event`` union."""
    return set(typing.get_args(ev.Event))


def encode(value: Any) -> bytes:
    return msgspec.msgpack.encode(value)
