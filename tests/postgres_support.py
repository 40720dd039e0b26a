"""PostgreSQL for the tests: the server, a schema per test, and a fast reset between examples.

The server is ``ARCOFLOW_TEST_POSTGRES`` (a ``postgresql://`` URL), else this project's local
server (``postgresql://postgres@127.0.0.1:5432/test``, trust authentication). A server that
cannot be reached *fails* the test that needs it, with the URL and the reason: the PostgreSQL
suites are never skipped silently.

Creating a schema (17 tables, a sequence, three functions) takes about a third of a second, so
the Hypothesis machines and the exhaustive exploration share one schema per process, emptied
before each example (:func:`store_on`, :class:`Reused`); a plain test gets a fresh schema of
its own (the ``postgres_store`` fixture). Every schema made here is dropped at exit.
"""

from __future__ import annotations

import atexit
import os
import uuid
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg
import pytest
from arcoflow.kernel.rows import Table
from arcoflow.kernel.store.postgres import PostgresStore
from psycopg import sql

DEFAULT_DSN: Final = "postgresql://postgres@127.0.0.1:5432/test"
PREFIX: Final = "arcoflow_test_"


@dataclass
class _State:
    """What this process has set up: the server checked, the schemas made, the shared one."""

    reachable: str | None = None
    made: list[str] = field(default_factory=list)
    admin: psycopg.Connection[Any] | None = None
    shared: str | None = None
    shared_path: str | None = None  # the example (its directory) the shared schema holds


_state = _State()


def dsn() -> str:
    """The test server's URL."""
    return os.environ.get("ARCOFLOW_TEST_POSTGRES") or DEFAULT_DSN


def require_server() -> str:
    """The test server's URL, after checking once that it answers; fail the test if not."""
    url = dsn()
    if _state.reachable != url:
        try:
            psycopg.connect(url, connect_timeout=5).close()
        except psycopg.Error as exc:
            if not os.environ.get("ARCOFLOW_TEST_POSTGRES"):
                # Not configured (a bare machine running the README's test command): say so in
                # the summary. Configured (CI sets it), an unreachable server fails the run.
                pytest.skip(
                    f"PostgreSQL: no server at the default {url} and ARCOFLOW_TEST_POSTGRES "
                    f"is not set ({str(exc).strip()})"
                )
            pytest.fail(
                f"PostgreSQL at {url} (from ARCOFLOW_TEST_POSTGRES) is unreachable: {exc}".strip(),
                pytrace=False,
            )
        _state.reachable = url
    return url


def admin() -> psycopg.Connection[Any]:
    """One autocommit connection for the tests' own statements."""
    if _state.admin is None or _state.admin.closed:
        _state.admin = psycopg.connect(require_server(), autocommit=True)
    return _state.admin


def fresh_schema() -> str:
    """A new schema name, dropped at exit if nothing drops it before."""
    name = PREFIX + uuid.uuid4().hex[:16]
    _state.made.append(name)
    return name


def open_store(schema: str, **options: Any) -> PostgresStore:
    options.setdefault("pool_size", 2)
    return PostgresStore(require_server(), schema=schema, **options)


def drop_schema(schema: str) -> None:
    admin().execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def clear(schema: str) -> None:
    """Empty every table of ``schema`` and restart its sequence (a fresh store, fast)."""
    s = sql.Identifier(schema)
    statements = [
        sql.SQL("DELETE FROM {}.{}").format(s, sql.Identifier(t.value)) for t in Table
    ] + [sql.SQL("SELECT setval({}, 1, false)").format(sql.Literal(f"{schema}.log_seq"))]
    admin().execute(sql.SQL("; ").join(statements))


def shared_schema() -> str:
    """This process's schema for examples (created on first use)."""
    if _state.shared is None:
        name = fresh_schema()
        open_store(name).close()  # creates it
        _state.shared = name
    return _state.shared


def store_on(path: str) -> PostgresStore:
    """A store factory for the machines' ``store_factory(directory)``: a new ``path`` (a new
    example) gets the shared schema emptied; the same ``path`` again (a reopen) gets what the
    example wrote."""
    schema = shared_schema()
    if path != _state.shared_path:
        clear(schema)
        _state.shared_path = path
    return open_store(schema)


def reopen(store: Any, path: str) -> PostgresStore:
    store.close()
    return store_on(path)


class Reused:
    """One open store on the shared schema, emptied by each call: the exploration's
    ``store()`` (a fresh kernel per path, with no connection set-up)."""

    def __init__(self) -> None:
        self.schema = shared_schema()
        _state.shared_path = None  # whatever an earlier example wrote is not reopened
        self.store = open_store(self.schema)

    def __call__(self) -> PostgresStore:
        clear(self.schema)
        return self.store

    def close(self) -> None:
        self.store.close()


@atexit.register
def _drop_all() -> None:
    if not _state.made or _state.reachable is None:
        return
    try:
        for name in _state.made:
            drop_schema(name)
        if _state.admin is not None:
            _state.admin.close()
    except psycopg.Error:
        pass  # the server went away: nothing left to tidy
