"""Verification: rebuild the state from the log and prove it equals the materialised state.

:func:`verify` reads the log and every table from **one** read snapshot of the live store, so
a writer appending meanwhile cannot make it report a false difference. It replays each logged
envelope with the same rules as the store's apply step (idempotency skip, the compare-and-set
:func:`~arcoflow.kernel.evolve.check`, :func:`~arcoflow.kernel.evolve.evolve`, index upkeep)
and then compares every table except the log, key for key and byte for byte.

Why it is fast (issue 13's replay target): the default replay keeps the rebuilt rows in plain
dicts of decoded structs instead of a scratch store, so a row written many times is encoded
once, at the end, and no sorted structure is maintained per insert; each table is then sorted
once and compared with the live scan in a single pass, whose per-row work runs in C
(``map``/``zip``/``all``) unless a difference is found. Only then is the table walked again to
say, in words, which rows and fields differ. Passing ``scratch`` replays into a real store
instead (the old way: slower, but the rebuilt state can then be queried).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Iterator
from itertools import islice, starmap, zip_longest
from typing import Final, NamedTuple

import msgspec

from .codec import Codec, Envelope
from .errors import Conflict, StoreError
from .rebuild import NOT_STATE, Rebuilt
from .rows import ROW_TYPES, Table, from_u64, u64
from .snapshot import MARKER, load, snapshot_seq
from .store.base import ReadTxn, Store, WriteTxn

__all__ = ["Progress", "Verification", "compare", "log_length", "show_key", "verify"]

#: ``progress(done, total)``: events replayed so far, and the last sequence number of the log
#: (the log's length; on PostgreSQL, whose log may have gaps, an upper bound).
Progress = Callable[[int, int], None]

#: Events replayed between two progress reports (and per ``scratch.replay`` call).
CHUNK: Final = 1000
#: The most differences a verification lists.
BUDGET: Final = 20


class Verification(NamedTuple):
    """The result of replaying the log and comparing with the materialised state."""

    ok: bool
    events: int
    differences: tuple[str, ...]
    snapshot: int = 0  # the replay started from log compaction's snapshot at this seq (0: none)


def log_length(txn: ReadTxn) -> int:
    """The sequence number of the last logged event: one key read."""
    last = next(txn.scan(Table.LOG, reverse=True), None)
    return 0 if last is None else from_u64(last[0])


def verify(
    store: Store, *, scratch: Store | None = None, progress: Progress | None = None
) -> Verification:
    """Replay ``store``'s whole log and compare the rebuilt state with the materialised one.

    ``scratch``: replay into this (empty) store instead of into memory, which leaves the
    rebuilt state there to query. ``progress(done, total)`` is called every
    :data:`CHUNK` events and once at the end.
    """
    codec = store.codec
    with store.read() as live:
        total = log_length(live)
        start, events, rebuilt = snapshot_seq(live), 0, None
        try:
            start, image = load(live, codec)
            records = live.scan(Table.LOG, start=u64(start + 1))
            if scratch is None:
                rebuilt = image
            elif start:
                _restore(scratch, image, start)
            while True:
                chunk = islice(records, CHUNK)
                if rebuilt is not None:
                    rebuilt.replay(chunk)
                    done = rebuilt.events - events
                else:
                    assert scratch is not None
                    batch = [_decoded(codec, k, data) for k, data in chunk]
                    scratch.replay(batch)
                    done = len(batch)
                events += done
                if not done:
                    break
                if progress is not None:
                    progress(events, total)
        except StoreError as exc:
            return Verification(False, _count(rebuilt, events), (str(exc),), start)
        except Conflict as exc:
            message = f"log replay broke a CAS rule: {exc}"
            return Verification(False, _count(rebuilt, events), (message,), start)
        if rebuilt is not None:
            rebuilt.finish(events)
            differences = compare(codec, live, rebuilt.items)
        else:
            assert scratch is not None
            with scratch.read() as replayed:
                differences = compare(codec, live, lambda t: _derived(replayed, t))
    return Verification(not differences, events, tuple(differences), start)


def _restore(scratch: Store, image: Rebuilt, seq: int) -> None:
    """Write the snapshot's rows into the scratch store, as the state a replay starts from."""
    write = getattr(scratch, "write", None)
    if write is None:
        raise StoreError(
            "the log is compacted: a scratch store must support write() to hold the snapshot"
        )

    def put(txn: WriteTxn) -> None:
        for table in Table:
            if table not in NOT_STATE:
                for k, value in image.items(table):
                    txn.put(table, k, value)
        txn.put(Table.META, b"seq", u64(seq))

    write(put)


