"""``decide``: from the rows a command reads and its arguments, the events to append.

Pure: no I/O, no clock (``now`` is an argument), no randomness (ids are derived from
idempotency keys, jitter from a hash). Input problems raise
:class:`~arcoflow.kernel.errors.InputError` before anything is written. The
:class:`~arcoflow.kernel.Kernel` reads the rows, calls these functions, runs plugin callables
between ``plan_*`` and ``record_*`` outside any transaction, and appends the result.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple, TypeVar

import msgspec

from .cron import Tick, next_tick, parse_cron, prev_tick, zone
from .definitions import (
    MAX_CATCHUP_TICKS,
    PollResult,
    RunRequest,
    ScheduleDefinition,
    SensorDefinition,
    TickResult,
    refused,
    validate_id,
)
from .errors import InputError, NotFound, PayloadTooLarge
from .events import (
    Cursor,
    EvalStatus,
    Event,
    MissedRange,
    Retry,
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
from .outcomes import Failed, FailureKind
from .rows import RunRow, ScheduleRow, SensorRow
from .runs import derived_id, request_run
from .store.base import Pending
from .times import iso
from .values import check_id, check_int, check_lookup

__all__ = [
    "MAX_BACKFILL",
    "PollTicket",
    "TickPlan",
    "backfill",
    "backfill_ticks",
    "backoff_delay",
    "by_hand",
    "change_action",
    "check_ticket",
    "claim_launches",
    "completed",
    "define_schedule",
    "define_sensor",
    "delete_schedule",
    "delete_sensor",
    "ingest",
    "is_due",
    "launch_failed",
    "launched",
    "parse_tick_id",
    "plan_ticks",
    "poll_ticket",
    "record_poll",
    "record_ticks",
    "refuse_push",
    "retry_run",
    "same_poll",
    "set_cursor",
    "tick_id",
    "toggle_schedule",
    "toggle_sensor",
]

_R = TypeVar("_R", PollResult, TickResult, Sequence[RunRequest])

#: Longest push message id accepted (it is part of an idempotency key).
MAX_MESSAGE_ID = 256


def tick_id(schedule_id: str, at: int) -> str:
    """Tick identity: the schedule id and the scheduled instant in UTC (never wall-clock text,
    so the two 01:30s of a fall-back day are two ticks)."""
    return f"{schedule_id}:{iso(at)}"


def change_action(
    before: ScheduleRow | SensorRow | None, after: ScheduleRow | SensorRow
) -> Literal["created", "updated", "enabled", "disabled", "unchanged"]:
    """What a define command did to a schedule or sensor, from its row before and after."""
    if before is None or before.deleted:
        return "created"
    if before.definition_version != after.definition_version:
        return "updated"
    was = before.enabled if isinstance(before, ScheduleRow) else before.running
    now = after.enabled if isinstance(after, ScheduleRow) else after.running
    if was != now:
        return "enabled" if now else "disabled"
    return "unchanged"


def parse_tick_id(text: str) -> tuple[str, int]:
    """The schedule id and instant of a :func:`tick_id` (:class:`InputError` if it is none)."""
    sid, sep, when = check_lookup(text, "tick id").partition(":")
    try:
        validate_id(sid, "schedule id")
        if not sep:
            raise ValueError(text)
        at = datetime.strptime(when, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except (ValueError, InputError):
        raise InputError(
            f"tick id {text!r} is not valid: expected SCHEDULE_ID:YYYY-MM-DDTHH:MM:SSZ"
        ) from None
    return sid, int(at.timestamp())


# -- schedule definitions ----------------------------------------------------------------------


def _cursor(row: ScheduleRow) -> int:
    """Ticks strictly after this instant are still to be evaluated."""
    last = row.last_scheduled_for
    return max(row.eligible_from - 1, last if last is not None else row.eligible_from - 1)


def _next_fire(definition: ScheduleDefinition, after: int, retries: Sequence[Retry] = ()) -> int:
    tick = next_tick(
        parse_cron(definition.cron),
        zone(definition.timezone),
        after,
        definition.dst_gap,
        definition.dst_fold,
    )
    return min([tick.at, *(r.scheduled_for for r in retries)])


def define_schedule(
    row: ScheduleRow | None, definition: ScheduleDefinition, now: int
) -> list[Pending]:
    """Create or update a schedule. Identical content is a no-op (no event, same version);
    only ``enabled`` changing is a toggle, not a new definition version."""
    sid = definition.id
    if row is None or row.deleted:
        version = (row.definition_version if row else 0) + 1
        expected = row.state_version if row else 0
        # A re-created schedule keeps its last_scheduled_for, so it resumes after that too
        # (it is later than now - 1 when the clock went back since).
        after = max(now - 1, row.last_scheduled_for or now - 1) if row else now - 1
        nxt = _next_fire(definition, after) if definition.enabled else None
        event = ScheduleDefined(sid, definition, version, expected, now, nxt)
        return [Pending(f"schedule/{sid}/defined/{version}", event)]
    if row.definition.content() == definition.content():
        if row.enabled == definition.enabled:
            return []
        return toggle_schedule(row, definition.enabled, now)
    version = row.definition_version + 1
    enabling = definition.enabled and not row.enabled
    eligible = now if enabling else row.eligible_from
    after = max(eligible - 1, row.last_scheduled_for or eligible - 1)
    nxt = _next_fire(definition, after, row.retries) if definition.enabled else None
    event = ScheduleDefined(sid, definition, version, row.state_version, eligible, nxt)
    return [Pending(f"schedule/{sid}/defined/{version}", event)]


def toggle_schedule(row: ScheduleRow | None, enabled: bool, now: int) -> list[Pending]:
    """Enable or disable. Re-enabling never back-fills: ticks before ``now`` stay unrun."""
    live = _live_schedule(row)
    if live.enabled == enabled:
        return []
    eligible = now if enabled else live.eligible_from
    # The cursor of the row as it will be (eligible from now), and the retries it keeps:
    # next_fire_at must name what plan_ticks will find due, even after the clock went back.
    after = max(now - 1, live.last_scheduled_for or now - 1)
    nxt = _next_fire(live.definition, after, live.retries) if enabled else None
    event = ScheduleToggled(live.schedule_id, enabled, live.state_version, eligible, nxt)
    return [Pending(f"schedule/{live.schedule_id}/toggled/{live.state_version}", event)]


def delete_schedule(row: ScheduleRow | None) -> list[Pending]:
    """Delete a schedule; its ticks and runs stay in history."""
    live = _live_schedule(row)
    event = ScheduleDeleted(live.schedule_id, live.state_version)
    return [Pending(f"schedule/{live.schedule_id}/deleted/{live.state_version}", event)]


def _live_schedule(row: ScheduleRow | None) -> ScheduleRow:
    if row is None or row.deleted:
        raise NotFound(
            "no such schedule" if row is None else f"schedule {row.schedule_id!r} was deleted"
        )
    return row


# -- tick evaluation ---------------------------------------------------------------------------


class TickPlan(NamedTuple):
    """What one evaluation of one schedule at ``now`` will decide about."""

    due: tuple[tuple[Tick, int], ...]  # (tick, attempt), oldest first; retries first
    missed: tuple[MissedRange, ...]
    last_scheduled_for: int | None


def plan_ticks(row: ScheduleRow, now: int) -> TickPlan:
    """The ticks due at ``now``: O(max_catchup_ticks) cron steps, however long it was down.

    A tick at T may run while ``now <= T + catchup_window``; older ones are missed. Of the due
    ticks at most ``max_catchup_ticks`` run: the newest (``newest``, the rest missed) or the
    oldest (``oldest``, the rest wait for later evaluations). Pending retries of failed ticks
    come first and do not count against the budget.
    """
    d = row.definition
    if not row.enabled or row.deleted:
        return TickPlan((), (), None)
    cron, tz = parse_cron(d.cron), zone(d.timezone)

    def nxt(after: int) -> Tick:
        return next_tick(cron, tz, after, d.dst_gap, d.dst_fold)

    def prv(before: int) -> Tick:
        return prev_tick(cron, tz, before, d.dst_gap, d.dst_fold)

    def retried(at: int) -> Tick:
        # The same tick as attempt 1 (wall time, DST annotation), unless the cron changed
        # since and no longer names this instant.
        tick = nxt(at - 1)
        if tick.at == at:
            return tick._replace(run=True)
        return Tick(at, datetime.fromtimestamp(at, UTC), None, True)

    due: list[tuple[Tick, int]] = [(retried(r.scheduled_for), r.attempts + 1) for r in row.retries]
    cursor = _cursor(row)
    window_start = now - d.catchup_window
    lo = max(cursor, window_start - 1)  # in the window: strictly after lo, at most now
    missed: list[MissedRange] = []
    last: int | None = None
    if cursor < window_start - 1 and (first := nxt(cursor)).at < window_start:
        late = prv(window_start)
        missed.append(MissedRange("outside_catchup_window", first.at, late.at))
        last = late.at
    fresh: list[Tick] = []
    # Bounded even for a definition an older arcoflow stored with a larger budget.
    budget = min(d.max_catchup_ticks, MAX_CATCHUP_TICKS)
    if d.catchup_order == "newest":
        tick = prv(now + 1)
        while tick.at > lo and len(fresh) < budget:
            fresh.append(tick)
            tick = prv(tick.at)
        if tick.at > lo:
            missed.append(MissedRange("over_max_catchup_ticks", nxt(lo).at, tick.at))
        fresh.reverse()
    else:
        tick = nxt(lo)
        while tick.at <= now and len(fresh) < budget:
            fresh.append(tick)
            tick = nxt(tick.at)
    if fresh:
        last = fresh[-1].at
    due += [(t, 1) for t in fresh]
    return TickPlan(tuple(due), tuple(missed), last)


def record_ticks(
    row: ScheduleRow, plan: TickPlan, results: Sequence[TickResult | Failed], now: int
) -> list[Pending]:
    """Events for one evaluation. ``results[i]`` is the evaluator's answer for ``plan.due[i]``,
    or how it failed (the tick is ``FAILED`` with that reason)."""
    d = row.definition
    sid = row.schedule_id
    origin = f"schedule:{sid}"
    ticks: list[Pending] = []  # each tick followed by its run requests
    retries: list[Retry] = []
    for (tick, attempt), answer in zip(plan.due, results, strict=True):
        result = _checked(answer, f"evaluator {d.evaluator!r}")
        tid = tick_id(sid, tick.at)
        requested: list[Pending] = []
        common: dict[str, Any] = {
            "definition_version": row.definition_version,
            "attempt": attempt,
            "dst": tick.dst,
        }
        if isinstance(result, Failed):
            final = attempt > d.max_tick_retries
            if not final:
                retries.append(Retry(tick.at, attempt))
            reason = result.reason
            event = TickRecorded(tid, sid, tick.at, "FAILED", reason=reason, final=final, **common)
        elif not tick.run:
            event = TickRecorded(tid, sid, tick.at, "SKIPPED", reason=tick.dst, **common)
        elif result.skip_reason is not None or result.run_requests == []:
            reason = result.skip_reason or "evaluator returned no run requests"
            event = TickRecorded(tid, sid, tick.at, "SKIPPED", reason=reason, **common)
        else:
            requests = result.run_requests or [RunRequest()]
            # Indexed: two requests for one key with other content are a conflict to record.
            requested += [
                Pending(f"run/{tid}>{r.run_key}#{i}", r)
                for i, req in enumerate(requests)
                if (
                    r := request_run(
                        origin, tid, d.run, req, iso(tick.at) if i == 0 else f"{iso(tick.at)}:{i}"
                    )
                )
            ]
            event = TickRecorded(
                tid, sid, tick.at, "TRIGGERED", run_keys=_keys(requested), **common
            )
        # Its runs right after the tick: the next tick's row then sees them (a dedupe hit).
        ticks += [Pending(f"tick/{tid}#{attempt}", event), *requested]
    after = max(_cursor(row), plan.last_scheduled_for or 0)
    advanced = ScheduleAdvanced(
        sid,
        row.state_version,
        plan.last_scheduled_for,
        _next_fire(d, after, retries),
        tuple(retries),
    )
    head = Pending(f"schedule/{sid}/advanced/{row.state_version}@{now}", advanced)
    missed = (
        [Pending(f"schedule/{sid}/missed/{row.state_version}@{now}", TicksMissed(sid, plan.missed))]
        if plan.missed
        else []
    )
    return [head, *missed, *ticks]


# -- sensors -----------------------------------------------------------------------------------


def define_sensor(row: SensorRow | None, definition: SensorDefinition, now: int) -> list[Pending]:
    """Create or update a sensor; identical content is a no-op. A new poll sensor is due now."""
    sid = definition.id
    if row is not None and not row.deleted and row.definition.content() == definition.content():
        if row.running == definition.enabled:
            return []
        return toggle_sensor(row, definition.enabled, now)
    if row is not None and not row.deleted and row.definition.type != definition.type:
        raise InputError(
            f"sensor {sid!r} is a {row.definition.type} sensor; its type cannot change"
        )
    version = (row.definition_version if row else 0) + 1
    poll = definition.type == "poll" and definition.enabled
    keep = row is not None and not row.deleted and row.next_eval_at is not None
    nxt = (row.next_eval_at if keep and row else now) if poll else None
    event = SensorDefined(sid, definition, version, row.definition_version if row else 0, nxt)
    return [Pending(f"sensor/{sid}/defined/{version}", event)]


def toggle_sensor(row: SensorRow | None, running: bool, now: int) -> list[Pending]:
    """Start or stop a sensor. A started poll sensor is due at once."""
    live = _live_sensor(row)
    if live.running == running:
        return []
    nxt = now if running and live.definition.type == "poll" else None
    event = SensorToggled(live.sensor_id, running, nxt)
    # The toggle count names this toggle: stop, start, stop, start at one instant are four
    # toggles, never duplicates of each other (the instant alone cannot tell them apart).
    return [Pending(f"sensor/{live.sensor_id}/toggled/{live.toggles}:{running}", event)]


def delete_sensor(row: SensorRow | None, now: int) -> list[Pending]:
    live = _live_sensor(row)
    return [
        Pending(
            f"sensor/{live.sensor_id}/deleted/{live.definition_version}@{now}",
            SensorDeleted(live.sensor_id),
        )
    ]


def _live_sensor(row: SensorRow | None) -> SensorRow:
    if row is None or row.deleted:
        raise NotFound("no such sensor" if row is None else f"sensor {row.sensor_id!r} was deleted")
    return row


def ingest(
    row: SensorRow | None,
    message_id: str,
    payload: Any,
    payload_size: int,
    requests: Sequence[RunRequest] | Failed | None,
) -> list[Pending]:
    """Events for one push delivery, keyed by ``message_id`` (a re-delivery is a duplicate).

    ``requests``: the push connector's run requests (``None``: one run per message, keyed by
    the message id, the payload under ``config["payload"]``), or how the connector failed.
    """
    live = _live_sensor(row)
    d = live.definition
    if not live.running:
        raise InputError(
            f"sensor {live.sensor_id!r} is stopped; the message was not taken "
            f"(start it with: arcoflow sensor start {live.sensor_id})"
        )
    if d.type != "push":
        raise InputError(f"sensor {live.sensor_id!r} is a poll sensor; it does not take messages")
    if not isinstance(message_id, str) or not 0 < len(message_id) <= MAX_MESSAGE_ID:
        raise InputError(f"message id must be 1-{MAX_MESSAGE_ID} characters")
    if payload_size > d.max_payload_bytes:
        raise PayloadTooLarge(
            f"payload is {payload_size} bytes; sensor {live.sensor_id!r} accepts at most "
            f"{d.max_payload_bytes} (max_payload_bytes)"
        )
    key = f"push/{live.sensor_id}/{message_id}"
    eval_id = derived_id(key)
    if requests is None:
        requests = [RunRequest(message_id, config={"payload": payload})]
    else:
        requests = _checked(requests, f"connector {d.connector!r}")
    runs, status, reason = _runs(live, eval_id, requests, message_id)
    event = SensorEvaluated(
        eval_id,
        live.sensor_id,
        "push",
        status,
        reason=reason,
        message_id=message_id,
        run_keys=_keys(runs),
    )
    return [Pending(key, event), *runs]


#: Longest reason, and longest summary, a REFUSED evaluation keeps (both come from outside).
MAX_REFUSAL_TEXT = 300
_PAYLOAD_HEAD = 80  # bytes of a refused payload's JSON shown in its summary


def refuse_push(
    row: SensorRow, message_id: object, payload: Any, reason: str, now: int, *, described: bool
) -> list[Pending]:
    """The record of a push message the kernel refused (bad id or payload, a stopped, deleted
    or poll sensor, or a message its source could not read): a ``REFUSED`` evaluation in the
    sensor's history with ``reason`` and a bounded, printable summary (``described``: of the
    payload too; a source that could not read a body has no payload to describe).

    It consumes nothing: no run, no ``state_version`` move, and the message id stays free, so
    a good delivery of it later is accepted. Keyed by the message id and the sensor's state
    (definition version, toggles): a redelivery of a refused message to an unchanged sensor is
    a duplicate of its refusal (one row), while a change of the sensor records it anew. A
    message without a text id has no identity to dedupe on: keyed by the type of its id, its
    source's reason (if ``not described``), its payload's JSON and ``now``.
    """
    text_id = message_id if isinstance(message_id, str) and message_id else None
    kept = _readable(text_id, MAX_MESSAGE_ID)
    if text_id is not None:
        ident = _digest(text_id)
    else:
        told = "" if described else reason
        content = f"{type(message_id).__name__}:{told}:{_json_text(payload)}"
        ident = f"~{_digest(content)}@{now}"
    parts = [] if kept is not None else [f"message id {_bounded(ascii(message_id), 80)}"]
    if described:
        parts.append(_payload_summary(payload))
    state = f"{row.definition_version}.{row.toggles}"
    key = f"refused/{row.sensor_id}/{ident}/{state}"
    event = SensorEvaluated(
        derived_id(key),
        row.sensor_id,
        "push",
        "REFUSED",
        reason=_bounded(_printable(reason), MAX_REFUSAL_TEXT),
        message_id=kept,
        summary=_bounded("; ".join(parts), MAX_REFUSAL_TEXT) if parts else None,
    )
    return [Pending(key, event)]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode(errors="surrogatepass")).hexdigest()[:32]


def _printable(text: str) -> str:
    """``text`` with lone surrogates escaped: storable as UTF-8, readable back."""
    return text.encode(errors="backslashreplace").decode()


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _readable(message_id: str | None, limit: int) -> str | None:
    """``message_id`` if it is one the log can keep as it is (valid text within the limit)."""
    if message_id is None or len(message_id) > limit:
        return None
    try:
        message_id.encode()
    except UnicodeEncodeError:
        return None
    return message_id


def _json_text(payload: Any) -> str:
    """The payload's compact JSON, or its type's name if it is not JSON data."""
    try:
        return msgspec.json.encode(payload).decode()
    except (TypeError, ValueError, OverflowError, RecursionError, msgspec.EncodeError):
        return type(payload).__name__


def _payload_summary(payload: Any) -> str:
    """A refused payload as an operator reads it: its JSON size and first bytes, escaped to
    ASCII (never raw bytes), or the type of a value that is not JSON data."""
    try:
        encoded = msgspec.json.encode(payload)
    except (TypeError, ValueError, OverflowError, RecursionError, msgspec.EncodeError):
        return f"payload of type {type(payload).__name__}, not JSON data"
    head = encoded[:_PAYLOAD_HEAD].decode(errors="replace")
    more = "..." if len(encoded) > _PAYLOAD_HEAD else ""
    return f"payload {len(encoded)} bytes of JSON: {ascii(head)[1:-1]}{more}"


def _keys(runs: Sequence[Pending]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(r.event.run_key for r in runs))  # type: ignore[union-attr]


def _checked(result: _R | Failed, plugin: str) -> _R | Failed:
    """A plugin's result, or why it is refused (recorded as the ``plugin``'s failure, with
    backoff for a poll): the one place where what a plugin hands back is checked against the
    value rules, whether it came through the SDK or straight through the kernel API."""
    if isinstance(result, Failed):  # an exception's text may hold lone surrogates
        return Failed(_printable(result.reason), result.kind)
    problem = refused(result)
    return result if problem is None else Failed(f"{plugin}: {problem}", FailureKind.WRONG_TYPE)


def _runs(
    row: SensorRow, eval_id: str, result: Sequence[RunRequest] | Failed, default_key: str
) -> tuple[list[Pending], EvalStatus, str | None]:
    if isinstance(result, Failed):
        return [], "FAILED", result.reason
    origin = f"sensor:{row.sensor_id}"
    # A request without a run_key gets a default derived from the message or the evaluation.
    requested = [
        request_run(
            origin,
            eval_id,
            row.definition.run,
            r,
            default_key if len(result) == 1 else f"{default_key}:{i}",
        )
        for i, r in enumerate(result)
    ]
    if not requested:
        return [], "NO_DATA", "no run requests"
    # Each request is its own event (indexed): two requests for one key with other content are
    # a conflict to record, not a repeated key that the store would apply once.
    runs = [Pending(f"run/{eval_id}>{r.run_key}#{i}", r) for i, r in enumerate(requested)]
    return runs, "REQUESTED", None


class PollTicket(NamedTuple):
    """What a poll read: the version it expects and the cursor it hands the connector."""

    sensor_id: str
    expected_state_version: int
    cursor: Cursor | None


def poll_ticket(row: SensorRow | None) -> PollTicket:
    live = _live_sensor(row)
    if live.definition.type != "poll":
        raise InputError(f"sensor {live.sensor_id!r} is a push sensor; it is not polled")
    return PollTicket(live.sensor_id, live.state_version, live.cursor)


def check_ticket(ticket: object) -> PollTicket:
    """A ticket a caller hands back to :func:`record_poll`, checked field by field (a caller
    may build one by hand)."""
    if not isinstance(ticket, PollTicket):
        raise InputError(f"ticket: expected the PollTicket of poll_ticket(), got {ticket!r}")
    check_id(ticket.sensor_id, "ticket sensor id")
    check_int(ticket.expected_state_version, "ticket state version", 0)
    if ticket.cursor is not None and not isinstance(ticket.cursor, Cursor):
        raise InputError(f"ticket: cursor must be a Cursor or None, got {ticket.cursor!r}")
    return ticket


def backoff_delay(definition: SensorDefinition, failures: int) -> int:
    """Seconds to wait after ``failures`` consecutive failures: capped exponential backoff
    with jitter from a hash of (sensor id, attempt): the same history, the same schedule.

    >>> from arcoflow.kernel.definitions import RunTemplate, SensorDefinition, Backoff
    >>> s = SensorDefinition("s", "poll", RunTemplate("t"), connector="c", minimum_interval=1,
    ...                      backoff=Backoff(base=10, cap=60, jitter=0.0))
    >>> [backoff_delay(s, n) for n in (1, 2, 3, 4, 5)]
    [10, 20, 40, 60, 60]
    """
    b = definition.backoff
    delay = min(b.cap, b.base * 2 ** min(failures - 1, 62))
    digest = hashlib.sha256(f"{definition.id}:{failures}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return int(
        max(definition.minimum_interval, min(b.cap, delay + int(delay * b.jitter * fraction)))
    )


def record_poll(
    row: SensorRow | None, ticket: PollTicket, result: PollResult | Failed, now: int
) -> list[Pending]:
    """Events for one poll: accepted only at ``ticket.expected_state_version`` (the CAS is
    checked by the store inside the append). A :class:`Failed` result is the connector's."""
    live = _live_sensor(row)
    d = live.definition
    if d.type != "poll":  # a ticket read before the sensor was re-created as a push sensor
        raise InputError(f"sensor {live.sensor_id!r} is a push sensor; it is not polled")
    key = f"poll/{live.sensor_id}/{ticket.expected_state_version}/{_cursor_hash(ticket.cursor)}"
    eval_id = derived_id(key)
    status: EvalStatus
    reason: str | None
    result = _checked(result, f"connector {d.connector!r}")
    if isinstance(result, Failed):
        failures = live.failures + 1
        runs: list[Pending] = []
        status, reason, cursor_after = "FAILED", result.reason, None
        nxt = now + backoff_delay(d, failures)
    else:
        failures = 0
        nxt = now + d.minimum_interval
        cursor_after = (
            None if result.cursor is None else Cursor.of(result.cursor, result.cursor_version)
        )
        if result.skip_reason is not None:
            runs, status, reason = [], "SKIPPED", result.skip_reason
        else:
            runs, status, reason = _runs(live, eval_id, result.run_requests, eval_id)
            if status == "NO_DATA":
                reason = "no new data"
    event = SensorEvaluated(
        eval_id,
        live.sensor_id,
        "poll",
        status,
        reason=reason,
        expected_state_version=ticket.expected_state_version,
        cursor_before=ticket.cursor,
        cursor_after=cursor_after,
        run_keys=_keys(runs),
        failures=failures,
        next_eval_at=nxt,
    )
    return [Pending(key, event), *runs]


