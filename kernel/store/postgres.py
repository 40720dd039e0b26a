"""The PostgreSQL store: one database shared by every process on every machine.

It supplies transactions and nothing else; the meaning of an append is
:func:`~arcoflow.kernel.store.base.apply_batch`, shared with LMDB and memory.

* **Schema.** Everything lives in one PostgreSQL schema (``arcoflow`` unless named), so the
  store can share a database. The store creates and migrates it itself: numbered migrations,
  recorded in ``<schema>.migrations``, each applied once, under a transaction-level advisory
  lock, so processes that start together wait for one another instead of racing.
  One table per store :class:`~arcoflow.kernel.rows.Table`: ``key bytea PRIMARY KEY,
  value bytea``. ``bytea`` compares bytewise, as LMDB does, so ordered scans agree.
* **No global write lock.** A write transaction runs at READ COMMITTED and every point read
  locks what it reads (``SELECT ... FOR UPDATE``): appends on disjoint rows commit in parallel,
  appends on the same row serialise on it. A row read as absent is claimed by its primary key
  when written (a plain ``INSERT``): if another transaction got there first, that is a unique
  violation, a lost race. An upsert skips a row that already holds its value, so the format
  version every append writes locks nothing. Locking order: the batch's idempotency keys
  (together, in key order), then the rows the probe of :func:`apply_batch` names (a table at a
  time, keys in key order), then any row the rehearsal reads that the probe missed, and only
  then the sequence numbers; rows written but never read (a tick, a run link, index entries)
  are each guarded by a row that was read (the schedule, the run). See ``docs/postgres.md``.
* **Round trips.** Statements go in whole simple-query messages (:class:`_Session`): an
  append is two round trips (``BEGIN``, the locks and the draw of its numbers; the writes, in
  one statement sorted by table and key, and ``COMMIT``), a read transaction two.
* **Sequence numbers** come from a PostgreSQL sequence, drawn after every row lock is held, so
  the log order agrees with the commit order of conflicting appends and ``verify``'s replay
  reproduces the state: numbers reserved in the first round trip are used only if no lock was
  taken after them. A batch takes consecutive numbers (reserved under a short advisory lock
  inside one function call). The log may have gaps: a transaction that rolls back after
  drawing gives its numbers back only if nobody drew after it. Nothing may assume the log is
  contiguous (:meth:`~arcoflow.kernel.Kernel.log` does not).
* **Retries.** Serialization failures (40001), deadlocks (40P01) and unique violations
  (23505) roll the append back and run it again from fresh rows, a bounded number of times
  with jittered backoff (an append is idempotent by its key, and its compare-and-set checks
  run again). :attr:`PostgresStore.retries` counts them.
* **Durability**: ``synchronous_commit = on``; an acknowledged append has been flushed by the
  server. Read transactions are REPEATABLE READ, READ ONLY snapshots and never block writers.

psycopg 3 and psycopg_pool are imported only when this module is (``arcoflow[postgres]``).
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final, TypeVar
from urllib.parse import unquote

import psycopg
from psycopg import errors, pq, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool

from ..codec import Codec, Envelope
from ..errors import InputError, StoreError, StoreNotFound, StoreUnavailable
from ..rows import Table
from .base import (
    Appended,
    Pending,
    Reads,
    WriteTxn,
    apply_batch,
    apply_batches,
    check_format,
    index_finished_runs,
    min_stop,
    prefix_end,
    replay_batch,
)
from .postgres_cluster import (
    Notifier,
    PostgresClaims,
    PostgresWakeups,
    cluster_tables,
    put_status,
    statuses,
)
from .work import AllDue

__all__ = ["DEFAULT_SCHEMA", "PostgresStore", "split_schema"]

DEFAULT_SCHEMA: Final = "arcoflow"
_SCHEMA_NAME: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")
#: SQLSTATEs after which an append is rolled back and run again.
_RETRYABLE: Final = (errors.SerializationFailure, errors.DeadlockDetected, errors.UniqueViolation)

_T = TypeVar("_T")
_BEGIN_READ: Final = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"
_BEGIN_WRITE: Final = "BEGIN ISOLATION LEVEL READ COMMITTED, READ WRITE"
_IN_TRANSACTION: Final = (pq.TransactionStatus.INTRANS, pq.TransactionStatus.INERROR)

# -- migrations ----------------------------------------------------------------------------------

#: The tables of migration 1 (frozen: a table added later gets a migration of its own).
_V1_TABLES: Final = (
    "log",
    "idem",
    "meta",
    "schedules",
    "ticks",
    "missed",
    "sensors",
    "evals",
    "runs",
    "links",
    "conflicts",
    "due_schedules",
    "due_sensors",
    "eval_ids",
    "run_order",
    "outbox",
    "launched",
)

# The sequence functions. reserve_seq hands out ``n`` consecutive numbers; give_back_seq
# returns them if nobody drew after them; advance_seq moves the sequence past a replayed log.
# Sequence operations are not transactional, so they serialise on a session-level advisory
# lock held only inside each call (and released if the call fails).
_SEQ_FUNCTIONS: Final = """
CREATE FUNCTION {schema}.reserve_seq(n integer) RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE first bigint;
BEGIN
  PERFORM pg_advisory_lock({lock});
  BEGIN
    first := nextval('{seq}');
    IF n > 1 THEN PERFORM setval('{seq}', first + n - 1); END IF;
  EXCEPTION WHEN OTHERS OR query_canceled THEN
    PERFORM pg_advisory_unlock({lock});
    RAISE;
  END;
  PERFORM pg_advisory_unlock({lock});
  RETURN first;
