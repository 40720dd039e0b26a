"""A cluster of daemons on one PostgreSQL store: work claims, wake-ups, daemon status.

Nothing here touches the meaning of an append (that is ``apply_batch``); these are the
coordination services a :class:`~arcoflow.kernel.store.postgres.PostgresStore` adds for the
runtimes that share it. Their tables come with migration 5 (:func:`cluster_tables`).

**Work claims** (:class:`PostgresClaims`). A daemon claims due schedules, due poll sensors and
due launches in small chunks with ``SELECT ... FOR UPDATE SKIP LOCKED``, and holds the row
locks of a chunk while it works on it; the other daemons skip those rows and take the next
ones, so N daemons split the due work instead of all attempting it. The locked rows are in a
table of their own, ``<schema>.claims (kind, id)``, not the due indexes: the work itself
rewrites the index row (a schedule's next fire time moves), and a lock on it held by the
claiming transaction on another connection would block that write for ever.

*Why a lock held over the work, not a lease.* A poll may take seconds (a network call), and a
row lock held that long costs one idle-in-transaction connection per daemon and nothing else:
no write waits for it, because nothing but claims ever locks a claims row. In exchange, when
a daemon dies (SIGKILL, a lost connection) the server ends its transaction and the locks go
at once, so its items are picked up by the others at their next cycle: within one interval. A
lease written to the store would leave them stuck until it ran out (a launch lease is the
longest launch timeout plus a minute), and costs an append per item. A daemon cut off from
the database keeps its locks until the server notices: ``idle_in_transaction_session_timeout``
(:attr:`PostgresClaims.hold`, default 15 minutes) bounds that. A lock is not a guarantee of
exclusivity either way (a daemon may claim an item another finished a moment ago from a stale
snapshot), so the work still re-reads its rows, and compare-and-set and idempotency keys make
a doubled attempt harmless; launches are recorded with a compare-and-set on the attempt.

**Wake-ups** (:class:`PostgresWakeups`, :class:`Notifier`). An append that put a new entry in
the launch outbox is followed, once it has committed, by ``NOTIFY <schema>_wake`` with the
instant that entry is due (sent from a thread of the store's own); each daemon
``LISTEN``\\ s on a connection of its own and cuts its idle wait short, so a run requested on
any node is launched within a round trip or two, not a whole interval later. The
notification is a transaction of its own, with ``synchronous_commit = off``, never part of
the append's: PostgreSQL serialises the commits
of transactions that notify (a database-wide lock held through the commit's flush), so a
trigger on the outbox would have made every run request a global commit lock (measured here:
4 writers that notify inside their transaction commit 290-460/s against 880-1,050/s without).
A lost notification costs only latency: the daemon still cycles every interval.

**Daemon status** (:func:`put_status`, :func:`statuses`). Each daemon's heartbeat (its last
completed cycle) and its broker sources' state, one row per daemon and kind in
``<schema>.daemons``: ``/healthz`` and ``arcoflow sources`` on any host see every daemon of the
cluster. These rows are not in the log: a heartbeat is written after every cycle, and a cycle
with nothing to do must append nothing.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

import psycopg
from psycopg import sql

from ..errors import StoreError
from ..rows import Table, from_u64, u64
from .work import ID_OFFSET, INDEX_OF, WorkKind

if TYPE_CHECKING:
    from .postgres import PostgresStore

__all__ = [
    "Notifier",
    "PostgresClaims",
    "PostgresWakeups",
    "channel",
    "cluster_tables",
    "put_status",
    "statuses",
]

log = logging.getLogger("arcoflow.store.postgres")


def channel(schema: str) -> str:
    """The ``NOTIFY`` channel of a schema's wake-ups (an identifier: at most 63 bytes)."""
    return f"{schema[:58]}_wake"


def cluster_tables(schema: str) -> list[sql.Composed | sql.SQL]:
    """The cluster's tables: work claims and daemon status."""
    s = sql.Identifier(schema)
    return [
        sql.SQL("CREATE TABLE {}.claims (kind text, id text, PRIMARY KEY (kind, id))").format(s),
        sql.SQL(
            "CREATE TABLE {}.daemons (daemon text, kind text, data bytea NOT NULL, "
            "updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (daemon, kind))"
        ).format(s),
    ]


