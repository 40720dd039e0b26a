"""The shape of every row the CLI and the HTTP API show: one msgspec Struct per shape.

These Structs are the single schema of each shape. The JSON both print is their encoding
(:func:`to_json`), the CLI's table columns are their fields (:func:`columns`, less the few a
view marks ``hidden`` to keep the table narrow), and the HTTP API's OpenAPI document is their
JSON Schema (``msgspec.json.schema_components``). A field added to a view appears in all three
with no other edit.

Field names are snake_case and stable (DESIGN.md "user-facing contracts"); instants are
ISO-8601 UTC strings ending in ``Z``; ids and keys are strings. New fields get defaults
(msgspec's schema-evolution rule), so a client decoding an older answer still succeeds.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any, ClassVar, Final, Literal

import msgspec

from .decide import tick_id
from .events import Cursor, EvalStatus, TickStatus
from .kernel import BackfillTick, Change, Requested, TickDetail
from .preview import PreviewTick
from .rows import (
    ConflictRow,
    EvalRow,
    HistoryChange,
    HistoryRow,
    MissedRow,
    RunRow,
    RunStatus,
    ScheduleRow,
    SensorRow,
    TickRow,
)
from .runs import run_id
from .times import iso

__all__ = [
    "JSON",
    "VIEWS",
    "BackfillView",
    "ChangeView",
    "ConflictView",
    "EvalView",
    "HistoryView",
    "MissedRangeView",
    "MissedView",
    "PreviewView",
    "RequestedView",
    "RunView",
    "ScheduleView",
    "SensorStatus",
    "SensorView",
    "TickDetailView",
    "TickView",
    "View",
    "backfill_json",
    "backfill_view",
    "change_json",
    "change_view",
    "columns",
    "conflict_json",
    "conflict_view",
    "eval_json",
    "eval_view",
    "history_json",
    "history_view",
    "missed_json",
    "missed_view",
    "preview_json",
    "preview_view",
    "requested_json",
    "requested_view",
    "run_json",
    "run_view",
    "schedule_json",
    "schedule_view",
    "sensor_json",
    "sensor_view",
    "tick_detail_json",
    "tick_detail_view",
    "tick_json",
    "tick_view",
    "to_json",
]

#: A JSON object as the views, the CLI and the HTTP API build it (one alias for all of them).
JSON = dict[str, Any]
#: What a sensor is doing, as its view shows it.
SensorStatus = Literal["RUNNING", "STOPPED", "DELETED"]
#: An instant: ISO-8601 UTC, ending in ``Z`` (the OpenAPI document says ``date-time``).
Instant = Annotated[str, msgspec.Meta(extra_json_schema={"format": "date-time"})]


class View(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Base of every view. ``hidden``: fields the CLI's table leaves out (``--json`` and the
    HTTP API show every field). Unknown fields are refused on decode, so a test that decodes
    a real answer into its view proves the answer has exactly the documented shape."""

    hidden: ClassVar[frozenset[str]] = frozenset()


def columns(view: type[View]) -> tuple[str, ...]:
    """The CLI table's columns for ``view``: its fields in order, less ``view.hidden``."""
    return tuple(f for f in view.__struct_fields__ if f not in view.hidden)


def to_json(view: View) -> JSON:
    """``view`` as plain JSON values (what ``--json`` prints and the API sends)."""
    data: JSON = msgspec.to_builtins(view)
    return data


def _time(at: int | None) -> str | None:
    return None if at is None else iso(at)


def _cursor(cursor: Cursor | None) -> str | None:
    if cursor is None:
        return None
    return cursor.value.decode() if cursor.text else base64.b64encode(cursor.value).decode()


# -- the views ----------------------------------------------------------------------------------


class ScheduleView(View, frozen=True):
    """A schedule and its state."""

    hidden: ClassVar[frozenset[str]] = frozenset(
        {"deleted", "state_version", "last_tick_id", "pending_retries", "target", "launcher"}
    )
    schedule_id: str
    enabled: bool
    deleted: bool
    cron: str
    timezone: str
    definition_version: int
    state_version: int
    last_scheduled_for: Instant | None
    last_tick_id: str | None
    next_fire_at: Instant | None
    pending_retries: int
    target: str
    launcher: str | None


