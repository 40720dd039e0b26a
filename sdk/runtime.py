"""The runtime: one evaluation cycle drives the kernel with plugins.

Which due schedules, polls and launches a runtime takes is its store's work claims
(:mod:`arcoflow.kernel.store.work`): on PostgreSQL several daemons split them, each item held
by one daemon while it works on it; elsewhere every runtime takes everything due.

A cycle (:meth:`Runtime.cycle`) does, in order:

1. **schedules** — every due schedule is evaluated; ticks of schedules that name an
   ``evaluator`` ask that plugin (:meth:`Plugins.evaluator`);
2. **sensors** — every due poll sensor's connector is polled with the sensor's ``timeout``
   and the outcome recorded with compare-and-set (a :class:`~arcoflow.kernel.Conflict` means
   another daemon polled first: logged, nothing written);
3. **launches** — the launch outbox: each ``REQUESTED`` run whose attempt is due is first
   *claimed* for this runtime (:attr:`Runtime.runtime_id`, until a lease ends:
   :meth:`~arcoflow.kernel.Kernel.claim_launches`), so several daemons on one store never
   hand the same attempt over twice (on PostgreSQL the run is held by a work claim,
   ``FOR UPDATE SKIP LOCKED``, instead of a lease); then handed to its launcher with ``run_id``
   as the idempotency token, and the outcome recorded with a compare-and-set on the attempt
   (retries, backoff and giving up are the kernel's);
4. **completions** — ``LAUNCHED`` runs are checked with their launcher's
   ``arcoflow_run_state``, and finished ones completed.

Every step is isolated: a failing plugin is recorded as the failure of its tick, evaluation or
launch; an unexpected error on one item is logged and reported, and the cycle moves on. Only a
:class:`~arcoflow.kernel.StoreError` (the store itself cannot go on) leaves the cycle.

Logging (standard :mod:`logging`, loggers ``arcoflow.*``): one INFO line per tick, evaluation,
launch and completion on ``arcoflow.runtime``; WARNING for failures. arcoflow configures no
handler; the CLI shows INFO with ``-v``.
"""

from __future__ import annotations

import enum
import logging
import math
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final, Literal

import attrs
from arcoflow.kernel import (
    ArcoflowError,
    Conflict,
    EvalRow,
    Failed,
    InputError,
    Kernel,
    NotFound,
    RunRow,
    StoreError,
    TickRow,
    describe,
    iso,
    parse_duration,
)
from arcoflow.kernel import views as v
from arcoflow.kernel.decide import is_due
from arcoflow.kernel.store import WorkClaims, WorkKind, work_claims

from .plugins import Plugins
from .types import Launch, Launched, RunState

__all__ = ["CycleReport", "Failure", "Listener", "Runtime"]

log = logging.getLogger("arcoflow.runtime")

#: Called with ``(kind, item)`` as things happen: ``("tick", TickRow)``,
#: ``("evaluation", EvalRow)``, ``("launch", RunRow)``, ``("completion", RunRow)``,
#: ``("conflict", sensor_id)``, ``("error", Failure)`` (a failure with no row of its own).
Listener = Callable[[str, Any], None]

#: Keys of a ``[launchers.NAME]`` table that the runtime reads (the rest is the plugin's).
LAUNCH_TIMEOUT_KEY: Final = "launch_timeout"
MAX_ATTEMPTS_KEY: Final = "max_attempts"
DEFAULT_TIMEOUT: Final = 30.0
DEFAULT_MAX_ATTEMPTS: Final = 5
#: A launch claim lasts the longest launch timeout plus this margin (seconds) for recording
#: the outcome and for clocks that differ between hosts.
LEASE_MARGIN: Final = 60

#: What a cycle failure concerns (not how a plugin call failed: that is FailureKind).
FailedItem = Literal[
    "tick", "evaluation", "launch", "run_state", "schedule", "sensor", "run", "prune"
]
#: Seconds between two prune passes of a runtime (see :meth:`Runtime.prune`).
DEFAULT_PRUNE_INTERVAL: Final = 60


class Unrecorded(enum.Enum):
    """Why a poll the runtime set out to make recorded nothing."""

    NOT_DUE = "not due"  # another daemon polled the sensor since the due list was read
    CONFLICT = "conflict"  # another poller recorded this poll epoch first (the CAS lost)


