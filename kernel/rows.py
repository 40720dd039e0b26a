"""Materialised state: the rows that :func:`~arcoflow.kernel.evolve.evolve` writes.

Each table maps a key to one encoded row. Secondary indexes are *derived*: a table lists the
functions that map a row to its index keys, and the store keeps them in step on every write, so
an index can never disagree with its row. Due work (``next_fire_at``, ``next_eval_at``, the
launch outbox) is found through those indexes, never by scanning definitions.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from enum import StrEnum
from typing import Any, Final, Literal, get_args

import msgspec

from .definitions import ScheduleDefinition, SensorDefinition
from .errors import CorruptRecord
from .events import Cursor, EvalStatus, MissedRange, Retry, SensorEvaluated, TickStatus
from .retention import RetentionPolicy
from .runs import dedupe_reason

__all__ = [
    "FINISHED",
    "RUN_STATUSES",
    "ConflictRow",
    "EvalRow",
    "HistoryChange",
    "HistoryRow",
    "MissedRow",
    "PrunedMark",
    "PrunedRunRow",
    "RetentionRow",
    "RunLinkRow",
    "RunRow",
    "RunStatus",
    "ScheduleRow",
    "SensorRow",
    "Table",
    "TickRow",
    "run_id_of_slot",
    "run_slot",
]

RunStatus = Literal["REQUESTED", "LAUNCHED", "SUCCEEDED", "FAILED", "GAVE_UP"]
#: The run statuses as a tuple, for argument choices and checks.
RUN_STATUSES: Final[tuple[RunStatus, ...]] = get_args(RunStatus)


class _Row(msgspec.Struct, frozen=True):
    pass


class ScheduleRow(_Row, frozen=True):
    schedule_id: str
    definition: ScheduleDefinition
    definition_version: int
    enabled: bool
    deleted: bool
    state_version: int  # +1 on every change to this row: the CAS token of evaluations
    eligible_from: int  # no tick before this instant runs (created or re-enabled here)
    last_scheduled_for: int | None
    next_fire_at: int | None
    retries: tuple[Retry, ...]
    updated_at: int
    last_tick_id: str | None = None


class TickRow(_Row, frozen=True):
    tick_id: str
    schedule_id: str
    scheduled_for: int
    status: TickStatus
    definition_version: int
    attempts: int
    reason: str | None
    run_keys: tuple[str, ...]
    dst: str | None
    final: bool
    evaluated_at: int
    deduped: tuple[str, ...] = ()  # run keys that already had a run: this tick made none


class MissedRow(_Row, frozen=True):
    schedule_id: str
    evaluated_at: int
    ranges: tuple[MissedRange, ...]
    seq: int


class SensorRow(_Row, frozen=True):
    sensor_id: str
    definition: SensorDefinition
    definition_version: int
    running: bool
    deleted: bool
    state_version: int  # +1 per accepted poll evaluation: the CAS token of polls
    cursor: Cursor | None
    failures: int
    next_eval_at: int | None
    updated_at: int
    evaluations: int = 0
    last_eval_at: int | None = None
    last_status: EvalStatus | None = None
    last_reason: str | None = None
    toggles: int = 0  # starts and stops so far: names each toggle uniquely (its idempotency key)


class EvalRow(_Row, frozen=True):
    seq: int
    evaluated_at: int
    evaluation: SensorEvaluated
    deduped: tuple[str, ...] = ()  # run keys that already had a run: no new run for them

    @property
    def reason(self) -> str | None:
        """Why this evaluation made no run (or no new run): the connector's reason, else the
        dedupe hits."""
        return self.evaluation.reason or dedupe_reason(self.deduped)


class RunRow(_Row, frozen=True):
    run_id: str
    run_key: str
    fingerprint: str
    origin: str
    requested_by: str
    target: str
    launcher: str | None
    config: dict[str, Any]
    tags: dict[str, str]
    status: RunStatus
    created_seq: int
    created_at: int
    updated_at: int
    attempts: int = 0
    next_attempt_at: int | None = None
    external_id: str | None = None
    last_error: str | None = None
    detail: str | None = None
    claimed_by: str | None = None  # the runtime that claimed the latest launch attempt
    retries: int = 0  # operator retries of a GAVE_UP run
    attempt_base: int = 0  # attempts before the last retry: the launch budget counts from here


class RunLinkRow(_Row, frozen=True):
    run_id: str
    requested_by: str
    at: int


HistoryChange = Literal[
    "created",
    "updated",
    "enabled",
    "disabled",
    "deleted",
    "started",
    "stopped",
    "cursor_set",
    "cursor_reset",
    "backfilled",
]


class HistoryRow(_Row, frozen=True):
    """One change an operator or a definitions file made to a schedule or a sensor (evaluations
    have their own history: ticks and evaluations). Versions are definition versions; a cursor
    change also names the ``state_version`` it was made at and the cursors."""

    kind: Literal["schedule", "sensor"]
    id: str
    seq: int
    at: int
    change: HistoryChange
    old_version: int | None  # the definition version before (None: there was none)
    new_version: int
    expected_state_version: int | None = None  # a cursor change: its CAS version
    cursor_before: Cursor | None = None
    cursor_after: Cursor | None = None
    requested_by: str | None = None
    range_from: int | None = None  # a backfill: its range (inclusive) and the runs it requested
    range_to: int | None = None
    runs: int | None = None


class ConflictRow(_Row, frozen=True):
    run_key: str
    run_id: str
    existing_fingerprint: str
    conflicting_fingerprint: str
    requested_by: str
    origin: str
    at: int
    seq: int


class RetentionRow(_Row, frozen=True):
    """The store-wide retention policy (``[retention]``); ``version`` is its CAS token."""

    policy: RetentionPolicy
    version: int
    at: int


class PrunedMark(_Row, frozen=True):
    """History of ``kind``/``id`` older than ``before`` may have been pruned (at ``at``): what
    history queries report instead of a silent gap. ``kind`` ``store`` holds the store-wide
    history: ``runs`` (manual and backfill runs) and ``conflicts``."""

    kind: Literal["schedule", "sensor", "store"]
    id: str
    before: int
    at: int


class PrunedRunRow(_Row, frozen=True, array_like=True):
    """What is left of a pruned run: its key stays taken forever, so a late request for the
    same key makes no second run. Nothing but the key: about 30 bytes a run, under the 16-byte
    run id (:func:`run_slot`), against about 2 KB of history."""


_U64 = struct.Struct(">Q")


def u64(value: int) -> bytes:
    """Big-endian, so byte order is numeric order in LMDB and in the memory store."""
    return _U64.pack(value)


def from_u64(data: bytes) -> int:
    """The number ``u64`` wrote. Stored bytes of another length (a damaged page) are a
    :class:`~arcoflow.kernel.errors.CorruptRecord`, not a ``struct.error`` traceback."""
    try:
        return int(_U64.unpack(data)[0])
    except struct.error:
        raise CorruptRecord("a stored number", f"{len(data)} bytes, not 8") from None


def run_slot(run_id: str) -> bytes:
    """The ``run_keys`` key of a run id: its 16 UUID bytes (a run id that is not a UUID, which
    only a hand-made event can carry, as its text)."""
    try:
        return uuid.UUID(run_id).bytes
    except ValueError:
        return run_id.encode()


def run_id_of_slot(slot: bytes) -> str:
    """The run id a ``run_keys`` key stands for."""
    return str(uuid.UUID(bytes=slot)) if len(slot) == 16 else slot.decode()


def key(*parts: str | int) -> bytes:
    """A composite key: strings joined by NUL (ids never contain one), ints as big-endian u64."""
    if len(parts) == 1:  # the common case, once or twice per replayed event
        only = parts[0]
        return _U64.pack(only) if isinstance(only, int) else only.encode()
    return b"\x00".join([_U64.pack(p) if isinstance(p, int) else p.encode() for p in parts])


class Table(StrEnum):
    """Every table of the store. Values are the LMDB database names."""

    LOG = "log"  # u64(seq) -> envelope
    IDEM = "idem"  # idempotency key -> (seq, count)
    META = "meta"
    SCHEDULES = "schedules"  # schedule_id -> ScheduleRow
    TICKS = "ticks"  # schedule_id, u64(at) -> TickRow
    MISSED = "missed"  # schedule_id, u64(seq) -> MissedRow
    SENSORS = "sensors"  # sensor_id -> SensorRow
    EVALS = "evals"  # sensor_id, u64(seq) -> EvalRow
    RUNS = "runs"  # run_id -> RunRow
    LINKS = "links"  # run_id, requested_by -> RunLinkRow
    CONFLICTS = "conflicts"  # u64(seq) -> ConflictRow
    HISTORY = "history"  # kind, id, u64(seq) -> HistoryRow
    # Indexes: index key -> primary key, maintained by the store from INDEXES below.
    DUE_SCHEDULES = "due_schedules"
    DUE_SENSORS = "due_sensors"
    EVAL_IDS = "eval_ids"
    RUN_ORDER = "run_order"
    OUTBOX = "outbox"
    LAUNCHED = "launched"  # launcher, run_id -> run_id of LAUNCHED runs (completion checks)
    # Log compaction: u64(seq), table, NUL, row key -> the row as it was at seq (snapshot.py).
    SNAPSHOT = "snapshot"
    # Retention (PostgreSQL migration 4 creates these).
    SETTINGS = "settings"  # b"retention" -> RetentionRow
    PRUNED = "pruned"  # kind, id -> PrunedMark
    RUN_KEYS = "run_keys"  # run_slot(run_id) -> PrunedRunRow (pruned runs' keys stay taken)
    FINISHED = "finished"  # index: origin, u64(updated_at), run_id -> run_id of finished runs
    IDEM_EXPIRY = "idem_expiry"  # u64(until), u64(seq) -> idempotency key (kept by the store)


ROW_TYPES: Final[dict[Table, type[_Row]]] = {
    Table.SCHEDULES: ScheduleRow,
    Table.TICKS: TickRow,
    Table.MISSED: MissedRow,
    Table.SENSORS: SensorRow,
    Table.EVALS: EvalRow,
    Table.RUNS: RunRow,
    Table.LINKS: RunLinkRow,
    Table.CONFLICTS: ConflictRow,
    Table.HISTORY: HistoryRow,
    Table.SETTINGS: RetentionRow,
    Table.PRUNED: PrunedMark,
    Table.RUN_KEYS: PrunedRunRow,
}


def _due_schedule(row: Any) -> bytes | None:
    r: ScheduleRow = row
    live = r.enabled and not r.deleted and r.next_fire_at is not None
    return key(r.next_fire_at, r.schedule_id) if live else None  # type: ignore[arg-type]


def _due_sensor(row: Any) -> bytes | None:
    r: SensorRow = row
    live = r.running and not r.deleted and r.definition.type == "poll"
    return key(r.next_eval_at, r.sensor_id) if live and r.next_eval_at is not None else None


def _eval_id(row: Any) -> bytes | None:
    return key(row.evaluation.eval_id)


def _run_order(row: Any) -> bytes | None:
    return u64(row.created_seq)


def _outbox(row: Any) -> bytes | None:
    r: RunRow = row
    due = r.status == "REQUESTED" and r.launcher is not None and r.next_attempt_at is not None
    return key(r.next_attempt_at, r.run_id) if due else None  # type: ignore[arg-type]


def _launched(row: Any) -> bytes | None:
    r: RunRow = row
    live = r.status == "LAUNCHED" and r.launcher is not None
    return key(r.launcher, r.run_id) if live else None  # type: ignore[arg-type]


#: Run states that are final: only runs in these are ever pruned. ``GAVE_UP`` is not among them:
#: an operator may still retry it.
FINISHED: Final = frozenset({"SUCCEEDED", "FAILED"})


def _finished(row: Any) -> bytes | None:
    r: RunRow = row
    return key(r.origin, r.updated_at, r.run_id) if r.status in FINISHED else None


#: For each table, its indexes: (index table, row -> index key or None).
INDEXES: Final[dict[Table, tuple[tuple[Table, Callable[[Any], bytes | None]], ...]]] = {
    Table.SCHEDULES: ((Table.DUE_SCHEDULES, _due_schedule),),
    Table.SENSORS: ((Table.DUE_SENSORS, _due_sensor),),
    Table.EVALS: ((Table.EVAL_IDS, _eval_id),),
    Table.RUNS: (
        (Table.RUN_ORDER, _run_order),
        (Table.OUTBOX, _outbox),
        (Table.LAUNCHED, _launched),
        (Table.FINISHED, _finished),
    ),
}
