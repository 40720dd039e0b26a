"""The PostgreSQL store's own rules: its schema and migrations, row locks instead of a global
write lock, sequence numbers drawn after the locks, retries of lost races, and the seam that
opens it from a URL. What it shares with every store (the apply step, the model) is proven by
``tests/spec`` on all three backends."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import postgres_support
import psycopg
import pytest
from arcoflow.kernel import (
    InputError,
    Kernel,
    LmdbStore,
    Pending,
    RunTemplate,
    SensorDefinition,
    StoreError,
    decide,
)
from arcoflow.kernel import events as ev
from arcoflow.kernel.retention import RetentionPolicy
from arcoflow.kernel.rows import Table
from arcoflow.kernel.runs import fingerprint, run_id
from arcoflow.kernel.store import base, is_postgres_url, open_store
from arcoflow.kernel.store.postgres import (
    SCHEMA_LATEST,
    PostgresStore,
    _Read,
    _Session,
    _Write,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql
from psycopg.conninfo import make_conninfo

from .helpers import schedule


def run_requested(name: str, target: str = "t") -> ev.RunRequested:
    run_key = f"manual:{name}"
    return ev.RunRequested(
        run_id(run_key), run_key, fingerprint(target, {}, {}), "manual", "test", target, "x", {}, {}
    )


def seqs(store: PostgresStore) -> list[int]:
    with store.read() as txn:
        return [int.from_bytes(k, "big") for k, _ in txn.scan(Table.LOG)]


@pytest.fixture
def schema() -> Iterator[str]:
    """A fresh schema name, dropped afterwards."""
    name = postgres_support.fresh_schema()
    yield name
    postgres_support.drop_schema(name)


@pytest.fixture
def locker() -> Iterator[psycopg.Connection[Any]]:
    """Another client of the database, to hold row locks in an open transaction."""
    with psycopg.connect(postgres_support.require_server()) as conn:
        yield conn


def lock_row(conn: psycopg.Connection[Any], schema: str, table: Table, key: bytes) -> None:
    """Lock one stored row in ``conn``'s open transaction (as another process's append would)."""
    query = sql.SQL("SELECT 1 FROM {}.{} WHERE key = %s FOR UPDATE").format(
        sql.Identifier(schema), sql.Identifier(table.value)
    )
    assert conn.execute(query, (key,)).fetchone() is not None


def wait_blocked_by(conn: psycopg.Connection[Any], count: int = 1, timeout: float = 10) -> None:
    """Wait until ``count`` backends wait for a lock that ``conn`` holds."""
    pid = conn.info.backend_pid
    admin = postgres_support.admin()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", (pid,)
        ).fetchone()
        if row is not None and row[0] >= count:
            return
        time.sleep(0.01)
    raise AssertionError(f"no backend waited for a lock of backend {pid} within {timeout}s")


class Background:
    """Run ``fn`` in a thread; ``result()`` waits for it and re-raises its error."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.value: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self.value = fn()
        except BaseException as exc:
            self.error = exc

    def done(self) -> bool:
        return not self.thread.is_alive()

    def result(self, timeout: float = 30) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "still running"
        if self.error is not None:
            raise self.error
        return self.value


# -- the seam --------------------------------------------------------------------------------


def test_open_store_opens_postgres_for_a_url_and_lmdb_for_a_path(
    schema: str, tmp_path: Path
) -> None:
    url = postgres_support.require_server()
    for spec in (url, url.replace("postgresql://", "postgres://", 1)):
        assert is_postgres_url(spec)
        store = open_store(spec, schema=schema)
        try:
            assert isinstance(store, PostgresStore)
            assert store.schema == schema
        finally:
            store.close()
    assert not is_postgres_url(str(tmp_path))
    lmdb_store = open_store(str(tmp_path / "s"))
    try:
        assert isinstance(lmdb_store, LmdbStore)
    finally:
        lmdb_store.close()


