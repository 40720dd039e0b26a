"""The store port: what every backend provides, and the one apply step they all share.

A backend supplies transactions (point reads and writes, ordered scans); everything that gives
the store its meaning is here, written once: :func:`apply_batch` runs the idempotency check,
the compare-and-set checks, the log append, ``evolve`` and the index upkeep inside the
backend's single write transaction. That is why the LMDB and in-memory stores cannot disagree.
"""

from __future__ import annotations

import contextlib
import hashlib
import struct
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Final, NamedTuple, Protocol, TypeVar

import msgspec

from ..codec import SCHEMA_VERSION, Codec, Envelope
from ..errors import Compacted, CorruptRecord, FutureSchemaVersion, StoreError, UnstorableValue
from ..events import Event, HistoryPruned, RetentionSet, SensorEvaluated
from ..evolve import View, check, evolve
from ..retention import effective, retention_of
from ..rows import INDEXES, ROW_TYPES, RetentionRow, SensorRow, Table, from_u64, u64
from ..rows import key as row_key

__all__ = [
    "Appended",
    "Pending",
    "ReadTxn",
    "Reads",
    "Store",
    "WritableStore",
    "WriteTxn",
    "apply_batch",
    "apply_batches",
    "apply_envelope",
    "counter_next_seq",
    "dedupe_until",
    "expiry_key",
    "idem_live",
    "idem_seq",
    "index_finished_runs",
    "readable",
    "remember_key",
]

_V = TypeVar("_V")
#: Rows by table, as :meth:`WriteTxn.prefetch` names them.
Reads = Mapping[Table, Collection[bytes]]


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

    def prefetch(self, rows: Callable[[], Reads], count: int) -> None:
        """A hint at the start of an append: ``rows()`` names the rows it reads next (by table,
        the idempotency keys first) and ``count`` how many sequence numbers it then most likely
        reserves. A backend that pays a round trip per read (PostgreSQL) reads and locks them
        together, and may reserve the numbers in the same round trip (see
        :meth:`next_seq`); LMDB and memory ignore it, and never pay for ``rows()``."""
        ...

    def exclusive(self, table: Table) -> None:
        """Hold ``table`` against every other append until this transaction ends. Called
        before an append that changes a row every append reads (the retention policy): a
        backend whose writers run in parallel (PostgreSQL) locks the table, so no append can
        read the old policy and be numbered after the new one; LMDB and memory have one
        writer at a time and ignore it."""
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


