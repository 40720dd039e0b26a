"""The state rebuilt from a log, in plain dicts: what ``verify`` and log compaction replay into.

Same meaning as replaying into a store (:func:`~arcoflow.kernel.store.base.replay_batch`):
idempotency skip, the compare-and-set :func:`~arcoflow.kernel.evolve.check`,
:func:`~arcoflow.kernel.evolve.evolve`, index upkeep. Faster: rows stay decoded until the end
(a row written many times is encoded once) and no sorted structure is kept per insert (each
table is sorted once, when read).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Final

import msgspec

from .codec import Codec
from .evolve import check, evolve
from .rows import INDEXES, ROW_TYPES, Table, from_u64, u64
from .store.base import dedupe_until, idem_key, idem_live, remember_key

__all__ = ["NOT_STATE", "Rebuilt"]

#: Tables that are not state: the log replayed, and log compaction's snapshots of the state.
NOT_STATE: Final = (Table.LOG, Table.SNAPSHOT)


class Rebuilt:
    """The state rebuilt from a log, held in plain dicts: rows decoded (and encoded once, when
    compared), idempotency keys, index entries and meta rows as bytes.

    :meth:`replay` has the meaning of :func:`~arcoflow.kernel.store.base.replay_batch` for each
    envelope; :meth:`items` gives each table in key order as a store would hold it.
    """

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.rows: dict[Table, dict[bytes, msgspec.Struct]] = {t: {} for t in ROW_TYPES}
        self.raw: dict[Table, dict[bytes, bytes]] = {
            t: {} for t in Table if t not in ROW_TYPES and t not in NOT_STATE
        }
        self._idem = self.raw[Table.IDEM]
        self._bytes = _RawDicts(self.raw)
        self._until: dict[int, int | None] = {}  # the current batch -> its keys' expiry
        self.events = 0  # records replayed (or skipped as already applied)

    # -- the view evolve reads and writes ------------------------------------------------------

    def get(self, table: Table, row_key: bytes) -> Any:
        return self.rows[table].get(row_key)

    def put(self, table: Table, row_key: bytes, row: msgspec.Struct | None) -> None:
        rows = self.rows[table]
        indexes = INDEXES.get(table)
        if row is None:  # a prune: drop the row, and each index entry still pointing at it
            old = rows.pop(row_key, None)
            for index, key_of in indexes or ():
                entry = key_of(old) if old is not None else None
                if entry is not None and self.raw[index].get(entry) == row_key:
                    del self.raw[index][entry]
            return
        if indexes:
            old = rows.get(row_key)
            for index, key_of in indexes:
                before = key_of(old) if old is not None else None
                after = key_of(row)
                if before != after:
                    entries = self.raw[index]
                    if before is not None:
                        entries.pop(before, None)
                    if after is not None:
                        entries[after] = row_key
        rows[row_key] = row

    # -- replay ----------------------------------------------------------------------------------

    def replay(self, log: Iterable[tuple[bytes, bytes]]) -> None:
        """Replay log records (``(key, stored bytes)`` pairs, as a scan of the log gives them)
        in order, counting them in :attr:`events`. Raises :class:`Conflict` on a stale
        compare-and-set and :class:`StoreError` on a record that does not decode.

        One loop with everything bound to locals: it runs once per logged event."""
        quick, decode = self.codec.decode_current, self.codec.decode
        idem, put, raw = self._idem, self.put, self._bytes
        events = self.events
        until = self._until
        try:
            for seq_key, record in log:
                envelope = quick(record) or decode(record, f"seq {from_u64(seq_key)}")
                events += 1
                slot = idem_key(envelope.key)
                # Already applied (and within its dedupe horizon): a no-op, as in the store.
                if slot in idem and idem_live(idem[slot], envelope.at):
                    continue
                if envelope.batch not in until:  # the batch's first record: its keys' expiry
                    until.clear()
                    until[envelope.batch] = dedupe_until(self, envelope.event, envelope.at)
                check(self, envelope.event)
                for table, row_key, row in evolve(self, envelope):
                    put(table, row_key, row)
                remember_key(raw, envelope, until[envelope.batch])
        finally:
            self.events = events

    def finish(self, events: int) -> None:
        """The meta row a replay of a non-empty log ends with (not the log's counter
        ``seq``, which is the backend's own and not compared)."""
        if events:
            self.raw[Table.META][b"schema_version"] = u64(self.codec.version)

    def items(self, table: Table) -> Iterator[tuple[bytes, bytes]]:
        """``table`` in key order, as bytes."""
        rows = self.rows.get(table)
        if rows is None:
            raw = self.raw[table]
            return ((k, raw[k]) for k in sorted(raw))
        keys = sorted(rows)
        # map/zip keep the per-row work in C: this runs once per row of the rebuilt state.
        return zip(keys, map(self.codec.encode_row, map(rows.__getitem__, keys)), strict=True)


class _RawDicts:
    """The store-kept tables of a :class:`Rebuilt` as :class:`RawTables`."""

    def __init__(self, raw: dict[Table, dict[bytes, bytes]]) -> None:
        self.raw = raw

    def get(self, table: Table, key: bytes) -> bytes | None:
        return self.raw[table].get(key)

    def put(self, table: Table, key: bytes, value: bytes) -> None:
        self.raw[table][key] = value

    def delete(self, table: Table, key: bytes) -> None:
        self.raw[table].pop(key, None)