def test_the_kernel_imports_psycopg_only_when_a_postgres_store_is_opened() -> None:
    code = (
        "import sys\n"
        "import arcoflow.kernel, arcoflow.kernel.store, arcoflow.sdk, arcoflow.spec\n"
        "assert 'psycopg' not in sys.modules, 'psycopg imported eagerly'\n"
        "from arcoflow.kernel.store import PostgresStore\n"
        "assert 'psycopg' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_an_embedder_passes_a_postgres_store_to_the_kernel(
    postgres_store: PostgresStore,
) -> None:
    kernel = Kernel(postgres_store)
    kernel.define_schedule(schedule("hourly"), now=0)
    assert [t.status for t in kernel.evaluate_schedules(now=3600)] == ["TRIGGERED"]
    assert kernel.evaluate_schedules(now=3600) == []
    assert kernel.verify().ok


# -- opening: schema, migrations, errors ---------------------------------------------------


def _migrations(schema: str) -> list[int]:
    query = sql.SQL("SELECT version FROM {}.migrations ORDER BY version").format(
        sql.Identifier(schema)
    )
    return [r[0] for r in postgres_support.admin().execute(query).fetchall()]


def _tables(schema: str) -> set[str]:
    rows = postgres_support.admin().execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
    )
    return {r[0] for r in rows.fetchall()}


def test_opening_creates_the_schema_once_and_reopening_changes_nothing(schema: str) -> None:
    with postgres_support.open_store(schema) as store:
        Kernel(store).request_run("r", RunTemplate("t"), now=1)
    assert _migrations(schema) == list(range(1, SCHEMA_LATEST + 1))
    cluster = {"claims", "daemons"}  # migration 5: work claims and daemon status
    assert _tables(schema) == {t.value for t in Table} | {"migrations"} | cluster
    with postgres_support.open_store(schema) as store:
        assert _migrations(schema) == list(range(1, SCHEMA_LATEST + 1))
        assert [r.run_key for r in Kernel(store).runs()] == ["manual:r"]


#: The tables each migration after the first creates.
_LATER_TABLES = {
    2: ("history",),
    3: ("snapshot",),
    4: ("settings", "pruned", "run_keys", "finished", "idem_expiry"),
    5: ("claims", "daemons"),
}


@pytest.mark.parametrize("at", [1, 2, 3, 4])
def test_a_schema_at_an_older_migration_is_upgraded_in_place(schema: str, at: int) -> None:
    """A store created before the definition history (migration 1), log compaction
    (migration 2) or retention (migration 3) existed gains their tables on the next open,
    keeping what it holds."""
    with postgres_support.open_store(schema) as store:
        Kernel(store).request_run("r", RunTemplate("t"), now=1)
    admin = postgres_support.admin()
    for version, names in _LATER_TABLES.items():
        if version > at:
            for name in names:
                admin.execute(
                    sql.SQL("DROP TABLE {}.{}").format(sql.Identifier(schema), sql.Identifier(name))
                )
    admin.execute(
        sql.SQL("DELETE FROM {}.migrations WHERE version > %s").format(sql.Identifier(schema)),
        (at,),
    )
    with postgres_support.open_store(schema) as store:
        assert _migrations(schema) == list(range(1, SCHEMA_LATEST + 1))
        assert {"history", "snapshot", "settings", "idem_expiry"} <= _tables(schema)
        kernel = Kernel(store)
        assert [r.run_key for r in kernel.runs()] == ["manual:r"]
        assert kernel.set_retention(RetentionPolicy(history="1d"), now=2).history == 86400


def test_processes_that_start_together_migrate_once(schema: str) -> None:
    """Six openers (each its own database session) released at once on a schema that does not
    exist yet: every one opens (without the advisory lock, concurrent CREATE ... IF NOT EXISTS
    fail on the catalog's unique keys), and each migration is recorded once."""
    gate = threading.Barrier(6)

    def open_and_close() -> None:
        gate.wait()
        postgres_support.open_store(schema, pool_size=1).close()

    openers = [Background(open_and_close) for _ in range(6)]
    for opener in openers:
        opener.result()
    assert _migrations(schema) == list(range(1, SCHEMA_LATEST + 1))


