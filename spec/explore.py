"""Exhaustive small-scope exploration: *every* interleaving of a few concurrent actors.

Each actor is a process doing one command as separate steps, exactly as the
:class:`~arcoflow.kernel.Kernel` does it: **read** its rows, **decide** (and call its plugin),
**append**; an append that loses its compare-and-set goes back to read (the kernel's retry).
A generator per actor yields after each step, so a scenario's interleavings are the paths of a
tree: at each node, any actor that has steps left may go next. :func:`explore` walks the whole
tree (replaying each path on a fresh in-memory kernel) and, on every complete interleaving,
checks:

* every state invariant of :mod:`arcoflow.spec.invariants`, and that replaying the log
  reproduces the state;
* **linearizability against the model**: the kernel's final state equals the model's after
  running the actors' commands one at a time, in the order of their linearization points (an
  actor that appended: its append; one that wrote nothing: its last read), each with what it
  read; and every actor saw the outcome the model gives it (its ticks, its evaluation, a
  duplicate, a Conflict).

So the concurrency claims are proven for these bounds, not sampled. The number of
interleavings checked is reported (``python -m arcoflow.spec.explore`` prints them).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from arcoflow.kernel import (
    Appended,
    Conflict,
    Kernel,
    MemoryStore,
    Pending,
    PollContext,
    PollResult,
    RunRequest,
    RunTemplate,
    ScheduleDefinition,
    ScheduleRow,
    SensorDefinition,
    Store,
    TickResult,
    decide,
)
from arcoflow.kernel.events import RunClaimed, SensorEvaluated, TickRecorded
from arcoflow.kernel.runs import derived_id, run_id

from .invariants import check_replay, check_state
from .model import MCursor, Model, MTicket, Rejected
from .observe import diff, observe_kernel, observe_model

__all__ = ["LARGE_SCENARIOS", "SCENARIOS", "Actor", "Report", "Scenario", "explore", "main"]

_R = TypeVar("_R")

T0 = 1_893_456_000  # 2030-01-01T00:00:00Z
H = 3600


@dataclass
class Trace:
    """What one actor did in one interleaving."""

    read: Any = None  # what its last read returned (its stale view, for the model)
    outcome: Any = None  # what the command returned (comparable with the model's)
    point: int = -1  # its linearization point: step index of its append, or of its last read


@dataclass
class Actor:
    """A process running one command. ``steps(kernel, trace, clock)`` is a generator that
    performs one step per ``next()``; ``clock()`` is the global step counter. ``model(m,
    trace)`` runs the same command on the model, given what the actor read."""

    name: str
    steps: Callable[[Kernel, Trace, Callable[[], int]], Iterator[str]]
    model: Callable[[Model, Trace], Any]


@dataclass
class Scenario:
    name: str
    setup: Callable[[Kernel | Model], None]
    actors: Sequence[Actor]
    now: int


@dataclass
class Report:
    scenario: str
    interleavings: int
    steps: int
    final_states: int
    outcomes: dict[str, int] = field(default_factory=dict)


# -- actors --------------------------------------------------------------------------------------


def _read_decide_append(
    kernel: Kernel,
    trace: Trace,
    clock: Callable[[], int],
    now: int,
    read: Callable[[], _R],
    decide_batch: Callable[[_R], Sequence[Pending]],
    reading: str = "read",
) -> Generator[str, None, Appended | None]:
    """The steps of an actor that reads its rows, decides and appends with what it read as the
    compare-and-set, reading again when it loses (the kernel's own retry loop, one step at a
    time). An empty decision appends nothing. ``trace.point`` is set at the read and at the
    append; the generator's value is the append (``None`` when nothing was appended)."""
    while True:
        yield reading
        row = read()
        trace.point = clock()
        yield "decide"
        batch = decide_batch(row)
        if not batch:
            return None
        yield "append"
        try:
            appended = kernel.store.append(batch, now)
        except Conflict:
            continue  # lost the compare-and-set: read again
        trace.point = clock()
        return appended


