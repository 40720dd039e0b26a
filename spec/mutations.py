"""Mutation evidence: real bugs planted in the kernel at runtime, which the machines must catch.

Each :class:`Mutant` monkeypatches one rule of the kernel for the duration of a ``with`` block
(nothing is written to disk). :func:`hunt` runs a state machine (by default
:class:`~arcoflow.spec.machines.KernelMachine` on the in-memory store) under the mutant with a
fixed seed and reports whether it was killed, after how many examples and how fast. A mutant
that survives means the suite has a blind spot.

The gate (:func:`gate`): each mutant also names its *killers*, tests of the ordinary suite that
fail while it is planted; the gate runs them under it with the ``ci`` profile (derandomized),
so no kill depends on a long hunt or a lucky seed, and reports which test killed each. From the
project's root::

    python -m arcoflow.spec.mutations                # the gate, every mutant
    python -m arcoflow.spec.mutations no_cas         # one
    python -m arcoflow.spec.mutations --hunt         # the machine hunt instead

or run ``pytest tests/spec/test_mutations.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import arcoflow.kernel.decide as decide_module
import arcoflow.kernel.evolve as evolve_module
import arcoflow.kernel.runs as runs_module
import arcoflow.kernel.store.base as base_module
import arcoflow.kernel.store.lmdb as lmdb_module
import arcoflow.kernel.store.memory as memory_module
import attrs
import lmdb
import msgspec
from arcoflow.kernel import Kernel
from arcoflow.kernel.definitions import MAX_CATCHUP_TICKS
from arcoflow.kernel.events import (
    RunClaimed,
    RunRequested,
    ScheduleAdvanced,
    ScheduleToggled,
    SensorEvaluated,
)
from arcoflow.kernel.rows import RunRow, SensorRow, Table, key
from arcoflow.sdk.runtime import Runtime
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

from .machines import KernelMachine
from .runtime_machine import RuntimeMachine

__all__ = ["MUTANTS", "Kill", "Mutant", "Verdict", "gate", "hunt", "main"]


@dataclass(frozen=True)
class Mutant:
    """A bug, planted by ``plant()`` (a context manager) and removed on exit. ``killers``:
    tests of the ordinary suite (pytest node ids from the project root; a test function stands
    for all its parameters) that must fail while it is planted, so that catching it never
    depends on a long hunt or a lucky seed. ``machine`` is the state machine that hunts it
    (default: :class:`KernelMachine`)."""

    name: str
    description: str
    plant: Callable[[], AbstractContextManager[None]]
    killers: tuple[str, ...] = ()
    machine: type[RuleBasedStateMachine] | None = None


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


# -- verification: the host's zone, the durability promise, boundaries ---------------------------


def _ids_in_local_time() -> AbstractContextManager[None]:
    """Tick ids and run keys formatted in the host's local time instead of UTC (on a host in
    New York, the two 01:30s of a fall-back night become one tick)."""

    def local_iso(at: int) -> str:
        return datetime.fromtimestamp(at).strftime("%Y-%m-%dT%H:%M:%SZ")

    return _patch(decide_module, "iso", local_iso)


class _LmdbOpening:
    """The ``lmdb`` module as the LMDB store sees it, with some ``lmdb.open`` flags forced."""

    def __init__(self, **forced: bool) -> None:
        self.real, self.forced = lmdb, forced

    def open(self, path: str, **flags: Any) -> Any:
        return self.real.open(path, **{**flags, **self.forced})

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def _forced_lmdb_flags(**forced: bool) -> AbstractContextManager[None]:
    return _patch(lmdb_module, "lmdb", _LmdbOpening(**forced))


def _durable_without_metasync() -> AbstractContextManager[None]:
    """A durable store stops flushing meta pages (LMDB ``metasync=False``)."""
    return _forced_lmdb_flags(metasync=False)


def _durable_without_sync() -> AbstractContextManager[None]:
    """A store stops flushing data pages at commit (LMDB ``sync=False``)."""
    return _forced_lmdb_flags(sync=False)


def _recreated_from_now() -> AbstractContextManager[None]:
    """A schedule re-created after delete computes ``next_fire_at`` from ``now``, forgetting
    its ``last_scheduled_for``: with the clock behind its last tick, ``next_fire_at`` names a
    tick that ``plan_ticks`` will not run (it is evaluated for nothing every cycle)."""
    define = decide_module.define_schedule

    def mutated(row: Any, definition: Any, now: int) -> Any:
        if row is not None and row.deleted:
            row = msgspec.structs.replace(row, last_scheduled_for=None)
        return define(row, definition, now)

    return _patch(decide_module, "define_schedule", mutated)


def _tags_out_of_fingerprint() -> AbstractContextManager[None]:
    """A run's fingerprint ignores its tags: other tags under one key are not a conflict."""
    fingerprint = runs_module.fingerprint
    return _patch(
        runs_module, "fingerprint", lambda target, config, tags: fingerprint(target, config, {})
    )