END $fn$;

CREATE FUNCTION {schema}.give_back_seq(first bigint, n integer) RETURNS boolean
LANGUAGE plpgsql AS $fn$
DECLARE last bigint; called boolean; given boolean := false;
BEGIN
  PERFORM pg_advisory_lock({lock});
  BEGIN
    SELECT last_value, is_called INTO last, called FROM {seq};
    IF called AND last = first + n - 1 THEN
      IF first > 1 THEN PERFORM setval('{seq}', first - 1);
      ELSE PERFORM setval('{seq}', 1, false); END IF;
      given := true;
    END IF;
  EXCEPTION WHEN OTHERS OR query_canceled THEN
    PERFORM pg_advisory_unlock({lock});
    RAISE;
  END;
  PERFORM pg_advisory_unlock({lock});
  RETURN given;
END $fn$;

CREATE FUNCTION {schema}.advance_seq(upto bigint) RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE last bigint; called boolean;
BEGIN
  PERFORM pg_advisory_lock({lock});
  BEGIN
    SELECT last_value, is_called INTO last, called FROM {seq};
    IF upto > 0 AND (NOT called OR last < upto) THEN PERFORM setval('{seq}', upto); END IF;
  EXCEPTION WHEN OTHERS OR query_canceled THEN
    PERFORM pg_advisory_unlock({lock});
    RAISE;
  END;
  PERFORM pg_advisory_unlock({lock});