def evaluator(schedule_id: str, now: int, name: str | None = None) -> Actor:
    """Evaluate one schedule at ``now``: read the row, plan and decide, append; retry on a
    lost compare-and-set."""

    def steps(kernel: Kernel, trace: Trace, clock: Callable[[], int]) -> Iterator[str]:
        def read() -> ScheduleRow:
            row = kernel.schedule(schedule_id)
            trace.read = row.state_version
            return row

        def record(row: ScheduleRow) -> list[Pending]:
            plan = decide.plan_ticks(row, now)
            if not plan.due and not plan.missed:
                return []
            return decide.record_ticks(row, plan, [TickResult() for _ in plan.due], now)

        trace.outcome = []
        appended = yield from _read_decide_append(kernel, trace, clock, now, read, record)
        if appended is not None:
            trace.outcome = sorted(
                e.event.tick_id for e in appended.records if isinstance(e.event, TickRecorded)
            )

    def model(m: Model, trace: Trace) -> Any:
        return sorted(
            t.tick_id for t in m.evaluate_schedule(schedule_id, now, read_version=trace.read)
        )

    return Actor(name or f"evaluate {schedule_id} at +{(now - T0) // 60}m", steps, model)


def definer(definition: ScheduleDefinition, now: int) -> Actor:
    """Update a schedule's definition: read, decide, append; retry on a lost CAS."""

    def steps(kernel: Kernel, trace: Trace, clock: Callable[[], int]) -> Iterator[str]:
        yield from _read_decide_append(
            kernel,
            trace,
            clock,
            now,
            lambda: kernel.schedule(definition.id),
            lambda row: decide.define_schedule(row, definition, now),
        )
        trace.outcome = kernel.schedule(definition.id).definition_version

    def model(m: Model, trace: Trace) -> Any:
        m.define_schedule(definition, now)
        return m.schedules[definition.id].definition_version

    return Actor(f"define {definition.id} ({definition.cron})", steps, model)


def toggler(schedule_id: str, enabled: bool, now: int) -> Actor:
    """Enable or disable a schedule: read, decide, append; retry on a lost CAS."""

    def steps(kernel: Kernel, trace: Trace, clock: Callable[[], int]) -> Iterator[str]:
        trace.outcome = enabled
        yield from _read_decide_append(
            kernel,
            trace,
            clock,
            now,
            lambda: kernel.schedule(schedule_id),
            lambda row: decide.toggle_schedule(row, enabled, now),
        )

    def model(m: Model, trace: Trace) -> Any:
        m.set_schedule_enabled(schedule_id, enabled, now)
        return enabled

    return Actor(f"{'enable' if enabled else 'disable'} {schedule_id}", steps, model)


def _connector(mode: str) -> Callable[[PollContext], PollResult]:
    def poll(ctx: PollContext) -> PollResult:
        n = int(ctx.cursor or 0)
        if mode == "many":
            return PollResult([RunRequest(), RunRequest(config={"part": 2})], cursor=str(n + 2))
        return PollResult([RunRequest()], cursor=str(n + 1))

    return poll