def _request_key_without_content() -> AbstractContextManager[None]:
    """A manual request's idempotency key leaves out the fingerprint: the same requester asking
    for the same key at the same instant with other content is taken for a duplicate."""

    def pending(key: str, event: Any) -> base_module.Pending:
        if key.startswith("run/"):
            key = key.rpartition("#")[0]
        return base_module.Pending(key, event)

    return _patch(decide_module, "Pending", pending)


def _window_edge_missed() -> AbstractContextManager[None]:
    """A tick exactly ``catchup_window`` old is missed (the window loses its closed end)."""
    plan = decide_module.plan_ticks

    def mutated(row: Any, now: int) -> Any:
        window = row.definition.catchup_window
        if window > 1:
            definition = attrs.evolve(row.definition, catchup_window=window - 1)
            row = msgspec.structs.replace(row, definition=definition)
        return plan(row, now)

    return _patch(decide_module, "plan_ticks", mutated)


def _template_config_wins() -> AbstractContextManager[None]:
    """On a key both have, the template's config wins over the request's."""
    request_run = runs_module.request_run

    def mutated(origin: str, by: str, template: Any, request: Any, default_key: str) -> Any:
        request = attrs.evolve(request, config={**request.config, **template.config})
        return request_run(origin, by, template, request, default_key)

    return _patch(decide_module, "request_run", mutated)


def _update_forgets_retries() -> AbstractContextManager[None]:
    """Updating a schedule while a tick retry is pending computes ``next_fire_at`` without the
    retry: it waits for the next regular tick instead of being due."""
    define = decide_module.define_schedule

    def mutated(row: Any, definition: Any, now: int) -> Any:
        if row is not None and not row.deleted:
            row = msgspec.structs.replace(row, retries=())
        return define(row, definition, now)

    return _patch(decide_module, "define_schedule", mutated)


def _update_makes_poll_due() -> AbstractContextManager[None]:
    """Updating a poll sensor makes it due at once, even in backoff or before its interval."""
    define = decide_module.define_sensor

    def mutated(row: Any, definition: Any, now: int) -> Any:
        if row is not None and not row.deleted:
            row = msgspec.structs.replace(row, next_eval_at=None)
        return define(row, definition, now)

    return _patch(decide_module, "define_sensor", mutated)


_BOUNDARIES = "tests/kernel/test_boundaries.py::"
_RETRIES = (
    "tests/schedules/test_evaluators.py::"
    "test_failed_ticks_are_retried_under_the_same_id_and_stop_at_the_limit"
)

