"""Log compaction (issue 16 item 4) on every store: a snapshot of the state at a sequence
number, the log before it dropped; ``verify`` still proves the live state; a repeat of a
dropped append writes nothing; a store that does not verify is not compacted; a compaction
stopped at any step leaves a store that verifies and compacts later."""

from __future__ import annotations

import msgspec
import pytest
from arcoflow.kernel import (
    Compacted,
    InputError,
    Kernel,
    MemoryStore,
    Pending,
    PollResult,
    RunRequest,
    RunTemplate,
    ScheduleDefinition,
    Store,
)
from arcoflow.kernel import compact as compaction
from arcoflow.kernel.rows import Table, key
from arcoflow.kernel.snapshot import row_key, snapshot_seq
from arcoflow.spec.invariants import check_compaction

from .helpers import dump, last_seq, log_seqs, poll_sensor, push_sensor, raw_put

T0 = 1_700_000_000
HOUR = 3600


def busy(kernel: Kernel, start: int, messages: int = 5) -> None:
    """An hour of everything: schedule ticks and runs, a poll, push messages, a completion."""
    kernel.evaluate_schedules(now=start + HOUR)
    kernel.poll(
        "files", lambda ctx: PollResult([RunRequest(f"f{start}")], cursor=str(start)), now=start + 5
    )
    for i in range(messages):
        kernel.ingest("hook", f"m{start}-{i}", {"i": i}, now=start + 10 + i)
    run = kernel.request_run(f"manual-{start}", RunTemplate("t"), now=start + 20)
    kernel.complete_run(run.run_id, True, None, now=start + 30)


def define(kernel: Kernel) -> None:
    kernel.define_schedule(ScheduleDefinition("hourly", "0 * * * *", RunTemplate("etl")), now=T0)
    kernel.define_sensor(poll_sensor("files"), now=T0)
    kernel.define_sensor(push_sensor("hook"), now=T0)


def test_compaction_keeps_the_state_and_verify_still_proves_it(kernel: Kernel) -> None:
    define(kernel)
    for day in range(3):
        busy(kernel, T0 + day * 86400)
    whole = MemoryStore()  # the same commands on a store that is never compacted
    twin = Kernel(whole)
    define(twin)
    for day in range(3):
        busy(twin, T0 + day * 86400)
    before = {
        t: rows for t, rows in dump(kernel.store).items() if t not in (Table.LOG, Table.SNAPSHOT)
    }
    check_compaction(kernel, whole, T0 + 86400)  # the first day's log goes
    seq = _snapshot(kernel.store)
    assert seq > 0 and min(log_seqs(kernel.store)) > seq
    verification = kernel.verify()
    assert verification.ok and verification.snapshot == seq
    assert kernel.verify(MemoryStore()).ok  # into a scratch store, from the snapshot too
    assert verification.events == len(log_seqs(kernel.store))  # only the log after it
    after = dump(kernel.store)
    for table, rows in before.items():
        if table is not Table.META:
            assert after[table] == rows, table  # compaction changes no state
    # Life goes on after a compaction, and a second one starts from the first's snapshot.
    busy(kernel, T0 + 3 * 86400)
    busy(twin, T0 + 3 * 86400)
    assert kernel.verify().ok
    check_compaction(kernel, whole, T0 + 10 * 86400)
    assert log_seqs(kernel.store) == []
    assert _snapshot(kernel.store) == last_seq(whole)
    with kernel.store.read() as txn:  # only the newest snapshot is kept
        prefixes = {k[:8] for k, _ in txn.scan(Table.SNAPSHOT)}
    assert len(prefixes) == 1


def test_a_repeat_of_a_dropped_append_writes_nothing(kernel: Kernel, store: Store) -> None:
    define(kernel)
    busy(kernel, T0)
    first = next(kernel.log())
    assert kernel.compact(before=T0 + 86400).verification.ok
    before = dump(store)
    # A push redelivery is answered from the state (the evaluation row), as before.
    again = kernel.ingest("hook", f"m{T0}-0", {"i": 0}, now=T0 + 86400)
    assert again.duplicate and again.evaluation.evaluated_at == T0 + 10
    # An append repeating a dropped key is recognised, and refused with its reason.
    with pytest.raises(Compacted, match="compaction has dropped") as info:
        store.append([Pending(first.key, first.event)], T0 + 86400)
    assert info.value.seq == first.seq
    assert dump(store) == before
    assert not kernel.ingest("hook", "fresh", None, now=T0 + 86400).duplicate
    assert kernel.verify().ok