END $fn$;
"""


def _lock_key(purpose: str, schema: str) -> int:
    """A stable signed 64-bit advisory lock key for ``purpose`` on ``schema``."""
    digest = hashlib.sha256(f"arcoflow:{purpose}:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _create_tables(schema: str, names: tuple[str, ...]) -> list[sql.Composed | sql.SQL]:
    s = sql.Identifier(schema)
    return [
        sql.SQL("CREATE TABLE {}.{} (key bytea PRIMARY KEY, value bytea NOT NULL)").format(
            s, sql.Identifier(name)
        )
        for name in names
    ]


def _migration_1(schema: str) -> list[sql.Composed | sql.SQL]:
    s = sql.Identifier(schema)
    steps = _create_tables(schema, _V1_TABLES)
    steps.append(
        sql.SQL("CREATE SEQUENCE {}.log_seq AS bigint MINVALUE 1 START 1 CACHE 1").format(s)
    )
    seq = f'"{schema}".log_seq'  # a regclass literal inside the function bodies
    steps.append(
        sql.SQL(
            _SEQ_FUNCTIONS.format(
                schema=f'"{schema}"', seq=seq, lock=_lock_key("seq", schema)
            )  # schema matches _SCHEMA_NAME: nothing to escape
        )
    )
    return steps


#: Every migration, by version: the statements that take a schema from the previous version.
_MIGRATIONS: Final[tuple[tuple[int, Callable[[str], list[sql.Composed | sql.SQL]]], ...]] = (
    (1, _migration_1),
    # 2: the definition history (``arcoflow history``), one row per change of a definition.
    (2, lambda schema: _create_tables(schema, ("history",))),
    # 3: log compaction's snapshot of the state at a sequence number (kernel/snapshot.py).
    (3, lambda schema: _create_tables(schema, ("snapshot",))),
    # 4: retention: the store-wide policy, pruned-history marks, the keys of pruned runs, the
    # finished-runs index and the idempotency keys' expiry index (issue 16).
    (
        4,
        lambda schema: _create_tables(
            schema, ("settings", "pruned", "run_keys", "finished", "idem_expiry")
        ),
    ),
    # 5: a cluster of daemons: work claims and daemon status (kernel/store/postgres_cluster.py).
    (5, cluster_tables),
)
SCHEMA_LATEST: Final = _MIGRATIONS[-1][0]


def _migrate(conn: psycopg.Connection[Any], schema: str) -> None:
    """Create or upgrade ``schema`` to :data:`SCHEMA_LATEST`; idempotent, and safe when several
    processes run it at once (they queue on an advisory lock; each migration runs once)."""
    s = sql.Identifier(schema)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key("migrate", schema),))
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(s))
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {}.migrations (version integer PRIMARY KEY, "
                "applied_at timestamptz NOT NULL DEFAULT now())"
            ).format(s)
        )
        row = conn.execute(
            sql.SQL("SELECT coalesce(max(version), 0) FROM {}.migrations").format(s)
        ).fetchone()
        current = int(row[0]) if row else 0
        if current > SCHEMA_LATEST:
            raise StoreError(
                f"PostgreSQL schema {schema!r} is at migration {current}, but this arcoflow "
                f"knows up to {SCHEMA_LATEST}; upgrade arcoflow to use this store"
            )
        for version, steps in _MIGRATIONS:
            if version > current:
                for statement in steps(schema):
                    conn.execute(statement)
                conn.execute(
                    sql.SQL("INSERT INTO {}.migrations (version) VALUES (%s)").format(s),
                    (version,),
                )


# -- transactions --------------------------------------------------------------------------------


def _text(query: sql.Composable) -> str:
    return query.as_string()


class _Statements:
    """The SQL of one schema, composed once, as templates for :func:`_bind`."""

    def __init__(self, schema: str) -> None:
        s = sql.Identifier(schema)
        self.table = {t: sql.SQL("{}.{}").format(s, sql.Identifier(t.value)) for t in Table}

        def each(template: str) -> dict[Table, str]:
            return {t: _text(sql.SQL(template).format(self.table[t])) for t in Table}

        self.get = each("SELECT value FROM {} WHERE key = %s")
        self.lock = each("SELECT value FROM {} WHERE key = %s FOR UPDATE")
        # Every append reads the retention policy (its dedupe horizon): a shared lock, or the
        # policy row would serialise every writer. Setting the policy still waits for them.
        self.lock[Table.SETTINGS] = _text(
            sql.SQL("SELECT value FROM {} WHERE key = %s FOR SHARE").format(
                self.table[Table.SETTINGS]
            )
        )
        self.lock_many = each(
            "SELECT key, value FROM {} WHERE key = ANY(%s::bytea[]) ORDER BY key FOR UPDATE"
        )
        self.lock_many[Table.SETTINGS] = _text(
            sql.SQL(
                "SELECT key, value FROM {} WHERE key = ANY(%s::bytea[]) ORDER BY key FOR SHARE"
            ).format(self.table[Table.SETTINGS])
        )
        self._locks: dict[tuple[Table, ...], str] = {}
        self.insert = each(
            "INSERT INTO {} (key, value) SELECT * FROM unnest(%s::bytea[], %s::bytea[])"
        )
        self.upsert = {
            t: _text(
                sql.SQL(
                    "INSERT INTO {t} (key, value) "
                    "SELECT k, v FROM unnest(%s::bytea[], %s::bytea[]) AS w(k, v) "
                    "WHERE NOT EXISTS (SELECT FROM {t} AS o WHERE o.key = w.k AND o.value = w.v) "
                    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
                ).format(t=self.table[t])
            )
            for t in Table
        }
        self.delete = each("DELETE FROM {} WHERE key = ANY(%s::bytea[])")
        self._writes: dict[tuple[tuple[str, Table], ...], str] = {}
        self.reserve = _text(sql.SQL("SELECT {}.reserve_seq(%s)").format(s))
        self.give_back = _text(sql.SQL("SELECT {}.give_back_seq(%s, %s)").format(s))
        self.advance = _text(sql.SQL("SELECT {}.advance_seq(%s)").format(s))
        self._scans: dict[tuple[Table, str, str, bool], str] = {}

    def writes(self, shape: tuple[tuple[str, Table], ...]) -> str:
        """One statement for writes of ``shape`` (kind and table of each group, in order);
        its parameters: keys (and values, but for a delete) of each group."""
        query = self._writes.get(shape)
        if query is None:
            kinds = {"delete": self.delete, "insert": self.insert, "upsert": self.upsert}
            parts = [f"w{i} AS ({kinds[kind][table]})" for i, (kind, table) in enumerate(shape)]
            query = self._writes[shape] = f"WITH {', '.join(parts)} SELECT 1"
        return query

    def locks(self, tables: tuple[Table, ...]) -> str:
        """One statement that locks and reads rows of ``tables``, a table after the other (an
        ``Append`` runs its branches in order), each in key order; its parameters: the keys of
        each table. Rows come back as (table's position, key, value)."""
        query = self._locks.get(tables)
        if query is None:
            parts = [
                f"SELECT {i} AS t, key, value FROM ({self.lock_many[table]}) AS l{i}"
                for i, table in enumerate(tables)
            ]
            query = self._locks[tables] = " UNION ALL ".join(parts)
        return query

    def scan(self, table: Table, low: str, high: str, reverse: bool) -> str:
        """One page of ``table`` in key order; ``low``/``high``: how a key compares with the
        ``%(lo)s``/``%(hi)s`` bound (``>=``, ``>``, ``<``; empty: no bound)."""
        slot = (table, low, high, reverse)
        query = self._scans.get(slot)
        if query is None:
            where = ["true"]
            if low:
                where.append(f"key {low} %(lo)s")
            if high:
                where.append(f"key {high} %(hi)s")
            order = "DESC" if reverse else "ASC"
            query = self._scans[slot] = _text(
                sql.SQL(
                    f"SELECT key, value FROM {{}} WHERE {' AND '.join(where)} "
                    f"ORDER BY key {order} LIMIT %(page)s"
                ).format(self.table[table])
            )
        return query


def _literal(value: object) -> str:
    """``value`` as an SQL literal. The store's parameters are only bytes (keys, values),
    lists of them, integers and None: bytes are written in hex, so nothing needs escaping."""
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        return f"E'\\\\x{value.hex()}'::bytea"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, list):
        return f"ARRAY[{','.join(map(_literal, value))}]::bytea[]" if value else "'{}'"
    raise TypeError(f"no SQL literal for {type(value).__name__}")