def same_poll(original: Sequence[Event], batch: Sequence[Pending]) -> bool:
    """Whether ``batch`` records the same outcome as the ``original`` events of its key: a
    retry of one poll (same ticket, same answer), not a second poller that lost the race with
    another answer. Failure counts and next evaluation times depend on when it is recorded."""

    def outcome(events: Sequence[Event]) -> tuple[Any, ...]:
        evaluation: tuple[Any, ...] = ()
        runs: dict[str, str] = {}
        for e in events:
            if isinstance(e, SensorEvaluated):
                evaluation = (e.eval_id, e.status, e.reason, e.cursor_after, e.run_keys)
            elif isinstance(e, RunRequested):
                runs.setdefault(e.run_key, e.fingerprint)  # a repeated key is a no-op
        return evaluation, runs

    return outcome(original) == outcome([p.event for p in batch])


def _cursor_hash(cursor: Cursor | None) -> str:
    if cursor is None:
        return "-"
    return f"{cursor.version}.{hashlib.sha256(cursor.value).hexdigest()[:16]}"


# -- runs --------------------------------------------------------------------------------------


def is_due(run: RunRow, now: int) -> bool:
    """Whether ``run`` waits in the launch outbox for an attempt at ``now``. A claimed run is
    not due before its lease ends: the claim moved its next attempt there."""
    return (
        run.status == "REQUESTED"
        and run.launcher is not None
        and run.next_attempt_at is not None
        and run.next_attempt_at <= now
    )