class TickView(View, frozen=True):
    """One tick of a schedule: what it did and the runs it requested."""

    hidden: ClassVar[frozenset[str]] = frozenset(
        {
            "schedule_id",
            "scheduled_for",
            "run_id",
            "run_keys",
            "run_ids",
            "attempts",
            "final",
            "dst",
            "evaluated_at",
            "deduped_run_keys",
            "deduped_run_ids",
        }
    )
    tick_id: str
    schedule_id: str
    scheduled_for: Instant
    status: TickStatus
    reason: str | None
    run_key: str | None
    run_id: str | None
    run_keys: list[str]
    run_ids: list[str]
    definition_version: int
    attempts: int
    final: bool
    dst: str | None
    evaluated_at: Instant
    deduped_run_keys: list[str]
    deduped_run_ids: list[str]


class SensorView(View, frozen=True):
    """A sensor and its state."""

    hidden: ClassVar[frozenset[str]] = frozenset(
        {
            "connector",
            "health",
            "cursor_version",
            "definition_version",
            "evaluations",
            "last_eval_at",
            "last_status",
            "last_reason",
        }
    )
    sensor_id: str
    type: Literal["push", "poll"]
    connector: str | None
    status: SensorStatus
    health: Literal["OK", "FAILING"]
    cursor: str | None
    cursor_version: int | None
    state_version: int
    definition_version: int
    failures: int
    evaluations: int
    next_eval_at: Instant | None
    last_eval_at: Instant | None
    last_status: EvalStatus | None
    last_reason: str | None


class EvalView(View, frozen=True):
    """One evaluation of a sensor (a poll or a push message)."""

    hidden: ClassVar[frozenset[str]] = frozenset(
        {
            "sensor_id",
            "kind",
            "summary",
            "message_id",
            "expected_state_version",
            "run_ids",
            "failures",
            "next_eval_at",
            "evaluated_at",
            "seq",
            "deduped_run_keys",
            "deduped_run_ids",
        }
    )
    eval_id: str
    sensor_id: str
    kind: Literal["push", "poll"]
    status: EvalStatus
    reason: str | None
    summary: str | None  # a REFUSED message, described (bounded, printable)
    message_id: str | None
    expected_state_version: int | None
    cursor_before: str | None
    cursor_after: str | None
    run_keys: list[str]
    run_ids: list[str]
    failures: int
    next_eval_at: Instant | None
    evaluated_at: Instant
    seq: int
    deduped_run_keys: list[str]
    deduped_run_ids: list[str]


class RunView(View, frozen=True):
    """A run and its launch state."""

    hidden: ClassVar[frozenset[str]] = frozenset(
        {
            "requested_by",
            "target",
            "launcher",
            "config",
            "tags",
            "fingerprint",
            "created_at",
            "updated_at",
            "next_attempt_at",
            "last_error",
            "detail",
            "claimed_by",
            "retries",
        }
    )
    run_id: str
    run_key: str
    status: RunStatus
    origin: str
    requested_by: str
    target: str
    launcher: str | None
    config: dict[str, Any]
    tags: dict[str, str]
    fingerprint: str
    created_at: Instant
    updated_at: Instant
    attempts: int
    next_attempt_at: Instant | None
    external_id: str | None
    last_error: str | None
    detail: str | None
    claimed_by: str | None
    retries: int


class TickDetailView(TickView, frozen=True):
    """One tick with the status of its run and its runs."""

    run_status: RunStatus | None = None
    runs: list[RunView] = []


class MissedRangeView(View, frozen=True):
    reason: Literal["outside_catchup_window", "over_max_catchup_ticks"]
    first: Instant
    last: Instant


class MissedView(View, frozen=True):
    """The ticks one evaluation dropped, as ranges."""

    hidden: ClassVar[frozenset[str]] = frozenset({"schedule_id"})
    schedule_id: str
    evaluated_at: Instant
    ranges: list[MissedRangeView]


class ConflictView(View, frozen=True):
    """A run key asked for again with other content: recorded, never a second run."""

    hidden: ClassVar[frozenset[str]] = frozenset({"run_id", "origin", "at", "seq"})
    run_key: str
    run_id: str
    existing_fingerprint: str
    conflicting_fingerprint: str
    requested_by: str
    origin: str
    at: Instant
    seq: int


class PreviewView(View, frozen=True):
    """One upcoming tick of a definition and what the current policy would do."""

    scheduled_for: Instant
    local_time: str
    tick_id: str
    dst: str | None
    action: Literal["run", "skip"]


class ChangeView(View, frozen=True):
    """What applying one definition changed."""

    kind: Literal["schedule", "sensor"]
    id: str
    action: Literal["created", "updated", "enabled", "disabled", "unchanged"]
    definition_version: int


class RequestedView(RunView, frozen=True):
    """A run asked for by hand: the run, and whether the key already had one."""

    existing: bool = False
    conflict: bool = False