@attrs.frozen
class Failure:
    """Something that went wrong in a cycle: what kind, which item, and why."""

    kind: FailedItem
    subject: str
    reason: str


@attrs.define
class CycleReport:
    """What one cycle did. ``failures`` lists every failure, including those also visible as
    a ``FAILED`` tick or evaluation or a failed launch attempt in the lists above."""

    now: int
    ticks: list[TickRow] = attrs.field(factory=list)
    evaluations: list[EvalRow] = attrs.field(factory=list)
    launches: list[RunRow] = attrs.field(factory=list)
    completions: list[RunRow] = attrs.field(factory=list)
    conflicts: list[str] = attrs.field(factory=list)
    failures: list[Failure] = attrs.field(factory=list)
    pruned: int = 0  # history rows and expired message ids dropped (housekeeping, not "idle")

    @property
    def idle(self) -> bool:
        """Nothing happened at all."""
        return not (
            self.ticks
            or self.evaluations
            or self.launches
            or self.completions
            or self.conflicts
            or self.failures
        )

    def to_json(self) -> dict[str, Any]:
        """The report as JSON data (rows in the shapes of :mod:`arcoflow.kernel.views`)."""
        return {
            "now": iso(self.now),
            "ticks": [v.tick_json(t) for t in self.ticks],
            "evaluations": [v.eval_json(e) for e in self.evaluations],
            "launches": [v.run_json(r) for r in self.launches],
            "completions": [v.run_json(r) for r in self.completions],
            "conflicts": list(self.conflicts),
            "failures": [attrs.asdict(f) for f in self.failures],
            "pruned": self.pruned,
        }

    def summary(self) -> str:
        """One line: counts of what happened."""
        return (
            f"{len(self.ticks)} ticks, {len(self.evaluations)} evaluations, "
            f"{len(self.launches)} launches, {len(self.completions)} completions, "
            f"{len(self.conflicts)} conflicts, {len(self.failures)} failures"
        )