def _bind(template: str, params: Any) -> str:
    """``template``'s ``%s`` (or ``%(name)s``) placeholders replaced by ``params``."""
    if params is None:
        return template
    if isinstance(params, dict):
        return template % {k: _literal(v) for k, v in params.items()}
    return template % tuple(_literal(v) for v in params)


#: A statement with its parameters, as :meth:`_Session.round_trip` takes it.
_Query = tuple[str, Any]

_PLACEHOLDER: Final = re.compile(r"%s")


def _prepared_form(template: str) -> tuple[str, str]:
    """A name for ``template`` and its body with ``$1, $2, ...`` for its ``%s``."""
    numbers = iter(range(1, 1 << 16))
    body = _PLACEHOLDER.sub(lambda _: f"${next(numbers)}", template)
    return "arcoflow_" + hashlib.sha1(template.encode()).hexdigest()[:20], body


#: Each connection's prepared statements, by name (psycopg does not prepare simple queries).
_PREPARED: Final[weakref.WeakKeyDictionary[psycopg.Connection[Any], set[str]]] = (
    weakref.WeakKeyDictionary()
)


class _Session:
    """One pooled connection inside one transaction, talking in whole round trips.

    Statements whose results are not needed now (``BEGIN``, writes, numbers given back) are
    queued, and go with the next statement whose results are, in one simple-query message
    (parameters bound client-side): ``BEGIN`` travels with the first read, the writes with
    ``COMMIT``. One message per round trip, however many statements (psycopg's pipeline mode
    sends each statement on its own, measured 2x slower here for BEGIN, a read and COMMIT).

    A pooled connection that the server closed meanwhile (a restart, ``pg_terminate_backend``)
    fails the first round trip, before anything happened in the transaction: it is dropped
    and the round trip sent again on another one.
    """

    def __init__(
        self, pool: ConnectionPool[psycopg.Connection[Any]], begin: str, spare: int
    ) -> None:
        self.pool = pool
        self.spare = spare  # dead pooled connections to replace, at most
        self.opened = False  # a round trip came back: the transaction is under way
        self.committed = False
        self.queued: list[_Query] = [(begin, None)]
        self.conn = pool.getconn()
        self.cursor = psycopg.ClientCursor(self.conn)
        self.preparing: set[str] = set()  # PREPAREs in the message being sent
        self.spoiled = False  # a statement failed: which PREPAREs ran is unknown

    def _statements(self, query: str, params: Any) -> list[str]:
        """What to send for ``query``: a statement with positional parameters runs as a
        prepared statement of the connection, prepared the first time (planning the store's
        statements cost more than running them: 0.4-0.5 ms each, measured); the others are
        bound in place."""
        if params is None or isinstance(params, dict):
            return [_bind(query, params)]
        name, body = _prepared_form(query)
        run = f"EXECUTE {name}({', '.join(_literal(v) for v in params)})"
        if name in _PREPARED.get(self.conn, ()) or name in self.preparing:
            return [run]
        self.preparing.add(name)
        return [f"PREPARE {name} AS {body}", run]

    def queue(self, query: str, params: Any = None) -> None:
        """Send ``query`` with the next round trip (its result is not looked at)."""
        self.queued.append((query, params))

    def round_trip(self, *queries: _Query) -> list[list[tuple[Any, ...]]]:
        """Send the queued statements and ``queries`` in one message; the rows of each of
        ``queries``."""
        while True:
            self.preparing = set()
            statements: list[str] = []
            for query, params in self.queued:
                statements += self._statements(query, params)
            wanted: list[int] = []
            for query, params in queries:
                statements += self._statements(query, params)
                wanted.append(len(statements) - 1)
            try:
                self.cursor.execute("; ".join(statements))
                rows: list[list[tuple[Any, ...]]] = []
                for i in range(len(statements)):
                    if i:
                        self.cursor.nextset()
                    if i in wanted:
                        rows.append(self.cursor.fetchall())
            except psycopg.OperationalError:
                self.spoiled = True
                if self.opened or not self.conn.broken or self.spare <= 0:
                    raise
                self.spare -= 1
                self.pool.putconn(self.conn)  # dropped: it is broken
                self.conn = self.pool.getconn()
                self.cursor = psycopg.ClientCursor(self.conn)
                self.spoiled = False
                continue
            except psycopg.Error:
                self.spoiled = True
                raise
            self.opened = True
            self.queued = []
            _PREPARED.setdefault(self.conn, set()).update(self.preparing)
            return rows

    def commit(self) -> None:
        """Send what is queued and ``COMMIT`` (once)."""
        if not self.committed:
            self.committed = True
            self.queued.append(("COMMIT", None))
            self.round_trip()

    def rollback(self) -> None:
        """Forget what is queued, and roll back whatever was sent."""
        self.queued = []
        self.committed = True
        _rollback(self.conn)

    def close(self) -> None:
        """Give the connection back to the pool (which drops it if it is broken)."""
        _rollback(self.conn)
        if self.spoiled and not self.conn.broken:
            # A failed message stops at the failing statement: the PREPAREs after it never
            # ran. Start this connection's prepared statements afresh.
            _PREPARED.pop(self.conn, None)
            with contextlib.suppress(psycopg.Error):
                self.conn.execute("DEALLOCATE ALL")
        self.pool.putconn(self.conn)


