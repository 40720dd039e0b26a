"""The LMDB store: the default backend, a directory on disk.

* An append's idempotency check, CAS, log, rows and indexes commit together or not at all.
  Appends of several threads that arrive while a commit is in flight share the next write
  transaction and its flushes (group commit, :mod:`.group`): each runs in a nested transaction,
  so one that fails is rolled back alone, and each returns once that transaction committed.
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

Damaged files are named, never crashed on (:class:`~arcoflow.kernel.errors.DamagedStore`):

* Before LMDB maps ``data.mdb``, its size is checked against its newest meta page (see
  :mod:`.files`): mapping a truncated file would end the process with SIGBUS.
* A store identity (a random id) is written once, at creation, both into the data file (the
  ``identity`` database, which is no table of the state, so ``verify`` never compares it) and
  beside it as ``arcoflow-store.id``. A data file that disappeared, was emptied or belongs to
  another store no longer matches the file beside it: it is refused instead of being taken for
  a new, empty store whose history would then look empty.
* Every driver error inside a transaction becomes a ``StoreError``; so does a stored key that
  is not UTF-8 (only stored bytes are decoded inside a read transaction).

``readonly=True`` opens an existing store and never creates one (:class:`StoreNotFound`), and
refuses writes. The LMDB environment underneath is the same read-write one either way, so a
read-only and a read-write handle on one path in one process share it (see above).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final, TypeVar

import lmdb

from ..codec import Codec, Envelope
from ..errors import CorruptRecord, DamagedStore, StoreError, StoreFull, StoreNotFound
from ..rows import Table
from .base import (
    Appended,
    Pending,
    Reads,
    WriteTxn,
    apply_batch,
    apply_batches,
    check_format,
    counter_next_seq,
    index_finished_runs,
    min_stop,
    prefix_end,
    replay_batch,
)
from .files import DATA_FILE, ID_FILE, StoreId, check_data_file, holds_data, read_stamp, write_stamp
from .group import GroupCommit, Request
from .pages import page_problem

__all__ = ["LmdbStore"]

_T = TypeVar("_T")
MIB: Final = 1024 * 1024
#: Longest wait, in seconds, for this process's readers before resizing the map.
_RESIZE_WAIT: Final = 30.0
_ID_DB: Final = b"identity"  # a named database beside the tables, outside the state
_FINISHED_INDEX: Final = b"upgraded:finished-index"  # marker: runs finished before it indexed
_ID_KEY: Final = b"store_id"
#: Driver errors that mean the file's pages are not what LMDB wrote.
_DAMAGE: Final = (
    lmdb.CorruptedError,
    lmdb.PageNotFoundError,
    lmdb.InvalidError,
    lmdb.VersionMismatchError,
    lmdb.PanicError,
)

_V = TypeVar("_V")


def _size(n: int) -> str:
    return f"{n / MIB:.1f} MiB" if n >= MIB else f"{n} bytes"


def _check_pages(path: str) -> None:
    """Refuse a data file with a pointer LMDB could not follow safely (see :mod:`.pages`)."""
    if holds_data(path):
        problem = page_problem(os.path.join(path, DATA_FILE))
        if problem is not None:
            raise DamagedStore(
                f"store at {path} is damaged: {problem}; restore the store directory from a backup"
            )


def _driver_error(path: str, exc: lmdb.Error) -> StoreError:
    """A driver error as a store error that says what to do about it."""
    if isinstance(exc, _DAMAGE):
        return DamagedStore(
            f"store at {path} is damaged ({exc}); restore the store directory from a backup"
        )
    return StoreError(f"store at {path}: {exc}")


class _Env:
    """A shared, reference-counted environment with its named databases."""

    def __init__(
        self, path: str, map_size: int, durable: bool, create: bool, check_pages: bool
    ) -> None:
        check_data_file(path, read_stamp(path))
        if not create and not holds_data(path):  # lmdb.open would create the files
            raise StoreNotFound(f"no store at {path}")
        if check_pages:
            _check_pages(path)
        try:
            os.makedirs(path, exist_ok=True)
            self.env = lmdb.open(
                path,
                map_size=map_size,
                max_dbs=len(Table) + 2,
                subdir=True,
                sync=True,
                metasync=durable,
                readahead=False,
                max_readers=256,
            )
        except (OSError, lmdb.Error) as exc:  # a file in the way, no permission, no space
            if isinstance(exc, _DAMAGE):
                raise _driver_error(path, exc) from exc
            raise StoreError(f"cannot open store at {path}: {exc}") from exc
        try:
            self.dbs = {t: self.env.open_db(t.value.encode(), create=True) for t in Table}
            self.identity = self.env.open_db(_ID_DB, create=True)
        except lmdb.Error as exc:
            self.env.close()
            raise _driver_error(path, exc) from exc
        self.durable = durable
        self.refs = 0
        self.lock = threading.RLock()  # one writer per process; guards map growth
        self.readers = 0  # live read transactions in this process (set_mapsize needs none)
        self.idle = threading.Condition(threading.Lock())
        self.group = GroupCommit()  # this process's writers to this store


_envs: dict[tuple[int, str], _Env] = {}
_envs_lock = threading.Lock()


def _savepoint(shared: _Env, txn: Any, request: Request[Any]) -> None:
    """``request`` in a nested transaction of ``txn``: committed into it, or rolled back with
    the request's error kept (a driver error propagates: the whole group is redone)."""
    request.value, request.error = None, None
    try:
        with shared.env.begin(write=True, parent=txn) as child:
            request.value = request.apply(_Txn(child, shared.dbs))
    except lmdb.Error:
        raise
    except Exception as exc:  # this writer's own failure (Conflict, bad input): not the others'
        request.value, request.error = None, exc