def test_a_schema_migrated_by_a_newer_arcoflow_is_refused(schema: str) -> None:
    postgres_support.open_store(schema).close()
    postgres_support.admin().execute(
        sql.SQL("INSERT INTO {}.migrations (version) VALUES (%s)").format(sql.Identifier(schema)),
        (SCHEMA_LATEST + 1,),
    )
    with pytest.raises(StoreError, match="upgrade arcoflow"):
        postgres_support.open_store(schema)


@pytest.mark.parametrize("name", ["", "Public", "a-b", "x;drop", "1abc", "a" * 64])
def test_a_bad_schema_name_is_an_input_error_and_creates_nothing(name: str) -> None:
    with pytest.raises(InputError, match="schema name"):
        PostgresStore(postgres_support.require_server(), schema=name)


def test_an_unreachable_server_is_a_store_error_without_the_password() -> None:
    with pytest.raises(StoreError, match="cannot connect to PostgreSQL") as caught:
        PostgresStore("postgresql://someone:s3cret@127.0.0.1:1/nowhere", connect_timeout=1)
    assert "s3cret" not in str(caught.value)


def test_a_closed_store_is_a_store_error(postgres_store: PostgresStore) -> None:
    postgres_store.close()
    with pytest.raises(StoreError, match="closed"), postgres_store.read():
        pass


def test_commits_are_synchronous(postgres_store: PostgresStore) -> None:
    with postgres_store.read() as txn:
        assert isinstance(txn, _Read)
        row = txn.conn.execute("SHOW synchronous_commit").fetchone()
    assert row == ("on",)


def test_the_connection_handed_out_is_inside_the_transaction(
    postgres_store: PostgresStore,
) -> None:
    """``BEGIN`` waits for the first query; taking the connection sends it, so a statement of
    one's own runs in the transaction (and sees its snapshot)."""
    with postgres_store.read() as txn:
        assert txn.conn.info.transaction_status is psycopg.pq.TransactionStatus.INTRANS
        row = txn.conn.execute("SHOW transaction_isolation").fetchone()
    assert row == ("repeatable read",)


def test_pooled_connections_the_server_closed_are_replaced(
    postgres_store: PostgresStore,
) -> None:
    """After a server restart or ``pg_terminate_backend``, the pool still holds the dead
    connections: each fails its BEGIN and is replaced, and the command goes through."""
    kernel = Kernel(postgres_store)
    kernel.request_run("before", RunTemplate("t"), now=1)
    with postgres_store.read() as a, postgres_store.read() as b:  # both pooled connections
        pids = [txn.conn.info.backend_pid for txn in (a, b)]
    admin = postgres_support.admin()
    admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (pids,))
    deadline = time.monotonic() + 10
    while admin.execute(
        "SELECT 1 FROM pg_stat_activity WHERE pid = ANY(%s::int[])", (pids,)
    ).fetchone():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    kernel.request_run("after", RunTemplate("t"), now=2)
    assert [r.run_key for r in kernel.runs()] == ["manual:after", "manual:before"]
    assert kernel.verify().ok


def test_the_connections_carry_the_dsns_application_name(schema: str) -> None:
    """``arcoflow`` unless the DSN names one, so operators (and the stress test's faults) can
    pick one deployment's connections out of ``pg_stat_activity``."""
    dsn = make_conninfo(postgres_support.require_server(), application_name="billing")
    for url, name in ((postgres_support.dsn(), "arcoflow"), (dsn, "billing")):
        with PostgresStore(url, schema=schema, pool_size=1) as store, store.read() as txn:
            assert txn.conn.execute("SHOW application_name").fetchone() == (name,)


