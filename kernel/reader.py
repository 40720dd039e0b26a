"""Typed reads of the state rows: one handle per table, one reader over a read transaction.

A :class:`~arcoflow.kernel.rows.Table` names a table but not its row type, so a read through
it alone is ``Any``. A :class:`RowTable` pairs the two (checked against
:data:`~arcoflow.kernel.rows.ROW_TYPES` when it is made), and a :class:`Reader` decodes
through it: ``rows.get(RUNS, k)`` is a ``RunRow | None`` to the type checker, with no
annotation at the call site. :func:`require` turns the ``None`` into :class:`NotFound`.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import Final, Generic, TypeVar

import attrs

from .codec import Codec
from .errors import CorruptRecord, NotFound
from .rows import (
    ROW_TYPES,
    ConflictRow,
    EvalRow,
    HistoryRow,
    MissedRow,
    PrunedMark,
    PrunedRunRow,
    RetentionRow,
    RunLinkRow,
    RunRow,
    ScheduleRow,
    SensorRow,
    Table,
    TickRow,
    key,
    u64,
)
from .store.base import ReadTxn

__all__ = [
    "CONFLICTS",
    "EVALS",
    "HISTORY",
    "LINKS",
    "MISSED",
    "PRUNED",
    "RUNS",
    "RUN_KEYS",
    "SCHEDULES",
    "SENSORS",
    "SETTINGS",
    "TICKS",
    "Reader",
    "RowTable",
    "evaluation_by_id",
    "require",
]

_R = TypeVar("_R")


@attrs.frozen
class RowTable(Generic[_R]):
    """A table of rows with its row type (the one :data:`ROW_TYPES` gives it)."""

    table: Table
    row_type: type[_R]

    def __attrs_post_init__(self) -> None:
        if ROW_TYPES.get(self.table) is not self.row_type:
            raise TypeError(f"{self.table.value} holds {ROW_TYPES.get(self.table)}, not {self}")


SCHEDULES: Final = RowTable(Table.SCHEDULES, ScheduleRow)
TICKS: Final = RowTable(Table.TICKS, TickRow)
MISSED: Final = RowTable(Table.MISSED, MissedRow)
SENSORS: Final = RowTable(Table.SENSORS, SensorRow)
EVALS: Final = RowTable(Table.EVALS, EvalRow)
RUNS: Final = RowTable(Table.RUNS, RunRow)
LINKS: Final = RowTable(Table.LINKS, RunLinkRow)
CONFLICTS: Final = RowTable(Table.CONFLICTS, ConflictRow)
HISTORY: Final = RowTable(Table.HISTORY, HistoryRow)
SETTINGS: Final = RowTable(Table.SETTINGS, RetentionRow)
PRUNED: Final = RowTable(Table.PRUNED, PrunedMark)
RUN_KEYS: Final = RowTable(Table.RUN_KEYS, PrunedRunRow)


def evaluation_by_id(rows: Reader, eval_id: str) -> EvalRow | None:
    """The evaluation of id ``eval_id``, found through its index, or None."""
    primary = rows.txn.get(Table.EVAL_IDS, key(eval_id))
    return None if primary is None else rows.indexed(Table.EVAL_IDS, EVALS, primary)


def require(row: _R | None, what: str) -> _R:
    """``row``, or :class:`NotFound` ``no {what}`` when there is none."""
    if row is None:
        raise NotFound(f"no {what}")
    return row


class Reader:
    """Decoded rows through one read transaction (one consistent snapshot)."""

    __slots__ = ("codec", "txn")

    def __init__(self, txn: ReadTxn, codec: Codec) -> None:
        self.txn = txn
        self.codec = codec

    def get(self, table: RowTable[_R], row_key: bytes) -> _R | None:
        """The row at ``row_key``, or None."""
        data = self.txn.get(table.table, row_key)
        if data is None:
            return None
        return self._decode(table, row_key, data)

    def indexed(self, index: Table, table: RowTable[_R], primary: bytes) -> _R:
        """The row an index entry points at: a dangling entry is a damaged store, never None."""
        row = self.get(table, primary)
        if row is None:
            raise CorruptRecord(f"{index.value} entry {primary!r}", f"no {table.table.value} row")
        return row

    def scan(
        self,
        table: RowTable[_R],
        limit: int | None = None,
        *,
        prefix: bytes = b"",
        start: bytes | None = None,
        stop: bytes | None = None,
        reverse: bool = False,
    ) -> Iterator[_R]:
        """The rows in key order (see :meth:`ReadTxn.scan`), at most ``limit`` of them."""
        items = self.items(table, prefix=prefix, start=start, stop=stop, reverse=reverse)
        for _, row in islice(items, limit):
            yield row

    def items(
        self,
        table: RowTable[_R],
        *,
        prefix: bytes = b"",
        start: bytes | None = None,
        stop: bytes | None = None,
        reverse: bool = False,
    ) -> Iterator[tuple[bytes, _R]]:
        """:meth:`scan` with each row's key."""
        items = self.txn.scan(table.table, prefix=prefix, start=start, stop=stop, reverse=reverse)
        for row_key, data in items:
            yield row_key, self._decode(table, row_key, data)

    def follow(
        self,
        index: Table,
        table: RowTable[_R],
        limit: int | None = None,
        *,
        prefix: bytes = b"",
        start: bytes | None = None,
        stop: bytes | None = None,
        reverse: bool = False,
    ) -> Iterator[_R]:
        """The rows an index's entries point at, in index order, at most ``limit`` of them."""
        entries = self.txn.scan(index, prefix=prefix, start=start, stop=stop, reverse=reverse)
        for n, (_, primary) in enumerate(entries):
            if limit is not None and n >= limit:
                return
            yield self.indexed(index, table, primary)

    def due(self, index: Table, at: int, limit: int | None = None) -> list[str]:
        """The ids a due index (keyed by instant, then id) holds at or before ``at``."""
        entries = islice(self.txn.scan(index, stop=u64(at + 1)), limit)
        return [k[9:].decode() for k, _ in entries]  # 8 bytes of instant, a NUL, the id

    def _decode(self, table: RowTable[_R], row_key: bytes, data: bytes) -> _R:
        return self.codec.decode_row(data, table.row_type, f"{table.table.value} {row_key!r}")
