"""``verify`` in its own module: progress through a callback, one read snapshot for the log
and every table, the compare-and-set rules applied during replay, and the fast derivations
replay leans on (run ids, composite keys) equal to the slow ones they replace."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from arcoflow.kernel import (
    Conflict,
    InputError,
    Kernel,
    LmdbStore,
    MemoryStore,
    RunTemplate,
    ScheduleDefinition,
    Store,
)
from arcoflow.kernel import events as ev
from arcoflow.kernel.codec import Envelope
from arcoflow.kernel.evolve import check
from arcoflow.kernel.rebuild import NOT_STATE, Rebuilt
from arcoflow.kernel.rows import Table, key, u64
from arcoflow.kernel.runs import NAMESPACE, uuid5
from arcoflow.kernel.verify import CHUNK
from hypothesis import given
from hypothesis import strategies as st

from .helpers import last_seq, push_sensor, raw_put

T0 = 1_700_000_000


def _pushes(kernel: Kernel, count: int) -> None:
    kernel.define_sensor(push_sensor("hook"), now=T0)
    kernel.ingest_many("hook", [(f"m{i}", {"i": i}) for i in range(count)], now=T0 + 1)


def test_progress_is_reported_per_chunk_up_to_the_log_length(kernel: Kernel) -> None:
    _pushes(kernel, 1200)  # each message logs an evaluation and a run: > 2 chunks
    total = last_seq(kernel.store)
    calls: list[tuple[int, int]] = []
    result = kernel.verify(progress=lambda done, of: calls.append((done, of)))
    assert result.ok, result.differences
    assert result.events == total
    assert [done for done, _ in calls] == [
        *range(CHUNK, total, CHUNK),
        total,
    ]  # every chunk, the last one partial
    assert {of for _, of in calls} == {total}


def test_progress_that_is_not_callable_is_refused(kernel: Kernel) -> None:
    with pytest.raises(InputError, match="progress"):
        kernel.verify(progress="every second")  # type: ignore[arg-type]


def test_verify_compares_the_log_and_the_tables_of_one_snapshot(kernel: Kernel) -> None:
    """An append made while verify runs (here, from its progress callback, after the whole
    log was read and before the tables are compared) is in neither side of the comparison."""
    if isinstance(kernel.store, MemoryStore):
        pytest.skip("the memory store's reader holds its lock: no append can interleave")
    _pushes(kernel, 10)
    before = last_seq(kernel.store)
    appended: list[int] = []

    def append_meanwhile(done: int, total: int) -> None:
        if done == total and not appended:
            kernel.ingest("hook", "late", None, now=T0 + 2)
            appended.append(last_seq(kernel.store))

    result = kernel.verify(progress=append_meanwhile)
    assert result.ok, result.differences
    assert result.events == before
    assert appended and appended[0] > before
    again = kernel.verify()
    assert again.ok and again.events == appended[0]


def test_a_log_that_breaks_a_compare_and_set_is_reported(kernel: Kernel, store: Store) -> None:
    definition = ScheduleDefinition("nightly", "30 1 * * *", RunTemplate("etl"))
    kernel.define_schedule(definition, now=T0)
    seq = last_seq(store) + 1
    stale = ev.ScheduleToggled("nightly", False, 7, T0, None)
    raw_put(store, Table.LOG, u64(seq), store.codec.encode(Envelope(1, seq, "x", T0, seq, stale)))
    result = kernel.verify()
    assert not result.ok
    [difference] = result.differences
    assert "CAS rule" in difference and "nightly" in difference


def test_replay_into_a_scratch_store_and_into_memory_agree() -> None:
    kernel = Kernel(MemoryStore())
    _pushes(kernel, 50)
    kernel.define_schedule(ScheduleDefinition("h", "0 * * * *", RunTemplate("etl")), now=T0)
    kernel.evaluate_schedules(now=T0 + 7200)
    rebuilt = Rebuilt(kernel.store.codec)
    with kernel.store.read() as txn:
        rebuilt.replay(txn.scan(Table.LOG))
    rebuilt.finish(rebuilt.events)
    scratch = MemoryStore()
    assert kernel.verify(scratch).ok
    with scratch.read() as txn:
        for table in Table:
            if table not in NOT_STATE:
                stored = [kv for kv in txn.scan(table) if (table, kv[0]) != (Table.META, b"seq")]
                assert list(rebuilt.items(table)) == stored, table


def test_check_refuses_every_stale_compare_and_set() -> None:
    """``check`` dispatches on the event type: each kind of versioned event is checked."""
    store = MemoryStore()
    kernel = Kernel(store)
    kernel.define_schedule(ScheduleDefinition("s", "0 * * * *", RunTemplate("etl")), now=T0)
    view = Rebuilt(store.codec)
    with store.read() as txn:
        view.replay(txn.scan(Table.LOG))
    stale: list[ev.Event] = [
        ev.ScheduleToggled("s", False, 9, T0, None),
        ev.ScheduleDeleted("s", 9),
        ev.SensorCursorSet("p", 3, None, None),
        ev.RunRetried("r", 2),
    ]
    for event in stale:
        with pytest.raises(Conflict):
            check(view, event)
    check(view, ev.ScheduleToggled("s", False, 1, T0, None))  # current: passes


def test_lmdb_verify_needs_no_scratch_directory(tmp_path: Path) -> None:
    """The default verify replays into memory: nothing is created on disk beside the store."""
    path = str(tmp_path / "s")
    with LmdbStore(path) as store:
        kernel = Kernel(store)
        _pushes(kernel, 5)
        before = set(os.listdir(tmp_path))
        assert kernel.verify().ok
        assert set(os.listdir(tmp_path)) == before


@given(st.text())
def test_uuid5_is_the_uuid_modules(name: str) -> None:
    try:
        expected = str(uuid.uuid5(NAMESPACE, name))
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            uuid5(name)
        return
    assert uuid5(name) == expected


@given(st.lists(st.one_of(st.text(min_size=1), st.integers(0, 2**64 - 1)), min_size=1))
def test_key_joins_parts_with_nul(parts: list[str | int]) -> None:
    try:
        joined = b"\x00".join(
            p.to_bytes(8, "big") if isinstance(p, int) else p.encode() for p in parts
        )
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            key(*parts)
        return
    assert key(*parts) == joined
