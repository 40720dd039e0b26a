"""The in-memory store: the reference backend, for tests and for embedders who persist elsewhere.

Same semantics as LMDB because both run :func:`~arcoflow.kernel.store.base.apply_batch`; here a
write transaction is an overlay merged on commit and dropped on any exception.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

from ..codec import Codec, Envelope
from ..rows import Table
from .base import (
    Appended,
    Pending,
    Reads,
    WriteTxn,
    apply_batch,
    apply_batches,
    counter_next_seq,
    min_stop,
    prefix_end,
    replay_batch,
)

__all__ = ["MemoryStore"]

_DELETED = object()

_V = TypeVar("_V")


class _Table:
    def __init__(self) -> None:
        self.items: dict[bytes, bytes] = {}
        self.keys: list[bytes] = []  # sorted, for ordered scans

    def put(self, key: bytes, value: bytes) -> None:
        if key not in self.items:
            bisect.insort(self.keys, key)
        self.items[key] = value

    def delete(self, key: bytes) -> None:
        if self.items.pop(key, None) is not None:
            del self.keys[bisect.bisect_left(self.keys, key)]


class _Read:
    def __init__(self, tables: dict[Table, _Table]) -> None:
        self.tables = tables

    def get(self, table: Table, key: bytes) -> bytes | None:
        return self.tables[table].items.get(key)

    def scan(
        self,
        table: Table,
        *,
        prefix: bytes = b"",
        start: bytes | None = None,
        stop: bytes | None = None,
        reverse: bool = False,
    ) -> Iterator[tuple[bytes, bytes]]:
        t = self.tables[table]
        stop = min_stop(stop, prefix_end(prefix))
        lo = bisect.bisect_left(t.keys, max(prefix, start or b""))
        hi = len(t.keys) if stop is None else bisect.bisect_left(t.keys, stop)
        keys = t.keys[lo:hi]  # a copy: the caller may write while iterating
        for k in reversed(keys) if reverse else keys:
            yield k, t.items[k]


class _Write(_Read):
    """Reads see this transaction's writes through ``get``; ``scan`` sees the committed state
    (the apply step only scans before it writes)."""

    serialised = True  # one writer at a time, under the store's lock (see WriteTxn)

    def __init__(self, tables: dict[Table, _Table]) -> None:
        super().__init__(tables)
        self.overlay: dict[tuple[Table, bytes], object] = {}

    def get(self, table: Table, key: bytes) -> bytes | None:
        value = self.overlay.get((table, key))
        if value is None:
            return super().get(table, key)
        return None if value is _DELETED else value  # type: ignore[return-value]

    def put(self, table: Table, key: bytes, value: bytes) -> None:
        self.overlay[(table, key)] = value

    def delete(self, table: Table, key: bytes) -> None:
        self.overlay[(table, key)] = _DELETED

    def prefetch(self, rows: Callable[[], Reads], count: int) -> None:
        """Reads are local: nothing to batch."""

    def exclusive(self, table: Table) -> None:
        """One writer at a time (the store's lock): nothing to hold."""

    def next_seq(self, count: int) -> int:
        return counter_next_seq(self, count)

    def commit(self) -> None:
        for (table, key), value in self.overlay.items():
            if value is _DELETED:
                self.tables[table].delete(key)
            else:
                self.tables[table].put(key, value)  # type: ignore[arg-type]


class MemoryStore:
    """A store held in this process's memory. Thread-safe; gone when the process ends."""

    def __init__(self, codec: Codec | None = None) -> None:
        self.codec = codec or Codec()
        self._tables = {table: _Table() for table in Table}
        self._lock = threading.RLock()

    def append(self, batch: Sequence[Pending], at: int) -> Appended:
        with self._lock:
            txn = _Write(self._tables)
            result = apply_batch(txn, self.codec, batch, at)
            txn.commit()
            return result

    def append_many(self, batches: Sequence[Sequence[Pending]], at: int) -> list[Appended]:
        with self._lock:
            txn = _Write(self._tables)
            results = apply_batches(txn, self.codec, batches, at)
            txn.commit()
            return results

    def replay(self, envelopes: Sequence[Envelope]) -> None:
        with self._lock:
            txn = _Write(self._tables)
            replay_batch(txn, self.codec, envelopes)
            txn.commit()

    def write(self, work: Callable[[WriteTxn], _V]) -> _V:
        """Run ``work(txn)`` in one write transaction (maintenance: log compaction)."""
        with self._lock:
            txn = _Write(self._tables)
            result = work(txn)
            txn.commit()
            return result

    @contextmanager
    def read(self) -> Iterator[_Read]:
        with self._lock:
            yield _Read(self._tables)

    def close(self) -> None:
        """Nothing to release; the data stays until the object is dropped."""
