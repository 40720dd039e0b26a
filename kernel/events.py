"""Every fact arcoflow records: one tagged union of frozen msgspec Structs.

Tags are explicit, stable strings (never class names), so classes can be renamed freely.
Evolution rules (msgspec's): a new field gets a default; a field is never retyped or reused;
anything else is a new ``schema_version`` with an upcaster in :mod:`arcoflow.kernel.codec`.

Events carry *outcomes*, not inputs to recompute: a schedule event stores the ``next_fire_at``
that :func:`~arcoflow.kernel.decide` computed, so replaying the log never depends on the zone
database or the cron library of the machine that replays it.
"""

from __future__ import annotations

from typing import Any, Final, Literal, get_args

import msgspec

from .definitions import ScheduleDefinition, SensorDefinition
from .retention import RetentionPolicy

__all__ = [
    "EVAL_STATUSES",
    "TICK_STATUSES",
    "Cursor",
    "Event",
    "ExpiredKey",
    "HistoryPruned",
    "MissedRange",
    "PruneMarkRef",
    "PrunedRef",
    "RetentionSet",
    "Retry",
    "RunClaimed",
    "RunCompleted",
    "RunLaunchFailed",
    "RunLaunched",
    "RunRequested",
    "RunRetried",
    "ScheduleAdvanced",
    "ScheduleBackfilled",
    "ScheduleDefined",
    "ScheduleDeleted",
    "ScheduleToggled",
    "SensorCursorSet",
    "SensorDefined",
    "SensorDeleted",
    "SensorEvaluated",
    "SensorToggled",
    "TickRecorded",
    "TicksMissed",
]

TickStatus = Literal["TRIGGERED", "SKIPPED", "FAILED"]
EvalStatus = Literal["REQUESTED", "NO_DATA", "SKIPPED", "FAILED", "REFUSED"]
#: The statuses as tuples, for argument choices and checks (taken from the types, never copied).
TICK_STATUSES: Final[tuple[TickStatus, ...]] = get_args(TickStatus)
EVAL_STATUSES: Final[tuple[EvalStatus, ...]] = get_args(EvalStatus)


class _Event(msgspec.Struct, frozen=True, tag_field="type", forbid_unknown_fields=False):
    pass


class Cursor(msgspec.Struct, frozen=True):
    """A connector's opaque position plus the cursor format version the connector declared.

    Stored as bytes; ``text`` remembers that the connector handed over a ``str``, so it gets a
    ``str`` back.
    """

    value: bytes
    version: int = 1
    text: bool = True

    def __post_init__(self) -> None:
        # Also run when a stored cursor is decoded: a text cursor whose bytes are not UTF-8 (a
        # damaged page) is then a decode error of its record, not a crash of whoever reads it.
        if self.text:
            try:
                self.value.decode()
            except UnicodeDecodeError as exc:
                raise ValueError(f"a text cursor must be UTF-8: {exc}") from None

    @classmethod
    def of(cls, value: str | bytes, version: int = 1) -> Cursor:
        if isinstance(value, str):
            return cls(value.encode(), version, True)
        return cls(bytes(value), version, False)

    def native(self) -> str | bytes:
        """The cursor as the connector gave it."""
        return self.value.decode() if self.text else self.value


class Retry(msgspec.Struct, frozen=True):
    """A failed tick waiting for another attempt under the same tick id."""

    scheduled_for: int
    attempts: int


class MissedRange(msgspec.Struct, frozen=True):
    """Ticks dropped by one evaluation, as a range (never one row per tick)."""

    reason: Literal["outside_catchup_window", "over_max_catchup_ticks"]
    first: int
    last: int


# -- schedules ---------------------------------------------------------------------------------


class ScheduleDefined(_Event, frozen=True, tag="schedule.defined"):
    """A schedule was created or its content changed (``definition_version`` is the new one)."""

    schedule_id: str
    definition: ScheduleDefinition
    definition_version: int
    expected_version: int  # CAS on the schedule row's state_version
    eligible_from: int  # ticks before this instant never run (creation or re-enable)
    next_fire_at: int | None