def claim_launches(runs: Sequence[RunRow], claimer: str, now: int, lease: int) -> list[Pending]:
    """``claimer`` claims the next attempt of each due run in ``runs`` until ``now + lease``.
    The append checks that each run is still as read (same attempts, still due at the same
    time): of two runtimes that read the same outbox, one claims and the other re-reads."""
    out = []
    for run in runs:
        if not is_due(run, now):
            continue
        attempt, due_at = run.attempts + 1, run.next_attempt_at
        assert due_at is not None  # is_due
        event = RunClaimed(run.run_id, attempt, claimer, due_at, now + lease)
        out.append(Pending(f"claim/{run.run_id}#{attempt}@{due_at}>{claimer}", event))
    return out


def launched(
    run: RunRow,
    external_id: str | None,
    claimer: str | None = None,
    expected_attempts: int | None = None,
) -> list[Pending]:
    """A started launch attempt: the attempt after ``expected_attempts`` (what the reporter
    read; default: the run's current count), under ``claimer``'s claim if given."""
    attempt = _attempt(run, expected_attempts)
    event = RunLaunched(run.run_id, attempt, external_id, claimer, checked=True)
    return [Pending(f"launch/{run.run_id}#{attempt}", event)]


def launch_failed(
    run: RunRow,
    error: str,
    now: int,
    max_attempts: int,
    base: int = 10,
    cap: int = 600,
    claimer: str | None = None,
    expected_attempts: int | None = None,
) -> list[Pending]:
    """A failed launch attempt: retried with capped exponential backoff, given up at the limit
    (attempts count from the last operator retry, :func:`retry_run`)."""
    attempt = _attempt(run, expected_attempts)
    n = attempt - run.attempt_base
    retry = None if n >= max_attempts else now + min(cap, base * 2 ** (n - 1))
    event = RunLaunchFailed(run.run_id, attempt, error, retry, claimer, checked=True)
    return [Pending(f"launch/{run.run_id}#{attempt}", event)]