class Runtime:
    """Drives a :class:`~arcoflow.kernel.Kernel` with :class:`Plugins`, one cycle at a time.

    ``launchers_config`` is the ``[launchers]`` table of the definitions file: each launcher
    receives its own table as ``Launch.launcher_config``. The runtime itself reads two keys
    there: ``launch_timeout`` (a duration, default 30s, also used for run-state checks) and
    ``max_attempts`` (launch attempts before giving up, default 5).

    ``clock`` gives epoch seconds when a cycle is not given ``now`` (default: the wall clock);
    ``batch`` bounds the due schedules, sensors, launches and checks handled per step and
    cycle (the rest stay due for the next cycle; completion checks page through the launched
    runs ``batch`` at a time, one page per cycle).

    ``runtime_id`` names this runtime in its launch claims (default: host, process id and a
    random suffix, unique per instance); ``launch_lease`` is how long a claim lasts, in
    seconds (default: the longest launch timeout plus :data:`LEASE_MARGIN`). A runtime that
    dies after claiming leaves the run to another once the lease ends: that is the only case
    in which a launcher is handed the same attempt twice.

    ``work`` says which due items this runtime takes (default: the store's own,
    :func:`~arcoflow.kernel.store.work.work_claims`). On PostgreSQL, runtimes claim due
    schedules, polls and launches with ``FOR UPDATE SKIP LOCKED`` and hold each item while
    they work on it, so several daemons split the work; a launch is then recorded without a
    lease (the lock is the claim, freed at once if the daemon dies). Elsewhere every runtime
    takes everything due, and launches are leased.

    >>> from arcoflow.kernel import Kernel, MemoryStore
    >>> Runtime(Kernel(MemoryStore()), Plugins()).cycle(now=0).idle
    True
    """

    def __init__(
        self,
        kernel: Kernel,
        plugins: Plugins,
        launchers_config: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        evaluator_timeout: float = DEFAULT_TIMEOUT,
        batch: int = 100,
        clock: Callable[[], int] | None = None,
        listener: Listener | None = None,
        runtime_id: str | None = None,
        launch_lease: int | None = None,
        work: WorkClaims | None = None,
        prune_interval: int = DEFAULT_PRUNE_INTERVAL,
    ) -> None:
        self.kernel = kernel
        self.work = work if work is not None else work_claims(kernel.store)
        self.plugins = plugins
        self.launchers_config: dict[str, dict[str, Any]] = {
            name: dict(table) for name, table in (launchers_config or {}).items()
        }
        self._launch_settings = {
            name: _launch_settings(name, table) for name, table in self.launchers_config.items()
        }
        if evaluator_timeout <= 0:
            raise InputError(f"evaluator_timeout must be positive, got {evaluator_timeout}")
        if batch < 1:
            raise InputError(f"batch must be at least 1, got {batch}")
        self.evaluator_timeout = evaluator_timeout
        self.batch = batch
        self.clock = clock or _wall_clock
        self.listener = listener
        self.runtime_id = runtime_id or _runtime_id()
        longest = max([DEFAULT_TIMEOUT, *(t for t, _ in self._launch_settings.values())])
        self.launch_lease = (
            launch_lease if launch_lease is not None else math.ceil(longest) + LEASE_MARGIN
        )
        if isinstance(self.launch_lease, bool) or not isinstance(self.launch_lease, int):
            raise InputError(f"launch_lease must be whole seconds, got {launch_lease!r}")
        if self.launch_lease < 1:
            raise InputError(f"launch_lease must be positive, got {launch_lease}")
        self._check_after: dict[str, str | None] = {}
        if isinstance(prune_interval, bool) or not isinstance(prune_interval, int):
            raise InputError(f"prune_interval must be whole seconds, got {prune_interval!r}")
        if prune_interval < 1:
            raise InputError(f"prune_interval must be positive, got {prune_interval}")
        self.prune_interval = prune_interval
        self._next_prune: int | None = None

    # -- the cycle -----------------------------------------------------------------------------

    def cycle(self, now: int | None = None) -> CycleReport:
        """One full cycle: schedules, sensors, launches, completions.

        With ``now`` every step happens at that instant (tests, replays, several daemons on
        one clock); without, each step reads :attr:`clock`.
        """
        report = self.evaluate(now)
        self.dispatch_launches(now, report)
        self.check_runs(now, report)
        self.prune(now, report)
        return report

    def evaluate(self, now: int | None = None) -> CycleReport:
        """Only the evaluation half of a cycle: due schedules and due poll sensors."""
        report = CycleReport(self._at(now))
        self.evaluate_schedules(now, report)
        self.poll_sensors(now, report)
        return report

    def _at(self, now: int | None) -> int:
        return now if now is not None else self.clock()

    def _emit(self, kind: str, item: object) -> None:
        if self.listener is not None:
            try:
                self.listener(kind, item)
            except Exception:  # the listener is display only; it never breaks a cycle
                log.exception("runtime listener failed on %s", kind)

    def _error(self, report: CycleReport, kind: FailedItem, subject: str, exc: Exception) -> None:
        """An unexpected error on one item: logged with its traceback, reported, skipped."""
        failure = Failure(kind, subject, describe(exc))
        if isinstance(exc, ArcoflowError):
            log.warning("%s %s: %s", kind, subject, failure.reason)
        else:
            log.error("%s %s: unexpected error", kind, subject, exc_info=exc)
        report.failures.append(failure)
        self._emit("error", failure)

    # -- 1. schedules --------------------------------------------------------------------------

    def evaluate_schedules(self, now: int | None, report: CycleReport) -> list[TickRow]:
        """Evaluate every due schedule (at most :attr:`batch`); the ticks recorded."""
        evaluate = self.plugins.evaluator(self.evaluator_timeout)
        recorded: list[TickRow] = []
        claimed = self.work.claim(WorkKind.SCHEDULE, self._at(now), self.batch)
        for schedule_id in _held(claimed):
            try:
                ticks = self.kernel.evaluate_schedule(schedule_id, self._at(now), evaluate)
            except StoreError:
                raise
            except NotFound:
                continue  # deleted since the index was read
            except Exception as exc:
                self._error(report, "schedule", schedule_id, exc)
                continue
            for tick in ticks:
                _log_tick(tick)
                if tick.status == "FAILED":
                    report.failures.append(Failure("tick", tick.tick_id, tick.reason or ""))
                self._emit("tick", tick)
            recorded += ticks
        report.ticks += recorded
        return recorded

    # -- 2. sensors ----------------------------------------------------------------------------

    def poll_sensors(self, now: int | None, report: CycleReport) -> list[EvalRow]:
        """Poll every due poll sensor (at most :attr:`batch`); the evaluations recorded."""
        recorded: list[EvalRow] = []
        claimed = self.work.claim(WorkKind.SENSOR, self._at(now), self.batch)
        for sensor_id in _held(claimed):
            try:
                row = self._poll(sensor_id, now, only_if_due=True)
            except StoreError:
                raise
            except (NotFound, InputError) as exc:
                log.debug("sensor %s not polled: %s", sensor_id, exc)  # stopped or deleted
                continue
            except Exception as exc:
                self._error(report, "sensor", sensor_id, exc)
                continue
            if row is Unrecorded.NOT_DUE:
                continue
            if row is Unrecorded.CONFLICT:
                report.conflicts.append(sensor_id)
                self._emit("conflict", sensor_id)
                continue
            if row.evaluation.status == "FAILED":
                report.failures.append(
                    Failure("evaluation", sensor_id, row.evaluation.reason or "")
                )
            self._emit("evaluation", row)
            recorded.append(row)
        report.evaluations += recorded
        return recorded

    def poll_sensor(self, sensor_id: str, now: int | None = None) -> EvalRow | None:
        """Poll one sensor through its connector, due or not, and record the outcome.

        Returns the evaluation, or ``None`` when another poller recorded this poll epoch
        first (the compare-and-set lost; nothing was written).
        """
        row = self._poll(sensor_id, now, only_if_due=False)
        return row if isinstance(row, EvalRow) else None

    def _poll(self, sensor_id: str, now: int | None, only_if_due: bool) -> EvalRow | Unrecorded:
        at = self._at(now)
        if only_if_due:
            # The due list may be stale: another daemon may have polled this sensor since.
            # Poll only at the state version that was due; the ticket below must match it.
            before = self.kernel.sensor(sensor_id)
            if before.next_eval_at is None or before.next_eval_at > at:
                return Unrecorded.NOT_DUE
        ticket, context = self.kernel.poll_context(sensor_id, at)
        if only_if_due and ticket.expected_state_version != before.state_version:
            return Unrecorded.NOT_DUE
        sensor = context.sensor
        assert sensor.connector is not None  # a poll sensor always names one
        result = self.plugins.poll(sensor.connector, context, float(sensor.timeout))
        try:
            row = self.kernel.record_poll(ticket, result, self._at(now))
        except Conflict as exc:
            log.info("sensor %s: another daemon polled first (%s)", sensor_id, exc)
            return Unrecorded.CONFLICT
        _log_evaluation(row)
        return row

    # -- 3. launches ---------------------------------------------------------------------------

    def dispatch_launches(self, now: int | None, report: CycleReport) -> list[RunRow]:
        """Claim due runs of the launch outbox one at a time (at most :attr:`batch`) and hand
        each to its launcher. A run another runtime claimed is not due: it is never seen."""
        if self.work.exclusive:
            return self._dispatch_claimed(now, report)
        launched: list[RunRow] = []
        for _ in range(self.batch):
            try:
                claimed = self.kernel.claim_launches(
                    self.runtime_id, self._at(now), lease=self.launch_lease, limit=1
                )
            except Conflict as exc:  # other runtimes kept claiming first: the next cycle
                log.info("launch claims lost to other runtimes (%s)", exc)
                break
            if not claimed:
                break
            run = claimed[0]
            try:
                row = self.launch_run(run, now)
            except StoreError:
                raise
            except Exception as exc:
                self._error(report, "run", run.run_id, exc)
                continue
            self._launched(row, report, launched)
        report.launches += launched
        return launched

    def _dispatch_claimed(self, now: int | None, report: CycleReport) -> list[RunRow]:
        """Launches on a store whose claims are exclusive (PostgreSQL): each due run is held
        by this runtime's claim while it is handed over, and recorded with a compare-and-set
        on its attempt (no lease: the claim ends with the daemon)."""
        launched: list[RunRow] = []
        at = self._at(now)
        for run_id in _held(self.work.claim(WorkKind.LAUNCH, at, self.batch)):
            try:
                run = self.kernel.run(run_id)
                if not is_due(run, at):
                    continue  # handed over by another runtime since the index was read
                row = self._hand_over(run, now, claimer=None)
            except StoreError:
                raise
            except Exception as exc:
                self._error(report, "run", run_id, exc)
                continue
            self._launched(row, report, launched)
        report.launches += launched
        return launched

    def _launched(self, row: RunRow | None, report: CycleReport, launched: list[RunRow]) -> None:
        if row is None:
            return
        if row.last_error is not None and row.status != "LAUNCHED":
            report.failures.append(Failure("launch", row.run_id, row.last_error))
        self._emit("launch", row)
        launched.append(row)

    def launch_run(self, run: RunRow, now: int | None = None) -> RunRow | None:
        """Hand the next attempt of ``run``, as claimed by this runtime
        (:meth:`~arcoflow.kernel.Kernel.claim_launches`), to its launcher and record the
        outcome; the run after recording it, or ``None`` if the run moved on since it was
        claimed (this runtime's lease ended and another runtime recorded the attempt, or an
        operator finished the run): the kernel's compare-and-set refused the outcome."""
        return self._hand_over(run, now, claimer=self.runtime_id)

    def _hand_over(self, run: RunRow, now: int | None, claimer: str | None) -> RunRow | None:
        """:meth:`launch_run`, recording the outcome under ``claimer``'s lease (``None``: the
        run is held by an exclusive work claim instead)."""
        launcher = run.launcher
        if launcher is None:
            raise InputError(f"run {run.run_id} names no launcher; it waits for an external one")
        timeout, max_attempts = self._launch_settings.get(
            launcher, (DEFAULT_TIMEOUT, DEFAULT_MAX_ATTEMPTS)
        )
        launch = self._launch(run, run.attempts + 1)
        outcome = self.plugins.launch(launcher, launch, timeout)
        started = isinstance(outcome, Launched)
        try:
            row = self.kernel.record_launch(
                run.run_id,
                external_id=outcome.external_id if isinstance(outcome, Launched) else None,
                error=outcome.reason if isinstance(outcome, Failed) else None,
                now=self._at(now),
                max_attempts=max_attempts,
                claimer=claimer,
                expected_attempts=run.attempts,
            )
        except Conflict as exc:
            log.warning(
                "run %s (%s): attempt %d %s but not recorded: %s",
                run.run_id,
                run.run_key,
                launch.attempt,
                "started" if started else "failed",
                exc,
            )
            return None
        _log_launch(row, launch.attempt)
        return row

    def _launch(self, run: RunRow, attempt: int) -> Launch:
        launcher = run.launcher or ""
        return Launch(
            run_id=run.run_id,
            run_key=run.run_key,
            target=run.target,
            config=dict(run.config),
            tags=dict(run.tags),
            origin=run.origin,
            attempt=attempt,
            launcher_config=dict(self.launchers_config.get(launcher, {})),
        )

    # -- 4. completions ------------------------------------------------------------------------

    def check_runs(self, now: int | None, report: CycleReport) -> list[RunRow]:
        """Ask each launcher that implements ``arcoflow_run_state`` about its ``LAUNCHED``
        runs (at most :attr:`batch` per launcher per cycle, continuing where the last cycle
        stopped) and complete the finished ones."""
        completed: list[RunRow] = []
        for launcher in self.plugins.names():
            if not self.plugins.implements(launcher, "arcoflow_run_state"):
                continue
            after = self._check_after.get(launcher)
            runs = self.kernel.launched_runs(launcher, after=after, limit=self.batch)
            self._check_after[launcher] = runs[-1].run_id if len(runs) >= self.batch else None
            timeout = self._launch_settings.get(launcher, (DEFAULT_TIMEOUT, 0))[0]
            for run in runs:
                try:
                    state = self.plugins.run_state(
                        launcher, self._launch(run, run.attempts), run.external_id, timeout
                    )
                    if isinstance(state, Failed):
                        log.warning("state of run %s (%s): %s", run.run_id, run.run_key, state)
                        report.failures.append(Failure("run_state", run.run_id, state.reason))
                        self._emit("error", report.failures[-1])
                        continue
                    if state is None:
                        continue
                    row = self._complete(run, state, now)
                except StoreError:
                    raise
                except Exception as exc:
                    self._error(report, "run", run.run_id, exc)
                    continue
                self._emit("completion", row)
                completed.append(row)
        report.completions += completed
        return completed

    # -- 5. retention --------------------------------------------------------------------------

    def prune(self, now: int | None, report: CycleReport) -> int:
        """Drop what retention says is old, at most ``10 * batch`` items, at most once every
        ``prune_interval`` seconds (a pass reads every definition once: a daemon with many
        definitions should not pay that every cycle). The rest waits for the next pass."""
        at = self._at(now)
        if self._next_prune is not None and self._next_prune > at >= self._next_prune - (
            self.prune_interval
        ):
            return 0
        self._next_prune = at + self.prune_interval
        try:
            done = self.kernel.prune(at, limit=10 * self.batch)
        except Exception as exc:  # a damaged row: the other steps of the cycle still ran
            self._error(report, "prune", "retention", exc)
            return 0
        report.pruned += done.rows + done.keys
        if done.rows or done.keys:
            log.info("pruned %d history rows and %d message ids", done.rows, done.keys)
        return done.rows + done.keys

    def _complete(self, run: RunRow, state: RunState, now: int | None) -> RunRow:
        row = self.kernel.complete_run(
            run.run_id, state.status == "succeeded", state.detail, now=self._at(now)
        )
        log.info(
            "run %s (%s) %s%s",
            row.run_id,
            row.run_key,
            row.status,
            f": {row.detail}" if row.detail else "",
        )
        return row


