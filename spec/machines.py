"""Hypothesis state machines that drive a real :class:`~arcoflow.kernel.Kernel` and the
reference :class:`~arcoflow.spec.model.Model` side by side.

:class:`KernelMachine` has a rule for every action of SPEC.md: define, update, toggle and
delete schedules and sensors; evaluate schedules at a clock that jumps forward (up to months),
backward, and across DST transitions in zones that have them; push (with duplicates), poll
(with stale tickets), manual run requests with the same or another fingerprint, launches,
launch failures and giving up, completion; plugins that raise or answer nonsense; races where
another process appends between this one's read and its append; crashes inside a write
transaction; and store close/reopen. After every step it compares what the kernel shows with
what the model says, and checks the invariants of :mod:`arcoflow.spec.invariants`.

The class is named without a ``Test`` prefix so pytest does not collect it from the package.
To run it on your own store, subclass :class:`~arcoflow.spec.StoreKit` (the one documented way:
``docs/plugins.md``, "Conformance kits"); :meth:`KernelMachine.make_store` and
:meth:`KernelMachine.reopen_store` are the hooks it fills in.

The machine draws from :mod:`~arcoflow.spec.strategies`, asks the deterministic plugins of
:mod:`~arcoflow.spec.doubles` and compares through :mod:`~arcoflow.spec.compare`.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, ClassVar, Literal

import attrs
from arcoflow.kernel import (
    Kernel,
    LmdbStore,
    MemoryStore,
    PollContext,
    PollResult,
    RetentionPolicy,
    RunTemplate,
    ScheduleDefinition,
    SensorDefinition,
    Store,
)
from hypothesis import note
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from .compare import (
    Outcome,
    change_of,
    ingested_of,
    kernel_outcome,
    log_of,
    model_outcome,
    requested_of,
)
from .doubles import (
    CONNECTOR_MODES,
    EVALUATOR_MODES,
    MAPPER_MODES,
    Interposer,
    SimulatedCrash,
    bucket,
    connector,
    evaluator,
    mapper,
)
from .invariants import check_reopen, check_replay, check_state, check_step
from .model import MCursor, Model, MTicket, Rejected, plugin_error
from .observe import Observation, diff, observe_kernel, observe_model
from .strategies import (
    BACK,
    CRONS,
    DST_STARTS,
    JUMPS,
    MESSAGE_IDS,
    PAYLOADS,
    RUN_KEYS,
    SCHEDULE_IDS,
    SENSOR_IDS,
    STARTS,
    ZONES,
    D,
    H,
    scaled,
    schedule_definitions,
    sensor_definitions,
    templates,
)

__all__ = [
    "CRONS",
    "DST_STARTS",
    "ZONES",
    "Interposer",
    "KernelMachine",
    "LmdbKernelMachine",
    "SimulatedCrash",
    "kernel_machine",
    "kernel_outcome",
    "model_outcome",
    "scaled",
]


# -- operations: one action, on a kernel and on the model ---------------------------------------


@dataclass
class Op:
    """One action. ``prepare`` reads what a racing process read *before* the other one wrote
    (a stale read) and returns the model half to run later."""

    name: str
    kernel: Callable[[Kernel], Any]
    model: Callable[[Model], Any]
    prepare: Callable[[Model], Callable[[Model], Any]] | None = None
    evaluations: dict[str, int] = field(default_factory=dict)


def _cursor_of(c: Any) -> MCursor | None:
    return None if c is None else MCursor(c.native(), c.version)


# -- the machine ---------------------------------------------------------------------------------


class KernelMachine(RuleBasedStateMachine):
    """The kernel and the model, side by side, on the store :meth:`make_store` returns.

    Class attributes a subclass may set: ``twin`` (also drive a kernel on a
    :class:`MemoryStore`, the reference store, and require the very same log and observable
    state from both).
    """

    twin: ClassVar[bool] = False

    schedule_ids = Bundle("schedule_ids")
    sensor_ids = Bundle("sensor_ids")
    tickets = Bundle("tickets")
    manual_runs = Bundle("manual_runs")

    # -- hooks for kits ------------------------------------------------------------------------

    def make_store(self) -> Store:
        """A fresh, empty store for one example: the hook :class:`~arcoflow.spec.StoreKit` fills
        in from its ``store_factory`` (subclass that to test your own store)."""
        return MemoryStore()

    def reopen_store(self, store: Store) -> Store | None:
        """Close ``store`` and open it again from where it persists; ``None``: it does not
        persist (the in-memory store), so close/reopen and crash recovery are not exercised."""
        return None

    def tempdir(self) -> str:
        """A fresh directory for this example, deleted at teardown."""
        path = tempfile.mkdtemp(prefix="arcoflow-spec-")
        self._dirs.append(path)
        return path

    # -- lifecycle -----------------------------------------------------------------------------

    def __init__(self) -> None:
        super().__init__()
        self._dirs: list[str] = []
        self.now = DST_STARTS[-1]
        self.model = Model()
        self.store = Interposer(self.make_store())
        self.kernel = Kernel(self.store)
        self.twin_store = Interposer(MemoryStore()) if self.twin else None
        self.twin_kernel = Kernel(self.twin_store) if self.twin_store else None
        self.before: Observation | None = None
        self.step_evaluations: dict[str, int] = {}

    def teardown(self) -> None:
        try:
            check_replay(self.kernel)
        finally:
            self.store.close()
            if self.twin_store is not None:
                self.twin_store.close()
            for path in self._dirs:
                shutil.rmtree(path, ignore_errors=True)

    def _kernels(self) -> list[tuple[Kernel, Interposer]]:
        out = [(self.kernel, self.store)]
        if self.twin_kernel is not None and self.twin_store is not None:
            out.append((self.twin_kernel, self.twin_store))
        return out

    @initialize(
        target=schedule_ids,
        start=STARTS,
        offset=st.sampled_from((0, -H, 2 * H, -D)),
        d=schedule_definitions(),
    )
    def start(self, start: tuple[int, str, int], offset: int, d: ScheduleDefinition) -> str:
        """Start the clock near a DST transition, with one schedule defined."""
        self.now = start[0] + offset
        note(f"clock starts at {self.now} (near a transition in {start[1]})")
        self.run(self.op_define_schedule(d, self.now))
        return d.id

    @initialize(target=sensor_ids, d=sensor_definitions())
    def first_sensor(self, d: SensorDefinition) -> str:
        self.run(self.op_define_sensor(d, self.now))
        return d.id

    # -- running operations --------------------------------------------------------------------

    def run(self, op: Op) -> Outcome:
        """Run ``op`` on the kernel(s) and the model; they must agree on the outcome."""
        note(f"{op.name} at {self.now}")
        outcomes = [kernel_outcome(partial(op.kernel, k)) for k, _ in self._kernels()]
        expected = model_outcome(lambda: op.model(self.model))
        for got in outcomes:
            assert got == expected, f"{op.name}: kernel {got!r} but model {expected!r}"
        self._count(op.evaluations)
        return expected

    def race(self, first: Op, second: Op) -> None:
        """``first`` reads, then ``second`` runs to completion (another process), then
        ``first`` appends: it must detect the stale read (conflict and re-decide, duplicate,
        or a typed Conflict) exactly as the model, which runs ``second`` then ``first``."""
        note(f"race: {first.name} reads; {second.name} appends first")
        fired: list[bool] = []
        results = []
        for kernel, store in self._kernels():
            seconds: list[Outcome] = []

            def other(kernel: Kernel = kernel, seconds: list[Outcome] = seconds) -> None:
                seconds.append(kernel_outcome(lambda: second.kernel(kernel)))

            store.before_append = other
            got = kernel_outcome(partial(first.kernel, kernel))
            if store.disarm():  # first never appended: it went first
                other()
                fired.append(False)
            else:
                fired.append(True)
            results.append((seconds[0], got))
        assert len(set(fired)) == 1, "the twin kernels raced differently"
        stale = first.prepare(self.model) if first.prepare else first.model
        if fired[0]:
            expected_second = model_outcome(lambda: second.model(self.model))
            expected_first = model_outcome(lambda: stale(self.model))
        else:
            expected_first = model_outcome(lambda: stale(self.model))
            expected_second = model_outcome(lambda: second.model(self.model))
        note(f"  {second.name}: {expected_second[0]}; {first.name}: {expected_first[0]}")
        for got_second, got_first in results:
            assert got_second == expected_second, f"{second.name}: {got_second} vs model"
            assert got_first == expected_first, (
                f"{first.name} after a stale read: kernel {got_first!r}, model {expected_first!r}"
            )
        self._count(first.evaluations)
        self._count(second.evaluations)

    def _count(self, evaluations: dict[str, int]) -> None:
        for sid, n in evaluations.items():
            self.step_evaluations[sid] = self.step_evaluations.get(sid, 0) + n

    # -- operations ----------------------------------------------------------------------------

    def op_define_schedule(self, d: ScheduleDefinition, now: int) -> Op:
        return Op(
            f"define schedule {d.id} {d.cron} {d.timezone} enabled={d.enabled}",
            lambda k: change_of(k.define_schedule(d, now)),
            lambda m: (m.define_schedule(d, now), m.schedules[d.id].definition_version),
        )

    def op_evaluate(self, schedule_id: str | None, mode: str, now: int) -> Op:
        ev = evaluator(mode)
        if schedule_id is None:
            due = self.model.due_schedules(now)
            return Op(
                f"evaluate all at {now} (evaluator {mode})",
                lambda k: [t.tick_id for t in k.evaluate_schedules(now, ev)],
                lambda m: [t.tick_id for t in m.evaluate_schedules(now, ev)],
                evaluations=dict.fromkeys(due, 1),
            )

        def stale(m: Model) -> Callable[[Model], Any]:
            # The racing evaluator read the schedule's state before the other one wrote.
            s = m.schedules.get(schedule_id)
            v = s.state_version if s else None
            return lambda m: [
                t.tick_id for t in m.evaluate_schedule(schedule_id, now, ev, read_version=v)
            ]

        return Op(
            f"evaluate {schedule_id} at {now} (evaluator {mode})",
            lambda k: [t.tick_id for t in k.evaluate_schedule(schedule_id, now, ev)],
            lambda m: [t.tick_id for t in m.evaluate_schedule(schedule_id, now, ev)],
            prepare=stale,
            evaluations={schedule_id: 1},
        )

    def op_toggle_schedule(self, schedule_id: str, enabled: bool, now: int) -> Op:
        return Op(
            f"{'enable' if enabled else 'disable'} schedule {schedule_id}",
            lambda k: k.set_schedule_enabled(schedule_id, enabled, now).enabled,
            lambda m: m.set_schedule_enabled(schedule_id, enabled, now).enabled,
        )

    def op_toggle_sensor(self, sensor_id: str, running: bool, now: int) -> Op:
        return Op(
            f"{'start' if running else 'stop'} sensor {sensor_id}",
            lambda k: k.set_sensor_running(sensor_id, running, now).running,
            lambda m: m.set_sensor_running(sensor_id, running, now).running,
        )

    def op_define_sensor(self, d: SensorDefinition, now: int) -> Op:
        return Op(
            f"define {d.type} sensor {d.id} enabled={d.enabled}",
            lambda k: change_of(k.define_sensor(d, now)),
            lambda m: (m.define_sensor(d, now), m.sensors[d.id].definition_version),
        )

    def op_push(self, sensor_id: str, message_id: str, payload: Any, mode: str | None) -> Op:
        now, mapping = self.now, mapper(mode)
        return Op(
            f"push {message_id} to {sensor_id} (payload {payload!r}, mapper {mode})",
            lambda k: ingested_of(k.ingest(sensor_id, message_id, payload, now, mapping)),
            lambda m: ingested_of(m.ingest(sensor_id, message_id, payload, now, mapping)),
        )

    def op_poll(self, sensor_id: str, mode: str, now: int) -> Op:
        conn = connector(mode)

        def stale(m: Model) -> Callable[[Model], Any]:
            # The racing poller read its ticket and called its connector before the other
            # process wrote; it records that outcome afterwards.
            try:
                ticket = m.poll_ticket(sensor_id)
            except Rejected:
                return lambda m: m.poll(sensor_id, conn, now).eval_id
            result = _connect(m, ticket, conn, now)
            return lambda m: m.record_poll(ticket, result, now).eval_id

        return Op(
            f"poll {sensor_id} (connector {mode})",
            lambda k: k.poll(sensor_id, conn, now).evaluation.eval_id,
            lambda m: m.poll(sensor_id, conn, now).eval_id,
            prepare=stale,
        )

    def op_launch(self, run_id: str, error: str | None, now: int) -> Op:
        def stale(m: Model) -> Callable[[Model], Any]:
            run = m.runs.get(run_id)
            seen = run.attempts if run else None
            return lambda m: (
                m.record_launch(
                    run_id,
                    external_id=None if error else f"ext-{run_id[:8]}",
                    error=error,
                    now=now,
                    max_attempts=3,
                    seen_attempts=seen,
                ).status
            )

        return Op(
            f"launch {run_id[:8]}: {error or 'ok'}",
            lambda k: (
                k.record_launch(
                    run_id,
                    external_id=None if error else f"ext-{run_id[:8]}",
                    error=error,
                    now=now,
                    max_attempts=3,
                ).status
            ),
            lambda m: (
                m.record_launch(
                    run_id,
                    external_id=None if error else f"ext-{run_id[:8]}",
                    error=error,
                    now=now,
                    max_attempts=3,
                ).status
            ),
            prepare=stale,
        )

    # -- rules: the clock and the daemon cycle ------------------------------------------------

    @rule(delta=st.sampled_from(JUMPS + BACK))
    def clock(self, delta: int) -> None:
        """Time passes: seconds to months forward, or the clock steps back (skew)."""
        self.now += delta
        note(f"clock {delta:+}s -> {self.now}")

    @rule(
        start=STARTS,
        after=st.sampled_from((-1800, -60, 0, 1, 60, 900, 1800, H, 2 * H, 5 * H)),
        mode=st.sampled_from(EVALUATOR_MODES),
    )
    def across_transition(self, start: tuple[int, str, int], after: int, mode: str) -> None:
        """Set the clock to just before or after the DST transition near the start (it may
        move back) and evaluate: gap and fold ticks, under every policy."""
        self.clock(start[2] + after - self.now)
        self.run(self.op_evaluate(None, mode, self.now))

    @rule(
        deltas=st.lists(st.sampled_from(JUMPS), min_size=1, max_size=4),
        mode=st.sampled_from(EVALUATOR_MODES),
        conn=st.sampled_from(CONNECTOR_MODES),
        failing=st.sampled_from((0, 1, 2)),
    )
    def cycle(self, deltas: list[int], mode: str, conn: str, failing: int) -> None:
        """What a daemon does, a few times over: time passes, then due schedules are
        evaluated, due sensors polled and due runs launched (``failing`` in 3 fail)."""
        for delta in deltas:
            self.clock(delta)
            self.run(self.op_evaluate(None, mode, self.now))
            self.poll_due(conn)
            self.launch_due(failing)

    # -- rules: schedules ----------------------------------------------------------------------

    @rule(target=schedule_ids, d=schedule_definitions())
    def define_schedule(self, d: ScheduleDefinition) -> str:
        self.run(self.op_define_schedule(d, self.now))
        return d.id

    @rule(
        sid=st.one_of(schedule_ids, st.just("ghost")),
        action=st.sampled_from(("enable", "disable", "disable", "delete")),
    )
    def schedule_lifecycle(self, sid: str, action: str) -> None:
        """Enable, disable or delete a schedule (``ghost`` was never defined)."""
        now = self.now
        if action == "delete":
            self.run(
                Op(
                    f"delete schedule {sid}",
                    lambda k: k.delete_schedule(sid, now),
                    lambda m: m.delete_schedule(sid, now),
                )
            )
        else:
            self.run(self.op_toggle_schedule(sid, action == "enable", now))

    @rule(mode=st.sampled_from(EVALUATOR_MODES))
    def evaluate_schedules(self, mode: str) -> None:
        self.run(self.op_evaluate(None, mode, self.now))

    @rule(sid=schedule_ids, mode=st.sampled_from(EVALUATOR_MODES))
    def evaluate_schedule(self, sid: str, mode: str) -> None:
        self.run(self.op_evaluate(sid, mode, self.now))

    @rule(sid=schedule_ids, evaluations=st.integers(1, 4), mode=st.sampled_from(("raise", "flaky")))
    def evaluator_outage(self, sid: str, evaluations: int, mode: str) -> None:
        """The schedule's evaluator fails (or fails first attempts) at its next few fire
        times: failed ticks, their retries under the same tick id, and the retry limit."""
        for _ in range(evaluations):
            s = self.model.schedules.get(sid)
            if s is not None and s.next_fire_at is not None and s.next_fire_at > self.now:
                self.clock(s.next_fire_at - self.now)
            self.run(self.op_evaluate(sid, mode, self.now))

    # -- rules: sensors ------------------------------------------------------------------------

    @rule(target=sensor_ids, d=sensor_definitions())
    def define_sensor(self, d: SensorDefinition) -> str:
        self.run(self.op_define_sensor(d, self.now))
        return d.id

    @rule(
        sid=st.one_of(sensor_ids, st.just("ghost")),
        action=st.sampled_from(("start", "stop", "stop", "delete")),
    )
    def sensor_lifecycle(self, sid: str, action: str) -> None:
        """Start, stop or delete a sensor."""
        now = self.now
        if action == "delete":
            op = Op(
                f"delete sensor {sid}",
                lambda k: k.delete_sensor(sid, now),
                lambda m: m.delete_sensor(sid, now),
            )
        else:
            op = self.op_toggle_sensor(sid, action == "start", now)
        self.run(op)

    @rule(sid=sensor_ids, d=sensor_definitions())
    def retype_sensor(self, sid: str, d: SensorDefinition) -> None:
        """Delete a sensor and define it again as the other type (push <-> poll): its old
        tickets and messages must not leak into the new one."""
        old = self.model.sensors.get(sid)
        kind: Literal["poll", "push"] = (
            "push" if old is not None and old.definition.type == "poll" else "poll"
        )
        d = attrs.evolve(d, id=sid, type=kind, connector="conn" if kind == "poll" else None)
        now = self.now
        self.run(
            Op(
                f"delete sensor {sid}",
                lambda k: k.delete_sensor(sid, now),
                lambda m: m.delete_sensor(sid, now),
            )
        )
        self.run(self.op_define_sensor(d, now))

    @rule(
        sid=st.one_of(sensor_ids, schedule_ids),
        times=st.integers(2, 5),
        first=st.booleans(),
    )
    def flap(self, sid: str, times: int, first: bool) -> None:
        """An operator flips a sensor or schedule off and on several times in one second."""
        now = self.now
        for i in range(times):
            on = first if i % 2 == 0 else not first
            if sid in SENSOR_IDS:
                self.run(self.op_toggle_sensor(sid, on, now))
            else:
                self.run(self.op_toggle_schedule(sid, on, now))

    @rule(
        sid=sensor_ids,
        message_id=st.sampled_from(MESSAGE_IDS),
        payload=PAYLOADS,
        mode=st.sampled_from(MAPPER_MODES),
    )
    def push(self, sid: str, message_id: str, payload: Any, mode: str | None) -> None:
        self.run(self.op_push(sid, message_id, payload, mode))

    @rule(sid=sensor_ids, mode=st.sampled_from(CONNECTOR_MODES))
    def poll(self, sid: str, mode: str) -> None:
        self.run(self.op_poll(sid, mode, self.now))

    def poll_due(self, mode: str) -> None:
        due = self.model.due_sensors(self.now)
        assert self.kernel.due_sensors(self.now) == due, "due sensors differ"
        for sid in due:
            self.run(self.op_poll(sid, mode, self.now))

    @rule(sid=sensor_ids, failures=st.integers(2, 6), recover=st.booleans())
    def outage(self, sid: str, failures: int, recover: bool) -> None:
        """The source is down for several polls in a row, each when the backoff says (the
        delay doubles up to its cap), then maybe comes back (the failure count resets)."""
        for i in range(failures + recover):
            s = self.model.sensors.get(sid)
            if s is not None and s.next_eval_at is not None and s.next_eval_at > self.now:
                self.clock(s.next_eval_at - self.now)
            mode = "advance" if i == failures else "raise"
            self.run(self.op_poll(sid, mode, self.now))

    @rule(target=tickets, sid=sensor_ids)
    def take_ticket(self, sid: str) -> Any:
        """Read a poll ticket and keep it: recording it later, after other polls, is stale."""
        got = kernel_outcome(lambda: self.kernel.poll_ticket(sid))
        expected = model_outcome(lambda: self.model.poll_ticket(sid))
        assert got[0] == expected[0] and (got[0] == "ok" or got == expected), (got, expected)
        if got[0] != "ok":
            return None
        kt, mt = got[1], expected[1]
        assert (kt.expected_state_version, _cursor_of(kt.cursor)) == (
            mt.expected_state_version,
            mt.cursor,
        )
        note(f"ticket for {sid} at version {kt.expected_state_version}")
        return (kt, mt)

    @rule(
        ticket=tickets,
        mode=st.sampled_from(CONNECTOR_MODES),
        forged=st.sampled_from((False, False, True)),
    )
    def record_ticket(self, ticket: Any, mode: str, forged: bool) -> None:
        """Record a poll made from a ticket read earlier (``forged``: a version from the
        future, which no poll can have read)."""
        if ticket is None:
            return
        kt, mt = ticket
        bump = 1000 if forged else 0
        kt = kt._replace(expected_state_version=kt.expected_state_version + bump)
        mt = MTicket(mt.sensor_id, mt.expected_state_version + bump, mt.cursor)
        result = _connect(self.model, mt, connector(mode), self.now)
        now = self.now
        self.run(
            Op(
                f"record ticket {mt.sensor_id}@{mt.expected_state_version} ({mode})",
                lambda k: k.record_poll(kt, result, now).evaluation.eval_id,
                lambda m: m.record_poll(mt, result, now).eval_id,
            )
        )

    # -- rules: runs ---------------------------------------------------------------------------

    @rule(target=manual_runs, key=st.sampled_from(RUN_KEYS), template=templates())
    def request_run(self, key: str, template: RunTemplate) -> str:
        """A request by hand; the caller hears whether the key already had a run."""
        now = self.now
        outcome = self.run(
            Op(
                f"request run {key} {template.target} {template.config}",
                lambda k: requested_of(k.request(key, template, now)),
                lambda m: requested_of(m.request(key, template, now)),
            )
        )
        return str(outcome[1][0])

    def launch_due(self, failing: int) -> None:
        """Hand the due runs of the outbox to a launcher; ``failing`` in 3 launches fail."""
        due = [r.run_id for r in self.model.due_launches(self.now)]
        assert [r.run_id for r in self.kernel.due_launches(self.now)] == due, "outbox differs"
        for rid in due:
            error = "launcher down" if bucket(rid, 3) < failing else None
            self.run(self.op_launch(rid, error, self.now))

    @precondition(lambda self: bool(self.model.runs))
    @rule(
        data=st.data(),
        action=st.sampled_from(("launched", "launch failed", "succeeded", "failed")),
    )
    def run_outcome(self, data: st.DataObject, action: str) -> None:
        """Record one launch attempt or a completion for any run."""
        rid = data.draw(st.sampled_from(sorted(self.model.runs)), label="run")
        now = self.now
        if action.startswith("launch"):
            self.run(self.op_launch(rid, "no capacity" if "failed" in action else None, now))
            return
        succeeded = action == "succeeded"
        self.run(
            Op(
                f"complete {rid[:8]} {action}",
                lambda k: k.complete_run(rid, succeeded, None, now).status,
                lambda m: m.complete_run(rid, succeeded, None, now).status,
            )
        )

    @rule(rid=manual_runs, succeeded=st.booleans())
    def complete_manual_run(self, rid: str, succeeded: bool) -> None:
        now = self.now
        self.run(
            Op(
                f"complete manual {rid[:8]}",
                lambda k: k.complete_run(rid, succeeded, "by hand", now).status,
                lambda m: m.complete_run(rid, succeeded, "by hand", now).status,
            )
        )

    # -- rules: operator verbs -----------------------------------------------------------------

    @precondition(lambda self: bool(self.model.runs))
    @rule(data=st.data(), exhaust=st.booleans())
    def retry_run(self, data: st.DataObject, exhaust: bool) -> None:
        """An operator retries a run: a GAVE_UP one goes back to the outbox with a fresh launch
        budget; any other is refused. ``exhaust``: its launches fail until it gives up."""
        rid = data.draw(st.sampled_from(sorted(self.model.runs)), label="run")
        now = self.now
        while exhaust and self.model.runs[rid].status == "REQUESTED":
            self.run(self.op_launch(rid, "launcher down", now))
        self.run(
            Op(
                f"retry {rid[:8]}",
                lambda k: (k.retry_run(rid, now).status, k.run(rid).attempts),
                lambda m: (m.retry_run(rid, now).status, m.run(rid).attempts),
            )
        )

    @rule(
        sid=st.one_of(sensor_ids, sensor_ids, sensor_ids, st.just("ghost")),
        cursor=st.sampled_from((None, "7", b"\x00raw", "")),
        lag=st.sampled_from((0, 0, 0, -1, 1)),
        twice=st.booleans(),
    )
    def set_cursor(self, sid: str, cursor: str | bytes | None, lag: int, twice: bool) -> None:
        """An operator sets or resets a cursor at the version read (``lag``: a stale or future
        version, a Conflict); ``twice``: the same set again (one set)."""
        s = self.model.sensors.get(sid)
        expected = (s.state_version if s else 0) + lag
        mc = None if cursor is None else MCursor(cursor, 1)
        now = self.now
        op = Op(
            f"set cursor of {sid} to {cursor!r} at version {expected}",
            lambda k: k.set_cursor(sid, cursor, expected_version=expected, now=now).state_version,
            lambda m: m.set_cursor(sid, mc, expected, now).state_version,
        )
        for _ in range(1 + twice):
            self.run(op)

    @rule(
        sid=st.one_of(schedule_ids, st.just("ghost")),
        back=st.sampled_from((0, H, D, 3 * D)),
        length=st.sampled_from((0, H, 6 * H, D, 3 * D)),
        max_runs=st.sampled_from((1, 5, 100)),
        dry_run=st.booleans(),
    )
    def backfill(self, sid: str, back: int, length: int, max_runs: int, dry_run: bool) -> None:
        """Backfill a range of a schedule (through DST transitions near the start): one run
        per tick the policy runs, the same runs when repeated, refused over ``max_runs``."""
        now = self.now
        start, end = now - back, now - back + length
        self.run(
            Op(
                f"backfill {sid} {start}..{end} max {max_runs} dry_run={dry_run}",
                lambda k: [
                    (t.scheduled_for, t.run_key, t.existing)
                    for t in k.backfill(
                        sid, start, end, dry_run=dry_run, max_runs=max_runs, now=now
                    )
                ],
                lambda m: m.backfill(sid, start, end, now, max_runs, dry_run),
            )
        )

    # -- rules: races on stale reads -----------------------------------------------------------

    @rule(
        sid=schedule_ids,
        mode=st.sampled_from(EVALUATOR_MODES),
        lag=st.sampled_from((0, 0, 60, H, -H)),
    )
    def race_evaluators(self, sid: str, mode: str, lag: int) -> None:
        """Two evaluators of one schedule: the second appends between the first's read and
        its append; the first must lose its compare-and-set and re-decide."""
        self.race(
            self.op_evaluate(sid, mode, self.now), self.op_evaluate(sid, mode, self.now + lag)
        )

    @rule(sid=schedule_ids, d=schedule_definitions(), define_first=st.booleans())
    def race_define_and_evaluate(self, sid: str, d: ScheduleDefinition, define_first: bool) -> None:
        """A definition update racing an evaluation, in either order."""
        d = ScheduleDefinition(**{**_fields(d), "id": sid})
        define = self.op_define_schedule(d, self.now)
        evaluate = self.op_evaluate(sid, "default", self.now)
        if define_first:
            self.race(define, evaluate)
        else:
            self.race(evaluate, define)

    @rule(sid=schedule_ids, enabled=st.booleans())
    def race_toggle_and_evaluate(self, sid: str, enabled: bool) -> None:
        self.race(
            self.op_evaluate(sid, "default", self.now),
            self.op_toggle_schedule(sid, enabled, self.now),
        )

    @rule(
        sid=sensor_ids,
        first=st.sampled_from(CONNECTOR_MODES),
        second=st.sampled_from(CONNECTOR_MODES),
    )
    def race_pollers(self, sid: str, first: str, second: str) -> None:
        """Two pollers read the same ticket; the second records first. The first must not
        stomp the cursor: it gets the same evaluation back (identical outcome) or a Conflict."""
        self.race(self.op_poll(sid, first, self.now), self.op_poll(sid, second, self.now))

    @rule(
        sid=sensor_ids,
        message_id=st.sampled_from(MESSAGE_IDS),
        first=st.sampled_from(MAPPER_MODES),
        second=st.sampled_from(MAPPER_MODES),
    )
    def race_duplicate_push(
        self, sid: str, message_id: str, first: str | None, second: str | None
    ) -> None:
        """The same message delivered by two senders at once: one durable effect."""
        self.race(self.op_push(sid, message_id, 1, first), self.op_push(sid, message_id, 1, second))

    @precondition(lambda self: bool(self.model.runs))
    @rule(
        data=st.data(),
        first=st.sampled_from((None, "down")),
        second=st.sampled_from((None, "down")),
    )
    def race_launchers(self, data: st.DataObject, first: str | None, second: str | None) -> None:
        """Two dispatchers launch the same run: each attempt is recorded once."""
        rid = data.draw(st.sampled_from(sorted(self.model.runs)), label="run")
        self.race(self.op_launch(rid, first, self.now), self.op_launch(rid, second, self.now))

    def op_claim(self, claimer: str, lease: int, limit: int, now: int) -> Op:
        return Op(
            f"{claimer} claims {limit} for {lease}s",
            lambda k: [r.run_id for r in k.claim_launches(claimer, now, lease=lease, limit=limit)],
            lambda m: [r.run_id for r in m.claim_launches(claimer, now, lease, limit)],
        )

    @rule(
        claimer=st.sampled_from(("daemon-a", "daemon-b")),
        lease=st.sampled_from((1, 60, H)),
        limit=st.sampled_from((1, 2, 100)),
    )
    def claim_launches(self, claimer: str, lease: int, limit: int) -> None:
        """A runtime claims due runs of the outbox: they are not due until the lease ends."""
        self.run(self.op_claim(claimer, lease, limit, self.now))

    @precondition(lambda self: bool(self.model.runs))
    @rule(
        data=st.data(),
        claimer=st.sampled_from((None, "daemon-a", "daemon-b")),
        error=st.sampled_from((None, "down")),
        stale=st.booleans(),
    )
    def record_claimed_launch(
        self, data: st.DataObject, claimer: str | None, error: str | None, stale: bool
    ) -> None:
        """A runtime reports an attempt with the attempts it read (``stale``: one fewer than
        now): accepted only from the run as read and, with a claimer, its claim holder."""
        rid = data.draw(st.sampled_from(sorted(self.model.runs)), label="run")
        read = max(0, self.model.runs[rid].attempts - stale)
        now = self.now
        kw: dict[str, Any] = {
            "external_id": None if error else f"ext-{rid[:8]}",
            "error": error,
            "now": now,
            "max_attempts": 3,
            "claimer": claimer,
            "expected_attempts": read,
        }
        self.run(
            Op(
                f"{claimer} records {rid[:8]} read at {read} attempts: {error or 'ok'}",
                lambda k: k.record_launch(rid, **kw).status,
                lambda m: m.record_launch(rid, **kw).status,
            )
        )

    @rule(first=st.sampled_from(("daemon-a", "daemon-b")), limit=st.sampled_from((1, 100)))
    def race_claimers(self, first: str, limit: int) -> None:
        """Two runtimes read the same outbox; the second claims first. The first loses its
        compare-and-set, re-reads and claims only what is left."""
        self.race(
            self.op_claim(first, 60, limit, self.now), self.op_claim("daemon-c", 60, 1, self.now)
        )

    @precondition(lambda self: bool(self.model.runs))
    @rule(data=st.data(), first=st.booleans(), second=st.booleans())
    def race_completions(self, data: st.DataObject, first: bool, second: bool) -> None:
        """Two reporters complete the same run from the same read: the second agrees (nothing
        new) or is refused; a run never finishes twice."""
        rid = data.draw(st.sampled_from(sorted(self.model.runs)), label="run")
        now = self.now

        def op(succeeded: bool) -> Op:
            return Op(
                f"complete {rid[:8]} succeeded={succeeded}",
                lambda k: k.complete_run(rid, succeeded, "raced", now).status,
                lambda m: m.complete_run(rid, succeeded, "raced", now).status,
            )

        self.race(op(first), op(second))

    # -- rules: retention -----------------------------------------------------------------------

    @rule(history=st.sampled_from((None, H, D, 7 * D)))
    def set_retention(self, history: int | None) -> None:
        """The store-wide history (SPEC "Retention"); None keeps everything again."""
        now = self.now
        self.run(
            Op(
                f"retention history={history}",
                lambda k: k.set_retention(RetentionPolicy(history=history), now).history,
                lambda m: m.set_retention(history),
            )
        )

    @rule()
    def prune(self) -> None:
        """One prune pass at the current instant: the same records go on both sides, pruned
        run keys stay taken, and every later step still agrees with the model."""
        now = self.now
        self.run(Op("prune", lambda k: k.prune(now).rows, lambda m: m.prune(now)))

    # -- rules: crashes, reopen, replay --------------------------------------------------------

    @rule(
        which=st.sampled_from(("evaluate", "push", "poll", "define", "request")),
        sid=st.sampled_from(SCHEDULE_IDS + SENSOR_IDS),
        at=st.integers(1, 3),
    )
    def crash(self, which: str, sid: str, at: int) -> None:
        """The process dies inside the write transaction of an action: nothing of it may be
        visible, before or after recovery."""
        now = self.now
        op = {
            "evaluate": lambda: self.op_evaluate(None, "mixed", now),
            "push": lambda: self.op_push(sid, f"crash-{now}", 0, None),
            "poll": lambda: self.op_poll(sid, "advance", now),
            "define": lambda: self.op_define_schedule(
                ScheduleDefinition(sid, "*/30 * * * *", RunTemplate("crash")), now
            ),
            "request": lambda: Op(
                "request crash run",
                lambda k: k.request_run("crash", RunTemplate("x"), now).run_id,
                lambda m: m.request_run("crash", RunTemplate("x"), now).run_id,
            ),
        }[which]()
        note(f"crash during {op.name} at log record {at} of its first append")
        before = observe_kernel(self.kernel, self.now)
        self.store.crash_at = at
        try:
            got = kernel_outcome(lambda: op.kernel(self.kernel))
        except SimulatedCrash:
            check_reopen(before, observe_kernel(self.kernel, self.now))
            self._reopen()
            return
        self.store.crash_at = None  # the action appended nothing, or fewer records
        if self.twin_kernel is not None:
            twin = self.twin_kernel
            assert kernel_outcome(lambda: op.kernel(twin)) == got
        expected = model_outcome(lambda: op.model(self.model))
        assert got == expected, f"{op.name}: kernel {got!r} but model {expected!r}"
        self._count(op.evaluations)

    def _reopen(self) -> bool:
        before = observe_kernel(self.kernel, self.now)
        reopened = self.reopen_store(self.store.inner)
        if reopened is None:
            return False
        self.store = Interposer(reopened)
        self.kernel = Kernel(self.store)
        check_reopen(before, observe_kernel(self.kernel, self.now))
        return True

    @rule()
    def reopen(self) -> None:
        """Close the store and open it again (a clean restart): nothing changes."""
        if self._reopen():
            note("store closed and reopened")

    @rule()
    def replay(self) -> None:
        """Replaying the whole log reproduces the materialised state byte for byte."""
        check_replay(self.kernel)

    # -- the invariant: the kernel shows what the model says -----------------------------------

    @invariant()
    def kernel_matches_model(self) -> None:
        seen = observe_kernel(self.kernel, self.now)
        expected = observe_model(self.model, self.now)
        differences = diff(seen, expected)
        assert not differences, "kernel (first) differs from the model (second):\n" + "\n".join(
            differences
        )
        if self.twin_kernel is not None:
            twin = observe_kernel(self.twin_kernel, self.now)
            differences = diff(seen, twin)
            assert not differences, "store differs from MemoryStore:\n" + "\n".join(differences)
            assert log_of(self.kernel) == log_of(self.twin_kernel), "the logs differ"
        check_state(seen)
        if self.before is not None:
            check_step(self.before, seen, self.step_evaluations)
        self.before = seen
        self.step_evaluations = {}


def _connect(m: Model, ticket: MTicket, conn: Callable[[PollContext], Any], now: int) -> Any:
    """What ``conn`` answers (or the error recorded) for a poll from ``ticket``."""
    s = m.sensors.get(ticket.sensor_id)
    if s is None:
        return "no sensor"
    context = PollContext(
        s.definition,
        ticket.cursor.value if ticket.cursor else None,
        ticket.cursor.version if ticket.cursor else None,
        ticket.expected_state_version,
        datetime.fromtimestamp(now, UTC),
    )
    try:
        answer = conn(context)
    except Exception as exc:
        return plugin_error(exc)
    if not isinstance(answer, PollResult):
        return f"connector returned {type(answer).__name__}, not PollResult"
    return answer


def _fields(d: ScheduleDefinition) -> dict[str, Any]:
    return attrs.asdict(d, recurse=False)


# -- concrete machines ---------------------------------------------------------------------------


class LmdbKernelMachine(KernelMachine):
    """The kernel on LMDB (a fresh directory per example), with close/reopen and crash
    recovery exercised."""

    def make_store(self) -> Store:
        return LmdbStore(self.tempdir(), map_size=4 * 1024 * 1024)

    def reopen_store(self, store: Store) -> Store | None:
        assert isinstance(store, LmdbStore)
        path = store.path
        store.close()
        return LmdbStore(path, map_size=4 * 1024 * 1024)


def kernel_machine(
    store_factory: Callable[[str], Store],
    reopen: Callable[[Store, str], Store] | None = None,
    *,
    twin: bool = True,
    name: str = "StoreKernelMachine",
) -> type[KernelMachine]:
    """Deprecated: subclass :class:`~arcoflow.spec.StoreKit` instead (``store_factory`` as a
    class attribute, ``persistent = False`` for a store that does not reopen; see
    ``docs/plugins.md``, "Conformance kits"). Kept for old callers: it builds that subclass,
    so it runs the same checks, compaction included when ``twin``."""
    warnings.warn(
        "arcoflow.spec.kernel_machine() is deprecated: subclass arcoflow.spec.StoreKit and set "
        "store_factory (docs/plugins.md, 'Conformance kits')",
        DeprecationWarning,
        stacklevel=2,
    )
    from .kits import StoreKit  # noqa: PLC0415 (kits imports this module: only when called)

    class Machine(StoreKit):
        def reopen_store(self, store: Store) -> Store | None:
            if reopen is None:
                return None
            return reopen(store, self._path)

    Machine.store_factory = staticmethod(store_factory)
    Machine.persistent = reopen is not None
    Machine.twin = twin
    Machine.__name__ = Machine.__qualname__ = name
    return Machine