# -- work claims ---------------------------------------------------------------------------------


class PostgresClaims:
    """Due work claimed with ``FOR UPDATE SKIP LOCKED``, ``chunk`` items per transaction, the
    locks held while the caller works through the chunk (see the module's notes).

    ``hold``: seconds a claim transaction may sit idle before the server ends it (and frees
    its locks): the bound on how long a daemon cut off from the database keeps its items. It
    must exceed the longest work on one chunk (``chunk`` polls at their timeout).
    """

    exclusive = True

    def __init__(self, store: PostgresStore, *, chunk: int = 4, hold: float = 900.0) -> None:
        self.store = store
        self.chunk = chunk
        self.hold = hold
        schema = sql.Identifier(store.schema)
        self._claims = sql.SQL("{}.claims").format(schema)

    def _index(self, kind: WorkKind) -> sql.Composed:
        return sql.SQL("{}.{}").format(
            sql.Identifier(self.store.schema), sql.Identifier(INDEX_OF[kind].value)
        )

    def claim(self, kind: WorkKind, now: int, limit: int) -> Iterator[str]:
        """Due ids of ``kind``, a chunk at a time: each chunk's rows stay locked until the
        caller asks for the first id after it (or closes the iterator)."""
        stop = u64(now + 1)
        if not self._ensure_rows(kind, stop, limit):
            return  # nothing is due: no claim transaction at all (an idle daemon's cycle)
        query = sql.SQL(
            "SELECT c.id FROM {index} d JOIN {claims} c ON c.kind = %(kind)s "
            "AND c.id = convert_from(substring(d.key from {offset}), 'UTF8') "
            "WHERE d.key < %(stop)s AND NOT (c.id = ANY(%(seen)s::text[])) "
            "ORDER BY d.key LIMIT %(n)s FOR UPDATE OF c SKIP LOCKED"
        ).format(index=self._index(kind), claims=self._claims, offset=sql.Literal(ID_OFFSET + 1))
        # Sent with the BEGIN, in one round trip (no parameters: the simple query protocol).
        begin = sql.SQL("BEGIN; SET LOCAL idle_in_transaction_session_timeout = {}").format(
            sql.Literal(f"{int(self.hold * 1000)}ms")
        )
        seen: list[str] = []
        while len(seen) < limit:
            n = min(self.chunk, limit - len(seen))
            with self._transaction(begin) as conn:
                params = {"kind": kind.value, "stop": stop, "seen": seen, "n": n}
                ids = [str(r[0]) for r in conn.execute(query, params).fetchall()]
                for claimed in ids:
                    seen.append(claimed)
                    yield claimed
            if len(ids) < n:
                return

    @contextlib.contextmanager
    def _transaction(self, begin: sql.Composed) -> Iterator[psycopg.Connection[Any]]:
        """A claim transaction on a pooled connection. A pooled connection the server closed
        while it was idle fails its ``BEGIN`` and is replaced (as in the store's own
        transactions); the end of the transaction frees the locks, however it ends."""
        for attempt in range(2):
            with self.store._connection() as conn:
                try:
                    conn.execute(begin)
                except psycopg.OperationalError:
                    if conn.broken and attempt == 0:
                        continue
                    raise
                try:
                    yield conn
                finally:
                    _end(conn)
                return

    def _ensure_rows(self, kind: WorkKind, stop: bytes, limit: int) -> bool:
        """A claims row for every due item (rows are never deleted: one per schedule, sensor
        or run that was ever due); whether anything is due. One read in the steady state (the
        rows exist); the missing rows are inserted in a statement of their own, committed at
        once: an insert that waited for another daemon's uncommitted insert of the same row
        would wait for that daemon's whole chunk of work."""
        due = sql.SQL(
            "SELECT d.id, c.id IS NULL FROM (SELECT convert_from(substring(key from {offset}), "
            "'UTF8') AS id FROM {index} WHERE key < %(stop)s ORDER BY key LIMIT %(scan)s) d "
            "LEFT JOIN {claims} c ON c.kind = %(kind)s AND c.id = d.id"
        ).format(index=self._index(kind), claims=self._claims, offset=sql.Literal(ID_OFFSET + 1))
        # Past the items other daemons hold right now, there must be ``limit`` left to claim.
        scan = limit * 4 + 64
        rows = _statement(self.store, due, {"kind": kind.value, "stop": stop, "scan": scan})
        missing = sorted(str(id_) for id_, absent in rows if absent)
        if missing:
            insert = sql.SQL(
                "INSERT INTO {} (kind, id) SELECT %s, unnest(%s::text[]) ON CONFLICT DO NOTHING"
            ).format(self._claims)
            _statement(self.store, insert, (kind.value, missing))
        return bool(rows)


