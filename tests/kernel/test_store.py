"""Store semantics, identical on the in-memory and the LMDB backend.

Idempotent appends, compare-and-set conflicts that write nothing, all-or-nothing appends when
an exception strikes half-way, reopening LMDB, and ordered scans that agree with a reference.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from arcoflow.kernel import (
    Conflict,
    Kernel,
    LmdbStore,
    MemoryStore,
    Pending,
    PollResult,
    RunTemplate,
    Store,
)
from arcoflow.kernel import events as ev
from arcoflow.kernel.evolve import evolve
from arcoflow.kernel.rows import Table
from arcoflow.kernel.runs import fingerprint, run_id
from arcoflow.kernel.store import base
from hypothesis import given, settings
from hypothesis import strategies as st

from .helpers import (
    dump,
    examples,
    last_seq,
    log_seqs,
    poll_sensor,
    push_sensor,
    raw_write,
    schedule,
    scratch_dir,
)


def run_requested(name: str, target: str = "t", by: str = "test") -> ev.RunRequested:
    run_key = f"manual:{name}"
    return ev.RunRequested(
        run_id(run_key), run_key, fingerprint(target, {}, {}), "manual", by, target, "x", {}, {}
    )


def sensor_defined(sid: str, expected: int, version: int = 1) -> ev.SensorDefined:
    return ev.SensorDefined(sid, push_sensor(sid), version, expected, None)


def batch_of(n: int, prefix: str = "b") -> list[Pending]:
    return [Pending(f"{prefix}/{i}", run_requested(f"{prefix}{i}")) for i in range(n)]


# -- idempotency -----------------------------------------------------------------------------


def test_append_assigns_dense_sequence_numbers_and_one_batch(store: Store) -> None:
    first = store.append(batch_of(3, "a"), at=10)
    second = store.append(batch_of(2, "b"), at=11)
    assert [e.seq for e in first.records] == [1, 2, 3]
    assert {e.batch for e in first.records} == {1}
    assert [e.seq for e in second.records] == [4, 5]
    assert {e.batch for e in second.records} == {4}
    assert not first.duplicate and not second.duplicate
    assert log_seqs(store) == [1, 2, 3, 4, 5]


def test_same_first_key_twice_is_one_durable_effect(store: Store) -> None:
    store.append(batch_of(1, "before"), at=1)
    batch = batch_of(3, "once")
    first = store.append(batch, at=10)
    after_first = dump(store)
    # Same keys, later time, even different payloads: the first key decides.
    again = [Pending(p.key, run_requested("other", target="changed")) for p in batch]
    second = store.append(again, at=99)
    assert second.duplicate
    assert second.records == first.records
    assert dump(store) == after_first


def test_duplicate_reports_the_original_even_from_a_later_key_of_it(store: Store) -> None:
    """A batch whose first key was a *later* member of an earlier batch returns that batch."""
    batch = batch_of(3, "orig")
    first = store.append(batch, at=10)
    before = dump(store)
    second = store.append([batch[2], Pending("fresh", run_requested("fresh"))], at=11)
    assert second.duplicate
    assert second.records == first.records
    assert dump(store) == before


def test_already_applied_keys_later_in_a_batch_are_skipped(store: Store) -> None:
    store.append([Pending("k1", run_requested("one"))], at=1)
    result = store.append(
        [Pending("k2", run_requested("two")), Pending("k1", run_requested("one-again"))], at=2
    )
    assert [e.key for e in result.records] == ["k2"]
    assert log_seqs(store) == [1, 2]
    assert Kernel(store).verify().ok


def test_a_key_repeated_inside_one_batch_is_applied_once(store: Store) -> None:
    """The second event under a key is a no-op, both live and on replay."""
    target_a, target_b = run_requested("same"), run_requested("same", target="other")
    result = store.append(
        [Pending("head", target_a), Pending("k", target_a), Pending("k", target_b)], at=5
    )
    assert [e.key for e in result.records] == ["head", "k"]
    assert log_seqs(store) == [1, 2]
    with store.read() as txn:
        assert list(txn.scan(Table.CONFLICTS)) == []
    assert Kernel(store).verify().ok


def test_empty_batch_writes_nothing(store: Store) -> None:
    before = dump(store)
    assert store.append([], at=1) == base.Appended((), False)
    assert dump(store) == before


# -- compare-and-set -------------------------------------------------------------------------


def test_cas_conflict_writes_nothing(store: Store) -> None:
    store.append([Pending("def/1", sensor_defined("s", expected=0))], at=1)
    store.append(batch_of(2, "runs"), at=2)
    before = dump(store)
    with pytest.raises(Conflict) as info:
        store.append([Pending("def/2", sensor_defined("s", expected=0, version=2))], at=3)
    assert (info.value.expected, info.value.actual) == (0, 1)
    assert "sensor 's'" in str(info.value)
    assert dump(store) == before


def test_cas_conflict_late_in_a_batch_undoes_the_earlier_events(store: Store) -> None:
    store.append([Pending("def/1", sensor_defined("s", expected=0))], at=1)
    before = dump(store)
    batch = [*batch_of(3, "early"), Pending("def/x", sensor_defined("s", expected=7, version=2))]
    with pytest.raises(Conflict):
        store.append(batch, at=2)
    assert dump(store) == before
    # and the store goes on with the next sequence number
    assert [e.seq for e in store.append(batch_of(1, "next"), at=3).records] == [2]


# -- atomicity -------------------------------------------------------------------------------


class Boom(Exception):
    pass


def fail_on_call(n: int, real: Any) -> Any:
    """``real``, failing on its ``n``-th call by the apply step. The probe a backend that pays
    round trips runs first (``base._Probe``, which swallows errors) is not counted."""
    calls = {"n": 0}

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if args and isinstance(args[0], base._Probe):
            return real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == n:
            raise Boom(f"call {n}")
        return real(*args, **kwargs)

    return wrapper


def populated(store: Store) -> Kernel:
    kernel = Kernel(store)
    kernel.define_schedule(schedule("hourly"), now=0)
    kernel.define_sensor(poll_sensor("files"), now=0)
    kernel.evaluate_schedules(now=3600)
    kernel.request_run("by-hand", RunTemplate("t", launcher="x"), now=3601)
    return kernel


@pytest.mark.parametrize("nth", [1, 2, 4, 5])
def test_exception_in_evolve_mid_append_leaves_every_table_unchanged(
    store: Store, monkeypatch: pytest.MonkeyPatch, nth: int
) -> None:
    kernel = populated(store)
    before = dump(store)
    monkeypatch.setattr(base, "evolve", fail_on_call(nth, evolve))
    with pytest.raises(Boom):
        store.append(batch_of(5, "mid"), at=4000)
    monkeypatch.undo()
    assert dump(store) == before
    assert kernel.verify().ok
    appended = store.append(batch_of(1, "after"), at=4001)
    assert appended.records[0].seq == last_seq(store) == len(log_seqs(store))


@pytest.mark.parametrize("nth", [1, 3, 6])
def test_exception_in_a_row_encoder_mid_append_leaves_every_table_unchanged(
    store: Store, monkeypatch: pytest.MonkeyPatch, nth: int
) -> None:
    """Fails after some rows *and* some index entries of the batch were written."""
    populated(store)
    before = dump(store)
    monkeypatch.setattr(store.codec, "encode_row", fail_on_call(nth, store.codec.encode_row))
    with pytest.raises(Boom):
        store.append(batch_of(4, "enc"), at=4000)
    monkeypatch.undo()
    assert dump(store) == before


def test_exception_mid_kernel_command_leaves_lmdb_unchanged_across_reopen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "s")
    with LmdbStore(path) as store:
        kernel = populated(store)
        before = dump(store)
        # An evaluation appends ScheduleAdvanced, TickRecorded and RunRequested: fail the third.
        monkeypatch.setattr(base, "evolve", fail_on_call(3, evolve))
        with pytest.raises(Boom):
            kernel.evaluate_schedules(now=7200)
        monkeypatch.undo()
        assert dump(store) == before
    with LmdbStore(path) as store:
        assert dump(store) == before
        kernel = Kernel(store)
        assert [t.status for t in kernel.evaluate_schedules(now=7200)] == ["TRIGGERED"]
        assert kernel.verify().ok


# -- reopen ----------------------------------------------------------------------------------


def test_close_and_reopen_lmdb_keeps_every_table(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    with LmdbStore(path) as store:
        kernel = populated(store)
        kernel.poll("files", lambda ctx: _result("c1"), now=3700)
        kernel.record_launch(kernel.runs()[0].run_id, external_id="pid-1", now=3800)
        before = dump(store)
        assert all(before[t] for t in (Table.LOG, Table.IDEM, Table.SCHEDULES, Table.EVALS))
    with LmdbStore(path) as store:
        assert dump(store) == before
        assert Kernel(store).verify().ok
        assert Kernel(store).sensor("files").cursor == ev.Cursor.of("c1")


def _result(cursor: str) -> PollResult:
    return PollResult(cursor=cursor)


def test_memory_and_lmdb_materialise_byte_identical_tables(tmp_path: Path) -> None:
    memory = MemoryStore()
    with LmdbStore(str(tmp_path / "s")) as lmdb_store:
        populated(memory)
        populated(lmdb_store)
        assert dump(memory) == dump(lmdb_store)


# -- ordered scans ---------------------------------------------------------------------------

keys = st.binary(min_size=1, max_size=4)
bounds = st.none() | st.binary(max_size=4)


def _reference(
    items: dict[bytes, bytes], prefix: bytes, start: bytes | None, stop: bytes | None, rev: bool
) -> list[tuple[bytes, bytes]]:
    out = [
        (k, v)
        for k, v in sorted(items.items())
        if k.startswith(prefix) and (start is None or k >= start) and (stop is None or k < stop)
    ]
    return out[::-1] if rev else out


@pytest.fixture(scope="module")
def scan_stores() -> Iterator[tuple[MemoryStore, LmdbStore]]:
    with scratch_dir() as path:
        lmdb_store = LmdbStore(path, durable=False)
        yield MemoryStore(), lmdb_store
        lmdb_store.close()


@settings(max_examples=examples(at_least=150))
@given(
    items=st.dictionaries(keys, st.binary(max_size=3), max_size=25),
    queries=st.lists(
        st.tuples(st.binary(max_size=2), bounds, bounds, st.booleans()), min_size=1, max_size=8
    ),
)
def test_ordered_scans_agree_between_backends(
    scan_stores: tuple[MemoryStore, LmdbStore],
    items: dict[bytes, bytes],
    queries: list[tuple[bytes, bytes | None, bytes | None, bool]],
) -> None:
    memory, lmdb_store = scan_stores
    table = Table.META  # a scratch table: emptied before each example

    def refill(txn: Any) -> None:
        for k in [k for k, _ in txn.scan(table)]:
            txn.delete(table, k)
        for k, v in items.items():
            txn.put(table, k, v)

    for s in (memory, lmdb_store):
        raw_write(s, refill)
    for prefix, start, stop, rev in queries:
        expected = _reference(items, prefix, start, stop, rev)
        for s in (memory, lmdb_store):
            with s.read() as txn:
                got = list(txn.scan(table, prefix=prefix, start=start, stop=stop, reverse=rev))
            assert got == expected, (type(s).__name__, prefix, start, stop, rev)


def test_long_idempotency_keys_dedupe_and_stay_distinct(store: Store) -> None:
    """Keys over LMDB's key size are stored by hash: equal keys still dedupe, and keys that
    share a long prefix stay distinct."""
    prefix = "k" * 600
    first = store.append([Pending(prefix + "a", run_requested("a"))], at=1)
    other = store.append([Pending(prefix + "b", run_requested("b"))], at=2)
    assert not other.duplicate
    again = store.append([Pending(prefix + "a", run_requested("a"))], at=3)
    assert again.duplicate
    assert again.records == first.records
    assert log_seqs(store) == [1, 2]
    assert Kernel(store).verify().ok


@pytest.mark.parametrize("chunk", [1, 2, 3, 1000])
def test_log_reads_every_record_in_order_whatever_the_chunk(store: Store, chunk: int) -> None:
    for i in range(7):
        store.append(batch_of(1 + i % 2, f"c{i}"), at=i)
    total = last_seq(store)
    assert [e.seq for e in Kernel(store).log(chunk=chunk)] == list(range(1, total + 1))
    assert [e.seq for e in Kernel(store).log(after=4, chunk=chunk)] == list(range(5, total + 1))
    assert list(Kernel(store).log(after=total, chunk=chunk)) == []