def poller(sensor_id: str, mode: str, now: int) -> Actor:
    """Poll once: read the ticket, call the connector, record with the ticket's version as
    the compare-and-set (a lost CAS is reported, not retried: the connector already ran)."""
    connect = _connector(mode)

    def steps(kernel: Kernel, trace: Trace, clock: Callable[[], int]) -> Iterator[str]:
        yield "read ticket"
        ticket = kernel.poll_ticket(sensor_id)
        cursor = ticket.cursor
        trace.read = MTicket(
            sensor_id,
            ticket.expected_state_version,
            None if cursor is None else MCursor(cursor.native(), cursor.version),
        )
        trace.point = clock()
        yield "connect"
        result = connect(
            PollContext(
                kernel.sensor(sensor_id).definition,
                cursor.native() if cursor else None,
                cursor.version if cursor else None,
                ticket.expected_state_version,
                datetime.fromtimestamp(now, UTC),
            )
        )
        yield "append"
        trace.point = clock()
        try:
            trace.outcome = kernel.record_poll(ticket, result, now).evaluation.eval_id
        except Conflict:
            trace.outcome = "conflict"

    def model(m: Model, trace: Trace) -> Any:
        ticket: MTicket = trace.read
        s = m.sensors[sensor_id]
        result = connect(
            PollContext(
                s.definition,
                ticket.cursor.value if ticket.cursor else None,
                ticket.cursor.version if ticket.cursor else None,
                ticket.expected_state_version,
                datetime.fromtimestamp(now, UTC),
            )
        )
        try:
            return m.record_poll(ticket, result, now).eval_id
        except Rejected as exc:
            if exc.kind == "conflict":
                return "conflict"
            raise

    return Actor(f"poll {sensor_id} ({mode})", steps, model)


def pusher(sensor_id: str, message_id: str, now: int, name: str) -> Actor:
    """Deliver one push message: read (is it known?), map, append (a duplicate append returns
    the original evaluation)."""
    payload = {"from": name}

    def steps(kernel: Kernel, trace: Trace, clock: Callable[[], int]) -> Iterator[str]:
        yield "read"
        row = kernel.sensor(sensor_id)
        eval_id = derived_id(f"push/{sensor_id}/{message_id}")
        known = any(
            e.evaluation.eval_id == eval_id for e in kernel.evaluations(sensor_id, limit=1000)
        )
        trace.point = clock()
        if known:
            trace.outcome = (eval_id, True)
            return
        yield "map"
        batch = decide.ingest(row, message_id, payload, len(repr(payload)), None)
        yield "append"
        appended = kernel.store.append(batch, now)
        trace.point = clock()
        event = appended.records[0].event
        assert isinstance(event, SensorEvaluated)
        trace.outcome = (event.eval_id, appended.duplicate)

    def model(m: Model, trace: Trace) -> Any:
        e, duplicate = m.ingest(sensor_id, message_id, payload, now)
        return (e.eval_id, duplicate)

    return Actor(name, steps, model)


def claimer(name: str, now: int, lease: int = 60) -> Actor:
    """A runtime claims the next due run: read the outbox, decide, append with the run as read
    as the compare-and-set; re-read on a lost one (another runtime claimed it)."""

    def steps(kernel: Kernel, trace: Trace, clock: Callable[[], int]) -> Iterator[str]:
        trace.outcome = _claimed([])
        appended = yield from _read_decide_append(
            kernel,
            trace,
            clock,
            now,
            lambda: kernel.due_launches(now, limit=1),
            lambda due: decide.claim_launches(due, name, now, lease),
            reading="read outbox",
        )
        if appended is not None:
            trace.outcome = _claimed(
                [r.event.run_id for r in appended.records if isinstance(r.event, RunClaimed)]
            )

    def model(m: Model, trace: Trace) -> Any:
        return _claimed([r.run_id for r in m.claim_launches(name, now, lease, limit=1)])

    return Actor(f"{name} claims", steps, model)


def _claimed(run_ids: list[str]) -> str:
    return f"claimed {' '.join(run_ids)}" if run_ids else "nothing due"


def completer(run_key: str, now: int) -> Actor:
    """An operator reports a run finished: read the run, decide, append (keyed: no CAS)."""

    def steps(kernel: Kernel, trace: Trace, clock: Callable[[], int]) -> Iterator[str]:
        yield "read"
        row = kernel.run_by_key(run_key)
        trace.point = clock()
        yield "decide"
        batch = decide.completed(row, row.run_id, True, "by hand")
        yield "append"
        kernel.store.append(batch, now)
        trace.point = clock()
        trace.outcome = kernel.run(row.run_id).status

    def model(m: Model, trace: Trace) -> Any:
        return m.complete_run(run_id(run_key), True, "by hand", now).status

    return Actor(f"complete {run_key}", steps, model)