def _wall_clock() -> int:
    return int(time.time())


def _held(claimed: Iterator[str]) -> Iterator[str]:
    """The ids of a work claim, closed when the loop over them ends however it ends (an
    exclusive claim then frees the items it still holds)."""
    close = getattr(claimed, "close", None)
    try:
        yield from claimed
    finally:
        if callable(close):
            close()


def _runtime_id() -> str:
    """Unique per runtime instance, and says where it runs: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _launch_settings(name: str, table: Mapping[str, Any]) -> tuple[float, int]:
    timeout: float = DEFAULT_TIMEOUT
    if LAUNCH_TIMEOUT_KEY in table:
        value = table[LAUNCH_TIMEOUT_KEY]
        try:
            # A fraction of a second is a number (TOML float); whole durations may be "30s".
            timeout = value if isinstance(value, float) else float(parse_duration(value))
        except InputError as exc:
            raise InputError(f"[launchers.{name}] {LAUNCH_TIMEOUT_KEY}: {exc}") from None
        if not 0 < timeout <= 366 * 86400:  # also refuses nan
            raise InputError(
                f"[launchers.{name}] {LAUNCH_TIMEOUT_KEY} must be positive (at most 366 days)"
            )
    attempts = table.get(MAX_ATTEMPTS_KEY, DEFAULT_MAX_ATTEMPTS)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= 100:
        raise InputError(f"[launchers.{name}] {MAX_ATTEMPTS_KEY} must be an integer 1-100")
    return timeout, attempts


def _log_tick(tick: TickRow) -> None:
    if tick.status == "FAILED":
        log.warning("tick %s FAILED (attempt %d): %s", tick.tick_id, tick.attempts, tick.reason)
    elif tick.status == "SKIPPED":
        log.info("tick %s SKIPPED: %s", tick.tick_id, tick.reason)
    else:
        log.info("tick %s TRIGGERED: %s", tick.tick_id, ", ".join(tick.run_keys))


def _log_evaluation(row: EvalRow) -> None:
    e = row.evaluation
    if e.status == "FAILED":
        log.warning("evaluation of sensor %s FAILED: %s", e.sensor_id, e.reason)
    elif e.run_keys:
        log.info("evaluation of sensor %s %s: %s", e.sensor_id, e.status, ", ".join(e.run_keys))
    else:
        log.info("evaluation of sensor %s %s: %s", e.sensor_id, e.status, e.reason)


def _log_launch(row: RunRow, attempt: int) -> None:
    if row.status == "LAUNCHED":
        log.info(
            "launched run %s (%s) via %s: %s",
            row.run_id,
            row.run_key,
            row.launcher,
            row.external_id,
        )
    elif row.status == "GAVE_UP":
        log.warning(
            "gave up launching run %s (%s) after %d attempts: %s",
            row.run_id,
            row.run_key,
            row.attempts,
            row.last_error,
        )
    elif row.status == "REQUESTED":
        log.warning(
            "launch attempt %d of run %s (%s) failed, retry at %s: %s",
            attempt,
            row.run_id,
            row.run_key,
            iso(row.next_attempt_at) if row.next_attempt_at is not None else "-",
            row.last_error,
        )
