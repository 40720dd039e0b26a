"""The snapshot of log compaction: the state at a sequence number, stored in the store.

Stored in the ``snapshot`` table as ``u64(S) + table name + NUL + row key -> row bytes``, for
every table but the log: generic over the store's tables, so a table added later needs no code
here. The META row ``snapshot`` names the one complete snapshot (absent: the log is whole);
:func:`~arcoflow.kernel.verify.verify` starts from it and replays only the log after ``S``.
Compaction (:mod:`~arcoflow.kernel.compact`) writes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from .codec import Codec
from .errors import StoreError
from .rebuild import Rebuilt
from .rows import ROW_TYPES, Table, from_u64, u64
from .store.base import ReadTxn

__all__ = ["MARKER", "load", "row_key", "rows", "snapshot_seq"]

#: The META row naming the complete snapshot (absent: the log is whole).
MARKER: Final = b"snapshot"


def snapshot_seq(txn: ReadTxn) -> int:
    """The sequence number of the store's snapshot; 0 when the log is whole."""
    data = txn.get(Table.META, MARKER)
    return 0 if data is None else from_u64(data)


def row_key(seq: int, table: Table, row_key: bytes) -> bytes:
    return u64(seq) + table.value.encode() + b"\x00" + row_key


_TABLES: Final = {t.value.encode(): t for t in Table}


def rows(txn: ReadTxn, seq: int) -> Iterator[tuple[Table, bytes, bytes]]:
    """The rows of the snapshot at ``seq``: (table, row key, row bytes)."""
    for k, value in txn.scan(Table.SNAPSHOT, prefix=u64(seq)):
        name, _, row_key = k[8:].partition(b"\x00")
        table = _TABLES.get(name)
        if table is None:  # written by a newer arcoflow, with a table this one lacks
            raise StoreError(f"snapshot at seq {seq} holds rows of unknown table {name!r}")
        yield table, row_key, value


def load(txn: ReadTxn, codec: Codec) -> tuple[int, Rebuilt]:
    """The seq of the store's snapshot (0: none) and its state, ready to replay the log
    after it."""
    seq = snapshot_seq(txn)
    rebuilt = Rebuilt(codec)
    for table, row_key, value in rows(txn, seq) if seq else ():
        row_type = ROW_TYPES.get(table)
        if row_type is None:
            rebuilt.raw[table][row_key] = value
        else:
            where = f"snapshot {seq} {table.value} row {row_key!r}"
            rebuilt.rows[table][row_key] = codec.decode_row(value, row_type, where)
    return seq, rebuilt