class HistoryView(View, frozen=True):
    """One change made to a schedule or a sensor."""

    hidden: ClassVar[frozenset[str]] = frozenset(
        {
            "kind",
            "id",
            "expected_state_version",
            "cursor_before",
            "requested_by",
            "range_from",
            "range_to",
            "runs",
        }
    )
    kind: Literal["schedule", "sensor"]
    id: str
    seq: int
    at: Instant
    change: HistoryChange
    old_version: int | None
    new_version: int
    expected_state_version: int | None
    cursor_before: str | None
    cursor_after: str | None
    requested_by: str | None
    range_from: Instant | None
    range_to: Instant | None
    runs: int | None


class BackfillView(View, frozen=True):
    """One tick of a backfill range and the run it requested (or would)."""

    hidden: ClassVar[frozenset[str]] = frozenset({"dst", "run_id"})
    scheduled_for: Instant
    local_time: str
    dst: str | None
    action: Literal["run", "skip"]
    run_key: str | None
    run_id: str | None
    status: RunStatus | None
    existing: bool


#: The CLI's name of each shape (``Output(data, kind)``) and its view.
VIEWS: Final[dict[str, type[View]]] = {
    "schedule": ScheduleView,
    "tick": TickView,
    "missed": MissedView,
    "sensor": SensorView,
    "evaluation": EvalView,
    "run": RunView,
    "conflict": ConflictView,
    "preview": PreviewView,
    "change": ChangeView,
    "history": HistoryView,
    "backfill": BackfillView,
}


# -- rows to views ------------------------------------------------------------------------------


def schedule_view(row: ScheduleRow) -> ScheduleView:
    d = row.definition
    last = row.last_scheduled_for
    return ScheduleView(
        schedule_id=row.schedule_id,
        enabled=row.enabled,
        deleted=row.deleted,
        cron=d.cron,
        timezone=d.timezone,
        definition_version=row.definition_version,
        state_version=row.state_version,
        last_scheduled_for=_time(last),
        last_tick_id=None if last is None else tick_id(row.schedule_id, last),
        next_fire_at=_time(row.next_fire_at),
        pending_retries=len(row.retries),
        target=d.run.target,
        launcher=d.run.launcher,
    )


def _tick_fields(row: TickRow) -> JSON:
    run_ids = [run_id(k) for k in row.run_keys]
    return {
        "tick_id": row.tick_id,
        "schedule_id": row.schedule_id,
        "scheduled_for": iso(row.scheduled_for),
        "status": row.status,
        "reason": row.reason,
        "run_key": row.run_keys[0] if row.run_keys else None,
        "run_id": run_ids[0] if run_ids else None,
        "run_keys": list(row.run_keys),
        "run_ids": run_ids,
        "definition_version": row.definition_version,
        "attempts": row.attempts,
        "final": row.final,
        "dst": row.dst,
        "evaluated_at": iso(row.evaluated_at),
        "deduped_run_keys": list(row.deduped),
        "deduped_run_ids": [run_id(k) for k in row.deduped],
    }


def tick_view(row: TickRow) -> TickView:
    return TickView(**_tick_fields(row))


def tick_detail_view(detail: TickDetail) -> TickDetailView:
    runs = [run_view(r) for r in detail.runs]
    return TickDetailView(
        **_tick_fields(detail.tick), run_status=runs[0].status if runs else None, runs=runs
    )


def missed_view(row: MissedRow) -> MissedView:
    return MissedView(
        schedule_id=row.schedule_id,
        evaluated_at=iso(row.evaluated_at),
        ranges=[MissedRangeView(r.reason, iso(r.first), iso(r.last)) for r in row.ranges],
    )


def sensor_view(row: SensorRow) -> SensorView:
    d = row.definition
    status: SensorStatus = "DELETED" if row.deleted else "RUNNING" if row.running else "STOPPED"
    return SensorView(
        sensor_id=row.sensor_id,
        type=d.type,
        connector=d.connector,
        status=status,
        health="FAILING" if row.failures else "OK",
        cursor=_cursor(row.cursor),
        cursor_version=row.cursor.version if row.cursor else None,
        state_version=row.state_version,
        definition_version=row.definition_version,
        failures=row.failures,
        evaluations=row.evaluations,
        next_eval_at=_time(row.next_eval_at),
        last_eval_at=_time(row.last_eval_at),
        last_status=row.last_status,
        last_reason=row.last_reason,
    )


