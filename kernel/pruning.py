"""Pruning: which history rows and idempotency keys retention drops, found in time order.

:func:`plan_prune` reads one snapshot and returns small :class:`HistoryPruned` events (at most
``chunk`` items each, one transaction each). Every candidate comes from a time-ordered scan
that stops at the owner's cutoff, so a pass costs O(owners + pruned), never O(history):

* ticks: ``ticks`` is keyed (schedule, scheduled instant) — scanned up to the cutoff;
* evaluations, missed summaries, conflicts: keyed in log order; the scan stops at the first row
  that is not older than the cutoff (log order follows the clock; a row logged out of clock
  order is pruned late, never early);
* finished runs: the ``finished`` index, keyed (origin, finish instant, run id);
* idempotency keys: the ``idem_expiry`` index, keyed (end of horizon, seq).

:func:`~arcoflow.kernel.expiry.prunable` is the one rule this planner and ``evolve`` share:
``evolve`` re-checks each row when the event is applied, so a row that changed since it was
found is kept.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Literal, NamedTuple, TypeVar

import msgspec

from .codec import Codec
from .errors import Pruned
from .events import ExpiredKey, HistoryPruned, PrunedRef, PruneMarkRef
from .expiry import instant_of, prunable
from .reader import (
    CONFLICTS,
    EVALS,
    MISSED,
    RUNS,
    SCHEDULES,
    SENSORS,
    SETTINGS,
    TICKS,
    Reader,
    RowTable,
)
from .retention import RetentionPolicy, effective, retention_of
from .rows import (
    ConflictRow,
    EvalRow,
    MissedRow,
    PrunedMark,
    Table,
    from_u64,
    key,
    u64,
)
from .store.base import Pending, ReadTxn, idem_seq
from .times import iso

__all__ = [
    "Owner",
    "PrunePlan",
    "check_not_pruned",
    "key_is_current",
    "plan_prune",
    "store_policy",
]

Owner = tuple[Literal["schedule", "sensor", "store"], str]
# The history rows kept in log order (pruned up to the first one that is not old enough).
_H = TypeVar("_H", MissedRow, EvalRow, ConflictRow)


def check_not_pruned(mark: PrunedMark | None, owner: Owner, at: int, what: str) -> None:
    """:class:`Pruned` if ``what`` (of ``owner``'s history, at instant ``at``) is older than
    ``owner``'s prune mark: a lookup says it was pruned instead of a bare not-found."""
    if mark is not None and at < mark.before:
        kind, owner_id = owner
        raise Pruned(
            f"{what} was pruned: the history of {kind} {owner_id!r} before "
            f"{iso(mark.before)} is gone (retention)"
        )


class _Found(NamedTuple):
    owner: Owner
    ref: PrunedRef
    instant: int


class PrunePlan(NamedTuple):
    """The events of one prune pass and how much they drop."""

    batches: tuple[tuple[Pending, ...], ...]
    rows: int
    keys: int


def store_policy(txn: ReadTxn, codec: Codec) -> RetentionPolicy:
    """The store-wide policy (none set: keep everything)."""
    row = Reader(txn, codec).get(SETTINGS, b"retention")
    return RetentionPolicy() if row is None else row.policy


class _Planner:
    def __init__(self, txn: ReadTxn, codec: Codec, now: int, limit: int) -> None:
        self.txn = txn
        self.rows = Reader(txn, codec)
        self.now = now
        self.budget = limit
        self.found: list[_Found] = []

    def _take(self, owner: Owner, table: Table, row_key: bytes, row: object, before: int) -> bool:
        if self.budget <= 0:
            return False
        self.budget -= 1
        ref = PrunedRef(table.value, row_key, before)  # type: ignore[arg-type]
        self.found.append(_Found(owner, ref, instant_of(row)))
        return True

    def in_order(
        self,
        owner: Owner,
        table: RowTable[_H],
        prefix: bytes,
        before: int,
    ) -> None:
        """A table keyed in log order: stop at the first row that is not old enough."""
        for k, row in self.rows.items(table, prefix=prefix):
            if not prunable(row, before) or not self._take(owner, table.table, k, row, before):
                return

    def ticks(self, sid: str, before: int) -> None:
        owner: Owner = ("schedule", sid)
        for k, row in self.rows.items(TICKS, prefix=key(sid) + b"\x00", stop=key(sid, before)):
            if prunable(row, before) and not self._take(owner, Table.TICKS, k, row, before):
                return

    def runs(self, owner: Owner, origin: str, before: int) -> None:
        prefix = key(origin) + b"\x00"
        for _, primary in self.txn.scan(Table.FINISHED, prefix=prefix, stop=key(origin, before)):
            row = self.rows.get(RUNS, primary)
            if row is None:
                continue
            if not prunable(row, before) or not self._take(owner, Table.RUNS, primary, row, before):
                if self.budget <= 0:
                    return
                continue
            for link, _ in self.txn.scan(Table.LINKS, prefix=primary + b"\x00"):
                self.found.append(_Found(owner, PrunedRef("links", link, before), 0))

    def keys(self) -> list[ExpiredKey]:
        out: list[ExpiredKey] = []
        for k, idem in self.txn.scan(Table.IDEM_EXPIRY, stop=u64(self.now + 1)):
            if self.budget <= 0:
                break
            self.budget -= 1
            out.append(ExpiredKey(from_u64(k[:8]), from_u64(k[9:17]), idem))
        return out


def plan_prune(txn: ReadTxn, codec: Codec, now: int, limit: int, chunk: int) -> PrunePlan:
    """The prune events due at ``now``, dropping at most about ``limit`` items (a run counts
    with its links), in events of at most ``chunk`` items."""
    default = store_policy(txn, codec)
    planner = _Planner(txn, codec, now, limit)
    expired = planner.keys()
    for srow in planner.rows.scan(SCHEDULES):
        history = effective(retention_of(srow.definition), default).history
        if history is not None and planner.budget > 0 and now - history > 0:
            before = now - history
            sid = srow.schedule_id
            planner.ticks(sid, before)
            planner.in_order(("schedule", sid), MISSED, key(sid) + b"\x00", before)
            planner.runs(("schedule", sid), f"schedule:{sid}", before)
    for nrow in planner.rows.scan(SENSORS):
        history = effective(retention_of(nrow.definition), default).history
        if history is not None and planner.budget > 0 and now - history > 0:
            before = now - history
            nid = nrow.sensor_id
            planner.in_order(("sensor", nid), EVALS, key(nid) + b"\x00", before)
            planner.runs(("sensor", nid), f"sensor:{nid}", before)
    if default.history is not None and now - default.history > 0:
        before = now - default.history
        planner.in_order(("store", "conflicts"), CONFLICTS, b"", before)
        for origin in ("manual", "backfill"):
            planner.runs(("store", "runs"), origin, before)
    return _batches(planner.found, expired, chunk)


def _batches(found: list[_Found], expired: list[ExpiredKey], chunk: int) -> PrunePlan:
    batches: list[tuple[Pending, ...]] = []
    for start in range(0, len(expired), chunk):
        batches.append(_event((), expired[start : start + chunk]))
    group: list[_Found] = []
    for item in found:
        # A run and its links stay in one event: evolve drops links only with their run.
        if len(group) >= chunk and item.ref.table != Table.LINKS.value:
            batches.append(_event(group, ()))
            group = []
        group.append(item)
    if group:
        batches.append(_event(group, ()))
    rows = sum(1 for f in found if f.ref.table != Table.LINKS.value)
    return PrunePlan(tuple(batches), rows, len(expired))


def _event(found: Sequence[_Found], expired: Sequence[ExpiredKey]) -> tuple[Pending, ...]:
    latest: dict[Owner, int] = {}
    for f in found:
        if f.ref.table != Table.LINKS.value:
            latest[f.owner] = max(latest.get(f.owner, 0), f.instant + 1)
    marks = tuple(PruneMarkRef(kind, id_, at) for (kind, id_), at in sorted(latest.items()))
    event = HistoryPruned(tuple(f.ref for f in found), tuple(expired), marks)
    # Named by its content: two daemons that plan the same prune append it once.
    digest = hashlib.sha256(msgspec.msgpack.encode(event)).hexdigest()[:32]
    return (Pending(f"prune/{digest}", event),)


def key_is_current(idem_value: bytes | None, seq: int) -> bool:
    """Whether the idempotency entry still belongs to the append at ``seq`` (a redelivery after
    the horizon re-took the key: that newer entry stays)."""
    return idem_value is not None and idem_seq(idem_value) == seq