def _attempt(run: RunRow, expected_attempts: int | None) -> int:
    return (run.attempts if expected_attempts is None else expected_attempts) + 1


def completed(
    run: RunRow | None, run_id: str, succeeded: bool, detail: str | None
) -> list[Pending]:
    if run is None:
        raise NotFound(f"no run {run_id!r}")
    status: Literal["SUCCEEDED", "FAILED"] = "SUCCEEDED" if succeeded else "FAILED"
    if run.status in ("SUCCEEDED", "FAILED"):
        if run.status == status:
            return []  # reported twice: nothing new
        raise InputError(f"run {run_id} already finished as {run.status}")
    return [Pending(f"complete/{run_id}", RunCompleted(run_id, status, detail))]


# -- operator verbs ------------------------------------------------------------------------------

#: Most runs one backfill may request, and most ticks it counts to say how far over a range is.
MAX_BACKFILL = 1000
_BACKFILL_COUNT = 10_000


def set_cursor(
    row: SensorRow | None, cursor: Cursor | None, expected_state_version: int, requested_by: str
) -> list[Pending]:
    """An operator sets (``None``: resets) a poll sensor's cursor, at the ``state_version`` the
    caller read: the store checks it (a mismatch is a Conflict, nothing written). The same set
    repeated (same version, same cursor) is one set."""
    live = _live_sensor(row)
    if live.definition.type != "poll":
        raise InputError(f"sensor {live.sensor_id!r} is a push sensor; it has no cursor")
    if isinstance(expected_state_version, bool) or not isinstance(expected_state_version, int):
        raise InputError(f"expected version {expected_state_version!r} must be an integer")
    if expected_state_version < 0:
        raise InputError(f"expected version must be 0 or more, got {expected_state_version}")
    key = f"sensor/{live.sensor_id}/cursor/{expected_state_version}/{_cursor_hash(cursor)}"
    event = SensorCursorSet(
        live.sensor_id, expected_state_version, live.cursor, cursor, requested_by
    )
    return [Pending(key, event)]