def eval_view(row: EvalRow) -> EvalView:
    e = row.evaluation
    return EvalView(
        eval_id=e.eval_id,
        sensor_id=e.sensor_id,
        kind=e.kind,
        status=e.status,
        reason=row.reason,
        summary=e.summary,
        message_id=e.message_id,
        expected_state_version=e.expected_state_version,
        cursor_before=_cursor(e.cursor_before),
        cursor_after=_cursor(e.cursor_after),
        run_keys=list(e.run_keys),
        run_ids=[run_id(k) for k in e.run_keys],
        failures=e.failures,
        next_eval_at=_time(e.next_eval_at),
        evaluated_at=iso(row.evaluated_at),
        seq=row.seq,
        deduped_run_keys=list(row.deduped),
        deduped_run_ids=[run_id(k) for k in row.deduped],
    )


def _run_fields(row: RunRow) -> JSON:
    return {
        "run_id": row.run_id,
        "run_key": row.run_key,
        "status": row.status,
        "origin": row.origin,
        "requested_by": row.requested_by,
        "target": row.target,
        "launcher": row.launcher,
        "config": row.config,
        "tags": row.tags,
        "fingerprint": row.fingerprint,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "attempts": row.attempts,
        "next_attempt_at": _time(row.next_attempt_at),
        "external_id": row.external_id,
        "last_error": row.last_error,
        "detail": row.detail,
        "claimed_by": row.claimed_by,
        "retries": row.retries,
    }


def run_view(row: RunRow) -> RunView:
    return RunView(**_run_fields(row))


def conflict_view(row: ConflictRow) -> ConflictView:
    return ConflictView(
        run_key=row.run_key,
        run_id=row.run_id,
        existing_fingerprint=row.existing_fingerprint,
        conflicting_fingerprint=row.conflicting_fingerprint,
        requested_by=row.requested_by,
        origin=row.origin,
        at=iso(row.at),
        seq=row.seq,
    )


def preview_view(tick: PreviewTick) -> PreviewView:
    return PreviewView(
        scheduled_for=iso(tick.scheduled_for),
        local_time=tick.local_time.isoformat(),
        tick_id=tick.tick_id,
        dst=tick.dst,
        action=tick.action,
    )


def change_view(change: Change) -> ChangeView:
    return ChangeView(**change._asdict())


def requested_view(requested: Requested) -> RequestedView:
    return RequestedView(
        **_run_fields(requested.run), existing=requested.existing, conflict=requested.conflict
    )


def history_view(row: HistoryRow) -> HistoryView:
    return HistoryView(
        kind=row.kind,
        id=row.id,
        seq=row.seq,
        at=iso(row.at),
        change=row.change,
        old_version=row.old_version,
        new_version=row.new_version,
        expected_state_version=row.expected_state_version,
        cursor_before=_cursor(row.cursor_before),
        cursor_after=_cursor(row.cursor_after),
        requested_by=row.requested_by,
        range_from=_time(row.range_from),
        range_to=_time(row.range_to),
        runs=row.runs,
    )


def backfill_view(tick: BackfillTick) -> BackfillView:
    return BackfillView(
        scheduled_for=iso(tick.scheduled_for),
        local_time=tick.local_time.isoformat(),
        dst=tick.dst,
        action=tick.action,
        run_key=tick.run_key,
        run_id=tick.run.run_id if tick.run else (run_id(tick.run_key) if tick.run_key else None),
        status=tick.run.status if tick.run else None,
        existing=tick.existing,
    )


# -- the same as plain JSON (what the CLI prints) -----------------------------------------------


def schedule_json(row: ScheduleRow) -> JSON:
    return to_json(schedule_view(row))


def tick_json(row: TickRow) -> JSON:
    return to_json(tick_view(row))


def tick_detail_json(detail: TickDetail) -> JSON:
    return to_json(tick_detail_view(detail))


def missed_json(row: MissedRow) -> JSON:
    return to_json(missed_view(row))


def sensor_json(row: SensorRow) -> JSON:
    return to_json(sensor_view(row))


def eval_json(row: EvalRow) -> JSON:
    return to_json(eval_view(row))


def run_json(row: RunRow) -> JSON:
    return to_json(run_view(row))


def conflict_json(row: ConflictRow) -> JSON:
    return to_json(conflict_view(row))


def preview_json(tick: PreviewTick) -> JSON:
    return to_json(preview_view(tick))


def change_json(change: Change) -> JSON:
    return to_json(change_view(change))


def requested_json(requested: Requested) -> JSON:
    """A run asked for by hand: the run, and whether the key already had one."""
    return to_json(requested_view(requested))


def history_json(row: HistoryRow) -> JSON:
    return to_json(history_view(row))


def backfill_json(tick: BackfillTick) -> JSON:
    return to_json(backfill_view(tick))
