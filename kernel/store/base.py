"""The store port: what every backend provides, and the one apply step they all share.

A backend supplies transactions (point reads and writes, ordered scans); everything that gives
the store its meaning is here, written once: :func:`apply_batch` runs the idempotency check,
the compare-and-set checks, the log append, ``evolve`` and the index upkeep inside the
backend's single write transaction. That is why the LMDB and in-memory stores cannot disagree.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Final, NamedTuple, Protocol, TypeVar

import msgspec

from ..codec import SCHEMA_VERSION, Codec, Envelope
from ..errors import FutureSchemaVersion, StoreError, UnstorableValue
from ..events import Event
from ..evolve import check, evolve
from ..rows import INDEXES, ROW_TYPES, Table, from_u64, u64

__all__ = [
    "Appended",
    "Pending",
    "ReadTxn",
    "Store",
    "WriteTxn",
    "apply_batch",
    "apply_batches",
    "apply_envelope",
    "counter_next_seq",
    "readable",
]

_V = TypeVar("_V")


class Pending(NamedTuple):
    """An event to append under its idempotency key."""

    key: str
    event: Event


class Appended(NamedTuple):
    """What an append recorded. ``duplicate``: the batch's first key was already applied, and
    ``records`` are the envelopes of that *original* append."""

    records: tuple[Envelope, ...]
    duplicate: bool


class ReadTxn(Protocol):
    """A consistent snapshot."""

    def get(self, table: Table, key: bytes) -> bytes | None: ...

    def scan(
        self,
        table: Table,
        *,
        prefix: bytes = b"",
        start: bytes | None = None,
        stop: bytes | None = None,
        reverse: bool = False,
    ) -> Iterator[tuple[bytes, bytes]]:
        """Items with ``key.startswith(prefix)`` and ``start <= key < stop``, in key order."""
        ...


class WriteTxn(ReadTxn, Protocol):
    """A write transaction. A backend whose writers run one at a time, so that nothing can
    change between a read and the commit (LMDB, memory), says so with a class attribute
    ``serialised = True``: :func:`apply_batch` then skips the rehearsal that a backend with
    concurrent writers (PostgreSQL) needs to lock its rows before numbering a batch."""

    def put(self, table: Table, key: bytes, value: bytes) -> None: ...

    def delete(self, table: Table, key: bytes) -> None: ...

    def prefetch(self, table: Table, keys: Sequence[bytes]) -> None:
        """A hint: the rows ``keys`` of ``table`` are read next. A backend that pays a round
        trip per read (PostgreSQL) reads, and locks, them together; LMDB and memory ignore it."""
        ...

    def next_seq(self, count: int) -> int:
        """Reserve ``count`` consecutive log sequence numbers; the first of them.

        Called once per append, after every row the batch reads has been read: a backend
        whose reads lock (PostgreSQL) thereby numbers conflicting appends in commit order.
        LMDB and memory keep the counter in a META row (:func:`counter_next_seq`)."""
        ...


class Store(Protocol):
    """A backend: LMDB (:class:`~arcoflow.kernel.store.lmdb.LmdbStore`) or memory."""

    codec: Codec

    def append(self, batch: Sequence[Pending], at: int) -> Appended:
        """Apply ``batch`` atomically (see :func:`apply_batch`)."""
        ...

    def append_many(self, batches: Sequence[Sequence[Pending]], at: int) -> list[Appended]:
        """Apply several independent batches in one write transaction, each with its own
        idempotency outcome (see :func:`apply_batches`)."""
        ...

    def replay(self, envelopes: Sequence[Envelope]) -> None:
        """Apply already sequenced envelopes (rebuilding state from a log)."""
        ...

    def read(self) -> AbstractContextManager[ReadTxn]:
        """A read-only snapshot; readers never block the writer."""
        ...

    def close(self) -> None: ...


class _View:
    """Decoded, write-through rows for one transaction: evolve sees earlier writes of its batch.
    ``rows``: rows already read in this transaction (by a rehearsal), so not read again.

    ``deferred``: rows are written when :meth:`flush` is called, each once, in its final
    version (for several appends in one transaction on a backend with one writer at a time,
    where a row that every append updates, a push sensor's, would otherwise be encoded,
    checked and written once per append). Reads see the deferred rows all the same."""

    def __init__(
        self,
        txn: WriteTxn,
        codec: Codec,
        rows: dict[tuple[Table, bytes], Any] | None = None,
        *,
        deferred: bool = False,
    ) -> None:
        self.txn = txn
        self.codec = codec
        self.rows: dict[tuple[Table, bytes], Any] = dict(rows or {})
        self.deferred = deferred
        self.stored: dict[tuple[Table, bytes], Any] = {}  # deferred: the row as stored before

    def get(self, table: Table, key: bytes) -> Any:
        slot = (table, key)
        if slot not in self.rows:
            data = self.txn.get(table, key)
            self.rows[slot] = (
                None
                if data is None
                else self.codec.decode_row(data, ROW_TYPES[table], _where(table, key))
            )
        return self.rows[slot]

    def put(self, table: Table, key: bytes, row: msgspec.Struct) -> None:
        if not self.deferred:
            self._write(table, key, row, self.get(table, key))
            return
        slot = (table, key)
        if slot not in self.stored:
            self.stored[slot] = self.get(table, key)
        self.rows[slot] = row

    def flush(self) -> None:
        """Write the deferred rows, each in its final version, and their index changes."""
        for (table, key), old in self.stored.items():
            self._write(table, key, self.rows[(table, key)], old)
        self.stored.clear()

    def _write(self, table: Table, key: bytes, row: msgspec.Struct, old: Any) -> None:
        """Write ``row`` over ``old`` (the row as stored), moving its index entries."""
        where = _where(table, key)
        data = readable(
            self.codec.encode_row, lambda b: self.codec.check_row(b, type(row), where), row, where
        )
        for index, key_of in INDEXES.get(table, ()):
            before = key_of(old) if old is not None else None
            try:
                after = key_of(row)
            except struct.error as exc:  # an instant outside 0 .. 2**64 - 1
                raise UnstorableValue(f"{where}: {index.value} index: {exc}") from None
            if before != after:
                if before is not None:
                    self.txn.delete(index, before)
                if after is not None:
                    self.txn.put(index, after, key)
        self.txn.put(table, key, data)
        self.rows[(table, key)] = row


#: Table names, looked up once: an enum's ``.value`` is slow for a path taken per row.
_NAMES: Final = {table: table.value for table in Table}


def _where(table: Table, key: bytes) -> str:
    return f"{_NAMES[table]} row {key!r}"


def readable(
    encode: Callable[[_V], bytes], decode: Callable[[bytes], object], value: _V, where: str
) -> bytes:
    """The bytes of ``value``, once they are known to read back with the current decoders.

    The store never commits a record it could not read: a value that does not encode (an int
    over 64 bits, a lone surrogate) or whose bytes do not decode (a ``bool`` field holding
    ``1``, a validator the value fails) is :class:`UnstorableValue`, raised inside the write
    transaction, so the whole append is rolled back. Decoding costs a fraction of a
    microsecond per record.
    """
    try:
        data = encode(value)
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
        raise UnstorableValue(f"{where} cannot be stored: {exc}") from None
    try:
        decode(data)
    except StoreError as exc:
        raise UnstorableValue(f"{where} would not read back, so it was not stored: {exc}") from None
    return data


class _Rehearsal(_View):
    """``check`` and ``evolve`` over the stored rows, writing nothing: it learns every row a
    batch reads (and, on a backend whose reads lock, locks it) before the batch is numbered.
    ``fetched`` holds the rows as stored, for the real pass."""

    def __init__(self, txn: WriteTxn, codec: Codec) -> None:
        super().__init__(txn, codec)
        self.fetched: dict[tuple[Table, bytes], Any] = {}

    def get(self, table: Table, key: bytes) -> Any:
        slot = (table, key)
        if slot not in self.rows:
            self.fetched[slot] = super().get(table, key)
        return self.rows[slot]

    def put(self, table: Table, key: bytes, row: msgspec.Struct) -> None:
        self.rows[(table, key)] = row


def idem_key(key: str) -> bytes:
    """LMDB keys are at most 511 bytes: long idempotency keys are stored by their hash."""
    raw = key.encode()
    return raw if len(raw) <= 256 else b"#sha256:" + hashlib.sha256(raw).hexdigest().encode()


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key that starts with ``prefix`` (None: no bound)."""
    stripped = prefix.rstrip(b"\xff")
    return stripped[:-1] + bytes([stripped[-1] + 1]) if stripped else None


