"""The :class:`Kernel` facade: typed commands and history queries over one store.

The facade is the imperative shell around the pure core: it reads the rows a command needs,
calls :mod:`~arcoflow.kernel.decide`, runs any plugin callable *outside* every transaction,
and appends the events. Commands whose decision depends only on stored state re-read and
re-decide when a compare-and-set loses a race; a poll, whose connector already ran against a
cursor that moved on, reports the :class:`~arcoflow.kernel.errors.Conflict` to its caller.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from itertools import islice
from typing import Any, Final, Literal, NamedTuple, TypeVar, cast, get_args

from . import compact as compaction
from . import decide
from . import verify as verification
from .codec import Envelope
from .compact import Compaction
from .cron import Tick, zone
from .definitions import (
    Definitions,
    PollContext,
    PollResult,
    RunRequest,
    RunTemplate,
    ScheduleDefinition,
    SensorDefinition,
    TickContext,
    TickResult,
    checked,
    revalidate,
    validate_id,
)
from .errors import Conflict, InputError, NotFound, Pruned
from .events import TICK_STATUSES, Cursor, RetentionSet, RunClaimed, RunRequested, TickRecorded
from .evolve import eval_row
from .outcomes import Failed, failed_from, guarded
from .preview import PreviewTick, preview
from .pruning import check_not_pruned, plan_prune, store_policy
from .push import MapMessage, PushItem, push_events, push_idem, push_items
from .reader import (
    CONFLICTS,
    EVALS,
    HISTORY,
    MISSED,
    PRUNED,
    RUN_KEYS,
    RUNS,
    SCHEDULES,
    SENSORS,
    SETTINGS,
    TICKS,
    Reader,
    RowTable,
    evaluation_by_id,
    require,
)
from .retention import RetentionPolicy
from .rows import (
    ConflictRow,
    EvalRow,
    HistoryRow,
    MissedRow,
    RunRow,
    RunStatus,
    ScheduleRow,
    SensorRow,
    Table,
    TickRow,
    from_u64,
    key,
    run_slot,
    u64,
)
from .runs import derived_id, request_run
from .runs import run_id as to_run_id
from .store.base import (
    Appended,
    Pending,
    Store,
    WritableStore,
    idem_key,
    idem_live,
    idem_seq,
    original_batch,
)
from .times import When, epoch
from .values import (
    check_batch,
    check_bool,
    check_choice,
    check_int,
    check_limit,
    check_lookup,
    check_text,
)
from .verify import Verification

__all__ = [
    "BackfillTick",
    "Change",
    "Ingested",
    "Kernel",
    "PreviewTick",
    "Pruning",
    "PushItem",
    "Refused",
    "Requested",
    "TickDetail",
    "preview",
]

# The plugin callables the kernel's conveniences take; a ``Failed`` answer is recorded as is.
Evaluate = Callable[[TickContext], "TickResult | Failed"]
Connect = Callable[[PollContext], "PollResult | Failed"]

_RETRIES: Final = 16  # re-decides after a lost compare-and-set before giving up
_T = TypeVar("_T")
_R = TypeVar("_R")


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


class Requested(NamedTuple):
    """What a run request by hand did. ``existing``: the key already had a run, and this
    request created none (it returns that run); ``conflict``: it also asked for other content,
    recorded as a conflict."""

    run: RunRow
    existing: bool
    conflict: bool


class BackfillTick(NamedTuple):
    """One tick of a backfill range: its run (``None`` for a tick the DST policy skips, or in a
    dry run when it does not exist yet) and whether that run existed before this backfill."""

    scheduled_for: int
    local_time: datetime
    run_key: str | None
    dst: str | None
    action: Literal["run", "skip"]
    run: RunRow | None
    existing: bool


class Refused(NamedTuple):
    """A push message the kernel would not ingest: ``error`` is the typed reason
    (:class:`InputError` for a bad message or a stopped sensor, :class:`NotFound` for an
    unknown or deleted sensor). ``evaluation``: the ``REFUSED`` evaluation that records it in
    the sensor's history (``ingest_many(..., record_refusals=True)`` and a sensor that exists),
    else ``None``: nothing was written for it."""

    message_id: str
    error: InputError | NotFound
    evaluation: EvalRow | None = None


class TickDetail(NamedTuple):
    tick: TickRow
    runs: tuple[RunRow, ...]


class Pruning(NamedTuple):
    """What one prune pass dropped: history ``rows`` (a run with its links counts once) and
    expired idempotency ``keys``, in ``events`` small transactions."""

    events: int
    rows: int
    keys: int


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

    @contextlib.contextmanager
    def _read(self) -> Iterator[Reader]:
        """Typed row reads through one read transaction."""
        with self.store.read() as txn:
            yield Reader(txn, self.store.codec)

    def _get(self, table: RowTable[_R], row_key: bytes) -> _R | None:
        with self._read() as rows:
            return rows.get(table, row_key)

    def _scan(
        self,
        table: RowTable[_R],
        limit: int | None = None,
        *,
        prefix: bytes = b"",
        stop: bytes | None = None,
        reverse: bool = False,
    ) -> list[_R]:
        with self._read() as rows:
            return list(rows.scan(table, limit, prefix=prefix, stop=stop, reverse=reverse))

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
        row = self._get(SCHEDULES, key(validate_id(schedule_id, "schedule id")))
        return require(row, f"schedule {schedule_id!r}")

    def schedules(self, include_deleted: bool = False) -> list[ScheduleRow]:
        """Every schedule with its state, by id."""
        return [r for r in self._scan(SCHEDULES) if include_deleted or not r.deleted]

    def define_schedule(self, definition: ScheduleDefinition, now: When = None) -> Change:
        """Create or update a schedule; identical content changes nothing."""
        at = epoch(now)
        checked(definition, ScheduleDefinition, "definition")

        def attempt() -> Change:
            row = self._get(SCHEDULES, key(definition.id))
            self._append(decide.define_schedule(row, definition, at), at)
            after = self.schedule(definition.id)
            return Change(
                "schedule",
                definition.id,
                decide.change_action(row, after),
                after.definition_version,
            )

        return self._retry(attempt)

    def set_schedule_enabled(
        self, schedule_id: str, enabled: bool, now: When = None
    ) -> ScheduleRow:
        """Enable or disable. Re-enabling never back-fills the disabled period."""
        at = epoch(now)
        check_bool(enabled, "enabled")

        def attempt() -> ScheduleRow:
            row = self._get(SCHEDULES, key(schedule_id))
            self._append(decide.toggle_schedule(row, enabled, at), at)
            return self.schedule(schedule_id)

        validate_id(schedule_id, "schedule id")
        return self._retry(attempt)

    def delete_schedule(self, schedule_id: str, now: When = None) -> None:
        """Delete a schedule. Its ticks and runs stay in history."""
        at = epoch(now)
        validate_id(schedule_id, "schedule id")
        self._retry(
            lambda: self._append(decide.delete_schedule(self._get(SCHEDULES, key(schedule_id))), at)
        )

    def due_schedules(self, now: When = None, limit: int | None = None) -> list[str]:
        """Ids of enabled schedules whose next tick is at or before ``now`` (index lookup)."""
        at = epoch(now)
        if limit is not None:
            check_batch(limit)
        with self._read() as rows:
            return rows.due(Table.DUE_SCHEDULES, at, limit)

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
        with self._read() as rows:
            ticks = (rows.get(TICKS, key(e.schedule_id, e.scheduled_for)) for e in recorded)
            return [t for t in ticks if t is not None]  # None: pruned since

    @staticmethod
    def _evaluate_tick(
        row: ScheduleRow, tick: Tick, attempt: int, evaluate: Evaluate | None
    ) -> TickResult | Failed:
        d = row.definition
        if d.evaluator is None or not tick.run:
            return TickResult()
        if evaluate is None:
            return Failed(f"no evaluator {d.evaluator!r} is available")
        at = datetime.fromtimestamp(tick.at, UTC)
        context = TickContext(
            d, decide.tick_id(d.id, tick.at), at, at.astimezone(zone(d.timezone)), attempt, tick.dst
        )
        # A plugin's failure is the tick's, never the kernel's.
        return guarded(lambda: evaluate(context), TickResult, f"evaluator {d.evaluator!r}")

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
            sid, at = decide.parse_tick_id(before)
            if sid != schedule_id:
                raise InputError(f"tick {before!r} is not a tick of schedule {schedule_id!r}")
            stop = key(sid, at)
        if status is not None and status not in TICK_STATUSES:
            raise InputError(f"status {status!r} is not one of {', '.join(TICK_STATUSES)}")
        check_limit(limit)
        with self._read() as rows:
            ticks = rows.scan(TICKS, prefix=key(schedule_id) + b"\x00", stop=stop, reverse=True)
            return list(islice((t for t in ticks if status in (None, t.status)), limit))

    def tick(self, tick_id: str) -> TickDetail:
        """One tick with the runs it requested and their status."""
        sid, at = decide.parse_tick_id(tick_id)
        with self._read() as rows:
            row = rows.get(TICKS, key(sid, at))
            if row is None:
                mark = rows.get(PRUNED, key("schedule", sid))
                check_not_pruned(mark, ("schedule", sid), at, f"tick {tick_id!r}")
                raise NotFound(f"no tick {tick_id!r}")
            runs = tuple(
                rows.indexed(Table.TICKS, RUNS, key(to_run_id(k)))
                for k in row.run_keys
                if rows.get(RUN_KEYS, run_slot(to_run_id(k))) is None  # pruned: not shown
            )
        return TickDetail(row, runs)

    def missed(self, schedule_id: str, limit: int = 50) -> list[MissedRow]:
        """Summaries of ticks that evaluations dropped (window or budget), newest first."""
        validate_id(schedule_id, "schedule id")
        return self._scan(
            MISSED, check_limit(limit), prefix=key(schedule_id) + b"\x00", reverse=True
        )

    # -- sensors -------------------------------------------------------------------------------

    def sensor(self, sensor_id: str) -> SensorRow:
        row = self._get(SENSORS, key(validate_id(sensor_id, "sensor id")))
        return require(row, f"sensor {sensor_id!r}")

    def sensors(self, include_deleted: bool = False) -> list[SensorRow]:
        return [r for r in self._scan(SENSORS) if include_deleted or not r.deleted]

    def define_sensor(self, definition: SensorDefinition, now: When = None) -> Change:
        """Create or update a sensor; identical content changes nothing."""
        at = epoch(now)
        checked(definition, SensorDefinition, "definition")

        def attempt() -> Change:
            row = self._get(SENSORS, key(definition.id))
            self._append(decide.define_sensor(row, definition, at), at)
            after = self.sensor(definition.id)
            return Change(
                "sensor", definition.id, decide.change_action(row, after), after.definition_version
            )

        return self._retry(attempt)

    def set_sensor_running(self, sensor_id: str, running: bool, now: When = None) -> SensorRow:
        """Start or stop a sensor; a started poll sensor is due at once."""
        at = epoch(now)
        check_bool(running, "running")
        validate_id(sensor_id, "sensor id")
        self._append(decide.toggle_sensor(self._get(SENSORS, key(sensor_id)), running, at), at)
        return self.sensor(sensor_id)

    def delete_sensor(self, sensor_id: str, now: When = None) -> None:
        at = epoch(now)
        validate_id(sensor_id, "sensor id")
        self._append(decide.delete_sensor(self._get(SENSORS, key(sensor_id)), at), at)

    def due_sensors(self, now: When = None, limit: int | None = None) -> list[str]:
        """Ids of running poll sensors due at or before ``now`` (index lookup)."""
        at = epoch(now)
        if limit is not None:
            check_batch(limit)
        with self._read() as rows:
            return rows.due(Table.DUE_SENSORS, at, limit)

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
        prepared = self._push_events(self.sensor(sensor_id), message_id, payload, at, connector)
        if isinstance(prepared, Ingested):
            return prepared
        appended = self._append(prepared, at)
        return Ingested(self._logged_eval(appended.records[0]), appended.duplicate)

    def _push_events(
        self,
        row: SensorRow,
        message_id: str,
        payload: Any,
        at: int,
        connector: MapMessage | None,
        problem: str | None = None,
        seen: Mapping[bytes, bytes | None] | None = None,
    ) -> Ingested | list[Pending]:
        """The events that record one push message, or its original evaluation if it was
        delivered before (the connector is not asked twice about one message). ``problem``:
        why its source could not read it; refused (InputError) unless it is a re-delivery.
        ``seen``: idempotency entries already read for a batch, by idempotency key (None: never
        delivered, so nothing more to read)."""
        idem = push_idem(row.sensor_id, message_id)
        if seen is None or seen.get(idem_key(idem), b"") is not None:
            earlier = self._delivered(idem, at)
            if earlier is not None:
                return Ingested(earlier, True)
        if problem is not None:
            raise InputError(problem)
        return push_events(row, message_id, payload, at, connector)

    def poll_ticket(self, sensor_id: str) -> decide.PollTicket:
        """Read what a poll needs: the expected ``state_version`` and the cursor."""
        return decide.poll_ticket(self.sensor(sensor_id))

    def record_poll(
        self, ticket: decide.PollTicket, result: PollResult | Failed | str, now: When = None
    ) -> EvalRow:
        """Record a poll outcome: the connector's :class:`PollResult`, or how it failed
        (:class:`Failed`; a bare ``str`` reason is read as ``Failed(reason)``).

        Accepted only if the sensor is still at ``ticket.expected_state_version``; otherwise
        :class:`Conflict`, and nothing at all is written. Re-recording the very same poll
        returns the original evaluation.
        """
        at = epoch(now)
        decide.check_ticket(ticket)
        if not isinstance(result, (PollResult, Failed, str)):
            raise InputError(f"result: expected a PollResult or Failed, not {type(result)}")
        outcome = failed_from(result)
        if isinstance(outcome, Failed) and not isinstance(outcome.reason, str):
            raise InputError(f"result: a Failed reason must be text, not {outcome.reason!r:.80}")
        batch = decide.record_poll(self._get(SENSORS, key(ticket.sensor_id)), ticket, outcome, at)
        appended = self._append(batch, at)
        if appended.duplicate and not decide.same_poll([e.event for e in appended.records], batch):
            # Another poller recorded a different answer under this ticket first: this one's
            # result was not recorded, and the caller must hear so (not get the other's row).
            actual = self.sensor(ticket.sensor_id).state_version
            raise Conflict(f"sensor {ticket.sensor_id!r}", ticket.expected_state_version, actual)
        return self._logged_eval(appended.records[0])

    def _delivered(self, idem: str, at: int) -> EvalRow | None:
        """The evaluation that took the push message of idempotency key ``idem``, if it was
        delivered within its dedupe horizon: from the log (its history row may be pruned) or,
        once compaction dropped that log, from its row. After the horizon the message is new."""
        with self._read() as rows:
            entry = rows.txn.get(Table.IDEM, idem_key(idem))
            if entry is None or not idem_live(entry, at):
                return None
            original = original_batch(rows.txn, self.store.codec, idem_seq(entry))
            if not original:
                return evaluation_by_id(rows, derived_id(idem))
        return self._logged_eval(original[0])

    def _logged_eval(self, envelope: Envelope) -> EvalRow:
        """The evaluation row of a logged ``SensorEvaluated``; read back only if it requested
        runs (the store found which keys already had one)."""
        return self._logged_evals([envelope])[0]

    def _logged_evals(self, envelopes: Sequence[Envelope]) -> list[EvalRow]:
        """:meth:`_logged_eval` of each, those read back read in one snapshot."""
        logged = [eval_row(envelope) for envelope in envelopes]
        if not any(row.evaluation.run_keys for row in logged):
            return logged
        with self._read() as rows:
            return [
                # pruned since: the row as logged
                rows.get(EVALS, key(row.evaluation.sensor_id, row.seq)) or row
                if row.evaluation.run_keys
                else row
                for row in logged
            ]

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

        A connector that raises, returns something other than :class:`PollResult` or returns
        a :class:`Failed` gives a ``FAILED`` evaluation with backoff. Timeouts are the
        caller's to enforce (the SDK runtime does: its connector answers ``Failed``).
        """
        at = epoch(now)
        ticket, context = self.poll_context(sensor_id, at)
        result = guarded(lambda: connector(context), PollResult, "connector")
        return self.record_poll(ticket, result, at)

    def evaluation(self, eval_id: str) -> EvalRow:
        with self._read() as rows:
            row = evaluation_by_id(rows, check_lookup(eval_id, "evaluation id"))
        return require(row, f"evaluation {eval_id!r}")

    def _idem_entries(self, sensor_id: str, items: Sequence[PushItem]) -> dict[bytes, bytes | None]:
        """The idempotency entries of the push messages among ``items`` whose ids are text,
        read in one snapshot (the others are refused before any read)."""
        keys = []
        for item in items:
            with contextlib.suppress(InputError):
                if isinstance(item.message_id, str):
                    keys.append(idem_key(push_idem(sensor_id, item.message_id)))
        with self.store.read() as txn:
            return {k: txn.get(Table.IDEM, k) for k in keys}

    def evaluations(
        self, sensor_id: str, *, limit: int = 50, before: str | None = None
    ) -> list[EvalRow]:
        """A sensor's evaluations, newest first; ``before`` (an eval id) pages further back."""
        validate_id(sensor_id, "sensor id")
        stop = None
        if before is not None:
            with self.store.read() as txn:
                stop = txn.get(Table.EVAL_IDS, key(check_lookup(before, "before")))
            if stop is None or not stop.startswith(key(sensor_id) + b"\x00"):
                raise InputError(
                    f"evaluation {before!r} is not an evaluation of sensor {sensor_id!r}"
                )
        return self._scan(
            EVALS, check_limit(limit), prefix=key(sensor_id) + b"\x00", stop=stop, reverse=True
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
        a manual run never suppresses a scheduled one. Same key and content: the same run.
        :meth:`request` also says whether the run already existed."""
        return self.request(run_key, template, now, origin, requested_by).run

    def request(
        self,
        run_key: str,
        template: RunTemplate,
        now: When = None,
        origin: Literal["manual", "backfill"] = "manual",
        requested_by: str = "api",
    ) -> Requested:
        """:meth:`request_run`, telling whether the key already had a run (``existing``: this
        request created none and returns that one) and whether it asked for other content
        (``conflict``, recorded in :meth:`conflicts`)."""
        at = epoch(now)
        if run_key is None:  # RunRequest's None means "the default key"; here there is none
            raise InputError("run_key: expected text, got None")
        checked(template, RunTemplate, "template")
        check_choice(origin, "origin", ("manual", "backfill"))
        check_text(requested_by, "requested_by", 256)  # part of the idempotency key
        event = request_run(origin, requested_by, template, RunRequest(run_key), run_key)
        if self._get(RUN_KEYS, run_slot(event.run_id)) is not None:
            self.run(event.run_id)  # raises Pruned, naming when: the key stays taken
        appended = self._append(decide.by_hand([event], at), at)
        return self._requested(appended, event)

    def _requested(self, appended: Appended, event: RunRequested) -> Requested:
        run = self.run(event.run_id)
        mine = [e.seq for e in appended.records if e.event == event]
        existing = appended.duplicate or not mine or run.created_seq != mine[0]
        return Requested(run, existing, existing and run.fingerprint != event.fingerprint)

    def run(self, run_id: str) -> RunRow:
        row = self._get(RUNS, key(check_lookup(run_id, "run id")))
        if row is None:
            if self._get(RUN_KEYS, run_slot(run_id)) is not None:
                raise Pruned(
                    f"run {run_id!r} finished and was pruned (retention); its run key stays "
                    "taken, so it is never run again"
                )
            raise NotFound(f"no run {run_id!r}")
        return row

    def run_by_key(self, run_key: str) -> RunRow:
        return self.run(to_run_id(check_text(run_key, "run_key")))

    def runs(
        self, *, limit: int = 50, before: str | None = None, status: str | None = None
    ) -> list[RunRow]:
        """Runs, newest first; ``before`` (a run id) pages further back."""
        check_limit(limit)  # checked up front: a bad limit is an error even when nothing matches
        if status is not None:
            check_choice(status, "status", get_args(RunStatus))
        stop = u64(self.run(before).created_seq) if before is not None else None
        with self._read() as rows:
            runs = rows.follow(Table.RUN_ORDER, RUNS, stop=stop, reverse=True)
            return list(islice((r for r in runs if status in (None, r.status)), limit))

    def conflicts(self, *, limit: int = 50, before: int | None = None) -> list[ConflictRow]:
        """Run-key conflicts (same key, other fingerprint), newest first."""
        stop = u64(check_int(before, "before", 0)) if before is not None else None
        return self._scan(CONFLICTS, check_limit(limit), stop=stop, reverse=True)

    def due_launches(self, now: When = None, limit: int = 100) -> list[RunRow]:
        """``REQUESTED`` runs with a launcher whose next attempt is due: the launch outbox. A
        claimed run is not due until its lease ends."""
        at = epoch(now)
        check_batch(limit)
        with self._read() as rows:
            return list(rows.follow(Table.OUTBOX, RUNS, limit, stop=u64(at + 1)))

    def claim_launches(
        self, claimer: str, now: When = None, *, lease: int, limit: int = 100
    ) -> list[RunRow]:
        """Claim the next attempt of up to ``limit`` due runs of the outbox for ``claimer`` (a
        runtime's identity) until ``now + lease``: those runs leave the outbox until the lease
        ends, so no other runtime launches them meanwhile. The claimer hands each one to its
        launcher and records the outcome with ``record_launch(..., claimer=claimer,
        expected_attempts=run.attempts)``; a claimer that dies leaves the run to be claimed
        again once the lease ends. Returns the claimed runs (empty: nothing was due)."""
        at = epoch(now)
        if not check_text(claimer, "claimer", 256):
            raise InputError("claimer: must not be empty")
        check_int(lease, "lease", 1)
        check_limit(limit)

        def attempt() -> list[RunRow]:
            batch = decide.claim_launches(self.due_launches(at, limit), claimer, at, lease)
            if not batch:
                return []  # nothing due: no write transaction at all (an idle daemon's cycle)
            appended = self._append(batch, at)
            claims = [r.event for r in appended.records if isinstance(r.event, RunClaimed)]
            runs = [self.run(claim.run_id) for claim in claims]
            return [r for r in runs if r.claimed_by == claimer and r.status == "REQUESTED"]

        return self._retry(attempt)

    def launched_runs(
        self, launcher: str, *, after: str | None = None, limit: int = 100
    ) -> list[RunRow]:
        """``LAUNCHED`` runs of ``launcher`` (index lookup), by run id; ``after`` (a run id)
        pages on. The runtime asks their launcher whether they finished."""
        check_limit(limit)
        prefix = key(check_text(launcher, "launcher", 256)) + b"\x00"
        start = key(launcher, check_lookup(after, "after")) + b"\x00" if after is not None else None
        with self._read() as rows:
            return list(rows.follow(Table.LAUNCHED, RUNS, limit, prefix=prefix, start=start))

    def record_launch(
        self,
        run_id: str,
        *,
        external_id: str | None = None,
        error: str | None = None,
        now: When = None,
        max_attempts: int = 5,
        claimer: str | None = None,
        expected_attempts: int | None = None,
    ) -> RunRow:
        """Record one launch attempt: success with the launcher's ``external_id``, or an
        ``error`` (retried with backoff, given up after ``max_attempts``).

        With ``expected_attempts`` (the attempts the reporter read before launching) this is a
        compare-and-set: accepted only if the run is still ``REQUESTED`` with exactly that many
        attempts and, with ``claimer``, still claimed by that runtime; otherwise
        :class:`Conflict`, and nothing is written. Without it (an external reporter), a run
        that is not ``REQUESTED`` is left as it is, and a second report of an attempt is a
        duplicate of the first."""
        at = epoch(now)
        if external_id is not None:
            check_text(external_id, "external_id")
        if error is not None:
            check_text(error, "error")
        check_int(max_attempts, "max_attempts", 1, 1000)
        if expected_attempts is not None:
            check_int(expected_attempts, "expected_attempts", 0)
        if claimer is not None:
            check_text(claimer, "claimer")

        def attempt() -> RunRow:
            run = self.run(run_id)
            if expected_attempts is None and run.status != "REQUESTED":
                return run  # another dispatcher recorded this run's launch first
            batch = (
                decide.launched(run, external_id, claimer, expected_attempts)
                if error is None
                else decide.launch_failed(
                    run,
                    error,
                    at,
                    max_attempts,
                    claimer=claimer,
                    expected_attempts=expected_attempts,
                )
            )
            appended = self._append(batch, at)
            if appended.duplicate and expected_attempts is not None:
                # This attempt was recorded before (by another runtime): not this report.
                actual = self.run(run_id).attempts
                raise Conflict(f"run {run_id!r}", expected_attempts, actual, "attempts")
            return self.run(run_id)

        return attempt() if expected_attempts is not None else self._retry(attempt)

    def complete_run(
        self, run_id: str, succeeded: bool, detail: str | None = None, now: When = None
    ) -> RunRow:
        """A launcher or operator reports that a run finished."""
        at = epoch(now)
        check_bool(succeeded, "succeeded")
        if detail is not None:
            check_text(detail, "detail")
        row = self._get(RUNS, key(check_lookup(run_id, "run id")))
        batch = decide.completed(row, run_id, succeeded, detail)
        appended = self._append(batch, at)
        if appended.duplicate and appended.records[0].event != batch[0].event:
            # Another reporter finished this run first, with another outcome: say so.
            raise InputError(f"run {run_id} already finished as {self.run(run_id).status}")
        return self.run(run_id)

    # -- operator verbs ------------------------------------------------------------------------

    def history(
        self,
        kind: Literal["schedule", "sensor"],
        item_id: str,
        *,
        limit: int = 50,
        before: int | None = None,
    ) -> list[HistoryRow]:
        """The changes made to a schedule or sensor, newest first: created, updated (old and
        new definition version), enabled/disabled, started/stopped, deleted, and cursor sets
        and resets. ``before`` (a ``seq``) pages further back. Read through its own index:
        O(rows of that item), never a scan of the log."""
        check_choice(kind, "kind", ("schedule", "sensor"))
        getattr(self, kind)(item_id)  # NotFound for an id never defined
        check_limit(limit)
        if before is not None:
            check_int(before, "before", 0)
        return self._scan(
            HISTORY,
            limit,
            prefix=key(kind, item_id) + b"\x00",
            stop=None if before is None else key(kind, item_id, max(before, 0)),
            reverse=True,
        )

    def set_cursor(
        self,
        sensor_id: str,
        cursor: str | bytes | None,
        *,
        expected_version: int,
        cursor_version: int = 1,
        now: When = None,
        requested_by: str = "api",
    ) -> SensorRow:
        """Set a poll sensor's cursor by hand (``None`` resets it: the connector starts from
        nothing). ``expected_version`` is the sensor's ``state_version`` as the caller read it:
        if it moved (a poll, another operator), :class:`Conflict` and nothing is written. The
        version then moves by one, so a poll in flight from the old cursor cannot land."""
        at = epoch(now)
        if cursor is not None and not isinstance(cursor, (str, bytes)):
            raise InputError(f"cursor: expected text or bytes, got {type(cursor).__name__}")
        check_int(cursor_version, "cursor_version")
        check_int(expected_version, "expected_version")  # a stale one is a Conflict
        if isinstance(cursor, str):
            check_text(cursor, "cursor")
        check_text(requested_by, "requested_by", 256)
        value = None if cursor is None else Cursor.of(cursor, cursor_version)
        row = self.sensor(sensor_id)
        self._append(decide.set_cursor(row, value, expected_version, requested_by), at)
        return self.sensor(sensor_id)

    def reset_cursor(
        self, sensor_id: str, *, expected_version: int, now: When = None, requested_by: str = "api"
    ) -> SensorRow:
        """:meth:`set_cursor` to ``None``: the next poll starts from the beginning."""
        return self.set_cursor(
            sensor_id, None, expected_version=expected_version, now=now, requested_by=requested_by
        )

    def retry_run(self, run_id: str, now: When = None, requested_by: str = "api") -> RunRow:
        """Send a ``GAVE_UP`` run back to the launch outbox (``REQUESTED``, due now) with a
        fresh budget of launch attempts. Any other status is an :class:`InputError`."""
        at = epoch(now)
        check_text(requested_by, "requested_by", 256)
        run_key_ = key(check_lookup(run_id, "run id"))

        def attempt() -> RunRow:
            run = self._get(RUNS, run_key_)
            self._append(decide.retry_run(run, run_id, requested_by), at)
            return self.run(run_id)

        return self._retry(attempt)

    def backfill(
        self,
        schedule_id: str,
        start: When,
        end: When,
        *,
        dry_run: bool = False,
        max_runs: int = 100,
        now: When = None,
        requested_by: str = "api",
    ) -> list[BackfillTick]:
        """Request a run for every tick of a schedule with ``start <= T <= end`` (both
        inclusive), in the ``backfill:`` namespace (``backfill:<id>:<instant>``), by the
        schedule's own tick walk and DST policy. At most ``max_runs`` ticks (a range with more
        is an InputError that says how many). Idempotent: a tick backfilled before keeps its
        run (``existing``). ``dry_run`` lists the ticks and writes nothing. The schedule's
        evaluator, if any, is not asked: each run is the schedule's run template."""
        at = epoch(now)
        first, last = epoch(start, "start"), epoch(end, "end")
        check_bool(dry_run, "dry_run")
        check_text(requested_by, "requested_by", 256)
        row = self.schedule(schedule_id)
        ticks = decide.backfill_ticks(row, first, last, max_runs)
        batch = [] if dry_run else decide.backfill(row, first, last, ticks, requested_by, at)
        appended = self._append(batch, at) if batch else Appended((), False)
        events = iter(p.event for p in batch if isinstance(p.event, RunRequested))
        tz = zone(row.definition.timezone)
        out = []
        for tick in ticks:
            run_key = "backfill:" + decide.backfill_key(schedule_id, tick.at) if tick.run else None
            run: RunRow | None = None
            existing = False
            pruned = (
                run_key is not None
                and self._get(RUN_KEYS, run_slot(to_run_id(run_key))) is not None
            )
            if run_key is not None and dry_run:  # a preview: which ticks already have a run
                run = self._get(RUNS, key(to_run_id(run_key)))
                existing = run is not None or pruned
            elif pruned:  # its run was pruned: the key stays taken, no run was made
                next(events)
                existing = True
            elif run_key is not None:
                run, existing, _ = self._requested(appended, next(events))
            local = datetime.fromtimestamp(tick.at, tz)
            action: Literal["run", "skip"] = "run" if tick.run else "skip"
            out.append(BackfillTick(tick.at, local, run_key, tick.dst, action, run, existing))
        return out

    # -- definitions ---------------------------------------------------------------------------

    def apply(self, definitions: Definitions, now: When = None) -> list[Change]:
        """Upsert every schedule and sensor in ``definitions``; what changed for each."""
        at = epoch(now)
        checked(definitions, Definitions, "definitions")
        revalidate(definitions)  # all of them before the first is applied
        for sensor in definitions.sensors:  # and the one rule that depends on the store
            decide.define_sensor(self._get(SENSORS, key(sensor.id)), sensor, at)
        if definitions.retention is not None:
            self.set_retention(definitions.retention, at)
        return [self.define_schedule(s, at) for s in definitions.schedules] + [
            self.define_sensor(s, at) for s in definitions.sensors
        ]

    # -- retention -----------------------------------------------------------------------------

    def retention(self) -> RetentionPolicy:
        """The store-wide retention policy (``RetentionPolicy()``: keep everything)."""
        with self.store.read() as txn:
            return store_policy(txn, self.store.codec)

    def set_retention(self, policy: RetentionPolicy, now: When = None) -> RetentionPolicy:
        """Set the store-wide retention policy (``[retention]``); schedules and sensors may
        override it with their own ``retention``. Setting the same policy writes nothing.

        >>> from arcoflow.kernel import Kernel, MemoryStore, RetentionPolicy
        >>> Kernel(MemoryStore()).set_retention(RetentionPolicy(history="30d"), now=0).history
        2592000
        """
        at = epoch(now)
        checked(policy, RetentionPolicy, "policy")

        def attempt() -> RetentionPolicy:
            row = self._get(SETTINGS, b"retention")
            if (row.policy if row else RetentionPolicy()) != policy:
                event = RetentionSet(policy, row.version if row else 0)
                self._append([Pending(f"retention/{event.expected_version}", event)], at)
            return self.retention()

        return self._retry(attempt)

    def prune(self, now: When = None, limit: int = 10_000, chunk: int = 200) -> Pruning:
        """Drop what retention says is old at ``now``: at most about ``limit`` items, in small
        transactions of at most ``chunk``, each logged as a ``history.pruned`` event (a replay
        drops the same). Runs that are not finished are never pruned. Call again while it
        returns rows or keys to catch up; the daemon prunes a bounded amount every cycle."""
        at = epoch(now)
        check_int(limit, "limit", 1, 1_000_000)
        check_int(chunk, "chunk", 1, 10_000)
        with self.store.read() as txn:
            plan = plan_prune(txn, self.store.codec, at, limit, chunk)
        for batch in plan.batches:
            self._append(batch, at)
        return Pruning(len(plan.batches), plan.rows, plan.keys)

    def pruned_before(self, kind: str, item_id: str) -> int | None:
        """The instant before which the history of ``kind`` (``schedule``, ``sensor`` or
        ``store``: ids ``runs``, ``conflicts``) ``item_id`` may have been pruned, or None: no
        gap. History queries stop there; this says so instead of a silent gap."""
        check_choice(kind, "kind", ("schedule", "sensor", "store"))
        check_text(item_id, "id", 256)
        mark = self._get(PRUNED, key(kind, item_id))
        return mark.before if mark is not None else None

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
                    for k, data in islice(txn.scan(Table.LOG, start=u64(after + 1)), chunk)
                ]
            yield from batch
            if len(batch) < chunk:
                return
            after = batch[-1].seq

    def verify(
        self, scratch: Store | None = None, progress: verification.Progress | None = None
    ) -> Verification:
        """Replay the whole log and compare the rebuilt state with the materialised state,
        every table and index, byte for byte (see :mod:`~arcoflow.kernel.verify`).

        ``scratch``: an empty store to replay into (default: plain dicts in memory, the fast
        way); ``progress(done, total)``: called as the replay advances."""
        if scratch is not None and not callable(getattr(scratch, "replay", None)):
            raise InputError(f"scratch: expected a Store, got {type(scratch).__name__}")
        if progress is not None and not callable(progress):
            raise InputError(f"progress: expected a callable, got {type(progress).__name__}")
        return verification.verify(self.store, scratch=scratch, progress=progress)

    def compact(self, before: When = None) -> Compaction:
        """Log compaction: snapshot the state after the last event logged before ``before``
        (default: now) and drop the log up to it, once a replay has proved the state (see
        :mod:`~arcoflow.kernel.compact`). A repeat of a dropped append is then
        :class:`~arcoflow.kernel.errors.Compacted`: keep the recent log for redeliveries.
        Refused (nothing written, ``verification.ok`` false) on a store that does not verify.
        """
        at = epoch(before, "before")
        if not callable(getattr(self.store, "write", None)):
            raise InputError(f"a {type(self.store).__name__} cannot be compacted (no write())")
        return compaction.compact(cast(WritableStore, self.store), at)

    # -- batched push ------------------------------------------------------------------------

    def ingest_many(
        self,
        sensor_id: str,
        messages: Iterable[PushItem | tuple[str, Any] | tuple[str, Any, str | None]],
        now: When = None,
        connector: MapMessage | None = None,
        record_refusals: bool = False,
    ) -> list[Ingested | Refused]:
        """Record many push messages in ONE store transaction (one commit, one device flush):
        one outcome per message, in order.

        Each message keeps :meth:`ingest`'s meaning: a re-delivery (from an earlier call, or
        repeated within this one) writes nothing and is the original evaluation with
        ``duplicate=True``; a message the kernel will not take (bad id or payload, unknown,
        deleted or stopped sensor, or a ``PushItem.problem``) is :class:`Refused` with its
        typed error, and the others are recorded.

        ``record_refusals`` (what broker sources use): a refused message to a sensor that
        exists is also recorded, in the same transaction, as a ``REFUSED`` evaluation in the
        sensor's history (reason and a bounded summary; see :func:`decide.refuse_push`), so
        an operator sees why a message was dead-lettered. It consumes no message id: a good
        delivery of that id later is accepted. An unknown sensor has no history: nothing is
        written for its messages either way.

        >>> from arcoflow.kernel import Kernel, MemoryStore, SensorDefinition, RunTemplate
        >>> k = Kernel(MemoryStore())
        >>> _ = k.define_sensor(SensorDefinition("orders", "push", RunTemplate("ship")), now=0)
        >>> [type(o).__name__ for o in k.ingest_many("orders", [("a", 1), ("a", 1), ("", 2)])]
        ['Ingested', 'Ingested', 'Refused']
        >>> (bad,) = k.ingest_many("orders", [("b", 1, "the body is not JSON")],
        ...                        record_refusals=True)
        >>> bad.evaluation.evaluation.status, bad.evaluation.reason
        ('REFUSED', 'the body is not JSON')
        """
        at = epoch(now)
        check_bool(record_refusals, "record_refusals")
        items = push_items(messages)
        try:
            row = self.sensor(sensor_id)
        except (InputError, NotFound) as exc:
            return [Refused(item.message_id, exc) for item in items]
        outcomes: list[Ingested | Refused | None] = [None] * len(items)
        seen = self._idem_entries(row.sensor_id, items)
        first: dict[str, int] = {}  # message id -> its first position in this call
        batches: list[list[Pending]] = []
        slots: list[int] = []  # the position each batch answers
        for i, (message_id, payload, problem) in enumerate(items):
            if isinstance(message_id, str) and message_id in first:
                continue  # a repeat within the call: answered by its first occurrence below
            try:
                if not isinstance(message_id, str):  # typed str; callers may pass anything
                    raise InputError(
                        problem or f"message id must be text, not {type(message_id).__name__}"
                    )
                prepared = self._push_events(row, message_id, payload, at, connector, problem, seen)
            except (InputError, NotFound) as exc:
                # No message id is consumed: a repeat of a refused id is judged anew.
                outcomes[i] = Refused(message_id, exc)
                if record_refusals:
                    reason = problem if problem is not None else str(exc)
                    refusal = decide.refuse_push(
                        row, message_id, payload, reason, at, described=problem is None
                    )
                    batches.append(refusal)
                    slots.append(i)
                continue
            first[message_id] = i
            if isinstance(prepared, Ingested):
                outcomes[i] = prepared
            else:
                batches.append(prepared)
                slots.append(i)
        for i, outcome in zip(slots, self._append_each(batches, at), strict=True):
            refused = outcomes[i]
            if not isinstance(refused, Refused):
                outcomes[i] = outcome
            elif isinstance(outcome, Ingested):  # its refusal recorded (or recorded before)
                outcomes[i] = refused._replace(evaluation=outcome.evaluation)
        for i, (message_id, _, _) in enumerate(items):
            if outcomes[i] is None:
                original = outcomes[first[message_id]]
                # The first occurrence was recorded (or its batch refused by the store).
                outcomes[i] = (
                    Ingested(original.evaluation, True)
                    if isinstance(original, Ingested)
                    else original
                )
        return [o for o in outcomes if o is not None]

    def _append_each(
        self, batches: Sequence[Sequence[Pending]], at: int
    ) -> list[Ingested | Refused]:
        """Append independent push batches in one transaction. Should the store still refuse
        one (a value the checks above let through), they are appended one by one instead, so
        only that message is refused."""
        if not batches:
            return []
        try:
            appended = self.store.append_many(batches, at)
        except InputError:
            appended = None
        if appended is not None:
            rows = self._logged_evals([a.records[0] for a in appended])
            return [Ingested(row, a.duplicate) for row, a in zip(rows, appended, strict=True)]
        outcomes: list[Ingested | Refused] = []
        for batch in batches:
            try:
                one = self._append(batch, at)
            except InputError as exc:
                event = batch[0].event
                outcomes.append(Refused(getattr(event, "message_id", None) or "", exc))
            else:
                outcomes.append(Ingested(self._logged_eval(one.records[0]), one.duplicate))
        return outcomes