class ScheduleToggled(_Event, frozen=True, tag="schedule.toggled"):
    schedule_id: str
    enabled: bool
    expected_version: int
    eligible_from: int
    next_fire_at: int | None


class ScheduleDeleted(_Event, frozen=True, tag="schedule.deleted"):
    schedule_id: str
    expected_version: int


class ScheduleAdvanced(_Event, frozen=True, tag="schedule.advanced"):
    """One evaluation consumed ticks up to ``last_scheduled_for`` (CAS on the schedule row)."""

    schedule_id: str
    expected_version: int
    last_scheduled_for: int | None
    next_fire_at: int | None
    retries: tuple[Retry, ...] = ()


class TickRecorded(_Event, frozen=True, tag="tick.recorded"):
    tick_id: str
    schedule_id: str
    scheduled_for: int
    status: TickStatus
    definition_version: int
    attempt: int
    reason: str | None = None
    run_keys: tuple[str, ...] = ()
    dst: str | None = None
    final: bool = True  # False for a FAILED tick that will be retried


class TicksMissed(_Event, frozen=True, tag="ticks.missed"):
    schedule_id: str
    ranges: tuple[MissedRange, ...]


# -- sensors -----------------------------------------------------------------------------------


class SensorDefined(_Event, frozen=True, tag="sensor.defined"):
    sensor_id: str
    definition: SensorDefinition
    definition_version: int
    expected_definition_version: int  # CAS: definitions never stomp each other
    next_eval_at: int | None


class SensorToggled(_Event, frozen=True, tag="sensor.toggled"):
    sensor_id: str
    running: bool
    next_eval_at: int | None


class SensorDeleted(_Event, frozen=True, tag="sensor.deleted"):
    sensor_id: str


class SensorEvaluated(_Event, frozen=True, tag="sensor.evaluated"):
    """One push delivery or one poll. A poll carries ``expected_state_version`` (its CAS).

    ``REFUSED`` (push only, recorded by :meth:`~arcoflow.kernel.Kernel.ingest_many` with
    ``record_refusals``): a message the kernel would not take, with the reason and ``summary``,
    a bounded printable description of the message (never its raw bytes); it requests no run,
    consumes no message id and leaves ``state_version`` alone."""

    eval_id: str
    sensor_id: str
    kind: Literal["push", "poll"]
    status: EvalStatus
    reason: str | None = None
    message_id: str | None = None
    expected_state_version: int | None = None
    cursor_before: Cursor | None = None
    cursor_after: Cursor | None = None
    run_keys: tuple[str, ...] = ()
    failures: int = 0  # consecutive failures after this evaluation
    next_eval_at: int | None = None
    summary: str | None = None  # a REFUSED message, described (bounded, printable)


# -- runs --------------------------------------------------------------------------------------


class RunRequested(_Event, frozen=True, tag="run.requested"):
    """A requester asks for the run named ``run_key``.

    New key: the run is created. Same key and fingerprint: the requester is linked to the
    existing run. Same key, other fingerprint: a conflict is recorded; still one run.
    """

    run_id: str
    run_key: str
    fingerprint: str
    origin: str
    requested_by: str
    target: str
    launcher: str | None
    config: dict[str, Any]
    tags: dict[str, str]


class RunClaimed(_Event, frozen=True, tag="run.claimed"):
    """A runtime claims attempt ``attempt`` of a due run until ``lease_until`` (the run's next
    attempt moves there: no other runtime may launch it meanwhile). CAS: the run is still
    ``REQUESTED`` at ``attempt - 1`` attempts and still due at ``due_at``, as read."""

    run_id: str
    attempt: int
    claimer: str
    due_at: int
    lease_until: int


class RunLaunched(_Event, frozen=True, tag="run.launched"):
    """Attempt ``attempt`` started. CAS (when ``checked``): the run is still ``REQUESTED`` at
    ``attempt - 1`` attempts and, when ``claimer`` is set, still claimed by it. Events logged
    before the check existed have ``checked=False`` and replay as they were."""

    run_id: str
    attempt: int
    external_id: str | None
    claimer: str | None = None
    checked: bool = False