def min_stop(a: bytes | None, b: bytes | None) -> bytes | None:
    return b if a is None else a if b is None else min(a, b)


def last_seq(txn: ReadTxn) -> int:
    data = txn.get(Table.META, b"seq")
    return 0 if data is None else from_u64(data)


def counter_next_seq(txn: WriteTxn, count: int) -> int:
    """:meth:`WriteTxn.next_seq` for a backend that serialises its writers (LMDB, memory): the
    counter is the META row ``seq``, the last number handed out."""
    first = last_seq(txn) + 1
    txn.put(Table.META, b"seq", u64(first + count - 1))
    return first


def check_format(txn: ReadTxn) -> None:
    """Refuse a store written by a newer arcoflow."""
    data = txn.get(Table.META, b"schema_version")
    if data is not None and from_u64(data) > SCHEMA_VERSION:
        raise FutureSchemaVersion("store meta", from_u64(data), SCHEMA_VERSION)


def apply_envelope(txn: WriteTxn, view: _View, envelope: Envelope) -> None:
    """Check, log, evolve and index one sequenced envelope."""
    check(view, envelope.event)
    where = f"seq {envelope.seq}"
    codec = view.codec
    data = readable(codec.encode, lambda b: codec.decode(b, where), envelope, where)
    txn.put(Table.LOG, u64(envelope.seq), data)
    for table, key, row in evolve(view, envelope):
        view.put(table, key, row)
    txn.put(Table.IDEM, idem_key(envelope.key), u64(envelope.seq))