class WritableStore(Store, Protocol):
    """A store that also runs maintenance transactions: what log compaction needs. LMDB,
    memory and PostgreSQL are; a store that is not cannot be compacted, nothing else."""

    def write(self, work: Callable[[WriteTxn], _V]) -> _V:
        """Run ``work(txn)`` in one write transaction, committed when it returns, rolled back
        if it raises. For maintenance that is not an append (log compaction): it bypasses
        the apply step, so it must keep the store's meaning itself."""
        ...


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

    def put(self, table: Table, key: bytes, row: msgspec.Struct | None) -> None:
        """Write ``row`` (None: delete the row), or defer it to :meth:`flush`."""
        if not self.deferred:
            old = self.old(table, key) if row is None or table in INDEXES else None
            self._write(table, key, row, old)
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

    def _write(self, table: Table, key: bytes, row: msgspec.Struct | None, old: Any) -> None:
        """Write ``row`` over ``old`` (the row as stored), moving its index entries."""
        if row is None:
            self._delete(table, key, old)
            return
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

    def old(self, table: Table, key: bytes) -> Any:
        """The row ``put`` replaces, for the upkeep of its table's indexes."""
        return self.get(table, key)

    def _delete(self, table: Table, key: bytes, old: Any) -> None:
        """Drop a row (``old``, as stored; None: there is none) and its index entries. An
        index entry another row has taken since (a message redelivered after its horizon
        reuses its evaluation id) stays."""
        self.rows[(table, key)] = None
        if old is None:
            return
        for index, key_of in INDEXES.get(table, ()):
            entry = key_of(old)
            if entry is not None and self.txn.get(index, entry) == key:
                self.txn.delete(index, entry)
        self.txn.delete(table, key)


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
    batch reads (and, on a backend whose reads lock, locks it) before the batch is numbered,
    including the old rows its writes replace in indexed tables. ``fetched`` holds the rows as
    stored, for the real pass; ``touched`` every key it read or wrote."""

    def __init__(self, txn: WriteTxn, codec: Codec) -> None:
        super().__init__(txn, codec)
        self.fetched: dict[tuple[Table, bytes], Any] = {}

    def get(self, table: Table, key: bytes) -> Any:
        slot = (table, key)
        if slot not in self.rows:
            self.fetched[slot] = super().get(table, key)
        return self.rows[slot]

    def put(self, table: Table, key: bytes, row: msgspec.Struct | None) -> None:
        if table in INDEXES:
            self.get(table, key)
        self.rows[(table, key)] = row

    @property
    def touched(self) -> set[tuple[Table, bytes]]:
        return set(self.rows)


class _Applied(_View):
    """The real pass after a rehearsal. Rehearsal and real pass run the same events over the
    same rows; only the sequence numbers differ (provisional, then drawn). So a row the real
    pass replaces that the rehearsal never touched has a key made from this batch's own new
    numbers, which no committed record has used: it is absent, and is not read (on
    PostgreSQL that read would be a round trip after the numbers were drawn)."""

    def __init__(self, txn: WriteTxn, codec: Codec, rehearsal: _Rehearsal) -> None:
        super().__init__(txn, codec, rehearsal.fetched)
        self.touched = rehearsal.touched

    def old(self, table: Table, key: bytes) -> Any:
        if (table, key) in self.rows or (table, key) in self.touched:
            return self.get(table, key)
        return None


class _Probe:
    """``check`` and ``evolve`` before anything is read: every read answers "absent" and is
    recorded. One pass over a batch names the rows its events name (a schedule, a sensor, the
    runs of its run keys), so a backend that pays a round trip per read can read them all at
    once (:meth:`WriteTxn.prefetch`). Only a hint: the rehearsal reads whatever it missed."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.rows: dict[tuple[Table, bytes], Any] = {}
        self.wanted: dict[Table, set[bytes]] = {}

    def get(self, table: Table, key: bytes) -> Any:
        slot = (table, key)
        if slot not in self.rows:
            self.wanted.setdefault(table, set()).add(key)
            self.rows[slot] = None
        return self.rows[slot]

    def put(self, table: Table, key: bytes, row: msgspec.Struct | None) -> None:
        if table in INDEXES:
            self.get(table, key)
        self.rows[(table, key)] = row


def probe_reads(codec: Codec, batch: Sequence[Pending], at: int) -> dict[Table, set[bytes]]:
    """The rows ``batch`` reads, as far as they follow from its events (see :class:`_Probe`);
    its idempotency keys first."""
    probe = _Probe(codec)
    probe.wanted[Table.IDEM] = {idem_key(p.key) for p in batch}
    if batch:  # the policy row and the sensor row that set the dedupe horizon
        with contextlib.suppress(Exception):
            dedupe_until(probe, batch[0].event, at)
    for n, pending in enumerate(batch, 1):
        envelope = Envelope(codec.version, n, pending.key, at, 1, pending.event)
        # The probe's rows are invented absences, so check and evolve may refuse them or trip
        # over them: whatever they raise is the real rehearsal's to raise, on real rows.
        with contextlib.suppress(Exception):
            check(probe, envelope.event)
        with contextlib.suppress(Exception):
            for table, key, row in evolve(probe, envelope):
                probe.put(table, key, row)
    return probe.wanted


def idem_key(key: str) -> bytes:
    """LMDB keys are at most 511 bytes: long idempotency keys are stored by their hash."""
    raw = key.encode()
    return raw if len(raw) <= 256 else b"#sha256:" + hashlib.sha256(raw).hexdigest().encode()


def idem_seq(value: bytes) -> int:
    """The log sequence number an idempotency entry points at."""
    return from_u64(_idem_entry(value)[:8])


def _idem_entry(value: bytes) -> bytes:
    """``value`` if it is an idempotency entry (8 or 16 bytes); a damaged one is refused."""
    if len(value) not in (8, 16):
        raise CorruptRecord("idem entry", f"{len(value)} bytes, not 8 or 16")
    return value