VERIFICATION_MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        "ids_in_local_time",
        "tick ids and run keys in the host's local time",
        _ids_in_local_time,
        ("tests/kernel/test_host_timezone.py::test_ids_do_not_depend_on_the_host_zone",),
    ),
    Mutant(
        "durable_without_metasync",
        "a durable store does not flush meta pages",
        _durable_without_metasync,
        ("tests/kernel/test_durability.py::test_each_mode_opens_lmdb_with_its_flags",),
    ),
    Mutant(
        "durable_without_sync",
        "a store does not flush data pages",
        _durable_without_sync,
        ("tests/kernel/test_durability.py::test_each_mode_opens_lmdb_with_its_flags",),
    ),
    Mutant(
        "recreated_from_now",
        "re-created after delete: next_fire_at from now",
        _recreated_from_now,
        (_BOUNDARIES + "test_a_schedule_re_created_with_the_clock_behind_its_last_tick",),
    ),
    Mutant(
        "tags_out_of_fingerprint",
        "tags left out of a run's fingerprint",
        _tags_out_of_fingerprint,
        (_BOUNDARIES + "test_other_tags_under_one_key_are_a_conflict",),
    ),
    Mutant(
        "request_key_without_content",
        "same requester, key and instant, other content: a duplicate",
        _request_key_without_content,
        (_BOUNDARIES + "test_the_same_requester_key_and_instant_with_other_content",),
    ),
    Mutant(
        "window_edge_missed",
        "a tick exactly catchup_window old is missed",
        _window_edge_missed,
        (_BOUNDARIES + "test_a_tick_exactly_catchup_window_old_still_runs",),
    ),
    Mutant(
        "template_config_wins",
        "the template's config wins over the request's",
        _template_config_wins,
        (_BOUNDARIES + "test_a_request_config_overrides_the_template_on_shared_keys",),
    ),
    Mutant(
        "update_forgets_retries",
        "an update while a tick retry is pending forgets it",
        _update_forgets_retries,
        (_BOUNDARIES + "test_a_definition_update_keeps_a_pending_tick_retry_due",),
    ),
    Mutant(
        "update_makes_poll_due",
        "an updated poll sensor is due at once",
        _update_makes_poll_due,
        (_BOUNDARIES + "test_updating_a_poll_sensor_keeps_when_it_is_due",),
    ),
)


# -- runtime mutants (hunted by the runtime machine) ---------------------------------------------


def _runtime_ignores_attempts() -> AbstractContextManager[None]:
    """The runtime records its launch outcome without the compare-and-set (no claimer, no
    expected attempts): a runtime whose lease ran out records its attempt 1 on top of another
    runtime's attempt 1, as attempt 2, skipping the retry's backoff."""
    launch = Runtime.launch_run

    class Careless:
        def __init__(self, kernel: Kernel) -> None:
            self.kernel = kernel

        def record_launch(self, run_id: str, **kw: Any) -> Any:
            kw.pop("claimer", None)
            kw.pop("expected_attempts", None)
            return self.kernel.record_launch(run_id, **kw)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.kernel, name)

    def mutated(self: Runtime, run: RunRow, now: int | None = None) -> Any:
        kernel = self.kernel
        self.kernel = Careless(kernel)  # type: ignore[assignment]
        try:
            return launch(self, run, now)
        finally:
            self.kernel = kernel

    return _patch(Runtime, "launch_run", mutated)


def _checks_restart_at_first_page() -> AbstractContextManager[None]:
    """Completion checks always start again at the first page of launched runs: finished
    runs beyond it are never completed while the first page's runs still run."""
    check = Runtime.check_runs

    def mutated(self: Runtime, now: int | None, report: Any) -> Any:
        self._check_after.clear()
        return check(self, now, report)

    return _patch(Runtime, "check_runs", mutated)


def _claim_ignored() -> AbstractContextManager[None]:
    """A launch claim is recorded but leaves the run due: two runtimes launch it."""
    original = _handler(RunClaimed)

    def mutated(view: Any, env: Any, e: RunClaimed) -> Any:
        run: RunRow = view.get(Table.RUNS, key(e.run_id))
        return [
            (t, k, msgspec.structs.replace(row, next_attempt_at=run.next_attempt_at))
            for t, k, row in original(view, env, e)
        ]

    return _patch(evolve_module._HANDLERS, RunClaimed, mutated)  # type: ignore[arg-type]


_LAUNCHES = "tests/sdk/test_runtime_launches.py::"

RUNTIME_MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        "runtime_ignores_attempts",
        "the runtime records outcomes without the attempt compare-and-set",
        _runtime_ignores_attempts,
        (_LAUNCHES + "test_a_runtime_whose_lease_ran_out_does_not_record_its_stale_attempt",),
        RuntimeMachine,
    ),
    Mutant(
        "checks_restart_at_first_page",
        "completion checks always restart at the first page",
        _checks_restart_at_first_page,
        (
            _LAUNCHES
            + "test_completion_checks_reach_finished_runs_beyond_a_first_page_still_running",
        ),
        RuntimeMachine,
    ),
    Mutant(
        "claim_ignored",
        "a launch claim leaves the run due (two runtimes launch it)",
        _claim_ignored,
        (_LAUNCHES + "test_a_second_runtime_cycling_while_the_first_launches_keeps_off_its_run",),
        RuntimeMachine,
    ),
)


MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        "no_cas",
        "drop the compare-and-set check (evolve.check)",
        _no_cas,
        ("tests/kernel/test_store.py::test_cas_conflict_writes_nothing",),
    ),
    Mutant(
        "no_catchup_budget",
        "drop max_catchup_ticks in plan_ticks",
        _no_catchup_budget,
        (
            "tests/schedules/test_catchup.py::test_newest_runs_the_newest_budget_and_summarises_the_rest",
        ),
    ),
    Mutant(
        "no_catchup_window",
        "drop catchup_window in plan_ticks",
        _no_catchup_window,
        (
            "tests/schedules/test_catchup.py::test_ticks_older_than_the_window_are_missed_in_one_summary",
        ),
    ),
    Mutant(
        "last_scheduled_for_backward",
        "let last_scheduled_for move backward",
        _last_scheduled_for_backward,
        (_RETRIES,),
    ),
    Mutant(
        "no_idempotency",
        "skip the batch idempotency check in apply_batch",
        _no_idempotency,
        (
            "tests/kernel/test_runs.py::test_the_same_request_twice_by_the_same_requester_at_once_is_one_effect",
        ),
    ),
    Mutant(
        "cursor_cleared",
        "clear the cursor when a poll returns cursor=None",
        _cursor_cleared,
        (_BOUNDARIES + "test_a_poll_without_a_cursor_keeps_the_last_one",),
    ),
    Mutant(
        "conflict_overwrites",
        "a conflicting request overwrites the run",
        _conflict_overwrites,
        (
            "tests/kernel/test_runs.py::test_same_key_other_fingerprint_is_a_conflict_and_still_one_run",
        ),
    ),
    Mutant(
        "reenable_backfills",
        "re-enabling back-fills the disabled period",
        _reenable_backfills,
        (
            "tests/schedules/test_catchup.py::test_disabled_schedules_do_not_tick_and_re_enabling_never_back_fills",
        ),
    ),
    Mutant(
        "unbounded_retries", "retry failed ticks once too often", _unbounded_retries, (_RETRIES,)
    ),
    Mutant(
        "backoff_uncapped",
        "poll backoff without its cap",
        _backoff_uncapped,
        ("tests/kernel/test_sensors.py::test_backoff_without_jitter_is_exact_and_capped",),
    ),
    Mutant(
        "stale_poll_echoes",
        "a losing poller gets the winner's row",
        _stale_poll_echoes,
        ("tests/kernel/test_sensors.py::test_stale_ticket_is_a_conflict_and_writes_nothing",),
    ),
    Mutant(
        "sensor_toggle_collides",
        "sensor toggles keyed by instant (a bug the machines found)",
        _sensor_toggle_collides,
        (_BOUNDARIES + "test_stop_and_start_twice_in_one_second_leaves_the_sensor_running",),
    ),
    *VERIFICATION_MUTANTS,
    *RUNTIME_MUTANTS,
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
    machine: type[RuleBasedStateMachine] | None = None,
    *,
    max_examples: int = 300,
    steps: int = 40,
    derandomize: bool = True,
) -> Kill:
    """Run ``machine`` (default: the mutant's own) under ``mutant`` (no shrinking) until it
    fails. ``derandomize``: with a fixed seed (reproducible), or a random one (to see how
    robust the kill is)."""
    machine = machine or mutant.machine or KernelMachine
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


# -- the gate: each mutant against the ordinary suite ----------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What the ordinary suite (``ci`` profile) made of one mutant."""

    mutant: str
    killed_by: str | None  # the node id of the first named killer that failed under it
    problem: str  # why it is not a kill: no killer named, or a killer not found
    seconds: float