class _Txn:
    serialised = True  # LMDB runs one write transaction at a time (see WriteTxn)

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

    def prefetch(self, rows: Callable[[], Reads], count: int) -> None:
        """Reads are local: nothing to batch."""

    def exclusive(self, table: Table) -> None:
        """LMDB has one writer at a time: nothing to hold."""

    def next_seq(self, count: int) -> int:
        return counter_next_seq(self, count)

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
    """A store in the directory ``path`` (created if missing, unless ``readonly``).

    ``readonly=True``: the store must exist (else :class:`StoreNotFound`, and nothing is
    created); ``append`` and ``replay`` are refused.

    ``check_pages=True``: before LMDB reads a page, walk every live page of the data file with
    ordinary reads and refuse (:class:`DamagedStore`) one that LMDB could not follow without
    crashing the process (:mod:`.pages`). It reads the whole file: for ``verify``, not for
    every open.

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
        readonly: bool = False,
        check_pages: bool = False,
    ) -> None:
        self.path = os.path.realpath(path)
        self.codec = codec or Codec()
        self.max_map_size = max_map_size
        self.readonly = readonly
        slot = (os.getpid(), self.path)
        with _envs_lock:
            shared = _envs.get(slot)
            if shared is None:
                shared = _Env(self.path, map_size, durable, not readonly, check_pages)
                _envs[slot] = shared
            elif durable and not shared.durable:  # it would not flush its meta pages
                raise StoreError(
                    f"store at {self.path} is already open in this process with durable=False; "
                    "open every handle of a path with the same durability"
                )
            elif check_pages:
                _check_pages(self.path)
            shared.refs += 1
        self._shared: _Env | None = shared
        self._slot = slot
        try:
            with self.read() as txn:
                check_format(txn)
                stored = txn.txn.get(_ID_KEY, db=shared.identity)
            self.store_id = self._check_identity(shared, stored)
            if not readonly:
                self._upgrade(shared)
        except BaseException:
            self.close()  # a refused store must not keep the shared environment open
            raise

    def _check_identity(self, shared: _Env, stored: bytes | None) -> str | None:
        """The store's id (``stored`` in the data file), after checking that the data file is
        the one the id file beside it names. A store without an id (new, or made before ids)
        gets one, unless read-only."""
        stamp = read_stamp(self.path)
        recorded = None if stored is None else StoreId.decode(stored, f"{DATA_FILE} identity")
        if stamp is not None and recorded != stamp:
            found = "no store id" if recorded is None else f"store {recorded.store_id}"
            raise DamagedStore(
                f"store at {self.path} is damaged: {ID_FILE} names store {stamp.store_id}, "
                f"created at {stamp.created_at}, but {DATA_FILE} holds {found}: the data file "
                "was replaced; restore the store directory from a backup"
            )
        if self.readonly:
            return None if recorded is None else recorded.store_id
        if recorded is None:
            recorded = self._write(lambda txn: self._record_identity(txn.txn, shared))
        if stamp is None:
            write_stamp(self.path, recorded)
        return recorded.store_id

    def _upgrade(self, shared: _Env) -> None:
        """Derived state a store from an older arcoflow lacks, built once (the marker lives in
        the identity database, outside the compared state): the finished-runs index."""

        def build(txn: _Txn) -> None:
            if txn.txn.get(_FINISHED_INDEX, db=shared.identity) is None:
                index_finished_runs(txn, self.codec)
                txn.txn.put(_FINISHED_INDEX, b"1", db=shared.identity)

        with self.read() as txn:
            done = txn.txn.get(_FINISHED_INDEX, db=shared.identity) is not None
            # Nothing to index (no run, or the index already holds entries): no write at all.
            idle = next(txn.scan(Table.FINISHED), None) is not None or (
                next(txn.scan(Table.RUNS), None) is None
            )
        if not done and not idle:
            self._write(build)

    @staticmethod
    def _record_identity(txn: Any, shared: _Env) -> StoreId:
        """Record a new identity unless a concurrent opener just did (then adopt that one)."""
        stored = txn.get(_ID_KEY, db=shared.identity)
        if stored is not None:
            return StoreId.decode(stored, f"{DATA_FILE} identity")
        stamp = StoreId.new()
        txn.put(_ID_KEY, stamp.encode(), db=shared.identity)
        with txn.cursor(db=shared.dbs[Table.RUNS]) as runs:
            if not runs.first():  # a new store: nothing for an upgrade to index, ever
                txn.put(_FINISHED_INDEX, b"1", db=shared.identity)
        return stamp

    @property
    def _env(self) -> _Env:
        if self._shared is None:
            raise StoreError(f"store at {self.path} is closed")
        return self._shared

    def _write(self, fn: Callable[[_Txn], _T]) -> _T:
        """``fn`` in a write transaction, shared with the appends of this process's other
        threads that arrive meanwhile (group commit, :mod:`.group`); its result once that
        transaction has committed."""
        shared = self._env
        if self.readonly:
            raise StoreError(f"store at {self.path} is open read-only; nothing was written")
        return shared.group.submit(fn, lambda group: self._commit(shared, group))

    def _commit(self, shared: _Env, group: list[Request[Any]]) -> None:
        """One write transaction for ``group``. With several requests, each runs in a nested
        transaction (LMDB's savepoint): one that raises is rolled back alone and keeps its
        error; the others commit. A driver error (a full map) redoes the whole group."""
        with shared.lock:
            while True:
                try:
                    with shared.env.begin(write=True) as txn:
                        if len(group) == 1:
                            group[0].value = group[0].apply(_Txn(txn, shared.dbs))
                        else:
                            for request in group:
                                _savepoint(shared, txn, request)
                    return
                except lmdb.MapFullError:
                    self._grow(shared)
                except lmdb.MapResizedError:
                    self._resize(shared, 0)  # adopt the size another process grew it to
                except lmdb.Error as exc:
                    raise _driver_error(self.path, exc) from exc

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

    def write(self, work: Callable[[WriteTxn], _V]) -> _V:
        """Run ``work(txn)`` in one write transaction (maintenance: log compaction)."""
        result: _V = self._write(work)
        return result

    @contextmanager
    def read(self) -> Iterator[_Txn]:
        shared = self._env
        txn = self._begin_read(shared)
        try:
            yield _Txn(txn, shared.dbs)
        except lmdb.Error as exc:  # a damaged page met by a cursor or a lookup
            raise _driver_error(self.path, exc) from exc
        except UnicodeDecodeError as exc:  # only stored bytes are decoded inside a read
            raise CorruptRecord(
                "a stored key", f"not UTF-8 ({exc.reason}); store at {self.path}"
            ) from exc
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
                    raise _driver_error(self.path, exc) from exc
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