class _Read:
    """A read-only snapshot (REPEATABLE READ): point reads, and scans paged by key."""

    #: Rows fetched per round trip by a scan.
    page = 256

    def __init__(self, session: _Session, statements: _Statements) -> None:
        self.session = session
        self.sql = statements

    @property
    def conn(self) -> psycopg.Connection[Any]:
        """The connection, for a statement of one's own inside this transaction (what is
        queued, ``BEGIN`` first, is sent before it is handed out)."""
        if self.session.queued:
            self.session.round_trip()
        return self.session.conn

    def _fetch(self, query: str, params: Any) -> list[tuple[Any, ...]]:
        return self.session.round_trip((query, params))[0]

    def get(self, table: Table, key: bytes) -> bytes | None:
        rows = self._fetch(self.sql.get[table], (key,))
        return bytes(rows[0][0]) if rows else None

    def scan(
        self,
        table: Table,
        *,
        prefix: bytes = b"",
        start: bytes | None = None,
        stop: bytes | None = None,
        reverse: bool = False,
    ) -> Iterator[tuple[bytes, bytes]]:
        lo: bytes | None = max(prefix, start or b"") or None
        hi = min_stop(stop, prefix_end(prefix))
        low, high = (">=" if lo else ""), ("<" if hi is not None else "")
        while True:
            query = self.sql.scan(table, low, high, reverse)
            page = self._fetch(query, {"lo": lo, "hi": hi, "page": self.page})
            for k, v in page:
                yield bytes(k), bytes(v)
            if len(page) < self.page:
                return
            # The next page starts past the last key seen.
            if reverse:
                hi, high = bytes(page[-1][0]), "<"
            else:
                lo, low = bytes(page[-1][0]), ">"


class _Write(_Read):
    """A write transaction at READ COMMITTED whose point reads lock (``FOR UPDATE``).

    Round trips: the first sends ``BEGIN``, locks the rows :meth:`prefetch` names (one
    statement per table, in key order) and reserves the batch's sequence numbers after them;
    the last sends the writes and ``COMMIT``. A read the prefetch missed costs one more, and
    then the reserved numbers no longer count (a lock was taken after them): they are given
    back and drawn again.

    Writes are kept here and sent together by :meth:`flush`, sorted by table and key (a
    consistent lock order). A row this transaction read as absent is written with a plain
    ``INSERT``, so a concurrent creator makes it fail with a unique violation (a lost race,
    retried); a row read as present is locked already; a row never read (an index entry, a
    log record) is upserted, as LMDB's ``put`` overwrites. ``scan`` sees the committed state,
    not this transaction's writes (the apply step only scans before it writes), as in memory.

    An upsert skips a row that already holds the value (so takes no lock on it): every append
    writes the store's format version (``meta/schema_version``), and rewriting that one row
    would lock it until the commit, a global write lock by the back door.
    """

    def __init__(self, session: _Session, statements: _Statements) -> None:
        super().__init__(session, statements)
        self.seen: dict[tuple[Table, bytes], bytes | None] = {}  # as read (and locked)
        self.writes: dict[tuple[Table, bytes], bytes | None] = {}  # None: delete
        self.drawn: list[tuple[int, int]] = []  # (first, count) of every draw, in order
        self.used: list[tuple[int, int]] = []  # the draws that numbered records
        self.reserved: tuple[int, int] | None = None  # drawn by prefetch, still usable

    def _lock(self) -> None:
        """A row lock taken now: numbers reserved before it no longer agree with the commit
        order of appends that conflict on that row."""
        self.reserved = None

    def unused(self) -> list[tuple[int, int]]:
        """Draws that numbered nothing, latest first (the order they can be given back)."""
        return [d for d in reversed(self.drawn) if d not in self.used]

    def get(self, table: Table, key: bytes) -> bytes | None:
        slot = (table, key)
        if slot in self.writes:
            return self.writes[slot]
        if slot not in self.seen:
            self._lock()
            rows = self._fetch(self.sql.lock[table], (key,))
            self.seen[slot] = bytes(rows[0][0]) if rows else None
        return self.seen[slot]

    def prefetch(self, rows: Callable[[], Reads], count: int) -> None:
        """Lock and read the rows ``rows()`` names, in one statement (a table after the other
        in a fixed order, keys in key order), then reserve ``count`` numbers: one round
        trip."""
        self._lock()
        todo: list[tuple[Table, list[bytes]]] = []
        for table, keys in sorted(rows().items(), key=lambda item: _LOCK_ORDER[item[0]]):
            fresh = sorted(k for k in keys if (table, k) not in self.seen)
            if fresh:
                todo.append((table, fresh))
        locks = self.sql.locks(tuple(table for table, _ in todo))
        found, drawn = self.session.round_trip(
            (locks, [keys for _, keys in todo]) if todo else ("SELECT 1 WHERE false", None),
            *self._draw(count),
        )
        values = {(todo[t][0], bytes(k)): bytes(v) for t, k, v in found}
        for table, keys in todo:
            for k in keys:
                self.seen[(table, k)] = values.get((table, k))
        self.reserved = self._drawn(drawn, count)

    def _draw(self, count: int) -> list[_Query]:
        """A draw of ``count`` numbers, after giving back the unused ones (so the new draw
        takes the same numbers, unless another transaction drew meanwhile)."""
        for unused in self.unused():
            self.session.queue(self.sql.give_back, unused)
        return [(self.sql.reserve, (count,))]

    def _drawn(self, rows: list[tuple[Any, ...]], count: int) -> tuple[int, int]:
        draw = (int(rows[0][0]), count)
        self.drawn = [*self.used, draw]
        return draw

    def put(self, table: Table, key: bytes, value: bytes) -> None:
        self.writes[(table, key)] = value

    def delete(self, table: Table, key: bytes) -> None:
        self.writes[(table, key)] = None

    def exclusive(self, table: Table) -> None:
        """EXCLUSIVE conflicts with the ROW SHARE lock every append's ``FOR SHARE`` read of
        the table takes, even of a row that does not exist yet: this waits for the appends
        that read it and holds back new ones until the commit (plain reads still go on)."""
        self.conn.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(self.sql.table[table]))

    def next_seq(self, count: int) -> int:
        if self.reserved is not None and self.reserved[1] == count:
            draw = self.reserved
        else:
            draw = self._drawn(self.session.round_trip(*self._draw(count))[0], count)
        self.reserved = None
        self.used.append(draw)
        return draw[0]

    def flush(self) -> None:
        """Queue every write in one statement (a data-modifying CTE per table and kind), and
        give back the numbers reserved but not used (a duplicate batch, a missed read). They
        are sent with the ``COMMIT``."""
        for unused in self.unused():
            self.session.queue(self.sql.give_back, unused)
        self.drawn = list(self.used)
        groups: dict[tuple[str, Table], list[tuple[bytes, bytes | None]]] = {}
        for (table, key), value in sorted(self.writes.items(), key=lambda item: item[0]):
            if value is None:
                kind = "delete"
            elif (table, key) in self.seen and self.seen[(table, key)] is None:
                kind = "insert"  # claimed by its primary key
            else:
                kind = "upsert"
            groups.setdefault((kind, table), []).append((key, value))
        if not groups:
            return
        params: list[Any] = []
        for (kind, _), items in groups.items():
            params.append([k for k, _ in items])
            if kind != "delete":
                params.append([v for _, v in items])
        self.session.queue(self.sql.writes(tuple(groups)), params)


