"""``evolve``: how each event changes the rows it touches. Pure, total, deterministic.

Every state change arcoflow makes is in this module, one small function per event, so it reads
as the transition table of the spec (``spec/SPEC.md``). :func:`check` holds the only
preconditions: the compare-and-set versions. Idempotency (an already applied key changes
nothing) is enforced once, by the store's apply step, for every event alike.

``evolve(view, envelope)`` reads only the rows the event names (through ``view``) and returns
the rows to write; it never sees the whole state, which is why memory stays O(rows touched).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Literal, Protocol, TypeVar

import msgspec

from .codec import Envelope
from .errors import Conflict
from .events import (
    Event,
    HistoryPruned,
    RetentionSet,
    RunClaimed,
    RunCompleted,
    RunLaunched,
    RunLaunchFailed,
    RunRequested,
    RunRetried,
    ScheduleAdvanced,
    ScheduleBackfilled,
    ScheduleDefined,
    ScheduleDeleted,
    ScheduleToggled,
    SensorCursorSet,
    SensorDefined,
    SensorDeleted,
    SensorEvaluated,
    SensorToggled,
    TickRecorded,
    TicksMissed,
)
from .expiry import prunable
from .rows import (
    ConflictRow,
    EvalRow,
    HistoryChange,
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
    run_slot,
    u64,
)
from .runs import dedupe_reason, run_id

__all__ = ["Put", "View", "check", "evolve"]

Put = tuple[Table, bytes, msgspec.Struct | None]  # None: delete the row (a prune)


class View(Protocol):
    """Point reads of the current rows (including writes earlier in the same batch)."""

    def get(self, table: Table, row_key: bytes) -> Any: ...


def schedule_of(view: View, schedule_id: str) -> ScheduleRow | None:
    row: ScheduleRow | None = view.get(Table.SCHEDULES, key(schedule_id))
    return row


def sensor_of(view: View, sensor_id: str) -> SensorRow | None:
    row: SensorRow | None = view.get(Table.SENSORS, key(sensor_id))
    return row


def run_of(view: View, run_id: str) -> RunRow | None:
    row: RunRow | None = view.get(Table.RUNS, key(run_id))
    return row


def check(view: View, event: Event) -> None:
    """Raise :class:`Conflict` if ``event``'s compare-and-set version is stale.

    Dispatched on the event's type (most events carry no version: one dict lookup), because
    replay runs it once per logged event."""
    checker = _CHECKS.get(type(event))
    if checker is not None:
        checker(view, event)


def _check_schedule(
    view: View, e: ScheduleDefined | ScheduleToggled | ScheduleDeleted | ScheduleAdvanced
) -> None:
    row = schedule_of(view, e.schedule_id)
    _expect(f"schedule {e.schedule_id!r}", e.expected_version, row.state_version if row else 0)


def _check_sensor_definition(view: View, e: SensorDefined) -> None:
    row = sensor_of(view, e.sensor_id)
    _expect(
        f"sensor {e.sensor_id!r} definition",
        e.expected_definition_version,
        row.definition_version if row else 0,
    )


def _check_sensor_state(view: View, e: SensorEvaluated | SensorCursorSet) -> None:
    expected = e.expected_state_version
    if expected is None:  # a push delivery: no poll epoch to compare
        return
    row = sensor_of(view, e.sensor_id)
    _expect(f"sensor {e.sensor_id!r}", expected, row.state_version if row else 0)


def _check_attempt(view: View, e: RunClaimed | RunLaunched | RunLaunchFailed) -> None:
    if isinstance(e, RunClaimed) or e.checked:  # records older than the check replay as written
        _expect_attempt(run_of(view, e.run_id), e)


def _check_retry(view: View, e: RunRetried) -> None:
    run = run_of(view, e.run_id)
    if run is None or run.status != "GAVE_UP" or run.attempts != e.expected_attempts:
        raise Conflict(
            f"run {e.run_id} (to retry, GAVE_UP)",
            e.expected_attempts,
            run.attempts if run else 0,
            "attempts",
        )


def _check_retention(view: View, e: RetentionSet) -> None:
    current: RetentionRow | None = view.get(Table.SETTINGS, _RETENTION)
    _expect("retention policy", e.expected_version, current.version if current else 0)


#: The events that carry a compare-and-set version, and how each is checked.
_CHECKS: Final[dict[type[Any], Callable[[View, Any], None]]] = {
    ScheduleDefined: _check_schedule,
    ScheduleToggled: _check_schedule,
    ScheduleDeleted: _check_schedule,
    ScheduleAdvanced: _check_schedule,
    SensorDefined: _check_sensor_definition,
    SensorEvaluated: _check_sensor_state,
    SensorCursorSet: _check_sensor_state,
    RunClaimed: _check_attempt,
    RunLaunched: _check_attempt,
    RunLaunchFailed: _check_attempt,
    RunRetried: _check_retry,
    RetentionSet: _check_retention,
}


def _expect(row: str, expected: int, actual: int) -> None:
    if expected != actual:
        raise Conflict(row, expected, actual)


def _expect_attempt(run: RunRow | None, e: RunClaimed | RunLaunched | RunLaunchFailed) -> None:
    """A launch attempt (its claim or its outcome) is taken only from a waiting run that has
    had exactly ``attempt - 1`` attempts; a claim only while the run is due as read, and an
    outcome with a ``claimer`` only while that runtime holds the claim."""
    row = f"run {e.run_id!r}"
    _expect_value(row, "status", "REQUESTED", run.status if run else None)
    assert run is not None
    _expect_value(row, "attempts", e.attempt - 1, run.attempts)
    if isinstance(e, RunClaimed):
        _expect_value(row, "next_attempt_at", e.due_at, run.next_attempt_at)
    elif e.claimer is not None:
        _expect_value(row, "claimer", e.claimer, run.claimed_by)


def _expect_value(row: str, what: str, expected: object, actual: object) -> None:
    if expected != actual:
        raise Conflict(row, expected, actual, what)


_E = TypeVar("_E")
_Handler = Callable[[View, Envelope, Any], list[Put]]
_HANDLERS: dict[type[Any], _Handler] = {}


def _on(cls: type[_E]) -> Callable[[Callable[[View, Envelope, _E], list[Put]]], None]:
    def register(fn: Callable[[View, Envelope, _E], list[Put]]) -> None:
        _HANDLERS[cls] = fn

    return register


def evolve(view: View, envelope: Envelope) -> list[Put]:
    """The rows ``envelope`` writes, given the rows it reads from ``view``."""
    return _HANDLERS[type(envelope.event)](view, envelope, envelope.event)


# -- schedules ---------------------------------------------------------------------------------


@_on(ScheduleDefined)
def _schedule_defined(view: View, env: Envelope, e: ScheduleDefined) -> list[Put]:
    old = schedule_of(view, e.schedule_id)
    row = ScheduleRow(
        schedule_id=e.schedule_id,
        definition=e.definition,
        definition_version=e.definition_version,
        enabled=e.definition.enabled,
        deleted=False,
        state_version=(old.state_version if old else 0) + 1,
        eligible_from=e.eligible_from,
        last_scheduled_for=old.last_scheduled_for if old else None,
        next_fire_at=e.next_fire_at,
        retries=old.retries if old and not old.deleted else (),
        updated_at=env.at,
    )
    change: HistoryChange = "created" if old is None or old.deleted else "updated"
    return [
        (Table.SCHEDULES, key(e.schedule_id), row),
        _history(env, "schedule", e.schedule_id, change, old, e.definition_version),
    ]


def _update(view: View, env: Envelope, table: Table, row_id: str, **changes: Any) -> list[Put]:
    """Replace fields of an existing row (and stamp ``updated_at``). A missing row is left
    missing: unreachable through ``decide``, but ``evolve`` stays total."""
    old = view.get(table, key(row_id))
    if old is None:
        return []
    if table is Table.SCHEDULES:  # every change to a schedule row moves its CAS version
        changes["state_version"] = old.state_version + 1
    return [(table, key(row_id), msgspec.structs.replace(old, updated_at=env.at, **changes))]


def _schedule_put(view: View, env: Envelope, schedule_id: str, **changes: Any) -> list[Put]:
    return _update(view, env, Table.SCHEDULES, schedule_id, **changes)


@_on(ScheduleToggled)
def _schedule_toggled(view: View, env: Envelope, e: ScheduleToggled) -> list[Put]:
    change: HistoryChange = "enabled" if e.enabled else "disabled"
    return _changed(view, env, "schedule", e.schedule_id, change) + _schedule_put(
        view,
        env,
        e.schedule_id,
        enabled=e.enabled,
        eligible_from=e.eligible_from,
        next_fire_at=e.next_fire_at,
    )


@_on(ScheduleDeleted)
def _schedule_deleted(view: View, env: Envelope, e: ScheduleDeleted) -> list[Put]:
    return _changed(view, env, "schedule", e.schedule_id, "deleted") + _schedule_put(
        view, env, e.schedule_id, deleted=True, enabled=False, next_fire_at=None, retries=()
    )


@_on(ScheduleAdvanced)
def _schedule_advanced(view: View, env: Envelope, e: ScheduleAdvanced) -> list[Put]:
    old = schedule_of(view, e.schedule_id)
    last = old.last_scheduled_for if old else None
    if e.last_scheduled_for is not None and (last is None or e.last_scheduled_for > last):
        last = e.last_scheduled_for  # only ever moves forward
    return _schedule_put(
        view,
        env,
        e.schedule_id,
        last_scheduled_for=last,
        next_fire_at=e.next_fire_at,
        retries=e.retries,
    )


@_on(TickRecorded)
def _tick_recorded(view: View, env: Envelope, e: TickRecorded) -> list[Put]:
    deduped = _deduped(view, e.run_keys)
    row = TickRow(
        tick_id=e.tick_id,
        schedule_id=e.schedule_id,
        scheduled_for=e.scheduled_for,
        status=e.status,
        definition_version=e.definition_version,
        attempts=e.attempt,
        reason=e.reason if e.reason is not None else dedupe_reason(deduped),
        run_keys=e.run_keys,
        dst=e.dst,
        final=e.final,
        evaluated_at=env.at,
        deduped=deduped,
    )
    return [(Table.TICKS, key(e.schedule_id, e.scheduled_for), row)]


@_on(TicksMissed)
def _ticks_missed(view: View, env: Envelope, e: TicksMissed) -> list[Put]:
    row = MissedRow(e.schedule_id, env.at, e.ranges, env.seq)
    return [(Table.MISSED, key(e.schedule_id, env.seq), row)]


# -- sensors -----------------------------------------------------------------------------------


@_on(SensorDefined)
def _sensor_defined(view: View, env: Envelope, e: SensorDefined) -> list[Put]:
    old = sensor_of(view, e.sensor_id)
    row = SensorRow(
        sensor_id=e.sensor_id,
        definition=e.definition,
        definition_version=e.definition_version,
        running=e.definition.enabled,
        deleted=False,
        state_version=old.state_version if old else 0,
        cursor=old.cursor if old else None,
        failures=old.failures if old else 0,
        next_eval_at=e.next_eval_at,
        updated_at=env.at,
        evaluations=old.evaluations if old else 0,
        last_eval_at=old.last_eval_at if old else None,
        last_status=old.last_status if old else None,
        last_reason=old.last_reason if old else None,
        toggles=old.toggles if old else 0,
    )
    change: HistoryChange = "created" if old is None or old.deleted else "updated"
    return [
        (Table.SENSORS, key(e.sensor_id), row),
        _history(env, "sensor", e.sensor_id, change, old, e.definition_version),
    ]


def _sensor_put(view: View, env: Envelope, sensor_id: str, **changes: Any) -> list[Put]:
    return _update(view, env, Table.SENSORS, sensor_id, **changes)


@_on(SensorToggled)
def _sensor_toggled(view: View, env: Envelope, e: SensorToggled) -> list[Put]:
    old = sensor_of(view, e.sensor_id)
    toggles = old.toggles + 1 if old else 1
    change: HistoryChange = "started" if e.running else "stopped"
    return _changed(view, env, "sensor", e.sensor_id, change) + _sensor_put(
        view, env, e.sensor_id, running=e.running, next_eval_at=e.next_eval_at, toggles=toggles
    )


@_on(SensorDeleted)
def _sensor_deleted(view: View, env: Envelope, e: SensorDeleted) -> list[Put]:
    return _changed(view, env, "sensor", e.sensor_id, "deleted") + _sensor_put(
        view, env, e.sensor_id, deleted=True, running=False, next_eval_at=None
    )


def eval_row(env: Envelope, deduped: tuple[str, ...] = ()) -> EvalRow:
    """The history row of a logged ``SensorEvaluated``: so callers that hold the envelope
    need not read the row back (unless it requested runs: ``deduped`` is known in the store)."""
    assert isinstance(env.event, SensorEvaluated)
    return EvalRow(env.seq, env.at, env.event, deduped)


@_on(SensorEvaluated)
def _sensor_evaluated(view: View, env: Envelope, e: SensorEvaluated) -> list[Put]:
    old = sensor_of(view, e.sensor_id)
    row = eval_row(env, _deduped(view, e.run_keys))
    puts: list[Put] = [(Table.EVALS, key(e.sensor_id, env.seq), row)]
    if old is None:
        return puts
    common: dict[str, Any] = {
        "evaluations": old.evaluations + 1,
        "last_eval_at": env.at,
        "last_status": e.status,
        "last_reason": row.reason,
    }
    if e.kind == "poll":  # an accepted poll: the version moves by exactly one
        common |= {
            "state_version": old.state_version + 1,
            "cursor": e.cursor_after if e.cursor_after is not None else old.cursor,
            "failures": e.failures,
            "next_eval_at": e.next_eval_at if old.running else None,
        }
    return puts + _sensor_put(view, env, e.sensor_id, **common)


# -- runs --------------------------------------------------------------------------------------


def _taken(view: View, run_id_: str) -> RunRow | PrunedRunRow | None:
    """The run of a run id, or what is left of it after a prune: its key stays taken."""
    row: RunRow | PrunedRunRow | None = run_of(view, run_id_) or view.get(
        Table.RUN_KEYS, run_slot(run_id_)
    )
    return row


@_on(RunRequested)
def _run_requested(view: View, env: Envelope, e: RunRequested) -> list[Put]:
    link = (
        Table.LINKS,
        key(e.run_id, e.requested_by),
        RunLinkRow(e.run_id, e.requested_by, env.at),
    )
    existing = _taken(view, e.run_id)
    if isinstance(existing, PrunedRunRow):
        # A pruned run's key stays taken; only the key is kept, so nothing to link or compare.
        return []
    if existing is None:
        row = RunRow(
            run_id=e.run_id,
            run_key=e.run_key,
            fingerprint=e.fingerprint,
            origin=e.origin,
            requested_by=e.requested_by,
            target=e.target,
            launcher=e.launcher,
            config=e.config,
            tags=e.tags,
            status="REQUESTED",
            created_seq=env.seq,
            created_at=env.at,
            updated_at=env.at,
            next_attempt_at=env.at if e.launcher is not None else None,
        )
        return [(Table.RUNS, key(e.run_id), row), link]
    if existing.fingerprint == e.fingerprint:
        return [link]
    conflict = ConflictRow(
        run_key=e.run_key,
        run_id=e.run_id,
        existing_fingerprint=existing.fingerprint,
        conflicting_fingerprint=e.fingerprint,
        requested_by=e.requested_by,
        origin=e.origin,
        at=env.at,
        seq=env.seq,
    )
    return [(Table.CONFLICTS, u64(env.seq), conflict)]


def _run_put(view: View, env: Envelope, run_id: str, **changes: Any) -> list[Put]:
    return _update(view, env, Table.RUNS, run_id, **changes)


@_on(RunClaimed)
def _run_claimed(view: View, env: Envelope, e: RunClaimed) -> list[Put]:
    return _run_put(view, env, e.run_id, claimed_by=e.claimer, next_attempt_at=e.lease_until)


@_on(RunLaunched)
def _run_launched(view: View, env: Envelope, e: RunLaunched) -> list[Put]:
    return _run_put(
        view,
        env,
        e.run_id,
        status="LAUNCHED",
        attempts=e.attempt,
        external_id=e.external_id,
        next_attempt_at=None,
    )


@_on(RunLaunchFailed)
def _run_launch_failed(view: View, env: Envelope, e: RunLaunchFailed) -> list[Put]:
    status = "REQUESTED" if e.next_attempt_at is not None else "GAVE_UP"
    return _run_put(
        view,
        env,
        e.run_id,
        status=status,
        attempts=e.attempt,
        last_error=e.error,
        next_attempt_at=e.next_attempt_at,
    )


@_on(RunCompleted)
def _run_completed(view: View, env: Envelope, e: RunCompleted) -> list[Put]:
    return _run_put(view, env, e.run_id, status=e.status, detail=e.detail, next_attempt_at=None)


# -- dedupe hits and definition history ----------------------------------------------------------


def _deduped(view: View, run_keys: tuple[str, ...]) -> tuple[str, ...]:
    """The run keys that already have a run when a tick or evaluation asks for them: it makes
    no new run for those (its requests link or conflict), and its history row says so. Seen
    before the requester's own requests are applied (they follow it in the batch)."""
    return tuple(k for k in run_keys if _taken(view, run_id(k)) is not None)