# -- round trips -----------------------------------------------------------------------------


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many statements each message to the server carried, in order."""
    sent: list[int] = []
    send = _Session.round_trip

    def counted(session: _Session, *queries: Any) -> Any:
        sent.append(len(session.queued) + len(queries))
        return send(session, *queries)

    monkeypatch.setattr(_Session, "round_trip", counted)
    return sent


def _push_sensor(store: PostgresStore) -> Kernel:
    kernel = Kernel(store)
    kernel.define_sensor(SensorDefinition("hook", "push", RunTemplate("t")), now=0)
    return kernel


def test_an_append_is_two_round_trips(
    postgres_store: PostgresStore, round_trips: list[int]
) -> None:
    """A push message (its evaluation and run request, 11 rows and index entries): BEGIN, the
    locks of every row it reads and the draw of its numbers; then the writes and COMMIT."""
    row = _push_sensor(postgres_store).sensor("hook")
    round_trips.clear()
    batch = decide.ingest(row, "m-1", {"a": 1}, 7, None)
    appended = postgres_store.append(batch, 10)
    assert [e.seq for e in appended.records] == [2, 3]
    assert len(round_trips) == 2, round_trips
    assert round_trips[0] == 3  # BEGIN, the locks of every table in one statement, the draw
    round_trips.clear()
    with postgres_store.read() as txn:
        assert txn.get(Table.SENSORS, b"hook") is not None
    assert round_trips == [2, 1]  # BEGIN with the read; COMMIT


@pytest.fixture
def no_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe names only the idempotency keys: every row is read (and locked) after the
    first round trip, which reserved the batch's numbers."""
    monkeypatch.setattr(
        base,
        "probe_reads",
        lambda codec, batch, at: {Table.IDEM: [base.idem_key(p.key) for p in batch]},
    )


def test_a_read_the_probe_missed_costs_a_round_trip_and_the_numbers_are_drawn_again(
    postgres_store: PostgresStore, round_trips: list[int], no_probe: None
) -> None:
    kernel = _two_schedules(postgres_store)
    round_trips.clear()
    kernel.set_schedule_enabled("a", False, now=10)
    appends = [n for n in round_trips if n > 1]
    assert len(round_trips) - len(appends) >= 1  # the missed read of the schedule
    assert seqs(postgres_store) == [1, 2, 3]  # the first reservation was given back
    assert kernel.verify().ok


def test_numbers_reserved_before_a_lock_the_append_then_waited_for_are_not_used(
    postgres_store: PostgresStore, locker: psycopg.Connection[Any], no_probe: None
) -> None:
    """The first round trip reserved a number, then the append waited for a's row; b's append
    committed meanwhile. a must number after b (the reserved number would have put it first:
    the log order would not be the commit order)."""
    kernel = _two_schedules(postgres_store)
    lock_row(locker, postgres_store.schema, Table.SCHEDULES, b"a")
    waiting = Background(lambda: kernel.set_schedule_enabled("a", False, now=10))
    wait_blocked_by(locker)
    kernel.set_schedule_enabled("b", False, now=10)
    locker.rollback()
    waiting.result()
    toggles = [e.event.schedule_id for e in kernel.log() if isinstance(e.event, ev.ScheduleToggled)]
    assert toggles == ["b", "a"]
    assert kernel.verify().ok


# -- scans ---------------------------------------------------------------------------------


keys = st.binary(min_size=1, max_size=3)
bounds = st.none() | st.binary(max_size=3)


@pytest.fixture(scope="module")
def scan_store() -> Iterator[PostgresStore]:
    name = postgres_support.fresh_schema()
    store = postgres_support.open_store(name)
    yield store
    store.close()
    postgres_support.drop_schema(name)


@settings(max_examples=40)
@given(
    items=st.dictionaries(keys, st.binary(max_size=2), max_size=12),
    queries=st.lists(
        st.tuples(st.binary(max_size=2), bounds, bounds, st.booleans()), min_size=1, max_size=6
    ),
    page=st.integers(1, 4),
)
def test_scans_page_through_in_bytewise_key_order(
    scan_store: PostgresStore,
    items: dict[bytes, bytes],
    queries: list[tuple[bytes, bytes | None, bytes | None, bool]],
    page: int,
) -> None:
    """Pages of a few rows, so every scan crosses page boundaries; ``bytea`` order is LMDB's."""
    table = Table.META

    def refill(txn: _Write) -> None:
        for k, _ in txn.scan(table):
            txn.delete(table, k)
        for k, v in items.items():
            txn.put(table, k, v)

    scan_store._write(refill)
    with pytest.MonkeyPatch.context() as patch, scan_store.read() as txn:
        patch.setattr(_Read, "page", page)
        for prefix, start, stop, rev in queries:
            expected = [
                (k, v)
                for k, v in sorted(items.items())
                if k.startswith(prefix)
                and (start is None or k >= start)
                and (stop is None or k < stop)
            ]
            got = list(txn.scan(table, prefix=prefix, start=start, stop=stop, reverse=rev))
            assert got == (expected[::-1] if rev else expected), (prefix, start, stop, rev)


