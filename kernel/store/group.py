"""Group commit: concurrent writers of one process share one write transaction and its flushes.

A durable commit costs two device flushes however little it writes, so one transaction per
append caps durable throughput at one flush pair per append, however many threads append.
Here a writer that finds a commit in progress queues its request and waits; the next commit
(led by whichever waiting writer wakes first) applies every queued request, in arrival order,
in one transaction. Each request runs in its own savepoint (see :class:`Group`), so its
outcome — a result, a :class:`~arcoflow.kernel.errors.Conflict`, bad input — is its own, and
each writer returns only after the commit holding its events has completed, i.e. is durable
in the store's durability mode.

A lone writer pays nothing for it: it finds no commit in progress and commits at once.

Without more, N busy threads settle into alternating groups of N-1 and 1: while a big group
commits, only the one thread outside it can queue, and it leads the next commit alone while the
others, released, are still preparing their next append. So a leader that follows a group of
several waits — at most as long as the last commit took, a bound on what waiting can cost —
until as many appends have queued as that group held (PostgreSQL's ``commit_delay`` does the
same when other transactions are active). After a lone commit nobody waits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Final, Generic, TypeVar

from ..errors import StoreError

__all__ = ["MAX_DELAY", "Group", "GroupCommit", "Request"]

_T = TypeVar("_T")

#: The longest a leader waits for company, in seconds.
MAX_DELAY: Final = 0.01


class Request(Generic[_T]):
    """One writer's work: ``apply(txn)`` inside the shared transaction; its outcome."""

    __slots__ = ("apply", "done", "error", "value")

    def __init__(self, apply: Callable[[Any], _T]) -> None:
        self.apply = apply
        self.value: _T | None = None
        self.error: BaseException | None = None
        self.done = False

    def outcome(self) -> _T:
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


#: Commits a group: runs each request's ``apply`` in its own savepoint of one transaction,
#: sets each request's ``value`` or ``error``, and returns once the transaction committed.
Group = Callable[[list[Request[Any]]], None]


class GroupCommit:
    """The queue of one process's writers to one store, and who leads the next commit."""

    def __init__(self) -> None:
        lock = threading.Lock()
        self._turn = threading.Condition(lock)  # writers wait here for their commit
        self._company = threading.Condition(lock)  # a leader waits here for more appends
        self._queue: list[Request[Any]] = []
        self._committing = False
        self._last_size = 0  # requests in the last commit
        self._last_seconds = 0.0  # how long it took
        #: Commits led so far and requests they held (for tests and the benchmark report).
        self.commits = 0
        self.requests = 0

    def queued(self) -> int:
        """Requests waiting for the next commit."""
        with self._turn:
            return len(self._queue)

    def submit(self, apply: Callable[[Any], _T], commit: Group) -> _T:
        """Run ``apply`` in a shared transaction (``commit`` commits a group when this writer
        leads it); return its result once that transaction has committed."""
        request: Request[_T] = Request(apply)
        with self._turn:
            self._queue.append(request)
            self._company.notify()  # a leader may be waiting for company (only it: no herd)
            while self._committing and not request.done:
                self._turn.wait()
            if request.done:  # an earlier leader committed it
                return request.outcome()
            self._committing = True
            self._gather()
            group, self._queue = self._queue, []
        start = time.monotonic()
        try:
            commit(group)
        except BaseException as exc:  # nothing of the group committed: each writer hears so
            for other in group:
                other.value = None
                other.error = exc if isinstance(exc, Exception) else _interrupted(exc)
            raise
        finally:
            with self._turn:
                self._last_size, self._last_seconds = len(group), time.monotonic() - start
                self.commits += 1
                self.requests += len(group)
                for done in group:
                    done.done = True
                self._committing = False
                self._turn.notify_all()
        return request.outcome()

    def _gather(self) -> None:
        """After a commit of several appends, wait (at most as long as it took, and at most
        :data:`MAX_DELAY`) for as many to queue; called with the lock held."""
        if self._last_size < 2 or len(self._queue) >= self._last_size:
            return
        deadline = time.monotonic() + min(self._last_seconds, MAX_DELAY)
        while len(self._queue) < self._last_size:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._company.wait(left)


def _interrupted(exc: BaseException) -> StoreError:
    return StoreError(f"the shared commit was interrupted ({type(exc).__name__}); retry")