class RunLaunchFailed(_Event, frozen=True, tag="run.launch_failed"):
    """Attempt ``attempt`` failed (same CAS as :class:`RunLaunched`)."""

    run_id: str
    attempt: int
    error: str
    next_attempt_at: int | None  # None: given up
    claimer: str | None = None
    checked: bool = False


class RunCompleted(_Event, frozen=True, tag="run.completed"):
    run_id: str
    status: Literal["SUCCEEDED", "FAILED"]
    detail: str | None = None


# -- operator verbs ------------------------------------------------------------------------------
#
# Tags added after schema version 1 shipped. They need no new version: no older store holds
# them, and an older arcoflow that meets one reports a CorruptRecord naming the unknown tag
# (never a silent misread).


class SensorCursorSet(_Event, frozen=True, tag="sensor.cursor_set"):
    """An operator set (or, with ``cursor=None``, reset) a poll sensor's cursor: a CAS on its
    ``state_version``, which then moves by one, exactly like an accepted poll."""

    sensor_id: str
    expected_state_version: int
    cursor_before: Cursor | None
    cursor: Cursor | None
    requested_by: str = "api"


class ScheduleBackfilled(_Event, frozen=True, tag="schedule.backfilled"):
    """An operator backfilled ``start..end`` (inclusive) of a schedule; the run requests follow
    in the same append. It heads that append: the backfill's identity, so a backfill whose first
    run already existed is not taken for a repeat of an earlier one."""

    schedule_id: str
    start: int
    end: int
    runs: int  # run requests made (ticks the DST policy skips make none)
    requested_by: str = "api"


class RunRetried(_Event, frozen=True, tag="run.retried"):
    """An operator sent a ``GAVE_UP`` run back to the launch outbox with a fresh attempt budget
    (CAS: the run is still ``GAVE_UP`` after ``expected_attempts`` attempts)."""

    run_id: str
    expected_attempts: int
    requested_by: str = "api"


# -- retention -------------------------------------------------------------------------------


class RetentionSet(_Event, frozen=True, tag="retention.set"):
    """The store-wide retention policy changed (CAS on its version)."""

    policy: RetentionPolicy
    expected_version: int


class PrunedRef(msgspec.Struct, frozen=True):
    """A history row a prune found older than ``before`` (its owner's cutoff)."""

    table: Literal["ticks", "evals", "missed", "conflicts", "runs", "links"]
    key: bytes
    before: int


class ExpiredKey(msgspec.Struct, frozen=True):
    """An idempotency key whose dedupe horizon ended at ``until`` (logged at ``seq``)."""

    until: int
    seq: int
    key: bytes


class PruneMarkRef(msgspec.Struct, frozen=True):
    """History of ``kind``/``id`` before ``before`` may be gone after this prune."""

    kind: Literal["schedule", "sensor", "store"]
    id: str
    before: int


class HistoryPruned(_Event, frozen=True, tag="history.pruned"):
    """One small prune transaction: the rows and idempotency keys it drops, found through
    time-ordered indexes. ``evolve`` re-checks every row (a row that became young or
    unfinished since is kept), so a replay of the log drops exactly what the live store did."""

    rows: tuple[PrunedRef, ...] = ()
    keys: tuple[ExpiredKey, ...] = ()
    marks: tuple[PruneMarkRef, ...] = ()


Event = (
    ScheduleDefined
    | ScheduleToggled
    | ScheduleDeleted
    | ScheduleAdvanced
    | TickRecorded
    | TicksMissed
    | SensorDefined
    | SensorToggled
    | SensorDeleted
    | SensorEvaluated
    | RunRequested
    | RunClaimed
    | RunLaunched
    | RunLaunchFailed
    | RunCompleted
    | SensorCursorSet
    | RunRetried
    | ScheduleBackfilled
    | RetentionSet
    | HistoryPruned
)