def original_batch(txn: ReadTxn, codec: Codec, seq: int) -> tuple[Envelope, ...]:
    """The envelopes of the append whose first record is ``seq``."""
    records = []
    for _, data in txn.scan(Table.LOG, start=u64(seq)):
        envelope = codec.decode(data, "log")
        if envelope.batch != seq:
            break
        records.append(envelope)
    return tuple(records)


def apply_batch(
    txn: WriteTxn,
    codec: Codec,
    batch: Sequence[Pending],
    at: int,
    *,
    view: _View | None = None,
) -> Appended:
    """The whole meaning of an append, inside the caller's single write transaction.

    ``view``: on a backend whose writers run one at a time, the deferred view shared by the
    appends of this transaction (:func:`apply_batches` flushes it after the last one).

    1. If the first key was applied before, the batch is a duplicate: return the original
       records, write nothing.
    2. Otherwise skip each event whose own key was applied (a no-op by definition), and
       rehearse the rest: check their compare-and-set versions (:class:`Conflict` aborts the
       whole transaction) and read every row they touch, writing nothing.
    3. Reserve their sequence numbers (:meth:`WriteTxn.next_seq`), then each event in turn:
       log it, evolve its rows, update indexes.
    """
    if not batch:
        return Appended((), False)
    txn.prefetch(Table.IDEM, [idem_key(p.key) for p in batch])
    original = txn.get(Table.IDEM, idem_key(batch[0].key))
    if original is not None:
        envelope = codec.decode(txn.get(Table.LOG, original) or b"", f"seq {from_u64(original)}")
        return Appended(original_batch(txn, codec, envelope.batch), True)
    todo: list[Pending] = []
    keys: set[str] = set()
    for pending in batch:
        # A key already applied, or repeated earlier in this very batch, is a no-op: logging
        # it would make the live state differ from a replay, which skips it.
        if pending.key in keys or (todo and txn.get(Table.IDEM, idem_key(pending.key)) is not None):
            continue
        keys.add(pending.key)
        todo.append(pending)
    serialised = getattr(txn, "serialised", False) is True
    fetched: dict[tuple[Table, bytes], Any] = {}
    if not serialised:
        # Rehearse with provisional numbers (evolve reads rows by id, never by seq): every row
        # the batch reads is read (and locked), and a stale compare-and-set raises, before a
        # number is drawn. A backend that runs one writer at a time (LMDB, memory) needs no
        # rehearsal: a Conflict in the real pass rolls the numbers back with everything else.
        rehearsal = _Rehearsal(txn, codec)
        for n, pending in enumerate(todo, 1):
            envelope = Envelope(codec.version, n, pending.key, at, 1, pending.event)
            check(rehearsal, envelope.event)
            for table, key, row in evolve(rehearsal, envelope):
                rehearsal.put(table, key, row)
        fetched = rehearsal.fetched
    first = txn.next_seq(len(todo))
    envelopes = tuple(
        Envelope(codec.version, first + i, p.key, at, first, p.event) for i, p in enumerate(todo)
    )
    if view is None or not serialised:
        view = _View(txn, codec, fetched)
    for envelope in envelopes:
        apply_envelope(txn, view, envelope)
    txn.put(Table.META, b"schema_version", u64(codec.version))
    return Appended(envelopes, False)


def apply_batches(
    txn: WriteTxn, codec: Codec, batches: Sequence[Sequence[Pending]], at: int
) -> list[Appended]:
    """Several appends in the caller's one write transaction: :func:`apply_batch` for each,
    in order, so each batch keeps its own idempotency outcome (one commit, one device flush).

    A batch whose first key an *earlier batch of this transaction* applied is a duplicate of
    that batch, answered from memory: a backend's scans need not see the transaction's own
    writes. A :class:`Conflict` or any error still aborts the whole transaction.
    """
    results: list[Appended] = []
    applied: dict[str, Appended] = {}  # key -> the batch of this transaction that logged it
    # An error aborts them all, so on a backend with one writer at a time their rows may be
    # written once, at the end, each in its final version.
    shared = _View(txn, codec, deferred=True)
    for batch in batches:
        earlier = applied.get(batch[0].key) if batch else None
        if earlier is not None:
            results.append(Appended(earlier.records, True))
            continue
        appended = apply_batch(txn, codec, batch, at, view=shared)
        if not appended.duplicate:
            applied.update((envelope.key, appended) for envelope in appended.records)
        results.append(appended)
    shared.flush()
    return results


def replay_batch(txn: WriteTxn, codec: Codec, envelopes: Sequence[Envelope]) -> None:
    """Apply sequenced envelopes as they were logged (for rebuilds and verification)."""
    view = _View(txn, codec)
    for envelope in envelopes:
        if txn.get(Table.IDEM, idem_key(envelope.key)) is not None:
            continue
        apply_envelope(txn, view, envelope)
    if envelopes:
        txn.put(Table.META, b"seq", u64(envelopes[-1].seq))
        txn.put(Table.META, b"schema_version", u64(codec.version))
