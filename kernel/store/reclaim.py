"""Give an LMDB store's free pages back to the file system: LMDB's compacting copy, swapped in.

LMDB never shrinks ``data.mdb``: pages freed by log compaction are reused by later writes, but
the file keeps its size. :func:`reclaim` replaces the file by a compacting copy
(``mdb_env_copy2`` with ``MDB_CP_COMPACT``), which holds only the live pages. Replacing the
file under a process that has it mapped would lose that process's later writes (it keeps
writing to the old file), so the swap needs the store to itself:

1. This process must not have the store open (an :class:`LmdbStore` not closed):
   :class:`~arcoflow.kernel.errors.StoreBusy`.
2. Every process with the store open holds LMDB's shared ``fcntl`` lock on byte 0 of
   ``lock.mdb`` for as long as it has it open (LMDB's "am I the first opener" lock). Taking
   that byte exclusively, without waiting, fails while any other process holds it:
   :class:`StoreBusy`, nothing changed. Held, it makes any process that opens the store
   meanwhile wait (LMDB asks for the shared lock and blocks) until the swap is done.
3. The copy is made through an environment opened with ``lock=False``, which leaves
   ``lock.mdb`` alone (closing a descriptor of a file drops *all* of a process's ``fcntl``
   locks on it, so touching it would drop ours), into a directory inside the store (same file
   system), and flushed to disk.
4. ``rename`` over ``data.mdb`` (atomic), then the directory is flushed.
5. The store is opened once the ordinary way: being the first opener, LMDB re-initialises
   ``lock.mdb`` from the new file (its transaction counter) before any waiting process reads
   it; closing it releases the lock.

A crash (even SIGKILL) before step 4 leaves the old file, complete (a leftover copy directory
is deleted the next time); after step 4 the new file, complete, flushed before the rename.
The kernel releases a dead process's ``fcntl`` locks, so a crash never leaves the store locked.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import tempfile
from typing import Final, NamedTuple

import lmdb

from ..errors import StoreBusy, StoreError
from .files import DATA_FILE
from .lmdb import LmdbStore, _envs, _envs_lock

__all__ = ["Reclaimed", "reclaim"]

LOCK_FILE: Final = "lock.mdb"
#: Where a copy is made before it replaces the data file (inside the store directory).
COPY_PREFIX: Final = ".reclaim-"


class Reclaimed(NamedTuple):
    """The data file's size before and after, in bytes."""

    before: int
    after: int


def reclaim(path: str) -> Reclaimed:
    """Replace the data file of the LMDB store at ``path`` by a compacting copy (see the
    module docstring). :class:`StoreBusy` if any process has the store open."""
    path = os.path.realpath(path)
    data = os.path.join(path, DATA_FILE)
    if not os.path.isfile(data):
        raise StoreError(f"no LMDB store at {path} (no {DATA_FILE})")
    with _envs_lock:
        if (os.getpid(), path) in _envs:
            raise StoreBusy(f"store at {path} is open in this process: close it first")
    lock = os.open(os.path.join(path, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.lockf(lock, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0, os.SEEK_SET)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                raise StoreBusy(
                    f"store at {path} is open in another process (a daemon, a CLI command, "
                    "an HTTP server): stop it and run this again; nothing was changed"
                ) from None
            raise
        _remove_leftovers(path)
        before = os.path.getsize(data)
        _swap(path, data)
        LmdbStore(path).close()  # re-initialises lock.mdb from the new file (step 5)
        return Reclaimed(before, os.path.getsize(data))
    finally:
        os.close(lock)


def _swap(path: str, data: str) -> None:
    copy_dir = tempfile.mkdtemp(prefix=COPY_PREFIX, dir=path)
    try:
        try:
            env = lmdb.open(path, readonly=True, lock=False, max_dbs=64)
        except lmdb.Error as exc:
            raise StoreError(f"cannot open store at {path} to copy it: {exc}") from exc
        try:
            env.copy(copy_dir, compact=True)
        except lmdb.Error as exc:
            raise StoreError(f"cannot copy store at {path}: {exc}") from exc
        finally:
            env.close()
        copy = os.path.join(copy_dir, DATA_FILE)
        _fsync(copy)
        os.rename(copy, data)
        _fsync(path)
    finally:
        shutil.rmtree(copy_dir, ignore_errors=True)


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_leftovers(path: str) -> None:
    """Copy directories of a reclaim that stopped before its rename."""
    for name in os.listdir(path):
        if name.startswith(COPY_PREFIX):
            shutil.rmtree(os.path.join(path, name), ignore_errors=True)