def _history(
    env: Envelope,
    kind: Literal["schedule", "sensor"],
    item_id: str,
    change: HistoryChange,
    old: ScheduleRow | SensorRow | None,
    new_version: int,
    **extra: Any,
) -> Put:
    row = HistoryRow(
        kind=kind,
        id=item_id,
        seq=env.seq,
        at=env.at,
        change=change,
        old_version=old.definition_version if old else None,
        new_version=new_version,
        **extra,
    )
    return (Table.HISTORY, key(kind, item_id, env.seq), row)


def _changed(
    view: View,
    env: Envelope,
    kind: Literal["schedule", "sensor"],
    item_id: str,
    change: HistoryChange,
    **extra: Any,
) -> list[Put]:
    """The history row of a change that keeps the definition version (toggle, delete,
    backfill)."""
    old: ScheduleRow | SensorRow | None = view.get(
        Table.SCHEDULES if kind == "schedule" else Table.SENSORS, key(item_id)
    )
    if old is None:
        return []
    return [_history(env, kind, item_id, change, old, old.definition_version, **extra)]


# -- operator verbs ------------------------------------------------------------------------------


@_on(SensorCursorSet)
def _sensor_cursor_set(view: View, env: Envelope, e: SensorCursorSet) -> list[Put]:
    old = sensor_of(view, e.sensor_id)
    if old is None:
        return []
    change: HistoryChange = "cursor_reset" if e.cursor is None else "cursor_set"
    entry = _history(
        env,
        "sensor",
        e.sensor_id,
        change,
        old,
        old.definition_version,
        expected_state_version=e.expected_state_version,
        cursor_before=e.cursor_before,
        cursor_after=e.cursor,
        requested_by=e.requested_by,
    )
    changes = {"state_version": old.state_version + 1, "cursor": e.cursor}
    return [entry, *_sensor_put(view, env, e.sensor_id, **changes)]