def idem_live(value: bytes | None, at: int) -> bool:
    """Whether an idempotency entry still makes a repeat at ``at`` a duplicate. An entry is
    ``u64(seq)``, remembered forever, or ``u64(seq) + u64(until)``: its dedupe horizon ends at
    ``until`` (exclusive), whether or not a prune has dropped it yet."""
    if value is None:
        return False
    return len(_idem_entry(value)) == 8 or at < from_u64(value[8:16])


def dedupe_until(view: View, event: Event, at: int) -> int | None:
    """When the idempotency keys of an append headed by ``event`` expire: ``at`` plus the dedupe
    horizon in force (a sensor evaluation: its sensor's; anything else: the store's), or None
    (forever). Computed when the append is applied, so a replay computes the same."""
    stored: RetentionRow | None = view.get(Table.SETTINGS, b"retention")
    policy = stored.policy if stored is not None else None
    if isinstance(event, SensorEvaluated):
        sensor: SensorRow | None = view.get(Table.SENSORS, row_key(event.sensor_id))
        if sensor is not None:
            policy = effective(retention_of(sensor.definition), policy)
    horizon = policy.dedupe_horizon if policy is not None else None
    return None if horizon is None else at + horizon


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


def apply_envelope(
    txn: WriteTxn, view: _View, envelope: Envelope, until: int | None = None
) -> None:
    """Check, log, evolve and index one sequenced envelope; its idempotency key is remembered
    until ``until`` (None: forever)."""
    check(view, envelope.event)
    where = f"seq {envelope.seq}"
    codec = view.codec
    data = readable(codec.encode, lambda b: codec.decode(b, where), envelope, where)
    txn.put(Table.LOG, u64(envelope.seq), data)
    for table, where_key, row in evolve(view, envelope):
        view.put(table, where_key, row)
    remember_key(txn, envelope, until)


class RawTables(Protocol):
    """Byte-level access to the store-kept tables (``idem``, ``idem_expiry``): a write
    transaction, or verify's rebuilt state."""

    def get(self, table: Table, key: bytes) -> bytes | None: ...

    def put(self, table: Table, key: bytes, value: bytes) -> None: ...

    def delete(self, table: Table, key: bytes) -> None: ...


def remember_key(raw: RawTables, envelope: Envelope, until: int | None) -> None:
    """Record ``envelope``'s idempotency key (after its events were applied): forever, or until
    ``until``, indexed by that instant so a prune finds expired keys in time order. A prune's
    own event first drops the keys it names (the store keeps them, not ``evolve``)."""
    if isinstance(envelope.event, HistoryPruned):
        for expired in envelope.event.keys:
            raw.delete(Table.IDEM_EXPIRY, expiry_key(expired.until, expired.seq))
            current = raw.get(Table.IDEM, expired.key)
            if current is not None and idem_seq(current) == expired.seq:
                raw.delete(Table.IDEM, expired.key)  # a key re-taken since stays
    ikey = idem_key(envelope.key)
    if until is None:
        raw.put(Table.IDEM, ikey, u64(envelope.seq))
        return
    try:
        expiry = expiry_key(until, envelope.seq)
    except struct.error as exc:
        where = f"seq {envelope.seq}"
        raise UnstorableValue(f"{where}: its dedupe horizon ends out of range: {exc}") from None
    raw.put(Table.IDEM, ikey, u64(envelope.seq) + u64(until))
    raw.put(Table.IDEM_EXPIRY, expiry, ikey)


def expiry_key(until: int, seq: int) -> bytes:
    """The ``idem_expiry`` key of the idempotency entry logged at ``seq``."""
    return u64(until) + b"\x00" + u64(seq)


def original_batch(txn: ReadTxn, codec: Codec, seq: int) -> tuple[Envelope, ...]:
    """The envelopes of the append whose first record is ``seq``."""
    records = []
    for _, data in txn.scan(Table.LOG, start=u64(seq)):
        envelope = codec.decode(data, "log")
        if envelope.batch != seq:
            break
        records.append(envelope)
    return tuple(records)