def test_a_read_is_a_stable_snapshot(postgres_store: PostgresStore) -> None:
    """REPEATABLE READ: the snapshot is taken at the transaction's first read (its
    linearization point), and later reads in it see what that one saw."""
    kernel = Kernel(postgres_store)
    kernel.request_run("before", RunTemplate("t"), now=1)
    with postgres_store.read() as txn:
        assert len(list(txn.scan(Table.RUN_ORDER))) == 1
        kernel.request_run("during", RunTemplate("t"), now=2)  # commits on another connection
        assert len(list(txn.scan(Table.RUNS))) == 1
    assert len(kernel.runs()) == 2


# -- no global write lock --------------------------------------------------------------------


def _two_schedules(store: PostgresStore) -> Kernel:
    kernel = Kernel(store)
    kernel.define_schedule(schedule("a"), now=0)
    kernel.define_schedule(schedule("b"), now=0)
    return kernel


def test_appends_on_disjoint_rows_do_not_wait_and_the_same_row_serialises(
    postgres_store: PostgresStore, locker: psycopg.Connection[Any]
) -> None:
    """Another transaction holds schedule a's row: a command on b commits meanwhile, one on a
    waits for that row, and only for it."""
    kernel = _two_schedules(postgres_store)
    lock_row(locker, postgres_store.schema, Table.SCHEDULES, b"a")
    on_a = Background(lambda: kernel.set_schedule_enabled("a", False, now=10))
    wait_blocked_by(locker)
    on_b = Background(lambda: kernel.set_schedule_enabled("b", False, now=10))
    assert not on_b.result(timeout=10).enabled  # committed while a's row was held
    assert not on_a.done()
    locker.rollback()
    assert not on_a.result().enabled
    assert kernel.verify().ok