@_on(ScheduleBackfilled)
def _schedule_backfilled(view: View, env: Envelope, e: ScheduleBackfilled) -> list[Put]:
    extra = {"range_from": e.start, "range_to": e.end, "runs": e.runs}
    sid = e.schedule_id
    return _changed(view, env, "schedule", sid, "backfilled", requested_by=e.requested_by, **extra)


@_on(RunRetried)
def _run_retried(view: View, env: Envelope, e: RunRetried) -> list[Put]:
    old = run_of(view, e.run_id)
    if old is None:
        return []
    return _run_put(
        view,
        env,
        e.run_id,
        status="REQUESTED",
        next_attempt_at=env.at if old.launcher is not None else None,
        retries=old.retries + 1,
        attempt_base=old.attempts,
    )


# -- retention ---------------------------------------------------------------------------------

_RETENTION = b"retention"


@_on(RetentionSet)
def _retention_set(view: View, env: Envelope, e: RetentionSet) -> list[Put]:
    old: RetentionRow | None = view.get(Table.SETTINGS, _RETENTION)
    row = RetentionRow(e.policy, (old.version if old else 0) + 1, env.at)
    return [(Table.SETTINGS, _RETENTION, row)]


@_on(HistoryPruned)
def _history_pruned(view: View, env: Envelope, e: HistoryPruned) -> list[Put]:
    """Drop each named row that is still prunable as of its cutoff (a run retried meanwhile
    stays); a pruned run leaves its key taken; its links go with it. The idempotency keys the
    event names are the store's to drop (:func:`~arcoflow.kernel.store.base.apply_envelope`)."""
    puts: list[Put] = []
    gone: set[bytes] = set()  # run ids pruned by this event
    for ref in e.rows:
        table = Table(ref.table)
        if table is Table.LINKS:
            if ref.key.split(b"\x00", 1)[0] in gone:
                puts.append((table, ref.key, None))
            continue
        row = view.get(table, ref.key)
        if row is None or not prunable(row, ref.before):
            continue
        puts.append((table, ref.key, None))
        if isinstance(row, RunRow):
            gone.add(ref.key)
            puts.append((Table.RUN_KEYS, run_slot(row.run_id), PrunedRunRow()))
    for mark in e.marks:
        mkey = key(mark.kind, mark.id)
        old: PrunedMark | None = view.get(Table.PRUNED, mkey)
        if old is None or mark.before > old.before:
            puts.append((Table.PRUNED, mkey, PrunedMark(mark.kind, mark.id, mark.before, env.at)))
    return puts
