"""The JSON shape of every history row: one place, shared by the CLI and the HTTP API.

Field names are snake_case and stable (DESIGN.md "user-facing contracts"); instants are
ISO-8601 UTC strings ending in ``Z``; ids and keys are strings.
"""

from __future__ import annotations

import base64
from typing import Any

from .decide import iso, tick_id
from .events import Cursor
from .kernel import BackfillTick, Change, PreviewTick, Requested, TickDetail
from .rows import (
    ConflictRow,
    EvalRow,
    HistoryRow,
    MissedRow,
    RunRow,
    ScheduleRow,
    SensorRow,
    TickRow,
)
from .runs import run_id

__all__ = [
    "backfill_json",
    "change_json",
    "conflict_json",
    "eval_json",
    "history_json",
    "missed_json",
    "preview_json",
    "requested_json",
    "run_json",
    "schedule_json",
    "sensor_json",
    "tick_detail_json",
    "tick_json",
]

JSON = dict[str, Any]


def _time(at: int | None) -> str | None:
    return None if at is None else iso(at)


def _cursor(cursor: Cursor | None) -> str | None:
    if cursor is None:
        return None
    return cursor.value.decode() if cursor.text else base64.b64encode(cursor.value).decode()


def schedule_json(row: ScheduleRow) -> JSON:
    d = row.definition
    last = row.last_scheduled_for
    return {
        "schedule_id": row.schedule_id,
        "enabled": row.enabled,
        "deleted": row.deleted,
        "cron": d.cron,
        "timezone": d.timezone,
        "definition_version": row.definition_version,
        "state_version": row.state_version,
        "last_scheduled_for": _time(last),
        "last_tick_id": None if last is None else tick_id(row.schedule_id, last),
        "next_fire_at": _time(row.next_fire_at),
        "pending_retries": len(row.retries),
        "target": d.run.target,
        "launcher": d.run.launcher,
    }


def tick_json(row: TickRow) -> JSON:
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


def tick_detail_json(detail: TickDetail) -> JSON:
    runs = [run_json(r) for r in detail.runs]
    return tick_json(detail.tick) | {
        "run_status": runs[0]["status"] if runs else None,
        "runs": runs,
    }


def missed_json(row: MissedRow) -> JSON:
    return {
        "schedule_id": row.schedule_id,
        "evaluated_at": iso(row.evaluated_at),
        "ranges": [
            {"reason": r.reason, "first": iso(r.first), "last": iso(r.last)} for r in row.ranges
        ],
    }


def sensor_json(row: SensorRow) -> JSON:
    d = row.definition
    status = "DELETED" if row.deleted else "RUNNING" if row.running else "STOPPED"
    return {
        "sensor_id": row.sensor_id,
        "type": d.type,
        "connector": d.connector,
        "status": status,
        "health": "FAILING" if row.failures else "OK",
        "cursor": _cursor(row.cursor),
        "cursor_version": row.cursor.version if row.cursor else None,
        "state_version": row.state_version,
        "definition_version": row.definition_version,
        "failures": row.failures,
        "evaluations": row.evaluations,
        "next_eval_at": _time(row.next_eval_at),
        "last_eval_at": _time(row.last_eval_at),
        "last_status": row.last_status,
        "last_reason": row.last_reason,
    }


def eval_json(row: EvalRow) -> JSON:
    e = row.evaluation
    return {
        "eval_id": e.eval_id,
        "sensor_id": e.sensor_id,
        "kind": e.kind,
        "status": e.status,
        "reason": row.reason,
        "summary": e.summary,
        "message_id": e.message_id,
        "expected_state_version": e.expected_state_version,
        "cursor_before": _cursor(e.cursor_before),
        "cursor_after": _cursor(e.cursor_after),
        "run_keys": list(e.run_keys),
        "run_ids": [run_id(k) for k in e.run_keys],
        "failures": e.failures,
        "next_eval_at": _time(e.next_eval_at),
        "evaluated_at": iso(row.evaluated_at),
        "seq": row.seq,
        "deduped_run_keys": list(row.deduped),
        "deduped_run_ids": [run_id(k) for k in row.deduped],
    }


def run_json(row: RunRow) -> JSON:
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


def conflict_json(row: ConflictRow) -> JSON:
    return {
        "run_key": row.run_key,
        "run_id": row.run_id,
        "existing_fingerprint": row.existing_fingerprint,
        "conflicting_fingerprint": row.conflicting_fingerprint,
        "requested_by": row.requested_by,
        "origin": row.origin,
        "at": iso(row.at),
        "seq": row.seq,
    }


def preview_json(tick: PreviewTick) -> JSON:
    return {
        "scheduled_for": iso(tick.scheduled_for),
        "local_time": tick.local_time.isoformat(),
        "tick_id": tick.tick_id,
        "dst": tick.dst,
        "action": tick.action,
    }


def change_json(change: Change) -> JSON:
    return change._asdict()


def requested_json(requested: Requested) -> JSON:
    """A run asked for by hand: the run, and whether the key already had one."""
    return run_json(requested.run) | {
        "existing": requested.existing,
        "conflict": requested.conflict,
    }


def history_json(row: HistoryRow) -> JSON:
    return {
        "kind": row.kind,
        "id": row.id,
        "seq": row.seq,
        "at": iso(row.at),
        "change": row.change,
        "old_version": row.old_version,
        "new_version": row.new_version,
        "expected_state_version": row.expected_state_version,
        "cursor_before": _cursor(row.cursor_before),
        "cursor_after": _cursor(row.cursor_after),
        "requested_by": row.requested_by,
        "range_from": _time(row.range_from),
        "range_to": _time(row.range_to),
        "runs": row.runs,
    }


def backfill_json(tick: BackfillTick) -> JSON:
    return {
        "scheduled_for": iso(tick.scheduled_for),
        "local_time": tick.local_time.isoformat(),
        "dst": tick.dst,
        "action": tick.action,
        "run_key": tick.run_key,
        "run_id": tick.run.run_id if tick.run else (run_id(tick.run_key) if tick.run_key else None),
        "status": tick.run.status if tick.run else None,
        "existing": tick.existing,
    }
