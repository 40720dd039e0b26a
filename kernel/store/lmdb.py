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

Damaged files are named, never crashed on (:class:`~arcoflow.kernel.errors.DamagedStore`):

* Before LMDB maps ``data.mdb``, its size is checked against its newest meta page: a file
  shorter than the pages its last transaction used is truncated, and mapping it would end the
  process with SIGBUS on the first read of a missing page.
* A store identity (a random id) is written once, at creation, both into the data file (the
  ``identity`` database, which is no table of the state, so ``verify`` never compares it) and
  beside it as ``arcoflow-store.id``. A data file that disappeared, was emptied or belongs to
  another store no longer matches the file beside it: it is refused instead of being taken for
  a new, empty store whose history would then look empty.
* Every driver error inside a transaction becomes a ``StoreError``.

``readonly=True`` opens an existing store and never creates one (:class:`StoreNotFound`), and
refuses writes. The LMDB environment underneath is the same read-write one either way, so a
read-only and a read-write handle on one path in one process share it (see above).
"""

from __future__ import annotations

import json
import os
import struct
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

import lmdb

from ..codec import Codec, Envelope
from ..errors import CorruptRecord, DamagedStore, StoreError, StoreFull, StoreNotFound
from ..rows import Table
from .base import (
    Appended,
    Pending,
    apply_batch,
    check_format,
    min_stop,
    prefix_end,
    replay_batch,
)

__all__ = ["DATA_FILE", "ID_FILE", "LmdbStore", "StoreId"]

MIB: Final = 1024 * 1024
#: Longest wait, in seconds, for this process's readers before resizing the map.
_RESIZE_WAIT: Final = 30.0
#: LMDB's data file in the store directory, and the store identity written beside it.
DATA_FILE: Final = "data.mdb"
ID_FILE: Final = "arcoflow-store.id"
_ID_DB: Final = b"identity"  # a named database beside the tables, outside the state
_ID_KEY: Final = b"store_id"
#: Driver errors that mean the file's pages are not what LMDB wrote.
_DAMAGE: Final = (
    lmdb.CorruptedError,
    lmdb.PageNotFoundError,
    lmdb.InvalidError,
    lmdb.VersionMismatchError,
    lmdb.PanicError,
)


def _size(n: int) -> str:
    return f"{n / MIB:.1f} MiB" if n >= MIB else f"{n} bytes"


def _driver_error(path: str, exc: lmdb.Error) -> StoreError:
    """A driver error as a store error that says what to do about it."""
    if isinstance(exc, _DAMAGE):
        return DamagedStore(
            f"store at {path} is damaged ({exc}); restore the store directory from a backup"
        )
    return StoreError(f"store at {path}: {exc}")


class _Meta(NamedTuple):
    """What an LMDB meta page says: the page size, the last page used, its transaction id."""

    page_size: int
    last_page: int
    txnid: int


#: The meta page of lmdb's ``mdb.c`` on a 64-bit build: a 16-byte page header, then
#: ``mm_magic``, ``mm_version``, ``mm_address``, ``mm_mapsize``, two ``MDB_db`` records of 48
#: bytes (the page size is kept in the first one's ``md_pad``), ``mm_last_pg``, ``mm_txnid``.
_META: Final = struct.Struct("<16xII8x8xI44x48xQQ")
_MAGIC: Final = 0xBEEFC0DE
_META_VERSION: Final = 1


def _read_meta(data: bytes) -> _Meta | None:
    """The meta page at the start of ``data`` (None: not an LMDB meta page)."""
    if len(data) < _META.size:
        return None
    magic, version, page_size, last_page, txnid = _META.unpack_from(data)
    sane_page = 512 <= page_size <= 65536 and page_size & (page_size - 1) == 0
    if magic != _MAGIC or version != _META_VERSION or not sane_page:
        return None
    return _Meta(page_size, last_page, txnid)


def _check_data_file(path: str, stamp: StoreId | None) -> None:
    """Refuse, before LMDB maps it, a data file that cannot hold what its meta pages say.

    The meta pages are read before the size: a writer extends the file before it writes the
    meta page that points into the new pages, so a live store always passes. A torn read of a
    meta page being written is retried once."""
    for attempt in range(2):
        problem = _data_file_problem(os.path.join(path, DATA_FILE), stamp)
        if problem is None:
            return
        if attempt == 0:
            time.sleep(0.05)
    raise DamagedStore(
        f"store at {path} is damaged: {problem}; restore the store directory from a backup"
        + ("" if stamp is None else ", or delete it to start a new, empty store")
    )


def _data_file_problem(data_file: str, stamp: StoreId | None) -> str | None:
    try:
        with open(data_file, "rb") as f:
            first = f.read(_META.size)
            meta0 = _read_meta(first)
            size = os.fstat(f.fileno()).st_size
            if meta0 is not None and meta0.page_size >= _META.size:
                f.seek(meta0.page_size)
                meta1 = _read_meta(f.read(_META.size))
                size = os.fstat(f.fileno()).st_size
            else:
                meta1 = None
    except (FileNotFoundError, NotADirectoryError):
        size, meta0, meta1 = 0, None, None
    except OSError:
        return None  # no permission, a directory in the way: lmdb.open names it
    if size == 0:
        if stamp is None:
            return None  # a new store (or one another process is creating right now)
        return (
            f"{DATA_FILE} is missing or empty, but {ID_FILE} says store {stamp.store_id} was "
            f"created here at {stamp.created_at}: its data is gone"
        )
    if meta0 is None:
        if stamp is None and size < 2 * 4096:
            return None  # another process may be writing the first meta pages: LMDB decides
        return f"{DATA_FILE} does not start with an LMDB meta page"
    if meta1 is None:
        if size < 2 * meta0.page_size:
            return f"{DATA_FILE} holds {size} bytes, too few for its two meta pages (truncated)"
        return f"the second meta page of {DATA_FILE} is not an LMDB meta page"
    newest = max(meta0, meta1, key=lambda m: m.txnid)
    need = (newest.last_page + 1) * newest.page_size
    if size < need:
        return (
            f"{DATA_FILE} holds {size} bytes, but its last transaction ({newest.txnid}) uses "
            f"{newest.last_page + 1} pages of {newest.page_size} bytes ({need} bytes): the file "
            "was truncated"
        )
    return None


class StoreId(NamedTuple):
    """The identity of a store: recorded in its data file and in ``arcoflow-store.id``."""

    store_id: str
    created_at: str

    @classmethod
    def new(cls) -> StoreId:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return cls(uuid.uuid4().hex, now)

    def encode(self) -> bytes:
        return json.dumps(self._asdict()).encode()

    @classmethod
    def decode(cls, data: bytes, where: str) -> StoreId:
        try:
            fields = json.loads(data)
            return cls(str(fields["store_id"]), str(fields["created_at"]))
        except (ValueError, TypeError, KeyError) as exc:
            raise DamagedStore(f"{where} is not a store identity ({exc!r})") from None


def _read_stamp(path: str) -> StoreId | None:
    """The identity beside the data file (None: there is none, e.g. a store made before)."""
    try:
        with open(os.path.join(path, ID_FILE), "rb") as f:
            data = f.read(4096)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise StoreError(f"cannot open store at {path}: cannot read {ID_FILE}: {exc}") from exc
    return StoreId.decode(data, os.path.join(path, ID_FILE))


def _write_stamp(path: str, stamp: StoreId) -> None:
    """Write ``arcoflow-store.id`` atomically (a crash leaves the old file or the new one)."""
    target = os.path.join(path, ID_FILE)
    temporary = f"{target}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        with open(temporary, "wb") as f:
            f.write(stamp.encode() + b"\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, target)
    except OSError as exc:
        raise StoreError(f"cannot write {ID_FILE} of the store at {path}: {exc}") from exc


def _holds_data(path: str) -> bool:
    try:
        return os.path.getsize(os.path.join(path, DATA_FILE)) > 0
    except OSError:
        return False


class _Env:
    """A shared, reference-counted environment with its named databases."""

    def __init__(self, path: str, map_size: int, durable: bool, create: bool) -> None:
        _check_data_file(path, _read_stamp(path))
        if not create and not _holds_data(path):  # lmdb.open would create the files
            raise StoreNotFound(f"no store at {path}")
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
    """A store in the directory ``path`` (created if missing, unless ``readonly``).

    ``readonly=True``: the store must exist (else :class:`StoreNotFound`, and nothing is
    created); ``append`` and ``replay`` are refused.

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
    ) -> None:
        self.path = os.path.realpath(path)
        self.codec = codec or Codec()
        self.max_map_size = max_map_size
        self.readonly = readonly
        slot = (os.getpid(), self.path)
        with _envs_lock:
            shared = _envs.get(slot)
            if shared is None:
                shared = _envs[slot] = _Env(self.path, map_size, durable, not readonly)
            shared.refs += 1
        self._shared: _Env | None = shared
        self._slot = slot
        try:
            with self.read() as txn:
                check_format(txn)
            self.store_id = self._check_identity(shared)
        except BaseException:
            self.close()  # a refused store must not keep the shared environment open
            raise

    def _check_identity(self, shared: _Env) -> str | None:
        """The store's id, after checking that the data file is the one the id file beside
        it names. A store without an id (new, or made before ids) gets one, unless read-only."""
        stamp = _read_stamp(self.path)
        try:
            with shared.env.begin(db=shared.identity) as txn:
                stored = txn.get(_ID_KEY)
        except lmdb.Error as exc:
            raise _driver_error(self.path, exc) from exc
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
            _write_stamp(self.path, recorded)
        return recorded.store_id

    @staticmethod
    def _record_identity(txn: Any, shared: _Env) -> StoreId:
        """Record a new identity unless a concurrent opener just did (then adopt that one)."""
        stored = txn.get(_ID_KEY, db=shared.identity)
        if stored is not None:
            return StoreId.decode(stored, f"{DATA_FILE} identity")
        stamp = StoreId.new()
        txn.put(_ID_KEY, stamp.encode(), db=shared.identity)
        return stamp

    @property
    def _env(self) -> _Env:
        if self._shared is None:
            raise StoreError(f"store at {self.path} is closed")
        return self._shared

    def _write(self, fn: Any) -> Any:
        shared = self._env
        if self.readonly:
            raise StoreError(f"store at {self.path} is open read-only; nothing was written")
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

    def replay(self, envelopes: Sequence[Envelope]) -> None:
        self._write(lambda txn: replay_batch(txn, self.codec, envelopes))

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