def _statement(store: PostgresStore, query: sql.Composed, params: Any) -> list[tuple[Any, ...]]:
    """Run one idempotent statement on its own (autocommit) and fetch its rows. A pooled
    connection that the server closed while it sat in the pool (a restart,
    ``pg_terminate_backend``) fails at once: it is dropped and the statement sent once more."""
    for attempt in range(2):
        with store._connection() as conn:
            try:
                cursor = conn.execute(query, params)
                return cursor.fetchall() if cursor.description is not None else []
            except psycopg.OperationalError:
                if not (conn.broken and attempt == 0):
                    raise
    raise AssertionError("unreachable")


def _end(conn: psycopg.Connection[Any]) -> None:
    """End a claim transaction. A connection the server closed meanwhile (its idle limit, a
    restart) has freed its locks already: nothing to do, and no reason to stop a daemon."""
    try:
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
            conn.execute("ROLLBACK")
        elif conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
            conn.execute("COMMIT")
    except psycopg.Error as exc:
        log.warning("a work claim ended with the connection: %s", exc)


# -- wake-ups ------------------------------------------------------------------------------------


class Notifier:
    """Sends a store's wake-ups off the append's path: :meth:`after_commit` notes the instant
    the earliest new outbox entry is due, and a background thread (started on first use) sends
    ``NOTIFY`` for it, one round trip, no flush waited for. Appends that commit while one
    notification is on its way are folded into the next one (the earliest instant), so a burst
    of run requests costs a few notifications, and an append never waits for one. Best effort:
    the append stands either way, and the daemons still cycle every interval. :meth:`close`
    sends what is pending before the store closes (a CLI command's request wakes the daemons
    although the process ends at once)."""

    def __init__(self, store: PostgresStore) -> None:
        self.store = store
        self.sent = 0  # notifications sent, for tests and curiosity
        self.channel = channel(store.schema)
        self._due: int | None = None
        self._closed = False
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def after_commit(self, writes: Mapping[tuple[Table, bytes], bytes | None]) -> None:
        """An append committed ``writes``: if it put entries in the launch outbox, wake the
        daemons (soon, from the notifier's thread)."""
        due = [key for (table, key), value in writes.items() if table is Table.OUTBOX and value]
        if not due:
            return
        instant = from_u64(min(due)[:8])
        with self._changed:
            if self._closed:
                return
            self._due = instant if self._due is None else min(self._due, instant)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="arcoflow-notify", daemon=True
                )
                self._thread.start()
            self._changed.notify()

    def _run(self) -> None:
        while True:
            with self._changed:
                while self._due is None and not self._closed:
                    self._changed.wait()
                if self._due is None:
                    return  # closed, nothing pending
                instant, self._due = self._due, None
            self._send(instant)

    def _send(self, instant: int) -> None:
        # Literals composed client side: a list of statements takes no parameters.
        query = sql.SQL(
            "BEGIN; SET LOCAL synchronous_commit = off; SELECT pg_notify({}, {}); COMMIT"
        ).format(sql.Literal(self.channel), sql.Literal(str(instant)))
        try:
            with self.store._connection() as conn:
                conn.execute(query)
            self.sent += 1
        except StoreError as exc:
            log.warning("could not wake the daemons (they will cycle anyway): %s", exc)

    def close(self) -> None:
        """Send what is pending, then stop the thread."""
        with self._changed:
            self._closed = True
            self._changed.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=10)