def _rehearse(rehearsal: _Rehearsal, todo: Sequence[Pending], at: int) -> None:
    """Run ``todo`` with provisional numbers (evolve reads rows by id, never by seq): every row
    the batch reads is read (and locked), and a stale compare-and-set raises, before a number
    is drawn."""
    for n, pending in enumerate(todo, 1):
        envelope = Envelope(rehearsal.codec.version, n, pending.key, at, 1, pending.event)
        check(rehearsal, envelope.event)
        for table, key, row in evolve(rehearsal, envelope):
            rehearsal.put(table, key, row)


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

    1. If the first key was applied before (and its dedupe horizon, if any, has not ended:
       :func:`idem_live`), the batch is a duplicate: return the original records, write
       nothing.
    2. Otherwise skip each event whose own key was applied (a no-op by definition), and
       rehearse the rest: check their compare-and-set versions (:class:`Conflict` aborts the
       whole transaction) and read every row they touch, writing nothing.
    3. Reserve their sequence numbers (:meth:`WriteTxn.next_seq`), then each event in turn:
       log it, evolve its rows, update indexes.
    """
    if not batch:
        return Appended((), False)
    txn.prefetch(lambda: probe_reads(codec, batch, at), len(batch))
    original = txn.get(Table.IDEM, idem_key(batch[0].key))
    if original is not None and idem_live(original, at):
        data = txn.get(Table.LOG, original[:8])
        if data is None:  # the log before a snapshot was dropped (kernel/snapshot.py)
            raise Compacted(batch[0].key, idem_seq(original))
        envelope = codec.decode(data, f"seq {idem_seq(original)}")
        return Appended(original_batch(txn, codec, envelope.batch), True)
    todo: list[Pending] = []
    keys: set[str] = set()
    for pending in batch:
        # A key already applied, or repeated earlier in this very batch, is a no-op: logging
        # it would make the live state differ from a replay, which skips it.
        if pending.key in keys or (
            todo and idem_live(txn.get(Table.IDEM, idem_key(pending.key)), at)
        ):
            continue
        keys.add(pending.key)
        todo.append(pending)
    if any(isinstance(p.event, RetentionSet) for p in todo):
        txn.exclusive(Table.SETTINGS)  # every append reads the policy (its dedupe horizon)
    # A backend that runs one writer at a time (LMDB, memory) needs no rehearsal: a Conflict in
    # the real pass rolls the numbers back with everything else.
    live: _View  # the view the real pass writes through
    rehearsal: _Rehearsal | None = None
    if getattr(txn, "serialised", False) is True:
        live = view if view is not None else _View(txn, codec)
        until = dedupe_until(live, todo[0].event, at)  # before the batch changes any row
    else:
        rehearsal = _Rehearsal(txn, codec)
        until = dedupe_until(rehearsal, todo[0].event, at)
        _rehearse(rehearsal, todo, at)
    first = txn.next_seq(len(todo))
    envelopes = tuple(
        Envelope(codec.version, first + i, p.key, at, first, p.event) for i, p in enumerate(todo)
    )
    if rehearsal is not None:
        live = _Applied(txn, codec, rehearsal)
    for envelope in envelopes:
        apply_envelope(txn, live, envelope, until)
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


def index_finished_runs(txn: WriteTxn, codec: Codec) -> int:
    """Give runs that finished before the ``finished`` index existed (a store an older arcoflow
    wrote) their index entries, so retention can find them and ``verify`` agrees with a replay.
    Nothing to do once the index holds an entry; returns the entries written."""
    if next(txn.scan(Table.FINISHED), None) is not None:
        return 0
    written = 0
    for index, key_of in INDEXES[Table.RUNS]:
        if index is not Table.FINISHED:
            continue
        for run_key, data in txn.scan(Table.RUNS):
            entry = key_of(codec.decode_row(data, ROW_TYPES[Table.RUNS], f"runs {run_key!r}"))
            if entry is not None:
                txn.put(Table.FINISHED, entry, run_key)
                written += 1
    return written


def replay_batch(txn: WriteTxn, codec: Codec, envelopes: Sequence[Envelope]) -> None:
    """Apply sequenced envelopes as they were logged (for rebuilds and verification)."""
    view = _View(txn, codec)
    until: dict[int, int | None] = {}  # batch -> its keys' expiry, from its first record
    for envelope in envelopes:
        if idem_live(txn.get(Table.IDEM, idem_key(envelope.key)), envelope.at):
            continue
        if envelope.batch not in until:
            until[envelope.batch] = dedupe_until(view, envelope.event, envelope.at)
        apply_envelope(txn, view, envelope, until[envelope.batch])
    if envelopes:
        txn.put(Table.META, b"seq", u64(envelopes[-1].seq))
        txn.put(Table.META, b"schema_version", u64(codec.version))
