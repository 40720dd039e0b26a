"""The :class:`Kernel` facade: typed commands and history queries over one store.

The facade is the imperative shell around the pure core: it reads the rows a command needs,
calls :mod:`~arcoflow.kernel.decide`, runs any plugin callable *outside* every transaction,
and appends the events. Commands whose decision depends only on stored state re-read and
re-decide when a compare-and-set loses a race; a poll, whose connector already ran against a
cursor that moved on, reports the :class:`~arcoflow.kernel.errors.Conflict` to its caller.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Final, Literal, NamedTuple, TypeVar, get_args

import attrs
import msgspec

from . import decide
from .codec import Envelope
from .cron import Tick, parse_cron, upcoming, zone
from .definitions import (
    Definitions,
    PollContext,
    PollResult,
    PushMessage,
    RunRequest,
    RunTemplate,
    ScheduleDefinition,
    SensorDefinition,
    TickContext,
    TickResult,
    revalidate,
    validate_id,
)
from .errors import Conflict, InputError, NotFound, StoreError
from .events import Cursor, TickRecorded
from .evolve import eval_row
from .rows import (
    ROW_TYPES,
    ConflictRow,
    EvalRow,
    MissedRow,
    RunRow,
    RunStatus,
    ScheduleRow,
    SensorRow,
    Table,
    TickRow,
    from_u64,
    key,
    u64,
)
from .runs import derived_id, request_run, run_id
from .store.base import Appended, Pending, ReadTxn, Store
from .store.memory import MemoryStore
from .values import (
    MAX_TIME,
    check_bool,
    check_choice,
    check_id,
    check_int,
    check_json,
    check_text,
    check_time,
)

__all__ = [
    "Change",
    "Ingested",
    "Kernel",
    "PreviewTick",
    "TickDetail",
    "Verification",
    "preview",
]

Evaluate = Callable[[TickContext], TickResult]
Connect = Callable[[PollContext], PollResult]
MapMessage = Callable[[PushMessage], "Sequence[RunRequest] | None"]
When = int | datetime | None

_RETRIES: Final = 16  # re-decides after a lost compare-and-set before giving up
_T = TypeVar("_T")
_A = TypeVar("_A", bound=attrs.AttrsInstance)


class Change(NamedTuple):
    """What ``apply`` or a define command did to one definition."""

    kind: Literal["schedule", "sensor"]
    id: str
    action: Literal["created", "updated", "enabled", "disabled", "unchanged"]
    definition_version: int


class Ingested(NamedTuple):
    """The evaluation a push message produced; ``duplicate``: it was delivered before, and
    this is the original evaluation."""

    evaluation: EvalRow
    duplicate: bool


class TickDetail(NamedTuple):
    tick: TickRow
    runs: tuple[RunRow, ...]


class PreviewTick(NamedTuple):
    scheduled_for: int
    local_time: datetime
    tick_id: str
    dst: str | None
    action: Literal["run", "skip"]


class Verification(NamedTuple):
    """The result of replaying the log and comparing with the materialised state."""

    ok: bool
    events: int
    differences: tuple[str, ...]


def preview(
    definition: ScheduleDefinition, count: int = 10, start: When = None
) -> list[PreviewTick]:
    """The next ``count`` ticks of ``definition`` from ``start`` on (fewer at the end of the
    supported time range); needs no store."""
    _checked(definition, ScheduleDefinition, "definition")
    check_int(count, "count", 1, 10_000)
    tz = zone(definition.timezone)
    ticks = upcoming(
        parse_cron(definition.cron),
        tz,
        epoch(start, "start") - 1,
        count,
        definition.dst_gap,
        definition.dst_fold,
        until=MAX_TIME,  # the end of the time range (a later tick could not be formatted)
    )
    return [
        PreviewTick(
            t.at,
            datetime.fromtimestamp(t.at, tz),
            decide.tick_id(definition.id, t.at),
            t.dst,
            "run" if t.run else "skip",
        )
        for t in ticks
    ]


def epoch(now: When, field: str = "now") -> int:
    """Epoch seconds from an int, an aware datetime, or ``None`` (the wall clock), within
    :data:`~arcoflow.kernel.values.MIN_TIME` .. :data:`~arcoflow.kernel.values.MAX_TIME`."""
    return check_time(int(time.time()) if now is None else now, field)


def _checked(value: Any, cls: type[_A], field: str) -> _A:
    """A definition (or value class) argument, its validators run again: a caller may have
    changed a mutable part (a config dict) since it was built."""
    if not isinstance(value, cls):
        raise InputError(f"{field}: expected a {cls.__name__}, got {type(value).__name__}")
    revalidate(value)
    return value


def _lookup(value: Any, field: str) -> str:
    """A run, evaluation or tick id to look up (ids are short; a store key is at most 511
    bytes)."""
    return check_text(value, field, 256)


def _error(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Kernel:
    """Commands and history queries over a :class:`~arcoflow.kernel.store.base.Store`.

    >>> from arcoflow.kernel import Kernel, MemoryStore, ScheduleDefinition, RunTemplate
    >>> k = Kernel(MemoryStore())
    >>> k.define_schedule(ScheduleDefinition("hourly", "0 * * * *", RunTemplate("etl")),
    ...                   now=0).action
    'created'
    >>> [t.status for t in k.evaluate_schedules(now=3600)]
    ['TRIGGERED']
    >>> k.evaluate_schedules(now=3600)  # the same instant again: nothing new
    []
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- plumbing ------------------------------------------------------------------------------

    def _row(self, txn: ReadTxn, table: Table, row_key: bytes) -> Any:
        data = txn.get(table, row_key)
        if data is None:
            return None
        return self.store.codec.decode_row(data, ROW_TYPES[table], f"{table.value} {row_key!r}")

    def _get(self, table: Table, row_key: bytes) -> Any:
        with self.store.read() as txn:
            return self._row(txn, table, row_key)

    def _scan(self, table: Table, limit: int | None = None, **kw: Any) -> list[Any]:
        rows = []
        with self.store.read() as txn:
            for k, data in txn.scan(table, **kw):
                rows.append(
                    self.store.codec.decode_row(data, ROW_TYPES[table], f"{table.value} {k!r}")
                )
                if limit is not None and len(rows) >= limit:
                    break
        return rows

    def _retry(self, attempt: Callable[[], _T]) -> _T:
        """Run a read-decide-append step again when its compare-and-set loses a race."""
        for _ in range(_RETRIES):
            try:
                return attempt()
            except Conflict:
                continue
        return attempt()

    def _append(self, batch: Sequence[Pending], now: int) -> Appended:
        return self.store.append(batch, now)

    # -- schedules -----------------------------------------------------------------------------

    def schedule(self, schedule_id: str) -> ScheduleRow:
        """One schedule's state (raises :class:`NotFound`)."""
        row: ScheduleRow | None = self._get(
            Table.SCHEDULES, key(validate_id(schedule_id, "schedule id"))
        )
        if row is None:
            raise NotFound(f"no schedule {schedule_id!r}")
        return row

    def _schedule_or_none(self, schedule_id: str) -> ScheduleRow | None:
        row: ScheduleRow | None = self._get(Table.SCHEDULES, key(schedule_id))
        return row

    def schedules(self, include_deleted: bool = False) -> list[ScheduleRow]:
        """Every schedule with its state, by id."""
        rows: list[ScheduleRow] = self._scan(Table.SCHEDULES)
        return [r for r in rows if include_deleted or not r.deleted]

    def define_schedule(self, definition: ScheduleDefinition, now: When = None) -> Change:
        """Create or update a schedule; identical content changes nothing."""
        at = epoch(now)
        _checked(definition, ScheduleDefinition, "definition")

        def attempt() -> Change:
            row = self._schedule_or_none(definition.id)
            self._append(decide.define_schedule(row, definition, at), at)
            after = self.schedule(definition.id)
            return Change("schedule", definition.id, _action(row, after), after.definition_version)

        return self._retry(attempt)

    def set_schedule_enabled(
        self, schedule_id: str, enabled: bool, now: When = None
    ) -> ScheduleRow:
        """Enable or disable. Re-enabling never back-fills the disabled period."""
        at = epoch(now)
        check_bool(enabled, "enabled")

        def attempt() -> ScheduleRow:
            self._append(
                decide.toggle_schedule(self._schedule_or_none(schedule_id), enabled, at), at
            )
            return self.schedule(schedule_id)

        validate_id(schedule_id, "schedule id")
        return self._retry(attempt)

    def delete_schedule(self, schedule_id: str, now: When = None) -> None:
        """Delete a schedule. Its ticks and runs stay in history."""
        at = epoch(now)
        validate_id(schedule_id, "schedule id")
        self._retry(
            lambda: self._append(decide.delete_schedule(self._schedule_or_none(schedule_id)), at)
        )

    def due_schedules(self, now: When = None, limit: int | None = None) -> list[str]:
        """Ids of enabled schedules whose next tick is at or before ``now`` (index lookup)."""
        at = epoch(now)
        _optional_limit(limit)
        with self.store.read() as txn:
            ids = []
            for k, _ in txn.scan(Table.DUE_SCHEDULES, stop=u64(at + 1)):
                ids.append(k[9:].decode())
                if limit is not None and len(ids) >= limit:
                    break
        return ids

    def evaluate_schedules(
        self, now: When = None, evaluate: Evaluate | None = None
    ) -> list[TickRow]:
        """Evaluate every due schedule at ``now``; the ticks recorded, in schedule order.

        ``evaluate`` is called for ticks of schedules that name an ``evaluator``.
        """
        at = epoch(now)
        ticks: list[TickRow] = []
        for schedule_id in self.due_schedules(at):
            ticks += self.evaluate_schedule(schedule_id, at, evaluate)
        return ticks

    def evaluate_schedule(
        self, schedule_id: str, now: When = None, evaluate: Evaluate | None = None
    ) -> list[TickRow]:
        """Evaluate one schedule at ``now``: record its due ticks and their run requests.

        Idempotent: evaluating the same ``now`` twice, overlapping windows, or racing
        evaluators yield one tick per tick id and at most one run per run key.
        """
        at = epoch(now)
        validate_id(schedule_id, "schedule id")

        def attempt() -> list[TickRow]:
            row = self.schedule(schedule_id)
            plan = decide.plan_ticks(row, at)
            if not plan.due and not plan.missed:
                return []
            results = [self._evaluate_tick(row, tick, n, evaluate) for tick, n in plan.due]
            appended = self._append(decide.record_ticks(row, plan, results, at), at)
            return self._recorded_ticks(appended)

        return self._retry(attempt)

    def _recorded_ticks(self, appended: Appended) -> list[TickRow]:
        recorded = [e.event for e in appended.records if isinstance(e.event, TickRecorded)]
        with self.store.read() as txn:
            return [
                self._row(txn, Table.TICKS, key(e.schedule_id, e.scheduled_for)) for e in recorded
            ]

    @staticmethod
    def _evaluate_tick(
        row: ScheduleRow, tick: Tick, attempt: int, evaluate: Evaluate | None
    ) -> TickResult | str:
        d = row.definition
        if d.evaluator is None or not tick.run:
            return TickResult()
        if evaluate is None:
            return f"no evaluator {d.evaluator!r} is available"
        at = datetime.fromtimestamp(tick.at, UTC)
        context = TickContext(
            d, decide.tick_id(d.id, tick.at), at, at.astimezone(zone(d.timezone)), attempt, tick.dst
        )
        try:
            result: object = evaluate(context)
        except Exception as exc:  # a plugin's failure is the tick's, never the kernel's
            return _error(exc)
        if not isinstance(result, TickResult):
            return f"evaluator {d.evaluator!r} returned {type(result).__name__}, not TickResult"
        return result

    def preview(
        self, schedule: str | ScheduleDefinition, count: int = 10, start: When = None
    ) -> list[PreviewTick]:
        """The next ``count`` ticks of a schedule (stored, or a definition not yet applied)
        after ``start``: instant, local time, DST annotation, tick id, run or skip."""
        d = self.schedule(schedule).definition if isinstance(schedule, str) else schedule
        return preview(d, count, start)

    def ticks(
        self,
        schedule_id: str,
        *,
        status: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[TickRow]:
        """A schedule's ticks, newest first; ``before`` (a tick id) pages further back."""
        validate_id(schedule_id, "schedule id")
        stop = None
        if before is not None:
            sid, at = _parse_tick_id(before)
            if sid != schedule_id:
                raise InputError(f"tick {before!r} is not a tick of schedule {schedule_id!r}")
            stop = key(sid, at)
        if status is not None and status not in ("TRIGGERED", "SKIPPED", "FAILED"):
            raise InputError(f"status {status!r} is not one of TRIGGERED, SKIPPED, FAILED")
        _limit(limit)
        rows: list[TickRow] = []
        with self.store.read() as txn:
            for k, data in txn.scan(
                Table.TICKS, prefix=key(schedule_id) + b"\x00", stop=stop, reverse=True
            ):
                row: TickRow = self.store.codec.decode_row(data, TickRow, f"ticks {k!r}")
                if status is None or row.status == status:
                    rows.append(row)
                    if len(rows) >= limit:
                        break
        return rows

    def tick(self, tick_id: str) -> TickDetail:
        """One tick with the runs it requested and their status."""
        sid, at = _parse_tick_id(tick_id)
        with self.store.read() as txn:
            row: TickRow | None = self._row(txn, Table.TICKS, key(sid, at))
            if row is None:
                raise NotFound(f"no tick {tick_id!r}")
            runs = tuple(self._row(txn, Table.RUNS, key(run_id(k))) for k in row.run_keys)
        return TickDetail(row, runs)

    def missed(self, schedule_id: str, limit: int = 50) -> list[MissedRow]:
        """Summaries of ticks that evaluations dropped (window or budget), newest first."""
        validate_id(schedule_id, "schedule id")
        return self._scan(
            Table.MISSED, _limit(limit), prefix=key(schedule_id) + b"\x00", reverse=True
        )

    # -- sensors -------------------------------------------------------------------------------

    def sensor(self, sensor_id: str) -> SensorRow:
        row: SensorRow | None = self._get(Table.SENSORS, key(validate_id(sensor_id, "sensor id")))
        if row is None:
            raise NotFound(f"no sensor {sensor_id!r}")
        return row

    def _sensor_or_none(self, sensor_id: str) -> SensorRow | None:
        row: SensorRow | None = self._get(Table.SENSORS, key(sensor_id))
        return row

    def sensors(self, include_deleted: bool = False) -> list[SensorRow]:
        rows: list[SensorRow] = self._scan(Table.SENSORS)
        return [r for r in rows if include_deleted or not r.deleted]

    def define_sensor(self, definition: SensorDefinition, now: When = None) -> Change:
        """Create or update a sensor; identical content changes nothing."""
        at = epoch(now)
        _checked(definition, SensorDefinition, "definition")

        def attempt() -> Change:
            row = self._sensor_or_none(definition.id)
            self._append(decide.define_sensor(row, definition, at), at)
            after = self.sensor(definition.id)
            return Change("sensor", definition.id, _action(row, after), after.definition_version)

        return self._retry(attempt)

    def set_sensor_running(self, sensor_id: str, running: bool, now: When = None) -> SensorRow:
        """Start or stop a sensor; a started poll sensor is due at once."""
        at = epoch(now)
        check_bool(running, "running")
        validate_id(sensor_id, "sensor id")
        self._append(decide.toggle_sensor(self._sensor_or_none(sensor_id), running, at), at)
        return self.sensor(sensor_id)

    def delete_sensor(self, sensor_id: str, now: When = None) -> None:
        at = epoch(now)
        validate_id(sensor_id, "sensor id")
        self._append(decide.delete_sensor(self._sensor_or_none(sensor_id), at), at)

    def due_sensors(self, now: When = None, limit: int | None = None) -> list[str]:
        """Ids of running poll sensors due at or before ``now`` (index lookup)."""
        at = epoch(now)
        _optional_limit(limit)
        with self.store.read() as txn:
            ids = []
            for k, _ in txn.scan(Table.DUE_SENSORS, stop=u64(at + 1)):
                ids.append(k[9:].decode())
                if limit is not None and len(ids) >= limit:
                    break
        return ids

    def ingest(
        self,
        sensor_id: str,
        message_id: str,
        payload: Any = None,
        now: When = None,
        connector: MapMessage | None = None,
    ) -> Ingested:
        """Record one push message. A re-delivery of ``message_id`` (in any order, from any
        process) writes nothing and returns the original evaluation.

        ``connector`` maps the message to run requests (default: one run per message).
        """
        at = epoch(now)
        row = self.sensor(sensor_id)
        eval_id = derived_id(f"push/{sensor_id}/{check_text(message_id, 'message id')}")
        earlier = self._evaluation_or_none(eval_id)
        if earlier is not None:  # the connector is not asked twice about one message
            return Ingested(earlier, True)
        size = len(msgspec.json.encode(check_json(payload, "payload")))
        if size > row.definition.max_payload_bytes:
            decide.ingest(row, message_id, payload, size, [])  # raises PayloadTooLarge
        requests: Sequence[RunRequest] | str | None = None
        if connector is not None:
            message = PushMessage(
                row.definition, message_id, payload, datetime.fromtimestamp(at, UTC)
            )
            try:
                mapped = connector(message)
                requests = None if mapped is None else _requests(mapped)
            except Exception as exc:
                requests = _error(exc)
        appended = self._append(decide.ingest(row, message_id, payload, size, requests), at)
        return Ingested(eval_row(appended.records[0]), appended.duplicate)

    def poll_ticket(self, sensor_id: str) -> decide.PollTicket:
        """Read what a poll needs: the expected ``state_version`` and the cursor."""
        return decide.poll_ticket(self.sensor(sensor_id))

    def record_poll(
        self, ticket: decide.PollTicket, result: PollResult | str, now: When = None
    ) -> EvalRow:
        """Record a poll outcome (a string is the connector's error or timeout).

        Accepted only if the sensor is still at ``ticket.expected_state_version``; otherwise
        :class:`Conflict`, and nothing at all is written. Re-recording the very same poll
        returns the original evaluation.
        """
        at = epoch(now)
        _checked_ticket(ticket)
        if not isinstance(result, (PollResult, str)):
            raise InputError(f"result: expected a PollResult or a reason, not {type(result)}")
        batch = decide.record_poll(self._sensor_or_none(ticket.sensor_id), ticket, result, at)
        appended = self._append(batch, at)
        if appended.duplicate and not decide.same_poll([e.event for e in appended.records], batch):
            # Another poller recorded a different answer under this ticket first: this one's
            # result was not recorded, and the caller must hear so (not get the other's row).
            actual = self.sensor(ticket.sensor_id).state_version
            raise Conflict(f"sensor {ticket.sensor_id!r}", ticket.expected_state_version, actual)
        return eval_row(appended.records[0])

    def poll_context(
        self, sensor_id: str, now: When = None
    ) -> tuple[decide.PollTicket, PollContext]:
        """What one poll needs, from one read of the sensor: the ticket to pass to
        :meth:`record_poll` and the context to hand the connector."""
        row = self.sensor(sensor_id)
        ticket = decide.poll_ticket(row)
        cursor = ticket.cursor
        context = PollContext(
            row.definition,
            cursor.native() if cursor else None,
            cursor.version if cursor else None,
            ticket.expected_state_version,
            datetime.fromtimestamp(epoch(now), UTC),
        )
        return ticket, context

    def poll(self, sensor_id: str, connector: Connect, now: When = None) -> EvalRow:
        """Poll once: read the cursor, call ``connector``, record the outcome with CAS.

        A connector that raises or returns something other than :class:`PollResult` gives a
        ``FAILED`` evaluation with backoff. Timeouts are the caller's to enforce (the SDK
        runtime does) and are recorded by passing the reason to :meth:`record_poll`.
        """
        at = epoch(now)
        ticket, context = self.poll_context(sensor_id, at)
        result: PollResult | str
        try:
            answer: object = connector(context)
            result = (
                answer
                if isinstance(answer, PollResult)
                else f"connector returned {type(answer).__name__}, not PollResult"
            )
        except Exception as exc:
            result = _error(exc)
        return self.record_poll(ticket, result, at)

    def evaluation(self, eval_id: str) -> EvalRow:
        row = self._evaluation_or_none(_lookup(eval_id, "evaluation id"))
        if row is None:
            raise NotFound(f"no evaluation {eval_id!r}")
        return row

    def _evaluation_or_none(self, eval_id: str) -> EvalRow | None:
        with self.store.read() as txn:
            primary = txn.get(Table.EVAL_IDS, key(eval_id))
            row: EvalRow | None = None if primary is None else self._row(txn, Table.EVALS, primary)
            return row

    def evaluations(
        self, sensor_id: str, *, limit: int = 50, before: str | None = None
    ) -> list[EvalRow]:
        """A sensor's evaluations, newest first; ``before`` (an eval id) pages further back."""
        validate_id(sensor_id, "sensor id")
        stop = None
        if before is not None:
            with self.store.read() as txn:
                stop = txn.get(Table.EVAL_IDS, key(_lookup(before, "before")))
            if stop is None or not stop.startswith(key(sensor_id) + b"\x00"):
                raise InputError(
                    f"evaluation {before!r} is not an evaluation of sensor {sensor_id!r}"
                )
        return self._scan(
            Table.EVALS, _limit(limit), prefix=key(sensor_id) + b"\x00", stop=stop, reverse=True
        )

    # -- runs ----------------------------------------------------------------------------------

    def request_run(
        self,
        run_key: str,
        template: RunTemplate,
        now: When = None,
        origin: Literal["manual", "backfill"] = "manual",
        requested_by: str = "api",
    ) -> RunRow:
        """Ask for a run by hand. Keys live in their origin's namespace (``manual:<key>``):
        a manual run never suppresses a scheduled one. Same key and content: the same run."""
        at = epoch(now)
        if run_key is None:  # RunRequest's None means "the default key"; here there is none
            raise InputError("run_key: expected text, got None")
        _checked(template, RunTemplate, "template")
        check_choice(origin, "origin", ("manual", "backfill"))
        check_text(requested_by, "requested_by", 256)  # part of the idempotency key
        event = request_run(origin, requested_by, template, RunRequest(run_key), run_key)
        # The fingerprint is part of the request's identity: a request with other content at
        # the same instant is not a duplicate, it is a conflict and must be recorded as one.
        batch = [Pending(f"run/{requested_by}>{event.run_key}@{at}#{event.fingerprint}", event)]
        self._append(batch, at)
        return self.run(event.run_id)

    def run(self, run_id_: str) -> RunRow:
        row: RunRow | None = self._get(Table.RUNS, key(_lookup(run_id_, "run id")))
        if row is None:
            raise NotFound(f"no run {run_id_!r}")
        return row

    def run_by_key(self, run_key: str) -> RunRow:
        return self.run(run_id(check_text(run_key, "run_key")))

    def runs(
        self, *, limit: int = 50, before: str | None = None, status: str | None = None
    ) -> list[RunRow]:
        """Runs, newest first; ``before`` (a run id) pages further back."""
        _limit(limit)  # checked up front: a bad limit is an error even when nothing matches
        if status is not None:
            check_choice(status, "status", get_args(RunStatus))
        stop = u64(self.run(before).created_seq) if before is not None else None
        out: list[RunRow] = []
        with self.store.read() as txn:
            for _, primary in txn.scan(Table.RUN_ORDER, stop=stop, reverse=True):
                row: RunRow = self._row(txn, Table.RUNS, primary)
                if status is None or row.status == status:
                    out.append(row)
                    if len(out) >= limit:
                        break
        return out

    def conflicts(self, *, limit: int = 50, before: int | None = None) -> list[ConflictRow]:
        """Run-key conflicts (same key, other fingerprint), newest first."""
        stop = u64(check_int(before, "before", 0)) if before is not None else None
        return self._scan(Table.CONFLICTS, _limit(limit), stop=stop, reverse=True)

    def due_launches(self, now: When = None, limit: int = 100) -> list[RunRow]:
        """``REQUESTED`` runs with a launcher whose next attempt is due: the launch outbox."""
        at = epoch(now)
        _batch(limit)
        out = []
        with self.store.read() as txn:
            for _, primary in txn.scan(Table.OUTBOX, stop=u64(at + 1)):
                out.append(self._row(txn, Table.RUNS, primary))
                if len(out) >= limit:
                    break
        return out

    def launched_runs(
        self, launcher: str, *, after: str | None = None, limit: int = 100
    ) -> list[RunRow]:
        """``LAUNCHED`` runs of ``launcher`` (index lookup), by run id; ``after`` (a run id)
        pages on. The runtime asks their launcher whether they finished."""
        _limit(limit)
        prefix = key(check_text(launcher, "launcher", 256)) + b"\x00"
        start = key(launcher, _lookup(after, "after")) + b"\x00" if after is not None else None
        out = []
        with self.store.read() as txn:
            for _, primary in txn.scan(Table.LAUNCHED, prefix=prefix, start=start):
                out.append(self._row(txn, Table.RUNS, primary))
                if len(out) >= limit:
                    break
        return out

    def record_launch(
        self,
        run_id_: str,
        *,
        external_id: str | None = None,
        error: str | None = None,
        now: When = None,
        max_attempts: int = 5,
    ) -> RunRow:
        """Record one launch attempt: success with the launcher's ``external_id``, or an
        ``error`` (retried with backoff, given up after ``max_attempts``)."""
        at = epoch(now)
        if external_id is not None:
            check_text(external_id, "external_id")
        if error is not None:
            check_text(error, "error")
        check_int(max_attempts, "max_attempts", 1, 1000)
        run = self.run(run_id_)
        if run.status != "REQUESTED":
            return run  # another dispatcher recorded this run's launch first
        batch = (
            decide.launched(run, external_id)
            if error is None
            else decide.launch_failed(run, error, at, max_attempts)
        )
        self._append(batch, at)
        return self.run(run_id_)

    def complete_run(
        self, run_id_: str, succeeded: bool, detail: str | None = None, now: When = None
    ) -> RunRow:
        """A launcher or operator reports that a run finished."""
        at = epoch(now)
        check_bool(succeeded, "succeeded")
        if detail is not None:
            check_text(detail, "detail")
        row = self._get(Table.RUNS, key(_lookup(run_id_, "run id")))
        batch = decide.completed(row, run_id_, succeeded, detail)
        appended = self._append(batch, at)
        if appended.duplicate and appended.records[0].event != batch[0].event:
            # Another reporter finished this run first, with another outcome: say so.
            raise InputError(f"run {run_id_} already finished as {self.run(run_id_).status}")
        return self.run(run_id_)

    # -- definitions ---------------------------------------------------------------------------

    def apply(self, definitions: Definitions, now: When = None) -> list[Change]:
        """Upsert every schedule and sensor in ``definitions``; what changed for each."""
        at = epoch(now)
        _checked(definitions, Definitions, "definitions")
        revalidate(definitions)  # all of them before the first is applied
        for sensor in definitions.sensors:  # and the one rule that depends on the store
            decide.define_sensor(self._sensor_or_none(sensor.id), sensor, at)
        return [self.define_schedule(s, at) for s in definitions.schedules] + [
            self.define_sensor(s, at) for s in definitions.sensors
        ]

    # -- log and verification ------------------------------------------------------------------

    def log(self, after: int = 0, chunk: int = 1000) -> Iterator[Envelope]:
        """Every logged envelope after sequence number ``after``, in order, read in chunks
        (no long-lived read transaction)."""
        check_int(after, "after", 0)
        check_int(chunk, "chunk", 1, 100_000)
        while True:
            with self.store.read() as txn:
                batch = [
                    self.store.codec.decode(data, f"seq {from_u64(k)}")
                    for k, data in _take(txn.scan(Table.LOG, start=u64(after + 1)), chunk)
                ]
            yield from batch
            if len(batch) < chunk:
                return
            after = batch[-1].seq

    def verify(self, scratch: Store | None = None) -> Verification:
        """Replay the whole log into ``scratch`` (default: a new in-memory store) and compare
        every table with the materialised state, byte for byte."""
        if scratch is not None and not callable(getattr(scratch, "replay", None)):
            raise InputError(f"scratch: expected a Store, got {type(scratch).__name__}")
        target = scratch or MemoryStore(self.store.codec)
        events = 0
        batch: list[Envelope] = []
        try:
            for envelope in self.log():
                batch.append(envelope)
                events += 1
                if len(batch) >= 1000:
                    target.replay(batch)
                    batch = []
            target.replay(batch)
        except StoreError as exc:
            return Verification(False, events, (str(exc),))
        except Conflict as exc:
            return Verification(False, events, (f"log replay broke a CAS rule: {exc}",))
        differences: list[str] = []
        for table in Table:
            if table is not Table.LOG:
                differences += _compare(table, self.store, target, 20 - len(differences))
        return Verification(not differences, events, tuple(differences))


def _compare(table: Table, live: Store, replayed: Store, budget: int) -> list[str]:
    out: list[str] = []
    name = table.value
    with live.read() as a, replayed.read() as b:
        left, right = a.scan(table), b.scan(table)
        x, y = next(left, None), next(right, None)
        while (x is not None or y is not None) and len(out) < budget:
            if x is not None and (y is None or x[0] < y[0]):
                out.append(f"{name} {_show(table, x[0])}: materialised but not produced by replay")
                x = next(left, None)
            elif y is not None and (x is None or y[0] < x[0]):
                out.append(f"{name} {_show(table, y[0])}: produced by replay but missing")
                y = next(right, None)
            else:
                assert x is not None and y is not None
                if x[1] != y[1]:
                    diff = _row_diff(table, live, x[1], y[1])
                    out.append(f"{name} {_show(table, x[0])}: {diff}")
                x, y = next(left, None), next(right, None)
    return out


_LEADING_NUMBER = {Table.DUE_SCHEDULES, Table.DUE_SENSORS, Table.OUTBOX}
_TRAILING_NUMBER = {Table.TICKS, Table.MISSED, Table.EVALS}


def _show(table: Table, row_key: bytes) -> str:
    """A key as people read it: ids as text, big-endian numbers as integers."""
    if len(row_key) == 8:
        return str(from_u64(row_key))
    if table in _LEADING_NUMBER and len(row_key) > 9:
        return f"{from_u64(row_key[:8])}/{row_key[9:].decode(errors='replace')}"
    if table in _TRAILING_NUMBER and len(row_key) > 9:
        return f"{row_key[:-9].decode(errors='replace')}/{from_u64(row_key[-8:])}"
    return row_key.decode(errors="replace").replace("\x00", "/")


def _row_diff(table: Table, store: Store, stored: bytes, replayed: bytes) -> str:
    """Which fields of a row differ between the materialised state and the replay."""
    row_type = ROW_TYPES.get(table)
    if row_type is None:
        return f"stored {stored!r}, replay gives {replayed!r}"
    try:
        a = store.codec.decode_row(stored, row_type, table.value)
        b = store.codec.decode_row(replayed, row_type, table.value)
    except StoreError as exc:
        return f"stored row does not decode ({exc})"
    fields = [
        f"{name}: stored {getattr(a, name)!r}, replay gives {getattr(b, name)!r}"
        for name in row_type.__struct_fields__
        if getattr(a, name) != getattr(b, name)
    ]
    return "; ".join(fields) or "same fields, different bytes"


def _take(it: Iterator[_T], n: int) -> Iterator[_T]:
    for i, item in enumerate(it):
        if i >= n:
            return
        yield item


def _limit(limit: int) -> int:
    return check_int(limit, "limit", 1, 1000)


def _batch(limit: int) -> int:
    """A batch size (the runtime's may be larger than a page)."""
    return check_int(limit, "limit", 1, 2**31)


def _optional_limit(limit: int | None) -> None:
    if limit is not None:
        _batch(limit)


def _checked_ticket(ticket: Any) -> None:
    if not isinstance(ticket, decide.PollTicket):
        raise InputError(f"ticket: expected the PollTicket of poll_ticket(), got {ticket!r}")
    check_id(ticket.sensor_id, "ticket sensor id")
    check_int(ticket.expected_state_version, "ticket state version", 0)
    if ticket.cursor is not None and not isinstance(ticket.cursor, Cursor):
        raise InputError(f"ticket: cursor must be a Cursor or None, got {ticket.cursor!r}")


def _parse_tick_id(tick_id: str) -> tuple[str, int]:
    sid, sep, when = _lookup(tick_id, "tick id").partition(":")
    try:
        validate_id(sid, "schedule id")
        if not sep:
            raise ValueError(tick_id)
        at = datetime.strptime(when, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except (ValueError, InputError):
        raise InputError(
            f"tick id {tick_id!r} is not valid: expected SCHEDULE_ID:YYYY-MM-DDTHH:MM:SSZ"
        ) from None
    return sid, int(at.timestamp())


def _requests(mapped: Any) -> Sequence[RunRequest] | str:
    if not isinstance(mapped, (list, tuple)) or not all(isinstance(r, RunRequest) for r in mapped):
        return f"connector returned {type(mapped).__name__}, not a list of RunRequest"
    return mapped


def _action(
    before: ScheduleRow | SensorRow | None, after: ScheduleRow | SensorRow
) -> Literal["created", "updated", "enabled", "disabled", "unchanged"]:
    if before is None or before.deleted:
        return "created"
    if before.definition_version != after.definition_version:
        return "updated"
    was = before.enabled if isinstance(before, ScheduleRow) else before.running
    now = after.enabled if isinstance(after, ScheduleRow) else after.running
    if was != now:
        return "enabled" if now else "disabled"
    return "unchanged"