def retry_run(run: RunRow | None, run_id: str, requested_by: str) -> list[Pending]:
    """Send a ``GAVE_UP`` run back to the launch outbox with a fresh attempt budget. Any other
    status is an InputError: only a run that gave up can be retried."""
    if run is None:
        raise NotFound(f"no run {run_id!r}")
    if run.status != "GAVE_UP":
        raise InputError(f"run {run_id} is {run.status}; only a GAVE_UP run can be retried")
    event = RunRetried(run.run_id, run.attempts, requested_by)
    return [Pending(f"retry/{run.run_id}#{run.attempts}", event)]


def backfill_ticks(row: ScheduleRow | None, start: int, end: int, limit: int) -> list[Tick]:
    """The ticks of a schedule with ``start <= T <= end``, by the schedule's own walk (so DST
    policies apply exactly as when it runs). More than ``limit`` ticks is an InputError that
    says how many (counted up to 10,000)."""
    live = _live_schedule(row)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_BACKFILL:
        raise InputError(f"max runs must be 1-{MAX_BACKFILL}, got {limit!r}")
    if end < start:
        raise InputError(f"backfill range ends ({iso(end)}) before it starts ({iso(start)})")
    d = live.definition
    cron, tz = parse_cron(d.cron), zone(d.timezone)
    ticks: list[Tick] = []
    tick = next_tick(cron, tz, start - 1, d.dst_gap, d.dst_fold)
    while tick.at <= end and len(ticks) < _BACKFILL_COUNT:
        ticks.append(tick)
        tick = next_tick(cron, tz, tick.at, d.dst_gap, d.dst_fold)
    if len(ticks) > limit:
        many = f"more than {_BACKFILL_COUNT}" if tick.at <= end else str(len(ticks))
        raise InputError(
            f"{iso(start)}..{iso(end)} holds {many} ticks of schedule {live.schedule_id!r}, "
            f"over the limit of {limit} per backfill; narrow the range or raise the limit "
            f"(at most {MAX_BACKFILL})"
        )
    return ticks


