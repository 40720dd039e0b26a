"""The LMDB store: the default backend, a directory on disk.

* One write transaction per append: idempotency, CAS, log, rows and indexes commit together or
  not at all (LMDB aborts the transaction on any exception inside it).
* Several processes may open the same directory; LMDB serialises writers across processes with
  its lock file, and readers work from MVCC snapshots, so they never block the writer.
* One ``lmdb.Environment`` per directory per process, shared by every :class:`LmdbStore` on it:
  opening the same environment twice in one process and closing one drops the other's locks.
  After ``fork()`` a child opens its own.
* A full map grows (doubling, up to ``max_map_size``) and the append is retried; a map grown by
  another process is adopted. Past the maximum, :class:`~arcoflow.kernel.errors.StoreFull`.

Durability: ``durable=True`` (the default) flushes data and meta pages on every commit: an
acknowledged append survives power loss. ``durable=False`` skips the meta flush (LMDB's
``metasync=False``): an OS crash may lose the last transaction, never consistency.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

import lmdb

from ..codec import Codec, Envelope
from ..errors import StoreError, StoreFull
from ..rows import Table
from .base import (
    Appended,
    Pending,
    apply_batch,
    apply_batches,
    check_format,
    min_stop,
    prefix_end,
    replay_batch,
)

__all__ = ["LmdbStore"]

MIB: Final = 1024 * 1024
#: Longest wait, in seconds, for this process's readers before resizing the map.
_RESIZE_WAIT: Final = 30.0


def _size(n: int) -> str:
    return f"{n / MIB:.1f} MiB" if n >= MIB else f"{n} bytes"


class _Env:
    """A shared, reference-counted environment with its named databases."""

    def __init__(self, path: str, map_size: int, durable: bool) -> None:
        try:
            os.makedirs(path, exist_ok=True)
            self.env = lmdb.open(
                path,
                map_size=map_size,
                max_dbs=len(Table) + 1,
                subdir=True,
                sync=True,
                metasync=durable,
                readahead=False,
                max_readers=256,
            )
        except (OSError, lmdb.Error) as exc:  # a file in the way, no permission, no space
            raise StoreError(f"cannot open store at {path}: {exc}") from exc
        self.dbs = {t: self.env.open_db(t.value.encode(), create=True) for t in Table}
        self.refs = 0
        self.lock = threading.RLock()  # one writer per process; guards map growth
        self.readers = 0  # live read transactions in this process (set_mapsize needs none)
        self.idle = threading.Condition(threading.Lock())


_envs: dict[tuple[int, str], _Env] = {}
_envs_lock = threading.Lock()


class _Txn:
    def __init__(self, txn: Any, dbs: dict[Table, Any]) -> None:
        self.txn = txn
        self.dbs = dbs

    def get(self, table: Table, key: bytes) -> bytes | None:
        value: bytes | None = self.txn.get(key, db=self.dbs[table])
        return value

    def put(self, table: Table, key: bytes, value: bytes) -> None:
        self.txn.put(key, value, db=self.dbs[table])

    def delete(self, table: Table, key: bytes) -> None:
        self.txn.delete(key, db=self.dbs[table])

    def scan(
        self,
        table: Table,
        *,
        prefix: bytes = b"",
        start: bytes | None = None,
        stop: bytes | None = None,
        reverse: bool = False,
    ) -> Iterator[tuple[bytes, bytes]]:
        lo = max(prefix, start or b"")
        stop = min_stop(stop, prefix_end(prefix))
        with self.txn.cursor(db=self.dbs[table]) as cur:
            if not reverse:
                found = cur.set_range(lo) if lo else cur.first()
                while found:
                    k = cur.key()
                    if stop is not None and k >= stop:
                        return
                    yield k, cur.value()
                    found = cur.next()
                return
            if stop is None:
                found = cur.last()
            elif cur.set_range(stop):  # on the first key >= stop: step back once
                found = cur.prev()
            else:  # every key is < stop
                found = cur.last()
            while found:
                k = cur.key()
                if k < lo:
                    return
                yield k, cur.value()
                found = cur.prev()


class LmdbStore:
    """A store in the directory ``path`` (created if missing).

    >>> import tempfile
    >>> store = LmdbStore(tempfile.mkdtemp())
    >>> store.close()
    """

    def __init__(
        self,
        path: str,
        *,
        durable: bool = True,
        map_size: int = 64 * MIB,
        max_map_size: int = 1024 * 1024 * MIB,
        codec: Codec | None = None,
    ) -> None:
        self.path = os.path.realpath(path)
        self.codec = codec or Codec()
        self.max_map_size = max_map_size
        slot = (os.getpid(), self.path)
        with _envs_lock:
            shared = _envs.get(slot)
            if shared is None:
                shared = _envs[slot] = _Env(self.path, map_size, durable)
            shared.refs += 1
        self._shared: _Env | None = shared
        self._slot = slot
        try:
            with self.read() as txn:
                check_format(txn)
        except BaseException:
            self.close()  # a refused store must not keep the shared environment open
            raise

    @property
    def _env(self) -> _Env:
        if self._shared is None:
            raise StoreError(f"store at {self.path} is closed")
        return self._shared

    def _write(self, fn: Any) -> Any:
        shared = self._env
        with shared.lock:
            while True:
                try:
                    with shared.env.begin(write=True) as txn:
                        return fn(_Txn(txn, shared.dbs))
                except lmdb.MapFullError:
                    self._grow(shared)
                except lmdb.MapResizedError:
                    self._resize(shared, 0)  # adopt the size another process grew it to
                except lmdb.Error as exc:
                    raise StoreError(f"store at {self.path}: {exc}") from exc

    def _grow(self, shared: _Env) -> None:
        size = shared.env.info()["map_size"]
        if size >= self.max_map_size:
            raise StoreFull(
                f"store at {self.path} is full at {_size(size)} "
                f"(max_map_size {_size(self.max_map_size)}); nothing was written"
            )
        self._resize(shared, min(size * 2, self.max_map_size))

    def _resize(self, shared: _Env, size: int) -> None:
        """``set_mapsize`` (0: adopt the size another process grew the map to). LMDB allows it
        only while no transaction of this process is live: the caller holds the writer lock,
        and this waits for the readers to finish (new ones cannot begin meanwhile)."""
        with shared.idle:
            if not shared.idle.wait_for(lambda: shared.readers == 0, timeout=_RESIZE_WAIT):
                raise StoreError(
                    f"store at {self.path}: the map must be resized, but a read transaction "
                    f"in this process stayed open for {_RESIZE_WAIT}s; nothing was written"
                )
            shared.env.set_mapsize(size)

    def append(self, batch: Sequence[Pending], at: int) -> Appended:
        result: Appended = self._write(lambda txn: apply_batch(txn, self.codec, batch, at))
        return result

    def append_many(self, batches: Sequence[Sequence[Pending]], at: int) -> list[Appended]:
        results: list[Appended] = self._write(
            lambda txn: apply_batches(txn, self.codec, batches, at)
        )
        return results

    def replay(self, envelopes: Sequence[Envelope]) -> None:
        self._write(lambda txn: replay_batch(txn, self.codec, envelopes))

    @contextmanager
    def read(self) -> Iterator[_Txn]:
        shared = self._env
        txn = self._begin_read(shared)
        try:
            yield _Txn(txn, shared.dbs)
        finally:
            txn.abort()
            with shared.idle:
                shared.readers -= 1
                shared.idle.notify_all()

    def _begin_read(self, shared: _Env) -> Any:
        """A read transaction, counted in ``shared.readers`` (a resize waits for it)."""
        for _ in range(3):
            with shared.idle:
                try:
                    txn = shared.env.begin(buffers=False)
                except lmdb.MapResizedError:
                    pass
                except lmdb.Error as exc:
                    raise StoreError(f"store at {self.path}: {exc}") from exc
                else:
                    shared.readers += 1
                    return txn
            # Another process grew the map beyond ours: adopt its size, then read.
            with shared.lock:
                self._resize(shared, 0)
        raise StoreError(f"store at {self.path}: the map keeps being resized; retry")

    def map_size(self) -> int:
        """The current map size in bytes."""
        return int(self._env.env.info()["map_size"])

    def close(self) -> None:
        """Release this handle; the environment closes with its last handle in the process."""
        if self._shared is None:
            return
        with _envs_lock:
            self._shared.refs -= 1
            if self._shared.refs == 0:
                self._shared.env.close()
                _envs.pop(self._slot, None)
        self._shared = None

    def __enter__(self) -> LmdbStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
