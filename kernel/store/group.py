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
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ..errors import StoreError

__all__ = ["Group", "GroupCommit", "Request"]

_T = TypeVar("_T")


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
        self._turn = threading.Condition(threading.Lock())
        self._queue: list[Request[Any]] = []
        self._committing = False
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
            while self._committing and not request.done:
                self._turn.wait()
            if request.done:  # an earlier leader committed it
                return request.outcome()
            self._committing = True
            group, self._queue = self._queue, []
        try:
            commit(group)
        except BaseException as exc:  # nothing of the group committed: each writer hears so
            for other in group:
                other.value = None
                other.error = exc if isinstance(exc, Exception) else _interrupted(exc)
            raise
        finally:
            with self._turn:
                self.commits += 1
                self.requests += len(group)
                for done in group:
                    done.done = True
                self._committing = False
                self._turn.notify_all()
        return request.outcome()


def _interrupted(exc: BaseException) -> StoreError:
    return StoreError(f"the shared commit was interrupted ({type(exc).__name__}); retry")
