"""Mutation evidence: real bugs planted in the kernel at runtime, which the machines must catch.

Each :class:`Mutant` monkeypatches one rule of the kernel for the duration of a ``with`` block
(nothing is written to disk). :func:`hunt` runs a state machine (by default
:class:`~arcoflow.spec.machines.KernelMachine` on the in-memory store) under the mutant with a
fixed seed and reports whether it was killed, after how many examples and how fast. A mutant
that survives means the suite has a blind spot.

Reproduce from a shell::

    python -m arcoflow.spec.mutations            # every mutant
    python -m arcoflow.spec.mutations no_cas     # one

or run ``pytest tests/spec/test_mutations.py``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import arcoflow.kernel.decide as decide_module
import arcoflow.kernel.evolve as evolve_module
import arcoflow.kernel.store.base as base_module
import arcoflow.kernel.store.lmdb as lmdb_module
import arcoflow.kernel.store.memory as memory_module
import attrs
import msgspec
from arcoflow.kernel.definitions import MAX_CATCHUP_TICKS
from arcoflow.kernel.events import (
    RunRequested,
    ScheduleAdvanced,
    ScheduleToggled,
    SensorEvaluated,
)
from arcoflow.kernel.rows import RunRow, SensorRow, Table, key
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

from .machines import KernelMachine

__all__ = ["MUTANTS", "Kill", "Mutant", "hunt", "main"]


@dataclass(frozen=True)
class Mutant:
    """A bug, planted by ``plant()`` (a context manager) and removed on exit."""

    name: str
    description: str
    plant: Callable[[], AbstractContextManager[None]]


@contextmanager
def _patch(owner: Any, name: str, value: Any) -> Iterator[None]:
    """Set ``owner.name`` (a module attribute or a dict item) to ``value`` for a while."""
    if isinstance(owner, dict):
        old = owner[name]
        owner[name] = value
        try:
            yield
        finally:
            owner[name] = old
        return
    old = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, old)


def _handler(event_type: type) -> Any:
    return evolve_module._HANDLERS[event_type]


# -- the mutants ---------------------------------------------------------------------------------


def _no_cas() -> AbstractContextManager[None]:
    """The store's compare-and-set check never raises."""
    return _patch(base_module, "check", lambda view, event: None)


def _with_definition(fn: Any, **changes: Any) -> Any:
    def mutated(row: Any, *args: Any) -> Any:
        definition = attrs.evolve(row.definition, **changes)
        return fn(msgspec.structs.replace(row, definition=definition), *args)

    return mutated


def _no_catchup_budget() -> AbstractContextManager[None]:
    """``plan_ticks`` ignores ``max_catchup_ticks``."""
    plan = decide_module.plan_ticks
    return _patch(
        decide_module, "plan_ticks", _with_definition(plan, max_catchup_ticks=MAX_CATCHUP_TICKS)
    )


def _no_catchup_window() -> AbstractContextManager[None]:
    """``plan_ticks`` ignores ``catchup_window`` (every late tick may still run)."""
    plan = decide_module.plan_ticks
    return _patch(decide_module, "plan_ticks", _with_definition(plan, catchup_window=366 * 86400))


def _last_scheduled_for_backward() -> AbstractContextManager[None]:
    """``last_scheduled_for`` takes whatever an evaluation says, even nothing (it may move
    backward, so ticks run again)."""
    original = _handler(ScheduleAdvanced)

    def mutated(view: Any, env: Any, e: ScheduleAdvanced) -> Any:
        puts = original(view, env, e)
        return [
            (t, k, msgspec.structs.replace(row, last_scheduled_for=e.last_scheduled_for))
            if t is Table.SCHEDULES
            else (t, k, row)
            for t, k, row in puts
        ]

    return _patch(evolve_module._HANDLERS, ScheduleAdvanced, mutated)  # type: ignore[arg-type]