def _decoded(codec: Codec, seq_key: bytes, data: bytes) -> Envelope:
    return codec.decode_current(data) or codec.decode(data, f"seq {from_u64(seq_key)}")


def _count(rebuilt: Rebuilt | None, events: int) -> int:
    """Events read before a replay stopped on an error."""
    return rebuilt.events if rebuilt is not None else events


# -- comparison -------------------------------------------------------------------------------

#: META rows that are not state a replay derives: the log's counter is the backend's own (a
#: META row in LMDB and memory; a sequence in PostgreSQL, whose log may have gaps), and the
#: seq of the snapshot (kernel/snapshot.py) is where the replay started.
_BOOKKEEPING: Final = (b"seq", MARKER)


def _derived(txn: ReadTxn, table: Table) -> Iterator[tuple[bytes, bytes]]:
    items = txn.scan(table)
    if table is Table.META:
        return (item for item in items if item[0] not in _BOOKKEEPING)
    return items


def compare(
    codec: Codec, live: ReadTxn, replayed: Callable[[Table], Iterable[tuple[bytes, bytes]]]
) -> list[str]:
    """Every table of the state in ``live`` against ``replayed(table)`` (key order), in words:
    at most :data:`BUDGET` differences; none when they are byte for byte the same."""
    out: list[str] = []
    for table in Table:
        if table in NOT_STATE or len(out) >= BUDGET:
            continue
        try:
            pairs = zip_longest(_derived(live, table), replayed(table))
            if all(starmap(operator.eq, pairs)):  # the common case: one pass, in C
                continue
            out += _explain(codec, table, _derived(live, table), replayed(table), BUDGET - len(out))
        except (msgspec.EncodeError, TypeError, ValueError, OverflowError) as exc:
            out.append(f"{table.value}: a rebuilt row does not encode: {exc}")
    return out


def _explain(
    codec: Codec,
    table: Table,
    left: Iterator[tuple[bytes, bytes]],
    right: Iterable[tuple[bytes, bytes]],
    budget: int,
) -> list[str]:
    """The differences of one table in words, in key order (a merge of two sorted scans)."""
    out: list[str] = []
    name = table.value
    other = iter(right)
    x, y = next(left, None), next(other, None)
    while (x is not None or y is not None) and len(out) < budget:
        if x is not None and (y is None or x[0] < y[0]):
            out.append(f"{name} {show_key(table, x[0])}: materialised but not produced by replay")
            x = next(left, None)
        elif y is not None and (x is None or y[0] < x[0]):
            out.append(f"{name} {show_key(table, y[0])}: produced by replay but missing")
            y = next(other, None)
        else:
            assert x is not None and y is not None
            if x[1] != y[1]:
                out.append(f"{name} {show_key(table, x[0])}: {_row_diff(codec, table, x[1], y[1])}")
            x, y = next(left, None), next(other, None)
    return out


_LEADING_NUMBER: Final = {Table.DUE_SCHEDULES, Table.DUE_SENSORS, Table.OUTBOX}
_TRAILING_NUMBER: Final = {Table.TICKS, Table.MISSED, Table.EVALS, Table.HISTORY}


def show_key(table: Table, row_key: bytes) -> str:
    """A key as people read it: ids as text, big-endian numbers as integers."""
    if len(row_key) == 8:
        return str(from_u64(row_key))
    if table in _LEADING_NUMBER and len(row_key) > 9:
        return f"{from_u64(row_key[:8])}/{row_key[9:].decode(errors='replace')}"
    if table in _TRAILING_NUMBER and len(row_key) > 9:
        return f"{row_key[:-9].decode(errors='replace')}/{from_u64(row_key[-8:])}"
    return row_key.decode(errors="replace").replace("\x00", "/")


def _row_diff(codec: Codec, table: Table, stored: bytes, replayed: bytes) -> str:
    """Which fields of a row differ between the materialised state and the replay."""
    row_type = ROW_TYPES.get(table)
    if row_type is None:
        return f"stored {stored!r}, replay gives {replayed!r}"
    try:
        a = codec.decode_row(stored, row_type, table.value)
        b = codec.decode_row(replayed, row_type, table.value)
    except StoreError as exc:
        return f"stored row does not decode ({exc})"
    fields = [
        f"{name}: stored {getattr(a, name)!r}, replay gives {getattr(b, name)!r}"
        for name in row_type.__struct_fields__
        if getattr(a, name) != getattr(b, name)
    ]
    return "; ".join(fields) or "same fields, different bytes"
