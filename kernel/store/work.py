"""Work sharing: which due items a runtime works on, and when it wakes up.

A runtime's cycle finds due schedules, due poll sensors and due launches through the store's
indexes. On one machine every runtime may simply take everything that is due: compare-and-set
and idempotency keys make a doubled attempt harmless, and launch leases (``run.claimed``
events) hand each launch over once. A cluster of daemons on one PostgreSQL database shares the
work instead: each due item is *claimed* with ``FOR UPDATE SKIP LOCKED``, so N daemons split
it (:mod:`arcoflow.kernel.store.postgres_cluster`).

This module is the generic side, for every store: :class:`WorkClaims` (what a runtime asks),
:class:`AllDue` (the answer of a store without claims: everything that is due) and
:class:`Wakeups` (the idle wait between cycles: a plain timeout, or one that a run requested
on another node cuts short). :func:`work_claims` and :func:`wakeups` pick the store's own, if
it has one (a ``work_claims()`` or ``wakeups()`` method), else the generic one;
:func:`daemon_status` says whether the store keeps its daemons' status itself.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Iterator
from typing import Any, Final, Protocol

from ..rows import Table, u64
from .base import Store

__all__ = [
    "INDEX_OF",
    "AllDue",
    "DaemonStatus",
    "TimedWakeups",
    "Wakeups",
    "WorkClaims",
    "WorkKind",
    "daemon_status",
    "wakeups",
    "work_claims",
]


class WorkKind(enum.Enum):
    """A kind of due work a runtime claims."""

    SCHEDULE = "schedule"
    SENSOR = "sensor"
    LAUNCH = "launch"


#: The index that lists due items of each kind. Every one of them is keyed
#: ``u64(due instant) + b"\x00" + id`` (:data:`arcoflow.kernel.rows.INDEXES`).
INDEX_OF: Final[dict[WorkKind, Table]] = {
    WorkKind.SCHEDULE: Table.DUE_SCHEDULES,
    WorkKind.SENSOR: Table.DUE_SENSORS,
    WorkKind.LAUNCH: Table.OUTBOX,
}
#: Bytes before the id in an index key: the instant (8) and the separator (1).
ID_OFFSET: Final = 9


class WorkClaims(Protocol):
    """Which due items of one kind this runtime works on."""

    #: ``True``: a claimed item is this runtime's alone while the iterator holds it (no other
    #: runtime is handed it meanwhile), so launches need no lease of their own. ``False``:
    #: every runtime sees everything due (:class:`AllDue`).
    exclusive: bool

    def claim(self, kind: WorkKind, now: int, limit: int) -> Iterator[str]:
        """The ids of items of ``kind`` due at ``now``, at most ``limit``, oldest due first.

        An exclusive implementation holds each item until the iterator moves past it (or is
        closed): use it in a ``with contextlib.closing(...)`` block, and do an item's work
        before asking for the next one."""
        ...


class AllDue:
    """Every due item, read from the store's index: the claim of a store whose runtimes share
    a host (LMDB) or a process (memory). Two runtimes may both attempt an item; the kernel's
    compare-and-set keeps one outcome, and launches take a lease first."""

    exclusive = False

    def __init__(self, store: Store) -> None:
        self.store = store

    def claim(self, kind: WorkKind, now: int, limit: int) -> Iterator[str]:
        ids: list[str] = []
        with self.store.read() as txn:
            for k, _ in txn.scan(INDEX_OF[kind], stop=u64(now + 1)):
                ids.append(k[ID_OFFSET:].decode())
                if len(ids) >= limit:
                    break
        yield from ids


class Wakeups(Protocol):
    """The daemon's idle wait between cycles."""

    def wait(self, timeout: float, stop: threading.Event) -> bool:
        """Wait up to ``timeout`` seconds; return early when ``stop`` is set (``True``) or when
        work became due elsewhere (``False``, as after a timeout)."""
        ...

    def close(self) -> None: ...


class TimedWakeups:
    """The interval, and nothing else: a store that cannot tell its daemons about new work
    (LMDB: every daemon shares the host, and a cycle is cheap)."""

    def wait(self, timeout: float, stop: threading.Event) -> bool:
        return stop.wait(timeout)

    def close(self) -> None:
        pass


class DaemonStatus(Protocol):
    """A store that keeps its daemons' status (heartbeats, sources' state) itself, one row
    per daemon and kind, outside the log (PostgreSQL: the daemons of a cluster share no
    directory to keep files in)."""

    def put_status(self, daemon: str, kind: str, data: bytes) -> None: ...

    def statuses(self, kind: str) -> list[tuple[str, bytes]]: ...


def daemon_status(store: Store) -> DaemonStatus | None:
    """``store`` if it keeps its daemons' status itself, else ``None`` (an LMDB store's
    daemons write files in its directory; an in-memory store keeps none)."""
    if callable(getattr(store, "put_status", None)) and callable(getattr(store, "statuses", None)):
        board: DaemonStatus = store  # type: ignore[assignment]
        return board
    return None


def work_claims(store: Store) -> WorkClaims:
    """The store's own claims (PostgreSQL: ``FOR UPDATE SKIP LOCKED``), else :class:`AllDue`."""
    own: Any = getattr(store, "work_claims", None)
    if callable(own):
        claims: WorkClaims = own()
        return claims
    return AllDue(store)


def wakeups(store: Store) -> Wakeups:
    """The store's own wake-ups (PostgreSQL: ``LISTEN``), else :class:`TimedWakeups`."""
    own: Any = getattr(store, "wakeups", None)
    if callable(own):
        waker: Wakeups = own()
        return waker
    return TimedWakeups()
