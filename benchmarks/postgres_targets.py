"""The PostgreSQL targets of issue 11 (an append against a raw INSERT, 4 writers against 1), as
``measure`` functions for :data:`benchmarks.report.TARGETS`.

They run on the server named by ``ARCOFLOW_TEST_POSTGRES``, each store in a schema of its own
dropped afterwards; without it they raise :class:`~benchmarks.pairs.Unavailable` (the report
prints ``skipped`` with the reason and counts the target as not met).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import msgspec
from arcoflow.kernel import Kernel, RunTemplate, SensorDefinition, Store, decide
from arcoflow.kernel.rows import Table

from benchmarks.pairs import Pair, Unavailable, timed

__all__ = ["PG_APPENDS", "T0", "pg_append", "pg_writers", "postgres"]

T0 = 1_735_689_600  # 2025-01-01T00:00:00Z


def postgres(stack: contextlib.ExitStack) -> tuple[str, Callable[..., Any]]:
    """The server of ``ARCOFLOW_TEST_POSTGRES`` and a factory of stores, each in a schema of
    its own that is dropped when ``stack`` closes."""
    dsn = os.environ.get("ARCOFLOW_TEST_POSTGRES")
    if not dsn:
        raise Unavailable("no PostgreSQL: set ARCOFLOW_TEST_POSTGRES to a postgresql:// URL")
    import psycopg  # noqa: PLC0415 (arcoflow[postgres], only for these targets)
    from arcoflow.kernel.store.postgres import PostgresStore  # noqa: PLC0415
    from psycopg import sql  # noqa: PLC0415

    def open_store(**options: Any) -> PostgresStore:
        schema = f"arcoflow_bench_{uuid.uuid4().hex[:12]}"

        def drop() -> None:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )

        stack.callback(drop)
        return stack.enter_context(PostgresStore(dsn, schema=schema, **options))

    return dsn, open_store


def _push_appender(store: Store, sensor_id: str) -> Callable[[int], None]:
    """``append(n)``: ``n`` new messages to push sensor ``sensor_id``, each one durable append
    of what ``Kernel.ingest`` appends (the evaluation and its run request), one at a time."""
    kernel = Kernel(store)
    kernel.define_sensor(SensorDefinition(sensor_id, "push", RunTemplate("etl")), now=T0)
    row = kernel.sensor(sensor_id)
    counter = iter(range(1, 1 << 62))

    def append(n: int) -> None:
        for _ in range(n):
            i = next(counter)
            payload = {"file": f"f{i}.csv", "size": i}
            size = len(msgspec.json.encode(payload))
            appended = store.append(decide.ingest(row, f"m-{i}", payload, size, None), T0 + i)
            assert not appended.duplicate

    return append


#: Appends per sample of ``pg-append`` (a full run).
PG_APPENDS = 100


def pg_append(quick: bool, stack: contextlib.ExitStack) -> Pair:
    dsn, open_store = postgres(stack)
    import psycopg  # noqa: PLC0415 (arcoflow[postgres], only for these targets)

    n = 20 if quick else PG_APPENDS
    store = open_store(pool_size=1)
    append = _push_appender(store, "hook")
    with store.read() as txn:  # the bytes one append logs: each raw row carries as many
        size = -sum(len(v) for _, v in txn.scan(Table.LOG))
    append(1)
    with store.read() as txn:
        size += sum(len(v) for _, v in txn.scan(Table.LOG))
    raw = stack.enter_context(psycopg.connect(dsn))  # psycopg's default: a transaction block
    raw.execute(f"CREATE TABLE {store.schema}.raw (id bigserial PRIMARY KEY, body bytea)")
    raw.commit()
    insert = f"INSERT INTO {store.schema}.raw (body) VALUES (%s)"
    body = os.urandom(size)

    def inserts() -> None:
        for _ in range(n):
            raw.execute(insert, (body,))
            raw.commit()

    return Pair(
        lambda: timed(lambda: append(n)),
        lambda: timed(inserts),
        f"{n} appends, one at a time, {size} B logged each",
    )


def pg_writers(quick: bool, stack: contextlib.ExitStack) -> Pair:
    _, open_store = postgres(stack)
    n, writers = (40 if quick else 200), 4
    store = open_store(pool_size=writers)
    appenders = [_push_appender(store, f"hook-{i}") for i in range(writers)]

    def together() -> float:
        threads = [threading.Thread(target=a, args=(n // writers,)) for a in appenders]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.perf_counter() - start

    return Pair(
        together,
        lambda: timed(lambda: appenders[0](n)),
        f"{n} appends a round; {writers} threads on one store (pool of {writers})",
    )