def backfill_key(schedule_id: str, at: int) -> str:
    """The run key (before its ``backfill:`` namespace) of a backfilled tick."""
    return f"{schedule_id}:{iso(at)}"


def backfill(
    row: ScheduleRow, start: int, end: int, ticks: Sequence[Tick], requested_by: str, now: int
) -> list[Pending]:
    """One run request per tick that the DST policy runs, keyed ``backfill:<id>:<instant>``:
    backfilling a range twice links to the same runs, never a second one. A head event names
    the backfill (schedule, range, definition, requester, instant): only the very same backfill
    repeated is a duplicate, and its runs that exist already are skipped one by one."""
    template = row.definition.run
    requests = by_hand(
        [
            request_run("backfill", requested_by, template, RunRequest(key), key)
            for t in ticks
            if t.run
            for key in [backfill_key(row.schedule_id, t.at)]
        ],
        now,
    )
    sid = row.schedule_id
    head = ScheduleBackfilled(sid, start, end, len(requests), requested_by)
    key = f"backfill/{sid}/{start}..{end}/{requested_by}@{now}#{row.definition_version}"
    return [Pending(key, head), *requests]


def by_hand(requests: Sequence[RunRequested], now: int) -> list[Pending]:
    """Run requests made by hand (a request, a backfill). The fingerprint is part of a request's
    identity: a request with other content at the same instant is not a duplicate, it is a
    conflict and must be recorded as one."""
    return [Pending(f"run/{r.requested_by}>{r.run_key}@{now}#{r.fingerprint}", r) for r in requests]
