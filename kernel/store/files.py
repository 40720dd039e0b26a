"""The files of an LMDB store directory, checked before LMDB maps them.

* ``data.mdb`` must hold every page its newest meta page says its last transaction used: a
  truncated file, once mapped, ends the process with SIGBUS on the first read of a missing page.
* ``arcoflow-store.id`` is the store's identity, written once at creation beside the data file
  (which records the same id): a data file that disappeared, was emptied or replaced no longer
  matches it.

The meta page layout is lmdb's ``mdb.c`` (``MDB_meta``) on a 64-bit build.
"""

from __future__ import annotations

import json
import os
import struct
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Final, NamedTuple

from ..errors import DamagedStore, StoreError

__all__ = [
    "DATA_FILE",
    "ID_FILE",
    "StoreId",
    "check_data_file",
    "holds_data",
    "read_stamp",
    "write_stamp",
]

#: LMDB's data file in the store directory, and the store identity written beside it.
DATA_FILE: Final = "data.mdb"
ID_FILE: Final = "arcoflow-store.id"


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


def check_data_file(path: str, stamp: StoreId | None) -> None:
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


def read_stamp(path: str) -> StoreId | None:
    """The identity beside the data file (None: there is none, e.g. a store made before)."""
    try:
        with open(os.path.join(path, ID_FILE), "rb") as f:
            data = f.read(4096)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise StoreError(f"cannot open store at {path}: cannot read {ID_FILE}: {exc}") from exc
    return StoreId.decode(data, os.path.join(path, ID_FILE))


def write_stamp(path: str, stamp: StoreId) -> None:
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


def holds_data(path: str) -> bool:
    """Whether ``path`` holds a non-empty data file (one ``lmdb.open`` would not create)."""
    try:
        return os.path.getsize(os.path.join(path, DATA_FILE)) > 0
    except OSError:
        return False