def test_compaction_keeps_the_log_from_before(kernel: Kernel) -> None:
    define(kernel)
    busy(kernel, T0)
    busy(kernel, T0 + 86400)
    kept = [e for e in kernel.log() if e.at >= T0 + 86400]
    result = kernel.compact(before=T0 + 86400)
    assert result.dropped == last_seq(kernel.store) - len(kept)
    assert list(kernel.log()) == kept
    # A redelivery within the kept log is an ordinary duplicate.
    assert kernel.ingest("hook", f"m{T0 + 86400}-0", {"i": 0}, now=T0 + 86400 + 99).duplicate


def test_a_store_that_does_not_verify_is_not_compacted(kernel: Kernel, store: Store) -> None:
    define(kernel)
    busy(kernel, T0)
    sensor = kernel.sensor("files")
    drifted = msgspec.structs.replace(sensor, failures=sensor.failures + 3)
    raw_put(store, Table.SENSORS, key("files"), store.codec.encode_row(drifted))
    before = dump(store)
    result = kernel.compact(before=T0 + 86400)
    assert not result.verification.ok
    assert result.seq == 0 and result.dropped == 0
    assert dump(store) == before


def test_nothing_to_compact_changes_nothing(kernel: Kernel, store: Store) -> None:
    define(kernel)
    before = dump(store)
    result = kernel.compact(before=T0)  # everything was logged at T0 or later
    assert result.verification.ok and result.dropped == 0 and result.seq == 0
    assert dump(store) == before


def test_a_compaction_stopped_before_its_switch_changes_nothing_seen(
    kernel: Kernel, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped with the new snapshot's rows written but not yet referenced: the log is whole,
    verify passes, and the next compaction deletes the unreferenced rows."""
    define(kernel)
    busy(kernel, T0)
    busy(kernel, T0 + 86400)
    log = log_seqs(store)
    monkeypatch.setattr(compaction, "_switch", _killed)
    with pytest.raises(RuntimeError, match="killed"):
        kernel.compact(before=T0 + 86400)
    monkeypatch.undo()
    assert log_seqs(store) == log and _snapshot(store) == 0
    assert _snapshot_prefixes(store)  # the orphaned rows
    assert kernel.verify().ok
    assert kernel.compact(before=T0 + 86400).dropped > 0
    assert _snapshot_prefixes(store) == {_snapshot(store)}
    assert kernel.verify().ok


def test_a_compaction_stopped_after_its_switch_is_complete(
    kernel: Kernel, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped after the switch, before the older snapshot's rows are deleted: the store is
    compacted and verifies; the next compaction deletes the older rows."""
    define(kernel)
    busy(kernel, T0)
    busy(kernel, T0 + 86400)
    busy(kernel, T0 + 2 * 86400)
    kernel.compact(before=T0 + 86400)
    first = _snapshot(store)
    real = compaction._clear
    calls: list[int] = []

    def clear_then_die(target: object, keep: int) -> None:
        calls.append(keep)
        if len(calls) == 2:  # the clean-up after the switch
            _killed()
        real(target, keep)  # type: ignore[arg-type]

    monkeypatch.setattr(compaction, "_clear", clear_then_die)
    with pytest.raises(RuntimeError, match="killed"):
        kernel.compact(before=T0 + 2 * 86400)
    monkeypatch.undo()
    second = _snapshot(store)
    assert second > first
    assert _snapshot_prefixes(store) == {first, second}
    assert kernel.verify().ok
    busy(kernel, T0 + 3 * 86400)
    kernel.compact(before=T0 + 3 * 86400)
    assert _snapshot_prefixes(store) == {_snapshot(store)}
    assert kernel.verify().ok


def _killed(*args: object, **kwargs: object) -> None:
    raise RuntimeError("killed")


def _snapshot_prefixes(store: Store) -> set[int]:
    with store.read() as txn:
        return {int.from_bytes(k[:8], "big") for k, _ in txn.scan(Table.SNAPSHOT)}


def test_a_store_without_write_cannot_be_compacted() -> None:
    class ReadOnly:
        def __init__(self) -> None:
            self.inner = MemoryStore()
            self.codec = self.inner.codec

        def __getattr__(self, name: str) -> object:
            if name == "write":
                raise AttributeError(name)
            return getattr(self.inner, name)

    with pytest.raises(InputError, match="cannot be compacted"):
        Kernel(ReadOnly()).compact()  # type: ignore[arg-type]


def _snapshot(store: Store) -> int:
    with store.read() as txn:
        return snapshot_seq(txn)


def test_a_damaged_snapshot_row_is_reported_by_verify(kernel: Kernel, store: Store) -> None:
    define(kernel)
    busy(kernel, T0)
    kernel.compact(before=T0 + 86400)
    seq = _snapshot(store)
    raw_put(store, Table.SNAPSHOT, row_key(seq, Table.SENSORS, key("files")), b"\xc1")
    result = kernel.verify()
    assert not result.ok
    assert any("snapshot" in d and "sensors" in d for d in result.differences)