#: Seconds between attempts to listen again after the listening connection was lost.
_RELISTEN: Final = 1.0


class PostgresWakeups:
    """``LISTEN`` on the schema's channel, on a connection of its own, in a background thread;
    :meth:`wait` returns as soon as a new launch is due. While the connection is lost (a
    restart) the wait falls back to its timeout, and after listening again the daemon is woken
    once (a notification may have been missed meanwhile)."""

    def __init__(self, dsn: str, schema: str, clock: Any = time.time) -> None:
        self.dsn = dsn
        self.channel = channel(schema)
        self.clock = clock
        self._nudge = threading.Event()
        self._lock = threading.Lock()
        self._later: float | None = None  # the earliest "due later" instant heard of
        self._closed = threading.Event()
        self._conn: psycopg.Connection[Any] | None = None
        self._listening = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="arcoflow-listen", daemon=True)
        self._thread.start()

    def ready(self, timeout: float) -> bool:
        """Whether the first ``LISTEN`` took effect within ``timeout`` seconds."""
        return self._listening.wait(timeout)

    def wait(self, timeout: float, stop: threading.Event) -> bool:
        deadline = time.monotonic() + timeout
        while not stop.is_set():
            remaining = deadline - time.monotonic()
            with self._lock:
                if self._later is not None and self._later <= self.clock():
                    self._later = None
                    return False
                if self._later is not None:
                    remaining = min(remaining, self._later - self.clock())
            if remaining <= 0:
                return False
            # Short slices: ``stop`` is a plain Event that a signal handler sets.
            if self._nudge.wait(min(remaining, 0.1)):
                self._nudge.clear()
                return stop.is_set()
        return True

    def _heard(self, payload: str) -> None:
        try:
            due = float(payload)
        except ValueError:
            due = 0.0
        if due <= self.clock():
            self._nudge.set()
            return
        with self._lock:
            if self._later is None or due < self._later:
                self._later = due

    def _listen(self) -> None:
        while not self._closed.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
                    self._conn = conn
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    if self._listening.is_set():
                        self._nudge.set()  # listening again: something may have been missed
                    self._listening.set()
                    while not self._closed.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self._heard(note.payload)
            except psycopg.Error as exc:
                if self._closed.is_set():
                    return
                log.warning("listening for wake-ups on %s: %s; again shortly", self.channel, exc)
                self._closed.wait(_RELISTEN)
            finally:
                self._conn = None

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)


# -- daemon status -------------------------------------------------------------------------------


def put_status(store: PostgresStore, daemon: str, kind: str, data: bytes) -> None:
    """Record ``data`` as ``daemon``'s latest ``kind`` (``heartbeat``, ``sources``). A status
    needs no durability (the next one replaces it), so its commit waits for no flush
    (``synchronous_commit = off``): one round trip, the values inlined as literals."""
    query = sql.SQL(
        "BEGIN; SET LOCAL synchronous_commit = off; "
        "INSERT INTO {}.daemons (daemon, kind, data) VALUES ({}, {}, {}) "
        "ON CONFLICT (daemon, kind) DO UPDATE SET data = EXCLUDED.data, updated_at = now(); "
        "COMMIT"
    ).format(
        sql.Identifier(store.schema), sql.Literal(daemon), sql.Literal(kind), sql.Literal(data)
    )
    _statement(store, query, None)


def statuses(store: PostgresStore, kind: str) -> list[tuple[str, bytes]]:
    """Every daemon's latest ``kind``: ``(daemon, data)``, most recently updated first."""
    query = sql.SQL(
        "SELECT daemon, data FROM {}.daemons WHERE kind = %s ORDER BY updated_at DESC, daemon"
    ).format(sql.Identifier(store.schema))
    return [(str(d), bytes(v)) for d, v in _statement(store, query, (kind,))]