@pytest.fixture
def paused_first(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """Appends run in a thread named ``first`` stop after sending their writes, before the
    commit (holding every lock they take) until ``release`` is set: (flushed, release). (The
    store sends the writes together with the ``COMMIT``; here they go ahead alone.)"""
    flushed, release = threading.Event(), threading.Event()
    flush = _Write.flush

    def paused_flush(txn: _Write) -> None:
        flush(txn)
        if threading.current_thread().name == "first":
            txn.session.round_trip()  # the writes, without the COMMIT
            flushed.set()
            assert release.wait(30)

    monkeypatch.setattr(_Write, "flush", paused_flush)
    return flushed, release


def test_an_uncommitted_append_holds_no_lock_a_disjoint_append_needs(
    postgres_store: PostgresStore, paused_first: tuple[threading.Event, threading.Event]
) -> None:
    """An append paused between its writes and its commit blocks nobody on other rows: no
    row that every append writes (the store's format version is written once, not rewritten
    by each append)."""
    flushed, release = paused_first
    kernel = _two_schedules(postgres_store)
    first = threading.Thread(
        target=kernel.set_schedule_enabled, args=("a", False, 10), name="first"
    )
    first.start()
    try:
        assert flushed.wait(30)
        on_b = Background(lambda: kernel.set_schedule_enabled("b", False, now=10))
        assert not on_b.result(timeout=10).enabled
    finally:
        release.set()
        first.join(30)
    assert not kernel.schedule("a").enabled
    assert kernel.verify().ok


def test_sequence_numbers_are_drawn_after_the_row_locks(
    postgres_store: PostgresStore, locker: psycopg.Connection[Any]
) -> None:
    """An append that waits for a row takes its number when it has the row: an append that
    commits meanwhile gets the smaller one, so the log order is the commit order."""
    kernel = _two_schedules(postgres_store)
    lock_row(locker, postgres_store.schema, Table.SCHEDULES, b"a")
    waiting = Background(lambda: kernel.set_schedule_enabled("a", False, now=10))
    wait_blocked_by(locker)
    kernel.set_schedule_enabled("b", False, now=10)
    locker.rollback()
    waiting.result()
    toggles = [
        (e.seq, e.event.schedule_id)
        for e in kernel.log()
        if isinstance(e.event, ev.ScheduleToggled)
    ]
    assert [sid for _, sid in toggles] == ["b", "a"]
    assert kernel.verify().ok


# -- lost races are retried ------------------------------------------------------------------


def test_a_deadlock_is_retried(
    postgres_store: PostgresStore, locker: psycopg.Connection[Any]
) -> None:
    """One append locks schedule a then b; another transaction holds b and then asks for a.
    PostgreSQL aborts the append (40P01, it waited first), which runs again and commits."""
    kernel = _two_schedules(postgres_store)
    a, b = kernel.schedule("a"), kernel.schedule("b")
    batch = decide.toggle_schedule(a, False, 10) + decide.toggle_schedule(b, False, 10)
    locker.execute("SET deadlock_timeout = '30s'")  # the append's backend detects it first
    lock_row(locker, postgres_store.schema, Table.SCHEDULES, b"b")
    append = Background(lambda: postgres_store.append(batch, 10))
    wait_blocked_by(locker)
    lock_row(locker, postgres_store.schema, Table.SCHEDULES, b"a")  # waits until 40P01
    locker.rollback()
    appended = append.result()
    assert postgres_store.retries == 1
    assert [type(e.event) for e in appended.records] == [ev.ScheduleToggled] * 2
    assert not kernel.schedule("a").enabled and not kernel.schedule("b").enabled
    assert kernel.verify().ok


def test_a_row_claimed_by_a_concurrent_append_is_a_lost_race_retried(
    postgres_store: PostgresStore, paused_first: tuple[threading.Event, threading.Event]
) -> None:
    """Two appends request the same new run under different keys. The first holds its
    uncommitted insert; the second read the run as absent, so its INSERT waits, then hits a
    unique violation (23505) when the first commits, and runs again: now it links the run."""
    first_flushed, release = paused_first
    event = run_requested("shared")
    first = threading.Thread(
        target=postgres_store.append, args=([Pending("k1", event)], 1), name="first"
    )
    first.start()
    assert first_flushed.wait(30)
    admin = postgres_support.admin()
    pid = admin.execute(  # its last message prepared the writes, which name the schema
        "SELECT pid FROM pg_stat_activity WHERE state = 'idle in transaction' "
        "AND application_name = 'arcoflow' AND query LIKE %s",
        (f"%{postgres_store.schema}%",),
    ).fetchall()
    assert len(pid) == 1
    second = Background(lambda: postgres_store.append([Pending("k2", event)], 2))
    deadline = time.monotonic() + 10
    while not admin.execute(
        "SELECT 1 FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", (pid[0][0],)
    ).fetchone():
        assert time.monotonic() < deadline, "the second append never waited for the first"
        time.sleep(0.01)
    release.set()
    first.join(30)
    appended = second.result()
    assert postgres_store.retries == 1
    assert not appended.duplicate
    kernel = Kernel(postgres_store)
    assert len(kernel.runs()) == 1
    assert seqs(postgres_store) == [1, 2]  # the lost race gave its number back
    assert kernel.verify().ok


def _fail_log_inserts(store: PostgresStore, times: int | None) -> None:
    """A trigger that makes inserts into the log fail with a serialization failure (40001):
    the first ``times`` of them, or every one."""
    s = sql.Identifier(store.schema)
    condition = "true" if times is None else f"nextval('{store.schema}.failures') <= {times}"
    postgres_support.admin().execute(
        sql.SQL(
            "CREATE SEQUENCE {s}.failures; "
            "CREATE FUNCTION {s}.fail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF {cond} THEN RAISE EXCEPTION 'forced' USING ERRCODE = '40001'; END IF; "
            "RETURN NEW; END $$; "
            "CREATE TRIGGER fail BEFORE INSERT ON {s}.log FOR EACH ROW EXECUTE FUNCTION {s}.fail()"
        ).format(s=s, cond=sql.SQL(condition))
    )


def test_a_serialization_failure_is_retried(postgres_store: PostgresStore) -> None:
    kernel = Kernel(postgres_store)
    kernel.request_run("one", RunTemplate("t"), now=1)
    _fail_log_inserts(postgres_store, times=2)
    kernel.request_run("two", RunTemplate("t"), now=2)
    assert postgres_store.retries == 2
    assert seqs(postgres_store) == [1, 2]
    assert kernel.verify().ok


def test_a_failed_message_starts_the_connections_prepared_statements_afresh(
    schema: str,
) -> None:
    """The first writes of a kind go as ``PREPARE w; EXECUTE w; COMMIT``; the EXECUTE fails,
    after the PREPARE ran. The retry, on the same connection, must not prepare ``w`` twice."""
    with postgres_support.open_store(schema, pool_size=1) as store:
        kernel = Kernel(store)
        _fail_log_inserts(store, times=1)
        kernel.request_run("one", RunTemplate("t"), now=1)
        assert store.retries == 1
        kernel.request_run("two", RunTemplate("t"), now=2)
        assert [r.run_key for r in kernel.runs()] == ["manual:two", "manual:one"]
        assert kernel.verify().ok


def test_psycopgs_own_statement_cache_never_deallocates_the_stores_statements(
    schema: str,
) -> None:
    """psycopg prepares a statement on its fifth run and, once it has, answers a ROLLBACK with
    DEALLOCATE ALL, which would drop the statements the store prepared on that connection
    ("prepared statement ... does not exist", seen in the stress test): it must not prepare."""
    with postgres_support.open_store(schema, pool_size=1) as store:
        kernel = Kernel(store)
        kernel.request_run("one", RunTemplate("t"), now=1)  # the store prepares its statements

        class Abandoned(Exception):
            pass

        with pytest.raises(Abandoned), store.read() as txn:
            for _ in range(6):
                txn.conn.execute("SELECT 1")
            raise Abandoned  # the transaction is rolled back
        kernel.request_run("two", RunTemplate("t"), now=2)
        assert [r.run_key for r in kernel.runs()] == ["manual:two", "manual:one"]


def test_an_append_that_keeps_losing_fails_after_its_retries_and_writes_nothing(
    schema: str,
) -> None:
    with postgres_support.open_store(schema, max_retries=2) as store:
        kernel = Kernel(store)
        kernel.request_run("one", RunTemplate("t"), now=1)
        _fail_log_inserts(store, times=None)
        with pytest.raises(StoreError, match=r"lost 3 races in a row \(40001"):
            kernel.request_run("two", RunTemplate("t"), now=2)
        assert store.retries == 2
        assert [r.run_key for r in kernel.runs()] == ["manual:one"]
        assert seqs(store) == [1]


# -- sequence numbers ------------------------------------------------------------------------


def _draw(store: PostgresStore, count: int) -> int:
    query = sql.SQL("SELECT {}.reserve_seq(%s)").format(sql.Identifier(store.schema))
    row = postgres_support.admin().execute(query, (count,)).fetchone()
    assert row is not None
    return int(row[0])


def test_a_gap_in_the_log_is_harmless(postgres_store: PostgresStore) -> None:
    """Numbers drawn by a transaction that never committed leave a gap: the log reads past
    it, duplicates find their originals, and the replay reproduces the state."""
    kernel = Kernel(postgres_store)
    kernel.define_schedule(schedule("hourly"), now=0)
    assert _draw(postgres_store, 5) == 2
    batch = [Pending(f"r{i}", run_requested(f"r{i}")) for i in range(3)]
    first = postgres_store.append(batch, 10)
    assert [e.seq for e in first.records] == [7, 8, 9]
    assert {e.batch for e in first.records} == {7}
    again = postgres_store.append(batch[1:], 11)
    assert again.duplicate and again.records == first.records
    assert [e.seq for e in kernel.log()] == [1, 7, 8, 9]
    assert [e.seq for e in kernel.log(after=1, chunk=1)] == [7, 8, 9]
    assert kernel.verify().ok


def test_a_rolled_back_append_gives_its_numbers_back_unless_someone_drew_after(
    postgres_store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel = Kernel(postgres_store)
    kernel.request_run("one", RunTemplate("t"), now=1)

    class Boom(Exception):
        pass

    def crash(envelope: Any) -> bytes:
        raise Boom

    monkeypatch.setattr(postgres_store.codec, "encode", crash)
    with pytest.raises(Boom):
        postgres_store.append([Pending("two", run_requested("two"))], 2)
    monkeypatch.undo()
    assert postgres_store.append([Pending("two", run_requested("two"))], 2).records[0].seq == 2

    def crash_after_another_draw(envelope: Any) -> bytes:
        _draw(postgres_store, 1)  # another process draws meanwhile
        raise Boom

    monkeypatch.setattr(postgres_store.codec, "encode", crash_after_another_draw)
    with pytest.raises(Boom):
        postgres_store.append([Pending("three", run_requested("three"))], 3)
    monkeypatch.undo()
    assert postgres_store.append([Pending("three", run_requested("three"))], 3).records[0].seq == 5
    assert seqs(postgres_store) == [1, 2, 5]
    assert kernel.verify().ok


def test_verify_replays_into_a_postgres_scratch_store_that_then_numbers_past_the_log(
    postgres_store: PostgresStore, schema: str
) -> None:
    kernel = Kernel(postgres_store)
    kernel.define_schedule(schedule("hourly"), now=0)
    kernel.evaluate_schedules(now=7200)
    total = len(seqs(postgres_store))
    with postgres_support.open_store(schema) as scratch:
        assert kernel.verify(scratch=scratch).ok
        appended = scratch.append([Pending("later", run_requested("later"))], 9000)
        assert appended.records[0].seq == total + 1


def test_verify_sees_a_row_changed_behind_the_stores_back(postgres_store: PostgresStore) -> None:
    kernel = Kernel(postgres_store)
    kernel.define_schedule(schedule("hourly"), now=0)
    postgres_support.admin().execute(
        sql.SQL("DELETE FROM {}.due_schedules").format(sql.Identifier(postgres_store.schema))
    )
    result = kernel.verify()
    assert not result.ok
    assert any("due_schedules" in d for d in result.differences)


def test_setting_the_retention_policy_waits_for_appends_that_read_the_old_one(
    postgres_store: PostgresStore, paused_first: tuple[threading.Event, threading.Event]
) -> None:
    """Every append reads the retention policy (its dedupe horizon) with a shared lock, even
    while no policy row exists yet. Setting the policy waits for such an append to commit, so
    the append is numbered first and a replay computes the same horizon (verify passes);
    without the table lock the new policy could be numbered between its read and its
    number."""
    flushed, release = paused_first
    kernel = Kernel(postgres_store)
    kernel.define_sensor(SensorDefinition("orders", "push", RunTemplate("t")), now=0)
    first = threading.Thread(target=kernel.ingest, args=("orders", "m", None, 1), name="first")
    first.start()
    try:
        assert flushed.wait(30)
        policy = RetentionPolicy(history="1d", dedupe_horizon="1h")
        setting = Background(lambda: kernel.set_retention(policy, now=2))
        time.sleep(0.5)
        assert not setting.done(), "the policy was set while an append that read it was open"
    finally:
        release.set()
        first.join(30)
    assert setting.result(timeout=30) == policy
    seqs_by_type = {type(e.event).__name__: e.seq for e in kernel.log()}
    assert seqs_by_type["SensorEvaluated"] < seqs_by_type["RetentionSet"]
    assert kernel.verify().ok