#: The order in which :meth:`_Write.prefetch` locks tables: idempotency keys first (so two
#: appends of one key meet there), then the rows, then everything else.
_FIRST: Final = (Table.IDEM, Table.SCHEDULES, Table.SENSORS, Table.RUNS)
_LOCK_ORDER: Final = {
    table: i
    for i, table in enumerate(
        [*_FIRST, *sorted((t for t in Table if t not in _FIRST), key=lambda t: t.value)]
    )
}


# -- opening: the URL, the first connection ------------------------------------------------------


def split_schema(dsn: str) -> tuple[str, str | None]:
    """``dsn`` without its ``schema=NAME`` query parameter (an arcoflow option, unknown to
    libpq), and that name (``None``: not given). ``ARCOFLOW_STORE`` and ``--store`` can then
    name the schema: ``postgresql://app@db/prod?schema=arcoflow_eu``."""
    base, mark, query = dsn.partition("?")
    if not mark or "://" not in base:
        return dsn, None
    kept, schema = [], None
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if name == "schema":
            schema = unquote(value)
        elif part:
            kept.append(part)
    return base + ("?" + "&".join(kept) if kept else ""), schema


def _one_line(exc: BaseException) -> str:
    """A driver message on one line (libpq's span several: the address tried, a hint)."""
    return " ".join(str(exc).split())


def _preflight(dsn: str, where: str, schema: str, create: bool, timeout: float) -> None:
    """One direct connection before the pool opens, so that a bad DSN, an unreachable server
    or a refused login fails at once with the driver's reason (the pool would only retry in
    the background until its timeout), and a read-only open of a database without this
    store's schema is :class:`StoreNotFound`, creating nothing."""
    try:
        conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise InputError(f"not a PostgreSQL URL or DSN: {_one_line(exc)}") from None
    try:
        conn = psycopg.connect(dsn, connect_timeout=max(1, round(timeout)), autocommit=True)
    except psycopg.ProgrammingError as exc:  # an option libpq does not know
        raise InputError(f"not a usable PostgreSQL URL: {_one_line(exc)}") from None
    except psycopg.Error as exc:
        reason = _one_line(exc)
        raise StoreUnavailable(f"cannot connect to PostgreSQL at {where}: {reason}") from None
    with conn:
        if create:
            return
        row = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}".migrations',)
        ).fetchone()
        if not (row and row[0]):
            raise StoreNotFound(f"no arcoflow store at {where} (the schema does not exist)")


