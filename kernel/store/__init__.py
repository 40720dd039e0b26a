"""Store backends: LMDB (default), in-memory and PostgreSQL, sharing one apply step.

:class:`PostgresStore` is imported on first use, so psycopg is needed only by those who open
one (``pip install 'arcoflow[postgres]'``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import StoreError
from .base import Appended, Pending, ReadTxn, Store, WriteTxn
from .files import DATA_FILE, ID_FILE, holds_data
from .lmdb import LmdbStore
from .memory import MemoryStore
from .reclaim import reclaim
from .work import (
    TimedWakeups,
    Wakeups,
    WorkClaims,
    WorkKind,
    daemon_status,
    wakeups,
    work_claims,
)

if TYPE_CHECKING:
    from .postgres import PostgresStore

__all__ = [
    "DATA_FILE",
    "ID_FILE",
    "Appended",
    "LmdbStore",
    "MemoryStore",
    "Pending",
    "PostgresStore",
    "ReadTxn",
    "Store",
    "TimedWakeups",
    "Wakeups",
    "WorkClaims",
    "WorkKind",
    "WriteTxn",
    "daemon_status",
    "holds_data",
    "is_postgres_url",
    "open_store",
    "reclaim",
    "wakeups",
    "work_claims",
]

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(spec: str) -> bool:
    """``spec`` names a PostgreSQL database (``postgresql://`` or ``postgres://``)."""
    return spec.lower().startswith(_POSTGRES_SCHEMES)


def open_store(spec: str, *, create: bool = True, **options: Any) -> Store:
    """The store ``spec`` names: a :class:`PostgresStore` for a ``postgresql://`` or
    ``postgres://`` URL (its ``schema=NAME`` query parameter names the schema), else an
    :class:`LmdbStore` in the directory ``spec``. ``create=False``: the store must exist
    (:class:`~arcoflow.kernel.errors.StoreNotFound` otherwise; nothing is created, and an
    LMDB store is opened read-only). ``options`` go to the store's constructor (e.g.
    ``schema=`` for PostgreSQL, ``durable=`` or ``check_pages=`` for LMDB)."""
    if is_postgres_url(spec):
        return _postgres_store()(spec, create=create, **options)
    return LmdbStore(spec, readonly=not create, **options)


def _postgres_store() -> type[PostgresStore]:
    try:
        from .postgres import PostgresStore  # noqa: PLC0415 (psycopg only when opened)
    except ImportError as exc:
        raise StoreError(
            f"a PostgreSQL store needs psycopg ({exc}); install it with "
            "pip install 'arcoflow[postgres]'"
        ) from exc
    return PostgresStore


def __getattr__(name: str) -> Any:
    if name == "PostgresStore":
        return _postgres_store()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