# -- scenarios -----------------------------------------------------------------------------------

HALF_HOURLY = ScheduleDefinition(
    "etl",
    "*/30 * * * *",
    RunTemplate("etl.load"),
    catchup_window=2 * H,
    max_catchup_ticks=2,
)
POLLED = SensorDefinition("inbox", "poll", RunTemplate("etl.ingest"), connector="files")
PUSHED = SensorDefinition("hook", "push", RunTemplate("etl.hook"))


def _schedule_setup(target: Kernel | Model) -> None:
    target.define_schedule(HALF_HOURLY, now=T0)


def _run_setup(target: Kernel | Model) -> None:
    target.request_run("job", RunTemplate("etl.job", launcher="memory"), now=T0)


def _sensor_setup(target: Kernel | Model) -> None:
    target.define_sensor(POLLED, now=T0)
    target.define_sensor(PUSHED, now=T0)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "two evaluators, same now",
        _schedule_setup,
        (evaluator("etl", T0 + 2 * H, "A"), evaluator("etl", T0 + 2 * H, "B")),
        T0 + 2 * H,
    ),
    Scenario(
        "two evaluators, different now",
        _schedule_setup,
        (evaluator("etl", T0 + H, "A"), evaluator("etl", T0 + 3 * H, "B")),
        T0 + 3 * H,
    ),
    Scenario(
        "two pollers, same ticket, different answers",
        _sensor_setup,
        (poller("inbox", "one", T0 + 60), poller("inbox", "many", T0 + 60)),
        T0 + 60,
    ),
    Scenario(
        "two pollers, same ticket, same answer",
        _sensor_setup,
        (poller("inbox", "one", T0 + 60), poller("inbox", "one", T0 + 60)),
        T0 + 60,
    ),
    Scenario(
        "duplicate push from two senders",
        _sensor_setup,
        (pusher("hook", "m1", T0 + 5, "sender A"), pusher("hook", "m1", T0 + 5, "sender B")),
        T0 + 5,
    ),
    Scenario(
        "define racing evaluate",
        _schedule_setup,
        (
            evaluator("etl", T0 + 2 * H),
            definer(
                ScheduleDefinition(
                    "etl", "0 * * * *", RunTemplate("etl.load"), max_catchup_ticks=3
                ),
                T0 + 2 * H,
            ),
        ),
        T0 + 2 * H,
    ),
    Scenario(
        "evaluate racing disable",
        _schedule_setup,
        (evaluator("etl", T0 + 2 * H), toggler("etl", False, T0 + 2 * H)),
        T0 + 2 * H,
    ),
    Scenario(
        "two runtimes claim one due run",
        _run_setup,
        (claimer("runtime A", T0 + 5), claimer("runtime B", T0 + 5)),
        T0 + 5,
    ),
    Scenario(
        "claim racing completion by hand",
        _run_setup,
        (claimer("runtime A", T0 + 5), completer("manual:job", T0 + 5)),
        T0 + 5,
    ),
)

#: Three actors: 22,616 interleavings (about five minutes); run by the ``thorough`` profile
#: and by ``python -m arcoflow.spec.explore --all``.
LARGE_SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "two evaluators and a disable",
        _schedule_setup,
        (
            evaluator("etl", T0 + 2 * H, "A"),
            evaluator("etl", T0 + 2 * H + 60, "B"),
            toggler("etl", False, T0 + 2 * H),
        ),
        T0 + 2 * H + 60,
    ),
)


# -- the exploration -----------------------------------------------------------------------------