def _no_idempotency() -> AbstractContextManager[None]:
    """``apply_batch`` forgets that a batch's first key was applied before."""
    apply_batch = base_module.apply_batch

    class Forgetful:
        def __init__(self, txn: Any, forget: bytes) -> None:
            self.txn, self.forget = txn, forget

        def get(self, table: Table, key: bytes) -> bytes | None:
            if table is Table.IDEM and key == self.forget:
                return None
            return self.txn.get(table, key)  # type: ignore[no-any-return]

        def __getattr__(self, name: str) -> Any:
            return getattr(self.txn, name)

    def mutated(txn: Any, codec: Any, batch: Sequence[Any], at: int) -> Any:
        if not batch:
            return apply_batch(txn, codec, batch, at)
        return apply_batch(Forgetful(txn, base_module.idem_key(batch[0].key)), codec, batch, at)

    stack = ExitStack()
    stack.enter_context(_patch(memory_module, "apply_batch", mutated))
    stack.enter_context(_patch(lmdb_module, "apply_batch", mutated))
    return stack  # type: ignore[return-value]


def _cursor_cleared() -> AbstractContextManager[None]:
    """A poll result without a cursor clears the sensor's cursor."""
    original = _handler(SensorEvaluated)

    def mutated(view: Any, env: Any, e: SensorEvaluated) -> Any:
        puts = original(view, env, e)
        if e.kind != "poll" or e.cursor_after is not None:
            return puts
        return [
            (t, k, msgspec.structs.replace(row, cursor=None))
            if isinstance(row, SensorRow)
            else (t, k, row)
            for t, k, row in puts
        ]

    return _patch(evolve_module._HANDLERS, SensorEvaluated, mutated)  # type: ignore[arg-type]


def _conflict_overwrites() -> AbstractContextManager[None]:
    """A run key requested with another fingerprint replaces the run's content instead of
    being recorded as a conflict."""
    original = _handler(RunRequested)

    def mutated(view: Any, env: Any, e: RunRequested) -> Any:
        puts = original(view, env, e)
        if not any(t is Table.CONFLICTS for t, _, _ in puts):
            return puts
        old: RunRow = view.get(Table.RUNS, key(e.run_id))
        row = msgspec.structs.replace(
            old, fingerprint=e.fingerprint, config=e.config, tags=e.tags, target=e.target
        )
        return [(Table.RUNS, key(e.run_id), row)]

    return _patch(evolve_module._HANDLERS, RunRequested, mutated)  # type: ignore[arg-type]


def _reenable_backfills() -> AbstractContextManager[None]:
    """Re-enabling a schedule keeps its old ``eligible_from``: the disabled period back-fills."""
    toggle = decide_module.toggle_schedule

    def mutated(row: Any, enabled: bool, now: int) -> Any:
        batch = toggle(row, enabled, now)
        out = []
        for p in batch:
            if isinstance(p.event, ScheduleToggled) and enabled and row is not None:
                event = msgspec.structs.replace(
                    p.event,
                    eligible_from=row.eligible_from,
                    next_fire_at=min(p.event.next_fire_at or now, now),
                )
                out.append(p._replace(event=event))
            else:
                out.append(p)
        return out

    return _patch(decide_module, "toggle_schedule", mutated)


def _unbounded_retries() -> AbstractContextManager[None]:
    """A failed tick is retried one more time than ``max_tick_retries`` allows."""
    record = decide_module.record_ticks

    def mutated(row: Any, plan: Any, results: Any, now: int) -> Any:
        definition = attrs.evolve(
            row.definition, max_tick_retries=row.definition.max_tick_retries + 1
        )
        return record(msgspec.structs.replace(row, definition=definition), plan, results, now)

    return _patch(decide_module, "record_ticks", mutated)


def _backoff_uncapped() -> AbstractContextManager[None]:
    """Poll backoff forgets its cap."""
    delay = decide_module.backoff_delay

    def mutated(definition: Any, failures: int) -> int:
        uncapped = attrs.evolve(definition, backoff=attrs.evolve(definition.backoff, cap=10**7))
        result: int = delay(uncapped, failures)
        return result

    return _patch(decide_module, "backoff_delay", mutated)


def _stale_poll_echoes() -> AbstractContextManager[None]:
    """A poller that lost the race with a different answer is handed the winner's evaluation
    instead of a Conflict (its own answer silently dropped)."""
    return _patch(decide_module, "same_poll", lambda original, batch: True)