class _Gate:
    """A pytest plugin that replaces the run: every named killer runs once as it is (it must
    pass), then under each mutant in turn, until one fails."""

    def __init__(self, mutants: Sequence[Mutant]) -> None:
        self.mutants = mutants
        self.verdicts: list[Verdict] = []
        self.broken: list[str] = []  # killers that fail with no mutant planted
        self.judged = False

    def pytest_runtestloop(self, session: Any) -> bool:
        self.judge(session.items)
        return True

    def judge(self, collected: Sequence[Any]) -> None:
        from _pytest.runner import runtestprotocol  # noqa: PLC0415 (the gate alone needs pytest)

        def fails(item: Any) -> bool:
            return any(r.failed for r in runtestprotocol(item, nextitem=None, log=False))

        def items(killer: str) -> list[Any]:
            return [i for i in collected if i.nodeid == killer or i.nodeid.startswith(killer + "[")]

        named = {i.nodeid: i for m in self.mutants for k in m.killers for i in items(k)}
        self.broken = [nodeid for nodeid, item in named.items() if fails(item)]
        for mutant in self.mutants:
            start = time.perf_counter()
            killed_by, problem = None, "" if mutant.killers else "no killer named"
            with mutant.plant():
                for killer in mutant.killers:
                    found = items(killer)
                    if not found:
                        problem = f"{killer} not found"
                    killed_by = next((i.nodeid for i in found if fails(i)), None)
                    if killed_by is not None:
                        break
            seconds = time.perf_counter() - start
            self.verdicts.append(Verdict(mutant.name, killed_by, problem, seconds))
        self.judged = True


def gate(mutants: Sequence[Mutant] = MUTANTS, root: str = ".") -> tuple[list[Verdict], list[str]]:
    """Run each mutant's killers under it, in one pytest session of the project at ``root`` with
    the ``ci`` Hypothesis profile. Returns the verdicts and the killers that fail unmutated."""
    import pytest  # noqa: PLC0415 (only the gate needs pytest; the kits need Hypothesis alone)

    files = sorted({k.split("::")[0] for m in mutants for k in m.killers})
    plugin = _Gate(mutants)
    files = [f for f in files if os.path.isfile(os.path.join(root, f))]  # others: "not found"
    if not files:
        plugin.judge([])
        return plugin.verdicts, plugin.broken
    # The ordinary suite's profile (derandomized); quiet, and this module imported Hypothesis
    # before pytest could rewrite its asserts, which does not matter here.
    args = ["-qq", "--no-header", "-p", "no:cacheprovider"]
    args += ["-W", "ignore::pytest.PytestAssertRewriteWarning", *files]
    cwd, profile = os.getcwd(), os.environ.get("HYPOTHESIS_PROFILE")
    os.environ["HYPOTHESIS_PROFILE"] = "ci"
    os.chdir(root)
    try:
        code = pytest.main(args, plugins=[plugin])
    finally:
        os.chdir(cwd)
        if profile is None:
            del os.environ["HYPOTHESIS_PROFILE"]
        else:
            os.environ["HYPOTHESIS_PROFILE"] = profile
    if not plugin.judged:  # pytest stopped before running anything (a collection error)
        problem = f"pytest could not collect the killers (exit status {int(code)})"
        return [Verdict(m.name, None, problem, 0.0) for m in mutants], []
    return plugin.verdicts, plugin.broken


def main(argv: Sequence[str] | None = None) -> int:
    """The gate (default) or, with ``--hunt``, the machine hunt, for the named mutants
    (default: all); exit 1 if one survives."""
    parser = argparse.ArgumentParser(prog="python -m arcoflow.spec.mutations")
    parser.add_argument("names", nargs="*", metavar="NAME", help="mutants (default: all)")
    parser.add_argument("--hunt", action="store_true", help="hunt with KernelMachine instead")
    parser.add_argument("--root", default=".", help="the project root, where tests/ is")
    parser.add_argument("--json", metavar="FILE", help="also write the gate's verdicts there")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - {m.name for m in MUTANTS})
    if unknown:
        parser.error(f"no such mutant: {', '.join(unknown)}")
    chosen = [m for m in MUTANTS if not args.names or m.name in args.names]
    if args.hunt:
        return _hunt_all(chosen)
    verdicts, broken = gate(chosen, args.root)
    for v in verdicts:
        verdict = "killed" if v.killed_by else "SURVIVED"
        print(f"{v.mutant:28} {verdict:8} {v.seconds:5.1f}s by {v.killed_by or v.problem or '-'}")
    for nodeid in broken:
        print(f"a killer fails with no mutant planted: {nodeid}")
    if args.json:
        report = {"verdicts": [dataclasses.asdict(v) for v in verdicts], "broken": broken}
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=1)
    survivors = sum(v.killed_by is None for v in verdicts)
    print(f"{len(verdicts) - survivors} killed, {survivors} survived, {len(broken)} broken killers")
    return 1 if survivors or broken else 0


def _hunt_all(chosen: Sequence[Mutant]) -> int:
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
