"""Typed row access: one handle per table, its row type the one the store decodes with."""

from __future__ import annotations

import pytest
from arcoflow.kernel import MemoryStore, NotFound, reader
from arcoflow.kernel.errors import CorruptRecord
from arcoflow.kernel.reader import RUNS, SENSORS, Reader, RowTable, require
from arcoflow.kernel.rows import ROW_TYPES, RunRow, SensorRow, Table, key


def test_every_row_table_has_one_typed_handle() -> None:
    handles = [getattr(reader, name) for name in reader.__all__]
    tables = [h for h in handles if isinstance(h, RowTable)]
    assert {h.table: h.row_type for h in tables} == ROW_TYPES
    assert len(tables) == len(ROW_TYPES)


def test_a_handle_with_the_wrong_row_type_is_refused() -> None:
    with pytest.raises(TypeError, match="runs holds"):
        RowTable(Table.RUNS, SensorRow)
    assert RowTable(Table.RUNS, RunRow) == RUNS


def test_require_names_what_is_missing() -> None:
    with pytest.raises(NotFound, match="no sensor 'x'"):
        require(None, "sensor 'x'")
    assert require(7, "seven") == 7


def test_a_dangling_index_entry_is_a_damaged_store() -> None:
    store = MemoryStore()
    with store.read() as txn:
        rows = Reader(txn, store.codec)
        assert rows.get(SENSORS, key("nope")) is None
        assert list(rows.scan(SENSORS)) == []
        with pytest.raises(CorruptRecord, match="outbox entry"):
            rows.indexed(Table.OUTBOX, RUNS, key("gone"))