class _Run:
    """One interleaving in progress on a fresh kernel. Each actor's generator is primed to its
    first step, so every ``advance`` performs exactly one real step."""

    def __init__(self, scenario: Scenario, store: Callable[[], Store]) -> None:
        self.kernel = Kernel(store())
        scenario.setup(self.kernel)
        self.step = 0
        self.traces = [Trace() for _ in scenario.actors]
        self.gens: list[Iterator[str] | None] = []
        for actor, trace in zip(scenario.actors, self.traces, strict=True):
            gen = actor.steps(self.kernel, trace, self._clock)
            next(gen)  # stop before the first step
            self.gens.append(gen)

    def _clock(self) -> int:
        return self.step

    def advance(self, i: int) -> None:
        gen = self.gens[i]
        assert gen is not None
        try:
            next(gen)
        except StopIteration:
            self.gens[i] = None
        self.step += 1

    def alive(self) -> list[int]:
        return [i for i, g in enumerate(self.gens) if g is not None]


def _paths(scenario: Scenario, store: Callable[[], Store]) -> Iterator[tuple[list[int], _Run]]:
    """Every complete interleaving (the actor index of each step), with its finished run:
    a depth-first walk of the tree, each path replayed on a fresh kernel."""
    stack: list[list[int]] = [[]]
    while stack:
        prefix = stack.pop()
        run = _Run(scenario, store)
        for i in prefix:
            run.advance(i)
        alive = run.alive()
        if not alive:
            yield prefix, run
        stack.extend([*prefix, i] for i in reversed(alive))


def explore(scenario: Scenario, store: Callable[[], Store] = MemoryStore) -> Report:
    """Check every interleaving of ``scenario``; raise ``AssertionError`` at the first bad one.
    ``store()``: an empty store for each path (the caller owns it: it may hand out one store
    emptied each time)."""
    report = Report(scenario.name, 0, 0, 0)
    finals: set[str] = set()
    for path, run in _paths(scenario, store):
        report.interleavings += 1
        report.steps += run.step
        where = f"{scenario.name}: interleaving {path}"
        seen = observe_kernel(run.kernel, scenario.now)
        check_state(seen)
        check_replay(run.kernel)
        model = Model()
        scenario.setup(model)
        order = sorted(range(len(scenario.actors)), key=lambda i: run.traces[i].point)
        for i in order:
            expected = scenario.actors[i].model(model, run.traces[i])
            got = run.traces[i].outcome
            assert got == expected, (
                f"{where}: {scenario.actors[i].name} got {got!r}, the model says {expected!r}"
            )
            key = f"{scenario.actors[i].name}: {_kind(got)}"
            report.outcomes[key] = report.outcomes.get(key, 0) + 1
        differences = diff(seen, observe_model(model, scenario.now))
        assert not differences, f"{where}: kernel differs from the model:\n" + "\n".join(
            differences
        )
        finals.add(repr(seen))
    report.final_states = len(finals)
    return report


def _kind(outcome: Any) -> str:
    if outcome == "conflict":
        return "conflict"
    if isinstance(outcome, tuple) and len(outcome) == 2 and isinstance(outcome[1], bool):
        return "duplicate" if outcome[1] else "recorded"
    if isinstance(outcome, list):
        return f"{len(outcome)} ticks"
    if isinstance(outcome, str) and outcome.startswith(("claimed", "nothing due")):
        return outcome.partition(" ")[0]
    return "ok"


def main(argv: Sequence[str] | None = None) -> None:
    """Explore every scenario (``--all``: the large ones too) and print what was checked."""
    args = sys.argv[1:] if argv is None else argv
    total = 0
    for scenario in SCENARIOS + (LARGE_SCENARIOS if "--all" in args else ()):
        r = explore(scenario)
        total += r.interleavings
        outcomes = ", ".join(f"{k} x{v}" for k, v in sorted(r.outcomes.items()))
        print(
            f"{r.scenario}: {r.interleavings} interleavings, {r.steps} steps, "
            f"{r.final_states} distinct final states ({outcomes})"
        )
    print(f"total: {total} interleavings, every one linearizable and invariant-clean")


if __name__ == "__main__":
    main()
