"""A walk of an LMDB data file's B-trees with ordinary reads, before LMDB follows them in place.

LMDB reads its pages through the memory map and trusts what they say: a damaged page number or
node offset makes it read past the end of the file, and the process dies of SIGBUS (or SIGSEGV)
before Python sees an error. :func:`page_problem` reads the file with ``pread`` and checks every
pointer LMDB would follow from the newest meta page: branch children, node offsets and sizes,
overflow pages, named databases. It costs a read of every live page, so only an open that asks
for it runs it (``LmdbStore(path, check_pages=True)``, for ``verify``), not every open.

The layout is lmdb's ``mdb.c`` on a 64-bit build (``MDB_page``, ``MDB_node``, ``MDB_db``).
arcoflow uses neither ``MDB_DUPSORT`` nor ``MDB_DUPFIXED``: their page and node kinds are damage.
"""

from __future__ import annotations

import os
import struct
from typing import Final

__all__ = ["page_problem"]

_HEADER: Final = 16  # MDB_page: mp_pgno u64, mp_pad u16, mp_flags u16, mp_lower u16, mp_upper u16
_NODE: Final = 8  # MDB_node: mn_lo u16, mn_hi u16, mn_flags u16, mn_ksize u16
_DB: Final = struct.Struct("<IHHQQQQQ")  # MDB_db: ..., md_root last
_P_BRANCH, _P_LEAF, _P_OVERFLOW = 0x01, 0x02, 0x04
_F_BIGDATA, _F_SUBDATA = 0x01, 0x02
_P_INVALID: Final = 2**64 - 1  # an empty database's root
_META_DBS: Final = 16 + 24  # the free and main MDB_db records in a meta page
_META_TXNID: Final = 16 + 128


class _File:
    def __init__(self, fd: int, page_size: int, last_page: int) -> None:
        self.fd = fd
        self.page_size = page_size
        self.last_page = last_page

    def page(self, pgno: int) -> bytes:
        data = os.pread(self.fd, self.page_size, pgno * self.page_size)
        if len(data) < self.page_size:
            raise _Damage(f"page {pgno} lies past the end of the file")
        return data


class _Damage(Exception):
    pass


def page_problem(data_file: str, attempts: int = 5) -> str | None:
    """The first pointer in ``data_file`` that LMDB could not follow safely (None: none).

    Another process may commit meanwhile. Pages of the newest snapshot are never rewritten
    before a newer transaction commits, so a walk during which the newest transaction id stayed
    the same saw a consistent tree, and only its verdict counts; otherwise it walks again."""
    try:
        fd = os.open(data_file, os.O_RDONLY)
    except OSError as exc:
        return f"cannot read {data_file}: {exc}"
    try:
        for _ in range(attempts):
            meta, page_size = _newest_meta(fd)
            try:
                _walk(fd, meta, page_size)
                problem = None
            except _Damage as exc:
                problem = str(exc)
            if _newest_meta(fd)[0] == meta:
                return problem
        return None  # busy: every walk overlapped a commit; LMDB's own checks remain
    except _Damage as exc:
        return str(exc)
    finally:
        os.close(fd)


def _newest_meta(fd: int) -> tuple[bytes, int]:
    first = os.pread(fd, _META_TXNID + 8, 0)
    if len(first) < _META_TXNID + 8:
        raise _Damage("the first meta page is incomplete")
    (page_size,) = struct.unpack_from("<I", first, _META_DBS)  # md_pad of the free MDB_db
    if not 512 <= page_size <= 65536 or page_size & (page_size - 1):
        raise _Damage(f"the first meta page gives a page size of {page_size}")
    second = os.pread(fd, _META_TXNID + 8, page_size)
    if len(second) < _META_TXNID + 8:
        raise _Damage("the second meta page is incomplete")
    newest = max((first, second), key=lambda m: struct.unpack_from("<Q", m, _META_TXNID)[0])
    return newest, page_size


def _walk(fd: int, meta: bytes, page_size: int) -> None:
    (last_page,) = struct.unpack_from("<Q", meta, _META_TXNID - 8)
    file = _File(fd, page_size, last_page)
    seen: set[int] = set()
    for index, name in ((0, "free list"), (1, "main database")):
        root = _DB.unpack_from(meta, _META_DBS + index * _DB.size)[-1]
        _tree(file, root, name, seen, named=index == 1)


def _tree(file: _File, root: int, name: str, seen: set[int], named: bool) -> None:
    """Check every page of the tree at ``root``; ``named``: its leaves name databases."""
    if root == _P_INVALID:
        return
    stack = [root]
    while stack:
        pgno = stack.pop()
        where = f"{name}: page {pgno}"
        if not 2 <= pgno <= file.last_page:
            raise _Damage(
                f"{name}: a page number {pgno} outside the file's pages 2..{file.last_page}"
            )
        if pgno in seen:
            raise _Damage(f"{where} is reached twice")
        seen.add(pgno)
        page = file.page(pgno)
        flags, lower, upper = struct.unpack_from("<HHH", page, 10)
        kind = flags & (_P_BRANCH | _P_LEAF | _P_OVERFLOW | 0x20 | 0x40)
        if kind not in (_P_BRANCH, _P_LEAF):
            raise _Damage(f"{where} is neither a branch nor a leaf page (flags {flags:#x})")
        if not _HEADER <= lower <= upper <= file.page_size or (lower - _HEADER) % 2:
            raise _Damage(f"{where} has a damaged header (lower {lower}, upper {upper})")
        for i in range((lower - _HEADER) // 2):
            (offset,) = struct.unpack_from("<H", page, _HEADER + 2 * i)
            if not upper <= offset <= file.page_size - _NODE:
                raise _Damage(f"{where}: node {i} lies outside the page (offset {offset})")
            lo, hi, node_flags, key_size = struct.unpack_from("<HHHH", page, offset)
            end = offset + _NODE + key_size
            if end > file.page_size:
                raise _Damage(f"{where}: node {i}'s key runs past the page")
            if kind == _P_BRANCH:
                stack.append(lo | hi << 16 | node_flags << 32)
                continue
            size = lo | hi << 16
            if node_flags & ~(_F_BIGDATA | _F_SUBDATA):
                raise _Damage(f"{where}: node {i} has unknown flags {node_flags:#x}")
            if node_flags & _F_BIGDATA:
                if end + 8 > file.page_size:
                    raise _Damage(f"{where}: node {i}'s overflow page number runs past the page")
                (first,) = struct.unpack_from("<Q", page, end)
                _overflow(file, first, size, f"{where}, node {i}", seen)
            elif end + size > file.page_size:
                raise _Damage(f"{where}: node {i}'s value runs past the page ({size} bytes)")
            elif node_flags & _F_SUBDATA:
                if not named or size != _DB.size:
                    raise _Damage(f"{where}: node {i} names a database where none can be")
                key = page[offset + _NODE : end].decode("utf-8", "replace")
                _tree(file, _DB.unpack_from(page, end)[-1], f"database {key!r}", seen, False)


def _overflow(file: _File, first: int, size: int, where: str, seen: set[int]) -> None:
    pages = (size + _HEADER + file.page_size - 1) // file.page_size
    if not first >= 2 or first + pages - 1 > file.last_page:
        raise _Damage(f"{where}: its {size}-byte value would lie past the file's last page")
    page = file.page(first)
    (flags,) = struct.unpack_from("<H", page, 10)
    (count,) = struct.unpack_from("<I", page, 12)
    if not flags & _P_OVERFLOW or count < pages:
        raise _Damage(f"{where}: page {first} is not the overflow page of its value")
    seen.update(range(first, first + pages))
