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
  (together, in key order), then the rows ``check``/``evolve`` read (the rehearsal of
  :func:`apply_batch`, in the order the events read them), and only then the sequence numbers;
  rows the real pass writes without ``evolve`` having read them (a tick, a run link, index
  entries) are each guarded by a row it did read (the schedule, the run). The writes go in one
  statement, sorted by table and key, then the commit. See ``docs/postgres.md``.
* **Sequence numbers** come from a PostgreSQL sequence, drawn after every row lock is held, so
  the log order agrees with the commit order of conflicting appends and ``verify``'s replay
  reproduces the state. A batch takes consecutive numbers (reserved under a short advisory lock
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
import itertools
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final, TypeVar

import psycopg
from psycopg import errors, pq, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool

from ..codec import Codec, Envelope
from ..errors import InputError, StoreError
from ..rows import Table
from .base import (
    Appended,
    Pending,
    WriteTxn,
    apply_batch,
    apply_batches,
    check_format,
    index_finished_runs,
    min_stop,
    prefix_end,
    replay_batch,
)

__all__ = ["DEFAULT_SCHEMA", "PostgresStore"]

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


class _Statements:
    """The SQL of one schema, composed once."""

    def __init__(self, schema: str) -> None:
        s = sql.Identifier(schema)
        self.table = {t: sql.SQL("{}.{}").format(s, sql.Identifier(t.value)) for t in Table}

        def each(template: str) -> dict[Table, sql.Composed]:
            return {t: sql.SQL(template).format(self.table[t]) for t in Table}

        self.get = each("SELECT value FROM {} WHERE key = %s")
        self.lock = each("SELECT value FROM {} WHERE key = %s FOR UPDATE")
        # Every append reads the retention policy (its dedupe horizon): a shared lock, or the
        # policy row would serialise every writer. Setting the policy still waits for them.
        self.lock[Table.SETTINGS] = sql.SQL("SELECT value FROM {} WHERE key = %s FOR SHARE").format(
            self.table[Table.SETTINGS]
        )
        self.lock_many = each(
            "SELECT key, value FROM {} WHERE key = ANY(%s::bytea[]) ORDER BY key FOR UPDATE"
        )
        self.insert = each(
            "INSERT INTO {} (key, value) SELECT * FROM unnest(%s::bytea[], %s::bytea[])"
        )
        self.upsert = {
            t: sql.SQL(
                "INSERT INTO {t} (key, value) "
                "SELECT k, v FROM unnest(%s::bytea[], %s::bytea[]) AS w(k, v) "
                "WHERE NOT EXISTS (SELECT FROM {t} AS o WHERE o.key = w.k AND o.value = w.v) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
            ).format(t=self.table[t])
            for t in Table
        }
        self.delete = each("DELETE FROM {} WHERE key = ANY(%s::bytea[])")
        self._writes: dict[tuple[tuple[str, Table], ...], sql.Composed] = {}
        self.reserve = sql.SQL("SELECT {}.reserve_seq(%s)").format(s)
        self.give_back = sql.SQL("SELECT {}.give_back_seq(%s, %s)").format(s)
        self.advance = sql.SQL("SELECT {}.advance_seq(%s)").format(s)
        self._scans: dict[tuple[Table, str, str, bool], sql.Composed] = {}

    def writes(self, shape: tuple[tuple[str, Table], ...]) -> sql.Composed:
        """One statement for writes of ``shape`` (kind and table of each group, in order);
        its parameters: keys (and values, but for a delete) of each group."""
        query = self._writes.get(shape)
        if query is None:
            kinds = {"delete": self.delete, "insert": self.insert, "upsert": self.upsert}
            parts = [
                sql.SQL("w{} AS ({})").format(sql.SQL(str(i)), kinds[kind][table])
                for i, (kind, table) in enumerate(shape)
            ]
            query = self._writes[shape] = sql.SQL("WITH {} SELECT 1").format(
                sql.SQL(", ").join(parts)
            )
        return query

    def scan(self, table: Table, low: str, high: str, reverse: bool) -> sql.Composed:
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
            query = self._scans[slot] = sql.SQL(
                f"SELECT key, value FROM {{}} WHERE {' AND '.join(where)} "
                f"ORDER BY key {order} LIMIT %(page)s"
            ).format(self.table[table])
        return query


class _Read:
    """A read-only snapshot (REPEATABLE READ): point reads, and scans paged by key."""

    #: Rows fetched per round trip by a scan.
    page = 256

    def __init__(self, conn: psycopg.Connection[Any], statements: _Statements) -> None:
        self.conn = conn
        self.sql = statements

    def _fetch(self, query: sql.Composed, params: Any) -> list[tuple[Any, ...]]:
        with self.conn.cursor(binary=True) as cur:
            cur.execute(query, params)
            return cur.fetchall()

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


_ABSENT: Final = object()


class _Write(_Read):
    """A write transaction at READ COMMITTED whose point reads lock (``FOR UPDATE``).

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

    def __init__(self, conn: psycopg.Connection[Any], statements: _Statements) -> None:
        super().__init__(conn, statements)
        self.seen: dict[tuple[Table, bytes], bytes | None] = {}  # as read (and locked)
        self.writes: dict[tuple[Table, bytes], bytes | None] = {}  # None: delete
        self.drawn: tuple[int, int] | None = None  # (first, count) of the numbers reserved

    def get(self, table: Table, key: bytes) -> bytes | None:
        slot = (table, key)
        if slot in self.writes:
            return self.writes[slot]
        if slot not in self.seen:
            rows = self._fetch(self.sql.lock[table], (key,))
            self.seen[slot] = bytes(rows[0][0]) if rows else None
        return self.seen[slot]

    def prefetch(self, table: Table, keys: Sequence[bytes]) -> None:
        """Read and lock ``keys`` of ``table`` in one round trip, in key order."""
        todo = sorted(
            {k for k in keys if (table, k) not in self.seen and (table, k) not in self.writes}
        )
        if not todo:
            return
        found = {bytes(k): bytes(v) for k, v in self._fetch(self.sql.lock_many[table], (todo,))}
        for k in todo:
            self.seen[(table, k)] = found.get(k)

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
        row = self.conn.execute(self.sql.reserve, (count,)).fetchone()
        assert row is not None
        first = int(row[0])
        self.drawn = (first, count)
        return first

    def flush(self) -> None:
        """Send every write in one statement (a data-modifying CTE per table and kind)."""
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
        self.conn.execute(self.sql.writes(tuple(groups)), params)


# -- the store -----------------------------------------------------------------------------------


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
    ``postgresql://`` URL or a libpq connection string). The schema is created or migrated on
    open. ``pool_size``: connections kept (one per concurrent command). ``max_retries``: how
    often an append that lost a race (deadlock, serialization failure, unique violation) is
    run again before it fails with :class:`~arcoflow.kernel.errors.StoreError`.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        pool_size: int = 4,
        max_retries: int = 10,
        connect_timeout: float = 10.0,
        codec: Codec | None = None,
    ) -> None:
        if not _SCHEMA_NAME.fullmatch(schema):
            raise InputError(
                f"PostgreSQL schema name {schema!r} must match [a-z_][a-z0-9_]{{0,62}}"
            )
        if pool_size < 1 or max_retries < 0:
            raise InputError("pool_size must be at least 1 and max_retries at least 0")
        self.schema = schema
        self.where = f"{_where(dsn)} schema {schema}"
        self.codec = codec or Codec()
        self.max_retries = max_retries
        self._pool_size = pool_size
        self.retries = 0  # appends run again after a lost race, since open
        self._retries_lock = threading.Lock()
        self._sql = _Statements(schema)
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None
        pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            dsn,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True, "application_name": "arcoflow"},
            configure=_configure,
            open=False,
            name=f"arcoflow-{schema}",
        )
        try:
            pool.open(wait=True, timeout=connect_timeout)
        except Exception as exc:
            pool.close()
            raise StoreError(f"cannot connect to PostgreSQL at {self.where}: {exc}") from exc
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
        race, which :meth:`_write` retries."""
        if self._pool is None:
            raise StoreError(f"store at {self.where} is closed")
        try:
            with self._pool.connection() as conn:
                yield conn
        except _RETRYABLE:
            raise
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
    def _transaction(self, begin: str) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection inside a transaction, committed at the end, rolled back on an
        error. A pooled connection that the server closed meanwhile (a restart,
        ``pg_terminate_backend``) fails its ``BEGIN``: it is dropped and another one taken."""
        for attempt in itertools.count():
            with self._connection() as conn:
                try:
                    conn.execute(begin)
                except psycopg.OperationalError:
                    if conn.broken and attempt < self._pool_size:
                        continue  # the pool discards it and hands out another
                    raise
                try:
                    yield conn
                except BaseException:
                    _rollback(conn)
                    raise
                conn.execute("COMMIT")
                return

    def _write_once(self, fn: Callable[[_Write], _T]) -> _T:
        with self._transaction(_BEGIN_WRITE) as conn:
            txn = _Write(conn, self._sql)
            try:
                result = fn(txn)
                txn.flush()
            except BaseException as exc:
                _rollback(conn)
                self._give_back(conn, txn, exc)
                raise
        return result

    def _give_back(self, conn: psycopg.Connection[Any], txn: _Write, exc: BaseException) -> None:
        """Return the numbers a rolled-back transaction drew, if nobody drew after them (so a
        single writer's log has no gaps). Only when the rollback is certain: the connection
        is intact, and the error did not come from the commit itself."""
        lost = isinstance(exc, psycopg.OperationalError) and not isinstance(exc, _RETRYABLE)
        if txn.drawn is None or conn.broken or lost:
            return
        with contextlib.suppress(psycopg.Error):  # else a gap in the log, which is allowed
            conn.execute(self._sql.give_back, txn.drawn)

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
                txn.conn.execute(self._sql.advance, (envelopes[-1].seq,))

        self._write(run)

    @contextmanager
    def read(self) -> Iterator[_Read]:
        with self._transaction(_BEGIN_READ) as conn:
            yield _Read(conn, self._sql)

    def close(self) -> None:
        """Close the connection pool; the data stays in the database."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

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
    """Every pooled connection: an acknowledged commit is flushed by the server."""
    conn.execute("SET synchronous_commit = on")
