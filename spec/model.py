"""The reference model: arcoflow's semantics (``spec/SPEC.md``) as plain Python data.

This is the oracle the state machines compare the kernel with, so it is written *independently*
of the kernel's code: it never imports ``arcoflow.kernel.decide``, ``evolve``, ``cron``, ``runs``
or ``store`` (an oracle that shares code with the implementation shares its bugs). It takes the
input value types from :mod:`arcoflow.kernel.definitions` (what users and plugins hand over)
and nothing else from the kernel. Ticks come from :func:`arcoflow.spec.ticks.reference_ticks`,
the naive, unbounded walk; ids are re-derived here from the documented rules.

Everything is a dict, a list or a dataclass, and every action is one method that reads like the
SPEC's table: precondition (raise :class:`Rejected`), then effect. Nothing is optimised except
that the tick walk is asked for a window at a time (it is exact for any window).

>>> from arcoflow.kernel.definitions import RunTemplate, ScheduleDefinition
>>> m = Model()
>>> m.define_schedule(ScheduleDefinition("hourly", "0 * * * *", RunTemplate("etl")), now=0)
'created'
>>> [t.status for t in m.evaluate_schedules(now=3600)]
['TRIGGERED']
>>> m.evaluate_schedules(now=3600)
[]
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

import attrs
from arcoflow.kernel.definitions import (
    PollContext,
    PollResult,
    PushMessage,
    RunRequest,
    RunTemplate,
    ScheduleDefinition,
    SensorDefinition,
    TickContext,
    TickResult,
)

from .ticks import RefTick, reference_ticks

__all__ = [
    "DST_SKIP",
    "NAMESPACE",
    "MCursor",
    "MEval",
    "MHistory",
    "MMissed",
    "MRun",
    "MRunConflict",
    "MSchedule",
    "MSensor",
    "MTick",
    "MTicket",
    "Model",
    "Rejected",
    "backoff_delay",
    "dedupe_reason",
    "derived_id",
    "fingerprint",
    "iso",
    "plugin_error",
    "poll_key",
    "run_id",
    "tick_id",
]

#: The uuid5 namespace of every arcoflow id (SPEC "Identity"). Fixed forever.
NAMESPACE: Final = uuid.UUID("6f1c1f0e-7a4b-5c1e-9d2a-a1c0f10a0001")
#: The reason the model gives a tick that ``dst_gap = "skip"`` skips; the kernel's reason says
#: it in prose and contains this text.
DST_SKIP: Final = "dst_gap=skip"
#: Launch retries: ``min(LAUNCH_CAP, LAUNCH_BASE * 2**(attempt-1))`` seconds after a failure.
LAUNCH_BASE: Final = 10
LAUNCH_CAP: Final = 600

Kind = Literal["not_found", "input", "conflict", "payload_too_large"]


class Rejected(Exception):
    """An action's precondition failed: nothing changed. ``kind`` is what the kernel must raise
    (``not_found``: NotFound, ``input``: InputError, ``conflict``: Conflict,
    ``payload_too_large``: PayloadTooLarge)."""

    def __init__(self, kind: Kind, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind: Kind = kind


# -- identity (SPEC "Identity") ------------------------------------------------------------------


def iso(at: int) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def tick_id(schedule_id: str, at: int) -> str:
    """``<schedule id>:<UTC instant>``: the two 01:30s of a fall-back day are two ticks."""
    return f"{schedule_id}:{iso(at)}"


def run_id(run_key: str) -> str:
    """uuid5 of ``"run:" + run_key``: every retry of a request names the same run."""
    return str(uuid.uuid5(NAMESPACE, "run:" + run_key))


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode(errors="surrogatepass")).hexdigest()[:32]


def derived_id(idempotency_key: str) -> str:
    """Evaluation ids: uuid5 of the evaluation's idempotency key, never random."""
    return str(uuid.uuid5(NAMESPACE, idempotency_key))


