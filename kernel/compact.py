"""Log compaction: a snapshot of the state at a sequence number, then the log before it dropped.

The snapshot is the state a replay of the log up to sequence number ``S`` rebuilds, stored in
the ``snapshot`` table as ``u64(S) + table name + NUL + row key -> row bytes`` for every table
but the log: generic over the store's tables, so a table added later needs no code here. The
META row ``snapshot`` names the one complete snapshot; :func:`~arcoflow.kernel.verify.verify`
starts from it and replays only the log after ``S``, and still proves the live state.

:func:`compact` never trusts what it is about to drop. From one read snapshot it rebuilds the
state at ``S`` (from the previous snapshot and the log), keeps a copy, replays the rest of the
log and compares the result with every live table, as ``verify`` does; only a store that
verifies is compacted. Then, each step in its own write transaction, so a crash (even
SIGKILL) at any point leaves a store that opens and verifies:

1. the new snapshot's rows are written under ``u64(S)`` in chunks (until step 2 commits they
   are unreferenced: a crash leaves garbage that the next compaction deletes);
2. one transaction checks that the log up to ``S`` is still exactly what was replayed (on
   PostgreSQL a transaction that drew an earlier number may commit late), points META
   ``snapshot`` at ``S`` and deletes the log up to ``S``: the switch is atomic;
3. the rows of older snapshots are deleted in chunks.

Idempotency survives compaction (the ``idem`` table is state, so it is in the snapshot): a
repeat of a dropped append writes nothing, and is answered with
:class:`~arcoflow.kernel.errors.Compacted` because the records that said what the original did
are gone. ``before`` keeps the recent log for redeliveries: only records logged before it go.
"""

from __future__ import annotations

from functools import partial
from itertools import chain, islice
from typing import Final, NamedTuple

from .errors import Conflict, StoreError
from .rows import Table, u64
from .snapshot import MARKER, load, row_key, snapshot_seq
from .store.base import WritableStore, WriteTxn
from .verify import Verification, compare

__all__ = ["Compaction", "compact"]

#: Rows written or deleted per write transaction.
CHUNK: Final = 10_000


class Compaction(NamedTuple):
    """What :func:`compact` did. ``verification``: the check made before anything was
    written; when it is not ok, nothing was written (``seq`` is then the old snapshot's)."""

    seq: int  # the sequence number the store's snapshot now holds the state at (0: none)
    dropped: int  # log records dropped
    rows: int  # rows in the new snapshot
    verification: Verification


def compact(store: WritableStore, before: int) -> Compaction:
    """Snapshot the state after the last log record written before ``before`` (an instant,
    epoch seconds) and drop the log up to it; see the module docstring for the steps."""
    codec = store.codec
    with store.read() as live:
        old, rebuilt = load(live, codec)
        records = live.scan(Table.LOG, start=u64(old + 1))
        seq, replayed = old, 0
        try:
            for item in records:
                envelope = codec.decode_current(item[1]) or codec.decode(item[1], "log")
                if envelope.at >= before:  # the first record to keep: replayed below
                    records = chain((item,), records)
                    break
                rebuilt.replay((item,))
                seq, replayed = envelope.seq, replayed + 1
            rebuilt.finish(rebuilt.events)
            image = [
                (row_key(seq, t, k), v)
                for t in Table
                if t not in (Table.LOG, Table.SNAPSHOT)
                for k, v in rebuilt.items(t)
            ]
            rebuilt.replay(records)
            rebuilt.finish(rebuilt.events)
        except (StoreError, Conflict) as exc:
            return Compaction(old, 0, 0, Verification(False, rebuilt.events, (str(exc),), old))
        differences = compare(codec, live, rebuilt.items)
    verification = Verification(not differences, rebuilt.events, tuple(differences), old)
    if not verification.ok or seq == old:
        return Compaction(old, 0, 0, verification)
    _clear(store, keep=old)  # leftovers of a compaction that stopped before its switch
    for lo in range(0, len(image), CHUNK):
        store.write(partial(_put_all, items=image[lo : lo + CHUNK]))
    store.write(partial(_switch, old=old, seq=seq, replayed=replayed))
    _clear(store, keep=seq)
    return Compaction(seq, replayed, len(image), verification)


def _put_all(txn: WriteTxn, items: list[tuple[bytes, bytes]]) -> None:
    for k, v in items:
        txn.put(Table.SNAPSHOT, k, v)


def _switch(txn: WriteTxn, old: int, seq: int, replayed: int) -> None:
    """Point the marker at ``seq`` and drop the log up to it, if the log up to ``seq`` is still
    what the snapshot was rebuilt from; else change nothing."""
    if snapshot_seq(txn) != old:
        raise StoreError("another compaction ran meanwhile; nothing was dropped, run it again")
    keys = [k for k, _ in txn.scan(Table.LOG, start=u64(old + 1), stop=u64(seq + 1))]
    if len(keys) != replayed:
        raise StoreError(
            f"the log up to seq {seq} changed while it was compacted (a late commit); "
            "nothing was dropped, run it again"
        )
    for k in keys:
        txn.delete(Table.LOG, k)
    txn.put(Table.META, MARKER, u64(seq))


def _clear(store: WritableStore, keep: int) -> None:
    """Delete the rows of every snapshot but the one at ``keep``, a chunk per transaction."""
    ranges = [(None, None)] if not keep else [(None, u64(keep)), (u64(keep + 1), None)]
    for start, stop in ranges:
        while store.write(partial(_delete_some, start=start, stop=stop)) == CHUNK:
            pass


def _delete_some(txn: WriteTxn, start: bytes | None, stop: bytes | None) -> int:
    doomed = [k for k, _ in islice(txn.scan(Table.SNAPSHOT, start=start, stop=stop), CHUNK)]
    for k in doomed:
        txn.delete(Table.SNAPSHOT, k)
    return len(doomed)