def _sensor_toggle_collides() -> AbstractContextManager[None]:
    """Sensor toggles are keyed by the instant (stop/start/stop/start in one second loses the
    last start): the bug the machines found in the kernel, planted back."""
    toggle = decide_module.toggle_sensor

    def mutated(row: Any, running: bool, now: int) -> Any:
        return [
            p._replace(key=f"sensor/{row.sensor_id}/toggled/{row.updated_at}>{now}:{running}")
            for p in toggle(row, running, now)
        ]

    return _patch(decide_module, "toggle_sensor", mutated)


MUTANTS: tuple[Mutant, ...] = (
    Mutant("no_cas", "drop the compare-and-set check (evolve.check)", _no_cas),
    Mutant("no_catchup_budget", "drop max_catchup_ticks in plan_ticks", _no_catchup_budget),
    Mutant("no_catchup_window", "drop catchup_window in plan_ticks", _no_catchup_window),
    Mutant(
        "last_scheduled_for_backward",
        "let last_scheduled_for move backward",
        _last_scheduled_for_backward,
    ),
    Mutant("no_idempotency", "skip the batch idempotency check in apply_batch", _no_idempotency),
    Mutant("cursor_cleared", "clear the cursor when a poll returns cursor=None", _cursor_cleared),
    Mutant("conflict_overwrites", "a conflicting request overwrites the run", _conflict_overwrites),
    Mutant("reenable_backfills", "re-enabling back-fills the disabled period", _reenable_backfills),
    Mutant("unbounded_retries", "retry failed ticks once too often", _unbounded_retries),
    Mutant("backoff_uncapped", "poll backoff without its cap", _backoff_uncapped),
    Mutant("stale_poll_echoes", "a losing poller gets the winner's row", _stale_poll_echoes),
    Mutant(
        "sensor_toggle_collides",
        "sensor toggles keyed by instant (a bug the machines found)",
        _sensor_toggle_collides,
    ),
)


# -- hunting -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kill:
    """The result of hunting one mutant."""

    mutant: str
    killed: bool
    examples: int  # examples run until the first failure (or in all, if it survived)
    seconds: float
    error: str  # the first line of what caught it


def hunt(
    mutant: Mutant,
    machine: type[RuleBasedStateMachine] = KernelMachine,
    *,
    max_examples: int = 300,
    steps: int = 40,
    derandomize: bool = True,
) -> Kill:
    """Run ``machine`` under ``mutant`` (no shrinking) until it fails. ``derandomize``: with
    a fixed seed (reproducible), or a random one (to see how robust the kill is)."""
    count = 0

    class Counted(machine):  # type: ignore[valid-type, misc]
        def __init__(self) -> None:
            nonlocal count
            count += 1
            super().__init__()

    Counted.__name__ = f"{machine.__name__}Under_{mutant.name}"
    config = settings(
        max_examples=max_examples,
        stateful_step_count=steps,
        deadline=None,
        derandomize=derandomize,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    start = time.perf_counter()
    error = ""
    killed = False
    with mutant.plant():
        try:
            run_state_machine_as_test(Counted, settings=config)
        except Exception as exc:  # the machine caught the bug (an assertion or a crash)
            killed = True
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return Kill(mutant.name, killed, count, time.perf_counter() - start, error)


def main(argv: Sequence[str] | None = None) -> int:
    """Hunt the named mutants (default: all); exit 1 if one survives."""
    names = list(sys.argv[1:] if argv is None else argv)
    chosen = [m for m in MUTANTS if not names or m.name in names]
    survivors = 0
    for mutant in chosen:
        k = hunt(mutant)
        survivors += not k.killed
        verdict = "killed" if k.killed else "SURVIVED"
        print(
            f"{mutant.name:28} {verdict:8} after {k.examples:3} examples, {k.seconds:5.1f}s: "
            f"{k.error[:80]}"
        )
    return 1 if survivors else 0


if __name__ == "__main__":
    raise SystemExit(main())