def fingerprint(target: str, config: dict[str, Any], tags: dict[str, str]) -> str:
    """First 32 hex digits of sha256 over the compact, key-sorted JSON of what a run does."""
    data = json.dumps(
        {"target": target, "config": config, "tags": tags},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(data.encode()).hexdigest()[:32]


def cursor_digest(cursor: MCursor | None) -> str:
    """``-``, or the cursor's format version and the first 16 hex digits of its sha256."""
    if cursor is None:
        return "-"
    raw = cursor.value.encode() if isinstance(cursor.value, str) else cursor.value
    return f"{cursor.version}.{hashlib.sha256(raw).hexdigest()[:16]}"


def poll_key(sensor_id: str, expected_state_version: int, cursor: MCursor | None) -> str:
    """A poll's idempotency key: sensor, poll epoch and the cursor it started from."""
    return f"poll/{sensor_id}/{expected_state_version}/{cursor_digest(cursor)}"


def dedupe_reason(run_keys: Sequence[str]) -> str | None:
    """The reason a tick or evaluation records for run keys that already had a run (SPEC
    "Request a run"): ``run key <key> already requested: run <run id>``, joined by ``; ``."""
    return "; ".join(f"run key {k} already requested: run {run_id(k)}" for k in run_keys) or None


def push_key(sensor_id: str, message_id: str) -> str:
    return f"push/{sensor_id}/{message_id}"


def backoff_delay(definition: SensorDefinition, failures: int) -> int:
    """Seconds until the next poll after ``failures`` consecutive failures (SPEC "Backoff").

    ``delay = min(cap, base * 2**(failures - 1))``; the jitter fraction is the first 8 bytes of
    ``sha256("<sensor id>:<failures>")`` read big-endian over 2**64; the wait is
    ``delay + int(delay * jitter * fraction)``, at most ``cap`` and at least
    ``minimum_interval``.
    """
    b = definition.backoff
    delay = min(b.cap, b.base * 2 ** (failures - 1))
    digest = hashlib.sha256(f"{definition.id}:{failures}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    jittered: int = delay + int(delay * b.jitter * fraction)
    return max(definition.minimum_interval, min(b.cap, jittered))


def plugin_error(exc: BaseException) -> str:
    """How a plugin's exception is recorded: ``"<ExceptionType>: <message>"``."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def json_size(value: Any) -> int:
    """Bytes of the compact JSON encoding of ``value`` (push payload limits)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


# -- state ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MCursor:
    """A connector's cursor as it handed it over, with the format version it declared."""

    value: str | bytes
    version: int


@dataclass
class MSchedule:
    definition: ScheduleDefinition
    definition_version: int
    enabled: bool
    deleted: bool
    state_version: int  # +1 on every change: the CAS token of evaluations
    eligible_from: int  # no tick before this instant runs (created or re-enabled here)
    last_scheduled_for: int | None  # only moves forward
    retries: list[tuple[int, int]]  # failed ticks awaiting a retry: (instant, attempts so far)
    updated_at: int
    next_fire_at: int | None = None  # derived: see Model.next_fire_at


@dataclass
class MTick:
    tick_id: str
    schedule_id: str
    scheduled_for: int
    status: Literal["TRIGGERED", "SKIPPED", "FAILED"]
    definition_version: int
    attempts: int
    reason: str | None
    run_keys: tuple[str, ...]
    final: bool
    evaluated_at: int
    deduped: tuple[str, ...] = ()  # run keys that already had a run: no new run for them


@dataclass
class MMissed:
    schedule_id: str
    evaluated_at: int
    ranges: tuple[tuple[str, int, int], ...]  # (reason, first instant, last instant)


@dataclass
class MSensor:
    definition: SensorDefinition
    definition_version: int
    running: bool
    deleted: bool
    state_version: int  # +1 per accepted poll: the CAS token of polls
    cursor: MCursor | None
    failures: int
    next_eval_at: int | None
    updated_at: int
    evaluations: int = 0
    last_eval_at: int | None = None
    last_status: str | None = None
    last_reason: str | None = None


@dataclass
class MEval:
    eval_id: str
    sensor_id: str
    kind: Literal["push", "poll"]
    status: Literal["REQUESTED", "NO_DATA", "SKIPPED", "FAILED", "REFUSED"]
    reason: str | None
    message_id: str | None
    expected_state_version: int | None
    cursor_before: MCursor | None
    cursor_after: MCursor | None
    run_keys: tuple[str, ...]
    failures: int
    next_eval_at: int | None
    evaluated_at: int
    #: What each run key asked for (its first fingerprint): part of a poll's outcome.
    requested: tuple[tuple[str, str], ...] = ()
    deduped: tuple[str, ...] = ()  # run keys that already had a run

    @property
    def shown_reason(self) -> str | None:
        """The reason history shows: the connector's, else the dedupe hits."""
        return self.reason or dedupe_reason(self.deduped)


@dataclass
class MHistory:
    """One change to a schedule or sensor by a command (SPEC "Definition history")."""

    kind: Literal["schedule", "sensor"]
    id: str
    at: int
    change: str
    old_version: int | None
    new_version: int
    expected_state_version: int | None = None
    cursor_before: MCursor | None = None
    cursor_after: MCursor | None = None
    requested_by: str | None = None
    range_from: int | None = None
    range_to: int | None = None
    runs: int | None = None


@dataclass
class MRun:
    run_id: str
    run_key: str
    fingerprint: str
    origin: str
    requested_by: str
    target: str
    launcher: str | None
    config: dict[str, Any]
    tags: dict[str, str]
    status: Literal["REQUESTED", "LAUNCHED", "SUCCEEDED", "FAILED", "GAVE_UP"]
    created_at: int
    updated_at: int
    attempts: int = 0
    next_attempt_at: int | None = None
    external_id: str | None = None
    last_error: str | None = None
    detail: str | None = None
    claimed_by: str | None = None
    retries: int = 0
    attempt_base: int = 0  # attempts before the last retry: the launch budget counts from here


@dataclass
class MRunConflict:
    run_key: str
    run_id: str
    existing_fingerprint: str
    conflicting_fingerprint: str
    requested_by: str
    origin: str
    at: int


@dataclass(frozen=True)
class MTicket:
    """What a poll read: the version it expects and the cursor it hands the connector."""

    sensor_id: str
    expected_state_version: int
    cursor: MCursor | None


@dataclass
class _Request:
    origin: str
    requested_by: str
    run_key: str
    target: str
    launcher: str | None
    config: dict[str, Any]
    tags: dict[str, str]


Evaluator = Callable[[TickContext], Any]
Connector = Callable[[PollContext], Any]
Mapper = Callable[[PushMessage], Any]
Action = Literal["created", "updated", "enabled", "disabled", "unchanged"]


# -- the tick walk -------------------------------------------------------------------------------


class _Walk:
    """The naive reference walk of one definition, asked for windows ``(lo, hi]``."""

    _FAR: Final = 5 * 366 * 86400  # every accepted cron fires within this (Feb 29: 4 years)

    def __init__(self, d: ScheduleDefinition) -> None:
        self.args = (d.cron, d.timezone, str(d.dst_gap.value), str(d.dst_fold.value))

    def ticks(self, lo: int, hi: int) -> list[RefTick]:
        """Every tick with ``lo < at <= hi``."""
        return reference_ticks(*self.args, lo, hi) if lo < hi else []

    def first_after(self, after: int, limit: int | None = None) -> RefTick | None:
        """The first tick strictly after ``after`` (and at most ``limit``), or None."""
        end = after + self._FAR if limit is None else limit
        lo, step = after, 3600
        while lo < end:
            hi = min(lo + step, end)
            found = self.ticks(lo, hi)
            if found:
                return found[0]
            lo, step = hi, min(step * 2, 32 * 86400)
        return None

    def last_before(self, before: int, floor: int) -> RefTick | None:
        """The last tick strictly before ``before`` and strictly after ``floor``, or None."""
        hi, step = before - 1, 3600
        while hi > floor:
            lo = max(hi - step, floor)
            found = self.ticks(lo, hi)
            if found:
                return found[-1]
            hi, step = lo, min(step * 2, 32 * 86400)
        return None


# -- the model -----------------------------------------------------------------------------------


@dataclass
class Model:
    """The whole state of an arcoflow store, and every action on it (SPEC "Actions")."""

    schedules: dict[str, MSchedule] = field(default_factory=dict)
    ticks: dict[str, dict[int, MTick]] = field(default_factory=dict)
    missed: dict[str, list[MMissed]] = field(default_factory=dict)
    sensors: dict[str, MSensor] = field(default_factory=dict)
    evaluations: list[MEval] = field(default_factory=list)  # in the order they were recorded
    runs: dict[str, MRun] = field(default_factory=dict)  # insertion order = creation order
    conflicts: list[MRunConflict] = field(default_factory=list)
    #: Requests made by hand, by (requester, run key, fingerprint, now): repeating one exactly
    #: is one request.
    manual_requests: set[tuple[str, str, str, int]] = field(default_factory=set)
    #: Evaluations that changed a schedule, by (schedule id, state_version read, now): the
    #: identity of an evaluation. The same evaluation delivered twice (two evaluators that read
    #: the same state at the same instant) has one effect; the second gets the first's ticks.
    schedule_evaluations: dict[tuple[str, int, int], list[str]] = field(default_factory=dict)
    #: Changes to each (kind, id) by commands, oldest first: the definition history.
    history: dict[tuple[str, str], list[MHistory]] = field(default_factory=dict)
    #: Cursor sets applied, by (sensor, expected version, cursor digest): repeating one is one.
    cursor_sets: set[tuple[str, int, str]] = field(default_factory=set)
    #: Backfills made, by (schedule, range, definition version, requester, instant): repeating
    #: the very same one is one backfill.
    backfills: set[tuple[str, int, int, int, str, int]] = field(default_factory=set)
    #: Retention (SPEC "Retention"): the store-wide ``history`` in seconds (None: forever).
    history_retention: int | None = None
    #: Every evaluation ever recorded, by id, pruned or not: the log, which answers a
    #: redelivery with the original evaluation.
    logged: dict[str, MEval] = field(default_factory=dict)
    #: Runs retention pruned. Their keys stay taken forever (the key, not the content).
    pruned_runs: set[str] = field(default_factory=set)
    #: Where retention cut each history off: (kind, id) -> instant before which it may be gone.
    pruned_before: dict[tuple[str, str], int] = field(default_factory=dict)

    # -- schedules: definitions ----------------------------------------------------------------

    def define_schedule(self, d: ScheduleDefinition, now: int) -> Action:
        """Create or update. The version moves only when the content (everything but
        ``enabled``) changes; a change of ``enabled`` alone is a toggle."""
        old = self.schedules.get(d.id)
        if old is None or old.deleted:
            self.schedules[d.id] = s = MSchedule(
                definition=d,
                definition_version=(old.definition_version if old else 0) + 1,
                enabled=d.enabled,
                deleted=False,
                state_version=(old.state_version if old else 0) + 1,
                eligible_from=now,  # a new schedule never fires for instants before it existed
                last_scheduled_for=old.last_scheduled_for if old else None,
                retries=[],
                updated_at=now,
            )
            self._record("schedule", d.id, "created", old, s.definition_version, now)
            self._refresh(s)
            return "created"
        if _content(old.definition) == _content(d):
            if old.enabled == d.enabled:
                return "unchanged"
            self.set_schedule_enabled(d.id, d.enabled, now)
            return "enabled" if d.enabled else "disabled"
        if d.enabled and not old.enabled:
            old.eligible_from = now  # enabling never back-fills
        self._record("schedule", d.id, "updated", old, old.definition_version + 1, now)
        old.definition = d
        old.definition_version += 1
        old.enabled = d.enabled
        self._touch(old, now)
        return "updated"

    def set_schedule_enabled(self, schedule_id: str, enabled: bool, now: int) -> MSchedule:
        s = self._live_schedule(schedule_id)
        if s.enabled != enabled:
            change = "enabled" if enabled else "disabled"
            self._record("schedule", schedule_id, change, s, s.definition_version, now)
            s.enabled = enabled
            if enabled:
                s.eligible_from = now
            self._touch(s, now)
        return s

    def delete_schedule(self, schedule_id: str, now: int) -> None:
        """History (ticks, missed summaries, runs) stays; pending retries are dropped."""
        s = self._live_schedule(schedule_id)
        self._record("schedule", schedule_id, "deleted", s, s.definition_version, now)
        s.deleted, s.enabled, s.retries = True, False, []
        self._touch(s, now)

    def _live_schedule(self, schedule_id: str) -> MSchedule:
        s = self.schedules.get(schedule_id)
        if s is None or s.deleted:
            raise Rejected("not_found", f"no schedule {schedule_id!r}")
        return s

    def _record(
        self,
        kind: Literal["schedule", "sensor"],
        item_id: str,
        change: str,
        old: MSchedule | MSensor | None,
        new_version: int,
        now: int,
        **extra: Any,
    ) -> None:
        """Append one change to the item's history."""
        entry = MHistory(
            kind,
            item_id,
            now,
            change,
            old.definition_version if old else None,
            new_version,
            **extra,
        )
        self.history.setdefault((kind, item_id), []).append(entry)

    def _touch(self, s: MSchedule, now: int) -> None:
        s.state_version += 1
        s.updated_at = now
        self._refresh(s)

    @staticmethod
    def cursor(s: MSchedule) -> int:
        """Ticks strictly after this instant are still to be evaluated."""
        last = s.last_scheduled_for
        return max(s.eligible_from - 1, last if last is not None else s.eligible_from - 1)

    def _refresh(self, s: MSchedule) -> None:
        """``next_fire_at``: when an evaluation would next have something to do: the first tick
        after the cursor, or a pending retry, whichever is first; None unless enabled."""
        if not s.enabled or s.deleted:
            s.next_fire_at = None
            return
        first = _Walk(s.definition).first_after(self.cursor(s))
        candidates = [r[0] for r in s.retries] + ([first.at] if first else [])
        s.next_fire_at = min(candidates) if candidates else None

    # -- schedules: evaluation -----------------------------------------------------------------

    def due_schedules(self, now: int) -> list[str]:
        """Enabled schedules whose ``next_fire_at <= now``, by (next_fire_at, id)."""
        due = [
            (s.next_fire_at, sid)
            for sid, s in self.schedules.items()
            if s.enabled and not s.deleted and s.next_fire_at is not None and s.next_fire_at <= now
        ]
        return [sid for _, sid in sorted(due)]

    def evaluate_schedules(self, now: int, evaluator: Evaluator | None = None) -> list[MTick]:
        out: list[MTick] = []
        for sid in self.due_schedules(now):
            out += self.evaluate_schedule(sid, now, evaluator)
        return out

    def evaluate_schedule(
        self,
        schedule_id: str,
        now: int,
        evaluator: Evaluator | None = None,
        read_version: int | None = None,
    ) -> list[MTick]:
        """One evaluation: the due ticks (retries first, then fresh ones, oldest first) are
        recorded; dropped ticks are summarised once; runs are requested.

        ``read_version``: the ``state_version`` an evaluator read before another one wrote (a
        stale read). If that very evaluation (same version, same ``now``) was recorded, this
        is a duplicate: nothing changes and the original ticks are returned. Otherwise the
        stale read loses its compare-and-set and the evaluation is decided afresh."""
        s = self.schedules.get(schedule_id)
        if s is None:
            raise Rejected("not_found", f"no schedule {schedule_id!r}")
        if read_version is not None and (schedule_id, read_version, now) in (
            done := self.schedule_evaluations
        ):
            by_id = {t.tick_id: t for t in self.ticks.get(schedule_id, {}).values()}
            return [by_id[tid] for tid in done[(schedule_id, read_version, now)]]
        if not s.enabled or s.deleted:
            return []
        d = s.definition
        walk = _Walk(d)
        cursor = self.cursor(s)
        window_start = now - d.catchup_window  # a tick at T may run while now <= T + window
        due: list[tuple[int, bool, int]] = [(at, True, n + 1) for at, n in s.retries]
        missed: list[tuple[str, int, int]] = []
        last: int | None = None
        # Ticks after the cursor but older than the window: missed, summarised as one range.
        first_late = walk.first_after(cursor, limit=window_start - 1)
        if first_late is not None:
            last_late = walk.last_before(window_start, floor=cursor)
            assert last_late is not None
            missed.append(("outside_catchup_window", first_late.at, last_late.at))
            last = last_late.at
        in_window = walk.ticks(max(cursor, window_start - 1), now)
        budget = d.max_catchup_ticks
        if d.catchup_order == "newest":
            run, dropped = in_window[-budget:], in_window[:-budget]
            if dropped:
                missed.append(("over_max_catchup_ticks", dropped[0].at, dropped[-1].at))
        else:  # oldest: drain forward; the rest waits for later evaluations
            run = in_window[:budget]
        if run:
            last = run[-1].at
        due += [(t.at, t.run, 1) for t in run]
        if not due and not missed:
            return []  # nothing to record: nothing changes

        recorded: list[MTick] = []
        requests: list[_Request] = []  # requested after each tick, in order
        retries: list[tuple[int, int]] = []
        known = set(self.runs) | self.pruned_runs  # run keys taken as each tick is recorded
        for at, runs_by_policy, attempt in due:
            tid = tick_id(schedule_id, at)
            outcome: TickResult | str = TickResult()
            if d.evaluator is not None and runs_by_policy:
                outcome = _ask_evaluator(evaluator, s, tid, at, attempt)
            keys: tuple[str, ...] = ()
            reason: str | None = None
            final = True
            if isinstance(outcome, str):
                status: Literal["TRIGGERED", "SKIPPED", "FAILED"] = "FAILED"
                reason = outcome
                final = attempt > d.max_tick_retries
                if not final:
                    retries.append((at, attempt))
            elif not runs_by_policy:
                status, reason = "SKIPPED", DST_SKIP
            elif outcome.skip_reason is not None or outcome.run_requests == []:
                status = "SKIPPED"
                reason = outcome.skip_reason or "evaluator returned no run requests"
            else:
                status = "TRIGGERED"
                asked = outcome.run_requests or [RunRequest()]
                made = [
                    _request(
                        f"schedule:{schedule_id}",
                        tid,
                        d.run,
                        r,
                        iso(at) if i == 0 else f"{iso(at)}:{i}",
                    )
                    for i, r in enumerate(asked)
                ]
                requests += made
                keys = _unique(r.run_key for r in made)
            deduped = tuple(k for k in keys if run_id(k) in known)
            known.update(run_id(k) for k in keys)
            if reason is None:
                reason = dedupe_reason(deduped)
            tick = MTick(
                tid,
                schedule_id,
                at,
                status,
                s.definition_version,
                attempt,
                reason,
                keys,
                final,
                now,
                deduped,
            )
            self.ticks.setdefault(schedule_id, {})[at] = tick
            recorded.append(tick)
        if missed:
            self.missed.setdefault(schedule_id, []).append(MMissed(schedule_id, now, tuple(missed)))
        self.schedule_evaluations[(schedule_id, s.state_version, now)] = [
            t.tick_id for t in recorded
        ]
        s.retries = retries
        if last is not None and (s.last_scheduled_for is None or last > s.last_scheduled_for):
            s.last_scheduled_for = last  # only ever forward
        self._touch(s, now)
        for request in requests:
            self._request_run(request, now)
        return recorded

    # -- sensors: definitions ------------------------------------------------------------------

    def define_sensor(self, d: SensorDefinition, now: int) -> Action:
        """Create or update. A live sensor's type cannot change. The poll state (version,
        cursor, failures) survives updates, and even deletion and re-creation."""
        old = self.sensors.get(d.id)
        live = old is not None and not old.deleted
        if old is not None and live:
            if _content(old.definition) == _content(d):
                if old.running == d.enabled:
                    return "unchanged"
                self.set_sensor_running(d.id, d.enabled, now)
                return "enabled" if d.enabled else "disabled"
            if old.definition.type != d.type:
                raise Rejected("input", f"sensor {d.id!r}: its type cannot change")
        nxt: int | None = None
        if d.type == "poll" and d.enabled:
            keep = old is not None and live and old.next_eval_at is not None
            nxt = old.next_eval_at if keep and old is not None else now
        self.sensors[d.id] = MSensor(
            definition=d,
            definition_version=(old.definition_version if old else 0) + 1,
            running=d.enabled,
            deleted=False,
            state_version=old.state_version if old else 0,
            cursor=old.cursor if old else None,
            failures=old.failures if old else 0,
            next_eval_at=nxt,
            updated_at=now,
            evaluations=old.evaluations if old else 0,
            last_eval_at=old.last_eval_at if old else None,
            last_status=old.last_status if old else None,
            last_reason=old.last_reason if old else None,
        )
        change: Action = "updated" if live else "created"
        self._record("sensor", d.id, change, old, self.sensors[d.id].definition_version, now)
        return change

    def set_sensor_running(self, sensor_id: str, running: bool, now: int) -> MSensor:
        """Start or stop; a started poll sensor is due at once."""
        s = self._live_sensor(sensor_id)
        if s.running != running:
            change = "started" if running else "stopped"
            self._record("sensor", sensor_id, change, s, s.definition_version, now)
            s.running = running
            s.next_eval_at = now if running and s.definition.type == "poll" else None
            s.updated_at = now
        return s

    def delete_sensor(self, sensor_id: str, now: int) -> None:
        s = self._live_sensor(sensor_id)
        self._record("sensor", sensor_id, "deleted", s, s.definition_version, now)
        s.deleted, s.running, s.next_eval_at, s.updated_at = True, False, None, now

    def _live_sensor(self, sensor_id: str) -> MSensor:
        s = self.sensors.get(sensor_id)
        if s is None or s.deleted:
            raise Rejected("not_found", f"no sensor {sensor_id!r}")
        return s

    def due_sensors(self, now: int) -> list[str]:
        """Running poll sensors with ``next_eval_at <= now``, by (next_eval_at, id)."""
        due = [
            (s.next_eval_at, sid)
            for sid, s in self.sensors.items()
            if s.running
            and not s.deleted
            and s.definition.type == "poll"
            and s.next_eval_at is not None
            and s.next_eval_at <= now
        ]
        return [sid for _, sid in sorted(due)]

    def evaluation(self, eval_id: str) -> MEval | None:
        return next((e for e in self.evaluations if e.eval_id == eval_id), None)

    # -- sensors: push -------------------------------------------------------------------------

    def ingest(
        self,
        sensor_id: str,
        message_id: str,
        payload: Any = None,
        now: int = 0,
        connector: Mapper | None = None,
    ) -> tuple[MEval, bool]:
        """One push delivery, keyed by ``message_id``. A re-delivery (in any order, while the
        sensor is in any state) changes nothing and returns the original evaluation."""
        s = self.sensors.get(sensor_id)
        if s is None:
            raise Rejected("not_found", f"no sensor {sensor_id!r}")
        if not isinstance(message_id, str) or not _text(message_id):
            raise Rejected("input", "message id must be valid Unicode text")
        key = push_key(sensor_id, message_id)
        earlier = self.logged.get(derived_id(key))
        if earlier is not None:
            return earlier, True
        if not _json_data(payload):
            raise Rejected("input", "payload must be JSON data the log can store")
        if s.deleted:
            raise Rejected("not_found", f"sensor {sensor_id!r} was deleted")
        if not s.running:
            raise Rejected("input", f"sensor {sensor_id!r} is stopped")
        if s.definition.type != "push":
            raise Rejected("input", f"sensor {sensor_id!r} is a poll sensor")
        if not 0 < len(message_id) <= 256:
            raise Rejected("input", "message id must be 1-256 characters")
        if json_size(payload) > s.definition.max_payload_bytes:
            raise Rejected("payload_too_large", f"payload over {s.definition.max_payload_bytes}")
        outcome: Sequence[RunRequest] | str
        outcome = [RunRequest(message_id, config={"payload": payload})]
        if connector is not None:
            message = PushMessage(
                s.definition, message_id, payload, datetime.fromtimestamp(now, UTC)
            )
            try:
                mapped = connector(message)
                if mapped is not None:
                    outcome = (
                        list(mapped)
                        if isinstance(mapped, (list, tuple))
                        and all(isinstance(r, RunRequest) for r in mapped)
                        else f"connector returned {type(mapped).__name__}, not a list of RunRequest"
                    )
            except Exception as exc:
                outcome = plugin_error(exc)
        eval_id = derived_id(key)
        requests, status, reason = _sensor_requests(s, eval_id, outcome, message_id)
        if status == "NO_DATA":
            reason = "no run requests"
        e = MEval(
            eval_id,
            sensor_id,
            "push",
            status,
            reason,
            message_id,
            None,
            None,
            None,
            _unique(r.run_key for r in requests),
            0,
            None,
            now,
        )
        e.deduped = self._deduped(e.run_keys)
        self.evaluations.append(e)
        self.logged[e.eval_id] = e
        self._count(s, e, now)
        for request in requests:
            self._request_run(request, now)
        return e, False

    # -- sensors: poll -------------------------------------------------------------------------

    def ingest_many(
        self,
        sensor_id: str,
        messages: Sequence[tuple[Any, ...]],
        now: int = 0,
        connector: Mapper | None = None,
        record_refusals: bool = False,
    ) -> list[tuple[MEval, bool] | tuple[str, MEval | None]]:
        """Each ``(message_id, payload[, problem])`` as :meth:`ingest` takes it, in order:
        ``(evaluation, duplicate)``, or ``(kind of refusal, its REFUSED evaluation or None)``.
        A ``problem`` (the source could not read the message) is a refusal with that reason,
        unless the id was ingested before (then it is a re-delivery, as any other).
        With ``record_refusals``, a refusal by a sensor that exists is recorded as a REFUSED
        evaluation: no run, no state_version move, the id stays free (a good delivery of it
        later is accepted); one per message id and sensor state (definition version, toggles).
        """
        out: list[tuple[MEval, bool] | tuple[str, MEval | None]] = []
        for message_id, payload, problem in ((*m, None, None)[:3] for m in messages):
            try:
                if problem is not None:
                    # Ingested before, it is a re-delivery; its body does not matter then.
                    known = sensor_id in self.sensors and isinstance(message_id, str)
                    if known and _text(message_id):
                        earlier = self.evaluation(derived_id(push_key(sensor_id, message_id)))
                        if earlier is not None:
                            out.append((earlier, True))
                            continue
                    raise Rejected("input", problem)
                out.append(self.ingest(sensor_id, message_id, payload, now, connector))
            except Rejected as exc:
                s = self.sensors.get(sensor_id)
                recorded = None
                if record_refusals and s is not None:
                    recorded = self._refuse(
                        s, sensor_id, message_id, payload, str(exc), problem, now
                    )
                out.append((exc.kind, recorded))
        return out

    def _refuse(
        self,
        s: MSensor,
        sensor_id: str,
        message_id: Any,
        payload: Any,
        why: str,
        problem: str | None,
        now: int,
    ) -> MEval:
        """Record a refusal: one per text message id and sensor state; without a text id, one
        per type of id, source's problem, payload and second."""
        toggles = sum(
            h.change in ("started", "stopped") for h in self.history.get(("sensor", sensor_id), [])
        )
        if isinstance(message_id, str) and message_id:
            who = _sha(message_id)
        else:
            try:
                content = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
            except (TypeError, ValueError):
                content = type(payload).__name__
            told = problem or ""
            who = f"~{_sha(f'{type(message_id).__name__}:{told}:{content}')}@{now}"
        key = f"refused/{sensor_id}/{who}/{s.definition_version}.{toggles}"
        earlier = self.evaluation(derived_id(key))
        if earlier is not None:
            return earlier
        ok = isinstance(message_id, str) and _text(message_id) and 0 < len(message_id) <= 256
        kept = message_id if ok else None
        reason = problem or why
        e = MEval(
            derived_id(key), sensor_id, "push", "REFUSED", reason, kept, None, None, None, (),
            0, None, now,
        )  # fmt: skip
        self.evaluations.append(e)
        self._count(s, e, now)
        return e

    def poll_ticket(self, sensor_id: str) -> MTicket:
        s = self._live_sensor(sensor_id)
        if s.definition.type != "poll":
            raise Rejected("input", f"sensor {sensor_id!r} is a push sensor")
        return MTicket(sensor_id, s.state_version, s.cursor)

    def poll(self, sensor_id: str, connector: Connector, now: int) -> MEval:
        """Read, call the connector, record (with the version read as the CAS)."""
        ticket = self.poll_ticket(sensor_id)
        s = self.sensors[sensor_id]
        context = PollContext(
            s.definition,
            ticket.cursor.value if ticket.cursor else None,
            ticket.cursor.version if ticket.cursor else None,
            ticket.expected_state_version,
            datetime.fromtimestamp(now, UTC),
        )
        result: PollResult | str
        try:
            answer = connector(context)
            result = (
                answer
                if isinstance(answer, PollResult)
                else f"connector returned {type(answer).__name__}, not PollResult"
            )
        except Exception as exc:
            result = plugin_error(exc)
        return self.record_poll(ticket, result, now)

    def record_poll(self, ticket: MTicket, result: PollResult | str, now: int) -> MEval:
        """Accepted only at the expected version: then the version rises by one and the cursor
        advances (``None`` keeps it). Re-recording the same outcome (status, reason, new
        cursor, and the runs it asks for) at a used epoch returns the original evaluation; any
        other outcome there, or a stale version, is a conflict and writes nothing."""
        s = self._live_sensor(ticket.sensor_id)
        if s.definition.type != "poll":
            raise Rejected("input", f"sensor {ticket.sensor_id!r} is a push sensor")
        d = s.definition
        eval_id = derived_id(
            poll_key(s.definition.id, ticket.expected_state_version, ticket.cursor)
        )
        cursor_after: MCursor | None = None
        if isinstance(result, str):
            failures = s.failures + 1
            nxt = now + backoff_delay(d, failures)
            requests: list[_Request] = []
            status: Literal["REQUESTED", "NO_DATA", "SKIPPED", "FAILED"] = "FAILED"
            reason: str | None = result
        else:
            failures, nxt = 0, now + d.minimum_interval
            if result.cursor is not None:
                cursor_after = MCursor(result.cursor, result.cursor_version)
            if result.skip_reason is not None:
                requests, status, reason = [], "SKIPPED", result.skip_reason
            else:
                requests, status, reason = _sensor_requests(
                    s, eval_id, list(result.run_requests), eval_id
                )
                if status == "NO_DATA":
                    reason = "no new data"
        keys = _unique(r.run_key for r in requests)
        requested = _fingerprints(requests)
        earlier = self.logged.get(eval_id)
        if earlier is not None:
            outcome = (status, reason, cursor_after, keys, requested)
            same = outcome == (
                earlier.status,
                earlier.reason,
                earlier.cursor_after,
                earlier.run_keys,
                earlier.requested,
            )
            if same:
                return earlier
            raise Rejected("conflict", f"poll epoch {ticket.expected_state_version} was used")
        if ticket.expected_state_version != s.state_version:
            raise Rejected("conflict", f"expected {ticket.expected_state_version}")
        e = MEval(
            eval_id,
            s.definition.id,
            "poll",
            status,
            reason,
            None,
            ticket.expected_state_version,
            ticket.cursor,
            cursor_after,
            keys,
            failures,
            nxt,
            now,
            requested,
        )
        e.deduped = self._deduped(e.run_keys)
        self.evaluations.append(e)
        self.logged[e.eval_id] = e
        s.state_version += 1
        if cursor_after is not None:
            s.cursor = cursor_after  # None never clears it
        s.failures = failures
        s.next_eval_at = nxt if s.running else None
        self._count(s, e, now)
        for request in requests:
            self._request_run(request, now)
        return e

    @staticmethod
    def _count(s: MSensor, e: MEval, now: int) -> None:
        s.evaluations += 1
        s.last_eval_at = now
        s.last_status = e.status
        s.last_reason = e.shown_reason
        s.updated_at = now

    def _deduped(self, keys: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(k for k in keys if self._taken(run_id(k)))

    def _taken(self, rid: str) -> bool:
        """A run key is taken while its run exists and forever after it is pruned."""
        return rid in self.runs or rid in self.pruned_runs

    # -- runs ----------------------------------------------------------------------------------

    def request_run(
        self,
        run_key: str,
        template: RunTemplate,
        now: int,
        origin: str = "manual",
        requested_by: str = "api",
    ) -> MRun:
        """A manual (or backfill) request, in its own namespace. Repeating the very same
        request (requester, key, content, instant) is one request."""
        return self.request(run_key, template, now, origin, requested_by)[0]

    def request(
        self,
        run_key: str,
        template: RunTemplate,
        now: int,
        origin: str = "manual",
        requested_by: str = "api",
    ) -> tuple[MRun, bool, bool]:
        """:meth:`request_run`, with whether the key already had a run (this request created
        none) and whether it asked for other content (a conflict)."""
        if origin not in ("manual", "backfill"):
            raise Rejected("input", f"origin {origin!r}")
        if not _text(requested_by):
            raise Rejected("input", "requested_by must be valid Unicode text")
        request = _request(origin, requested_by, template, RunRequest(run_key), run_key)
        if run_id(request.run_key) in self.pruned_runs:
            raise Rejected("not_found", f"run key {request.run_key!r}: its run was pruned")
        run, existing, conflict = self._by_hand(request, now)
        assert run is not None
        return run, existing, conflict

    def _by_hand(self, request: _Request, now: int) -> tuple[MRun | None, bool, bool]:
        """A request by hand; the run (None: it was pruned), whether the key had one, and
        whether the request asked for other content."""
        fp = fingerprint(request.target, request.config, request.tags)
        identity = (request.requested_by, request.run_key, fp, now)
        rid = run_id(request.run_key)
        existing = identity in self.manual_requests or self._taken(rid)
        if identity not in self.manual_requests:
            self.manual_requests.add(identity)
            self._request_run(request, now)
        run = self.runs.get(rid)
        return run, existing, run is not None and existing and run.fingerprint != fp

    def _request_run(self, r: _Request, now: int) -> None:
        """A new key creates the run; the same key and content links to it; the same key with
        other content is recorded as a conflict: still one run."""
        rid = run_id(r.run_key)
        fp = fingerprint(r.target, r.config, r.tags)
        existing = self.runs.get(rid)
        if existing is None and rid in self.pruned_runs:  # pruned: the key stays taken
            return
        if existing is None:
            self.runs[rid] = MRun(
                run_id=rid,
                run_key=r.run_key,
                fingerprint=fp,
                origin=r.origin,
                requested_by=r.requested_by,
                target=r.target,
                launcher=r.launcher,
                config=r.config,
                tags=r.tags,
                status="REQUESTED",
                created_at=now,
                updated_at=now,
                next_attempt_at=now if r.launcher is not None else None,
            )
        elif existing.fingerprint != fp:
            self.conflicts.append(
                MRunConflict(
                    r.run_key, rid, existing.fingerprint, fp, r.requested_by, r.origin, now
                )
            )

    def run(self, run_id: str) -> MRun:
        r = self.runs.get(run_id)
        if r is None:
            raise Rejected("not_found", f"no run {run_id!r}")
        return r

    # -- retention -----------------------------------------------------------------------------

    def set_retention(self, history: int | None) -> int | None:
        """The store-wide ``history`` (seconds; None: keep everything); returns it."""
        self.history_retention = history
        return history

    def prune(self, now: int) -> int:
        """Drop what is older than ``history`` at ``now``: final ticks scheduled before the
        cutoff; evaluations, missed summaries and conflicts in recording order up to the first
        that is not old enough; finished runs last updated before it (their keys stay taken).
        Each owner's history records the instant before which it may now be gone. Returns
        how many items went."""
        if self.history_retention is None or now - self.history_retention <= 0:
            return 0
        before = now - self.history_retention
        gone = 0

        def mark(kind: str, owner: str, instant: int) -> None:
            slot = (kind, owner)
            self.pruned_before[slot] = max(self.pruned_before.get(slot, 0), instant + 1)

        for sid, by_at in self.ticks.items():
            for at in [at for at, t in by_at.items() if t.final and at < before]:
                del by_at[at]
                mark("schedule", sid, at)
                gone += 1
        for sid, summaries in self.missed.items():
            while summaries and summaries[0].evaluated_at < before:
                mark("schedule", sid, summaries.pop(0).evaluated_at)
                gone += 1
        kept: list[MEval] = []
        young: set[str] = set()  # sensors whose oldest remaining evaluation is young
        for e in self.evaluations:
            if e.sensor_id not in young and e.evaluated_at < before:
                mark("sensor", e.sensor_id, e.evaluated_at)
                gone += 1
            else:
                young.add(e.sensor_id)
                kept.append(e)
        self.evaluations = kept
        while self.conflicts and self.conflicts[0].at < before:
            mark("store", "conflicts", self.conflicts.pop(0).at)
            gone += 1
        for rid, r in list(self.runs.items()):
            if r.status in ("SUCCEEDED", "FAILED") and r.updated_at < before:
                del self.runs[rid]
                self.pruned_runs.add(rid)
                kind, _, owner = r.origin.partition(":")
                mark(kind, owner, r.updated_at) if owner else mark("store", "runs", r.updated_at)
                gone += 1
        return gone

    def due_launches(self, now: int, limit: int = 100) -> list[MRun]:
        """The launch outbox: REQUESTED runs with a launcher whose next attempt is due."""
        due = [
            r
            for r in self.runs.values()
            if r.status == "REQUESTED"
            and r.launcher is not None
            and r.next_attempt_at is not None
            and r.next_attempt_at <= now
        ]
        due.sort(key=lambda r: (r.next_attempt_at, r.run_id))
        return due[:limit]

    def claim_launches(self, claimer: str, now: int, lease: int, limit: int = 100) -> list[MRun]:
        """``claimer`` claims the next attempt of up to ``limit`` due runs until ``now +
        lease``: their next attempt moves to the lease's end, so no other runtime sees them
        due before then. Nothing due: nothing claimed."""
        if not claimer or not _text(claimer):
            raise Rejected("input", f"claimer {claimer!r}")
        if lease < 1:
            raise Rejected("input", f"lease {lease}")
        claimed = self.due_launches(now, limit)
        for r in claimed:
            r.claimed_by, r.next_attempt_at, r.updated_at = claimer, now + lease, now
        return claimed

    def record_launch(
        self,
        run_id: str,
        *,
        external_id: str | None = None,
        error: str | None = None,
        now: int,
        max_attempts: int = 5,
        seen_attempts: int | None = None,
        claimer: str | None = None,
        expected_attempts: int | None = None,
    ) -> MRun:
        """One launch attempt's outcome. Only a REQUESTED run takes one; each attempt number is
        recorded once (``seen_attempts``: the attempts the reporter read; if another reporter
        recorded that attempt since, this report is a duplicate).

        ``expected_attempts`` is a compare-and-set instead: the run must be REQUESTED with
        exactly that many attempts and, with ``claimer``, claimed by it; otherwise a
        conflict."""
        r = self.run(run_id)
        if expected_attempts is not None:
            if r.status != "REQUESTED" or r.attempts != expected_attempts:
                raise Rejected("conflict", f"run {run_id} is {r.status} at {r.attempts}")
            if claimer is not None and r.claimed_by != claimer:
                raise Rejected("conflict", f"run {run_id} is claimed by {r.claimed_by}")
        if r.status != "REQUESTED":
            return r
        if seen_attempts is not None and seen_attempts != r.attempts:
            return r
        r.attempts += 1
        r.updated_at = now
        if error is None:
            r.status, r.external_id, r.next_attempt_at = "LAUNCHED", external_id, None
        else:
            r.last_error = error
            n = r.attempts - r.attempt_base  # attempts since the last operator retry
            if n >= max_attempts:
                r.status, r.next_attempt_at = "GAVE_UP", None
            else:
                r.next_attempt_at = now + min(LAUNCH_CAP, LAUNCH_BASE * 2 ** (n - 1))
        return r

    def complete_run(
        self, run_id: str, succeeded: bool, detail: str | None = None, now: int = 0
    ) -> MRun:
        """A run finished. Reported twice the same way: nothing new; the other way: rejected."""
        r = self.run(run_id)
        status: Literal["SUCCEEDED", "FAILED"] = "SUCCEEDED" if succeeded else "FAILED"
        if r.status in ("SUCCEEDED", "FAILED"):
            if r.status != status:
                raise Rejected("input", f"run {run_id} already finished as {r.status}")
            return r
        r.status, r.detail, r.next_attempt_at, r.updated_at = status, detail, None, now
        return r

    # -- operator verbs ------------------------------------------------------------------------

    def retry_run(self, run_id: str, now: int, requested_by: str = "api") -> MRun:
        """A GAVE_UP run goes back to REQUESTED (due now if it has a launcher) with a fresh
        budget of launch attempts; any other status is rejected."""
        r = self.run(run_id)
        if r.status != "GAVE_UP":
            raise Rejected("input", f"run {run_id} is {r.status}, not GAVE_UP")
        r.status, r.updated_at = "REQUESTED", now
        r.next_attempt_at = now if r.launcher is not None else None
        r.retries += 1
        r.attempt_base = r.attempts
        return r

    def set_cursor(
        self,
        sensor_id: str,
        cursor: MCursor | None,
        expected_version: int,
        now: int,
        requested_by: str = "api",
    ) -> MSensor:
        """An operator sets (``None``: resets) a poll sensor's cursor at the ``state_version``
        it read: a mismatch is a conflict. The same set repeated is one set. Accepted, it
        moves the version by one, like a poll."""
        if sensor_id not in self.sensors:
            raise Rejected("not_found", f"no sensor {sensor_id!r}")
        s = self._live_sensor(sensor_id)
        if s.definition.type != "poll":
            raise Rejected("input", f"sensor {sensor_id!r} is a push sensor")
        if expected_version < 0:
            raise Rejected("input", "expected version must be 0 or more")
        identity = (sensor_id, expected_version, cursor_digest(cursor))
        if identity in self.cursor_sets:
            return s
        if expected_version != s.state_version:
            raise Rejected("conflict", f"expected {expected_version}, at {s.state_version}")
        self.cursor_sets.add(identity)
        change = "cursor_reset" if cursor is None else "cursor_set"
        self._record(
            "sensor",
            sensor_id,
            change,
            s,
            s.definition_version,
            now,
            expected_state_version=expected_version,
            cursor_before=s.cursor,
            cursor_after=cursor,
            requested_by=requested_by,
        )
        s.state_version += 1
        s.cursor = cursor
        s.updated_at = now
        return s

    def backfill(
        self,
        schedule_id: str,
        start: int,
        end: int,
        now: int,
        max_runs: int = 100,
        dry_run: bool = False,
        requested_by: str = "api",
    ) -> list[tuple[int, str | None, bool]]:
        """A run for every tick ``start <= T <= end`` that the DST policy runs, keyed
        ``backfill:<id>:<instant>``, the schedule's run template as it is; at most
        ``max_runs`` ticks (more: rejected). Each tick: (instant, run key or None for a skipped
        tick, whether its run existed before)."""
        s = self.schedules.get(schedule_id)
        if s is None:
            raise Rejected("not_found", f"no schedule {schedule_id!r}")
        s = self._live_schedule(schedule_id)
        if not 1 <= max_runs <= 1000:
            raise Rejected("input", f"max runs {max_runs}")
        if end < start:
            raise Rejected("input", "the range ends before it starts")
        ticks = _Walk(s.definition).ticks(start - 1, end)
        if len(ticks) > max_runs:
            raise Rejected("input", f"{len(ticks)} ticks, over {max_runs}")
        identity = (schedule_id, start, end, s.definition_version, requested_by, now)
        repeated = identity in self.backfills
        requests = [
            _request("backfill", requested_by, s.definition.run, RunRequest(key), key)
            for t in ticks
            if t.run
            for key in [f"{schedule_id}:{iso(t.at)}"]
        ]
        if not dry_run and not repeated:
            self.backfills.add(identity)
            self._record(
                "schedule",
                schedule_id,
                "backfilled",
                s,
                s.definition_version,
                now,
                requested_by=requested_by,
                range_from=start,
                range_to=end,
                runs=len(requests),
            )
        made = iter(requests)
        out: list[tuple[int, str | None, bool]] = []
        for t in ticks:
            if not t.run:
                out.append((t.at, None, False))
                continue
            request = next(made)
            if dry_run:  # a preview: which ticks already have their run
                existing = self._taken(run_id(request.run_key))
            else:  # the very same backfill repeated: every run exists (made by the first)
                existing = repeated or self._by_hand(request, now)[1]
            out.append((t.at, request.run_key, existing))
        return out


# -- helpers -------------------------------------------------------------------------------------


def _text(value: str) -> bool:
    """Text that can be stored: valid Unicode (no lone surrogates)."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _json_data(value: Any) -> bool:
    """JSON data the log can store: null, booleans, integers in [-2**63, 2**64), numbers,
    text, lists, and objects with text keys."""
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -(2**63) <= value < 2**64
    if isinstance(value, float):
        return True
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, list):
        return all(_json_data(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _text(k) and _json_data(v) for k, v in value.items())
    return False


def _content(d: ScheduleDefinition | SensorDefinition) -> Any:
    """What a definition does: everything except ``enabled`` (which is state)."""
    return attrs.evolve(d, enabled=True)


def _unique(keys: Any) -> tuple[str, ...]:
    return tuple(dict.fromkeys(keys))


def _request(
    origin: str, requested_by: str, template: RunTemplate, r: RunRequest, default_key: str
) -> _Request:
    """A request in ``origin``'s namespace, its content merged over the template."""
    return _Request(
        origin=origin,
        requested_by=requested_by,
        run_key=f"{origin}:{r.run_key if r.run_key is not None else default_key}",
        target=r.target or template.target,
        launcher=template.launcher,
        config={**template.config, **r.config},
        tags={**template.tags, **r.tags},
    )


def _fingerprints(requests: Sequence[_Request]) -> tuple[tuple[str, str], ...]:
    """Each run key with the fingerprint it was first asked for."""
    out: dict[str, str] = {}
    for r in requests:
        out.setdefault(r.run_key, fingerprint(r.target, r.config, r.tags))
    return tuple(out.items())


def _sensor_requests(
    s: MSensor, eval_id: str, outcome: Sequence[RunRequest] | str, default_key: str
) -> tuple[list[_Request], Literal["REQUESTED", "NO_DATA", "FAILED"], str | None]:
    """A sensor's run requests: the default key is ``default_key`` for a single request and
    ``<default_key>:<i>`` for each of several."""
    if isinstance(outcome, str):
        return [], "FAILED", outcome
    made = [
        _request(
            f"sensor:{s.definition.id}",
            eval_id,
            s.definition.run,
            r,
            default_key if len(outcome) == 1 else f"{default_key}:{i}",
        )
        for i, r in enumerate(outcome)
    ]
    return made, ("REQUESTED" if made else "NO_DATA"), None


def _ask_evaluator(
    evaluator: Evaluator | None, s: MSchedule, tid: str, at: int, attempt: int
) -> TickResult | str:
    """The evaluator's answer for one tick, or the error that the tick records."""
    d = s.definition
    if evaluator is None:
        return f"no evaluator {d.evaluator!r} is available"
    when = datetime.fromtimestamp(at, UTC)
    context = TickContext(d, tid, when, when.astimezone(ZoneInfo(d.timezone)), attempt, None)
    try:
        answer = evaluator(context)
    except Exception as exc:
        return plugin_error(exc)
    if not isinstance(answer, TickResult):
        return f"evaluator {d.evaluator!r} returned {type(answer).__name__}, not TickResult"
    return answer