# -- the store -----------------------------------------------------------------------------------


def _application_name(dsn: str) -> dict[str, str]:
    """``arcoflow``, unless the DSN names the application (``?application_name=...``, so an
    operator can tell several deployments' connections apart in ``pg_stat_activity``)."""
    with contextlib.suppress(psycopg.ProgrammingError):
        if conninfo_to_dict(dsn).get("application_name"):
            return {}
    return {"application_name": "arcoflow"}


def _where(dsn: str) -> str:
    """The DSN without its password, for messages."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "the given PostgreSQL DSN"
    params.pop("password", None)
    return make_conninfo(**{k: str(v) for k, v in params.items() if v is not None})


class PostgresStore:
    """A store in the PostgreSQL schema ``schema`` of the database at ``dsn`` (a
    ``postgresql://`` URL or a libpq connection string; a ``schema=NAME`` query parameter of
    the URL names the schema when ``schema`` is not given). The schema is created or migrated
    on open; with ``create=False`` (a command that only reads) it must exist already, else
    :class:`~arcoflow.kernel.errors.StoreNotFound` and nothing is created. A server that
    cannot be reached or refuses the login is
    :class:`~arcoflow.kernel.errors.StoreUnavailable`, a DSN that does not parse an
    :class:`~arcoflow.kernel.errors.InputError`. ``pool_size``: connections kept (one per
    concurrent command). ``max_retries``: how often an append that lost a race (deadlock,
    serialization failure, unique violation) is run
    again before it fails with :class:`~arcoflow.kernel.errors.StoreError`.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str | None = None,
        pool_size: int = 4,
        max_retries: int = 10,
        connect_timeout: float = 10.0,
        codec: Codec | None = None,
        create: bool = True,
    ) -> None:
        dsn, named = split_schema(dsn)
        schema = schema if schema is not None else named or DEFAULT_SCHEMA
        if not _SCHEMA_NAME.fullmatch(schema):
            raise InputError(
                f"PostgreSQL schema name {schema!r} must match [a-z_][a-z0-9_]{{0,62}}"
            )
        if pool_size < 1 or max_retries < 0:
            raise InputError("pool_size must be at least 1 and max_retries at least 0")
        self.schema = schema
        self.dsn = dsn  # without the schema parameter: what libpq accepts
        self.where = f"{_where(dsn)} schema {schema}"
        self.codec = codec or Codec()
        self.max_retries = max_retries
        self._pool_size = pool_size
        self.retries = 0  # appends run again after a lost race, since open
        self._retries_lock = threading.Lock()
        self._sql = _Statements(schema)
        self._notifier = Notifier(self)
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None
        _preflight(dsn, self.where, schema, create, connect_timeout)
        pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            dsn,
            min_size=1,
            max_size=pool_size,
            # The store prepares its statements itself (_Session). psycopg's own preparing
            # is off: once psycopg has prepared a statement it answers a ROLLBACK with
            # DEALLOCATE ALL, which would drop the store's statements as well.
            kwargs={"autocommit": True, "prepare_threshold": None, **_application_name(dsn)},
            configure=_configure,
            open=False,
            name=f"arcoflow-{schema}",
        )
        try:
            pool.open(wait=True, timeout=connect_timeout)
        except Exception as exc:
            pool.close()
            raise StoreUnavailable(
                f"cannot connect to PostgreSQL at {self.where}: {_one_line(exc)}"
            ) from exc
        self._pool = pool
        try:
            with self._connection() as conn:
                _migrate(conn, schema)
            with self.read() as txn:
                check_format(txn)
                # Runs finished before retention's index existed (migration 4): index them.
                unindexed = next(txn.scan(Table.FINISHED), None) is None and any(
                    True for _ in txn.scan(Table.RUNS)
                )
            if unindexed:
                self._write(lambda txn: index_finished_runs(txn, self.codec))
        except BaseException:
            self.close()
            raise

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection; a driver error becomes :class:`StoreError`, except a lost
        race, which :meth:`_write` retries. A lost connection, a server that is restarting or
        shutting down, a timeout (an ``OperationalError``) is :class:`StoreUnavailable`: the
        store itself is fine, and a daemon tries again at its next cycle."""
        if self._pool is None:
            raise StoreError(f"store at {self.where} is closed")
        try:
            with self._pool.connection() as conn:
                yield conn
        except _RETRYABLE:
            raise
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"store at {self.where}: {_one_line(exc)}") from exc
        except psycopg.Error as exc:
            raise StoreError(f"store at {self.where}: {exc}") from exc

    def _write(self, fn: Callable[[_Write], _T]) -> _T:
        """Run ``fn`` in a write transaction and commit; run it again after a lost race."""
        for attempt in range(self.max_retries + 1):
            try:
                return self._write_once(fn)
            except _RETRYABLE as exc:
                if attempt == self.max_retries:
                    raise StoreError(
                        f"store at {self.where}: an append lost {attempt + 1} races in a row "
                        f"({exc.sqlstate}: {exc}); nothing was written"
                    ) from exc
                with self._retries_lock:
                    self.retries += 1
                # Jittered exponential backoff, so the racers do not meet again.
                time.sleep(random.uniform(0, 0.002 * 2 ** min(attempt, 6)))
        raise AssertionError("unreachable")

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[_Session]:
        """A pooled connection inside a transaction (see :class:`_Session`), committed at the
        end, rolled back on an error; a driver error becomes :class:`StoreError`, except a
        lost race, which :meth:`_write` retries."""
        if self._pool is None:
            raise StoreError(f"store at {self.where} is closed")
        try:
            session = _Session(self._pool, begin, self._pool_size)
            try:
                yield session
                session.commit()
            finally:
                session.close()
        except _RETRYABLE:
            raise
        except psycopg.OperationalError as exc:  # the store is fine; try again later
            raise StoreUnavailable(f"store at {self.where}: {_one_line(exc)}") from exc
        except psycopg.Error as exc:
            raise StoreError(f"store at {self.where}: {exc}") from exc

    def _write_once(self, fn: Callable[[_Write], _T]) -> _T:
        with self._transaction(_BEGIN_WRITE) as session:
            txn = _Write(session, self._sql)
            try:
                result = fn(txn)
                txn.flush()
                session.commit()
            except BaseException as exc:
                self._give_back(session, txn, exc)
                raise
        self._notifier.after_commit(txn.writes)  # a new launch due: tell the daemons
        return result

    def _give_back(self, session: _Session, txn: _Write, exc: BaseException) -> None:
        """Roll back, and return the numbers the transaction drew if nobody drew after them
        (so a single writer's log has no gaps). Only when the rollback is certain: the
        connection is intact, and the error did not come from the commit itself."""
        session.rollback()
        conn = session.conn
        lost = isinstance(exc, psycopg.OperationalError) and not isinstance(exc, _RETRYABLE)
        if conn.broken or lost:
            return
        with contextlib.suppress(psycopg.Error):  # else a gap in the log, which is allowed
            for drawn in reversed(txn.drawn):
                conn.execute(self._sql.give_back, drawn)

    def append(self, batch: Sequence[Pending], at: int) -> Appended:
        return self._write(lambda txn: apply_batch(txn, self.codec, batch, at))

    def append_many(self, batches: Sequence[Sequence[Pending]], at: int) -> list[Appended]:
        return self._write(lambda txn: apply_batches(txn, self.codec, batches, at))

    # -- log compaction (kernel/snapshot.py) --------------------------------------------------

    def write(self, work: Callable[[WriteTxn], _T]) -> _T:
        """Run ``work(txn)`` in one write transaction (maintenance: log compaction)."""
        return self._write(work)

    def replay(self, envelopes: Sequence[Envelope]) -> None:
        def run(txn: _Write) -> None:
            replay_batch(txn, self.codec, envelopes)
            if envelopes:  # later appends must number after the replayed log
                txn.session.queue(self._sql.advance, (envelopes[-1].seq,))

        self._write(run)

    @contextmanager
    def read(self) -> Iterator[_Read]:
        with self._transaction(_BEGIN_READ) as session:
            yield _Read(session, self._sql)

    def close(self) -> None:
        """Close the connection pool; the data stays in the database."""
        self._notifier.close()  # what it has to send goes first, through the pool
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    # -- a cluster of daemons (kernel/store/postgres_cluster.py) ------------------------------

    def work_claims(self) -> PostgresClaims | AllDue:
        """Due work claimed with ``FOR UPDATE SKIP LOCKED``, so daemons split it
        (:func:`arcoflow.kernel.store.work.work_claims` picks this up). A claim holds a
        pooled connection while the work takes another: with a pool of one, every runtime
        takes everything due instead (still correct, by compare-and-set and leases)."""
        return PostgresClaims(self) if self._pool_size >= 2 else AllDue(self)

    def wakeups(self) -> PostgresWakeups:
        """A ``LISTEN`` on this schema's wake-up channel, on a connection of its own (close it
        when done): a run requested on any node cuts the daemon's idle wait short."""
        return PostgresWakeups(self.dsn, self.schema)

    def put_status(self, daemon: str, kind: str, data: bytes) -> None:
        """Record ``daemon``'s latest ``kind`` of status (a heartbeat, its sources' state)."""
        put_status(self, daemon, kind, data)

    def statuses(self, kind: str) -> list[tuple[str, bytes]]:
        """Every daemon's latest ``kind`` of status, ``(daemon, data)``, newest first."""
        return statuses(self, kind)

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _rollback(conn: psycopg.Connection[Any]) -> None:
    """End ``conn``'s transaction, if it still has one (a failed rollback: the pool resets or
    drops the connection)."""
    if not conn.broken and conn.info.transaction_status in _IN_TRANSACTION:
        with contextlib.suppress(psycopg.Error):
            conn.execute("ROLLBACK")


def _configure(conn: psycopg.Connection[Any]) -> None:
    """Every pooled connection: an acknowledged commit is flushed by the server; prepared
    statements keep one generic plan (the default would plan each of their first five runs
    again, and the store's statements do not gain from plans fitted to their arguments)."""
    conn.execute("SET synchronous_commit = on")
    conn.execute("SET plan_cache_mode = force_generic_plan")
