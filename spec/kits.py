"""Conformance kits: the same state machines, pointed at *your* store or *your* plugin.

**Store kit** (:class:`StoreKit`): every rule of :class:`~arcoflow.spec.machines.KernelMachine`
runs on a kernel over your store *and* on one over :class:`~arcoflow.kernel.MemoryStore` (the
reference store); after every step both must show the reference model's state, write the very
same log, and, if the store persists, survive close/reopen and crashes inside a write
transaction. At the end of each example the store is log-compacted twice (if it has
``write``): it must still verify, and its snapshot plus remaining log must rebuild exactly what
the twin's never-compacted log rebuilds.

**Plugin kit** (:class:`PluginKit`): a poll connector and/or a launcher, registered through the
SDK's :class:`~arcoflow.sdk.Plugins` exactly as the runtime calls them, under a kernel and the
model. Whatever the plugin answers is fed to both, so the kit works for any plugin and checks
what must hold *whatever* it answers: the cursor changes only through accepted polls, a stale
poll writes nothing, run keys are unique, every due run is handed to the launcher at least once
and always under the same ``run_id`` (and a repeated hand-over gets the same external id), a
failing plugin fails only its own sensor or run. Of the connector itself it checks that a poll
that hands out new data advances the cursor (else the same data comes back at every poll;
set ``cursor_must_advance = False`` for a connector that is stateless on purpose) and that
its ``arcoflow_check_config``, if it has one, accepts the kit's config.

**How to build either kit** (one way: subclass it, set its factory class attributes, override
its hooks if needed, expose ``.TestCase``) is documented in one place: ``docs/plugins.md``,
"Conformance kits".
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from typing import Any, ClassVar

from arcoflow.kernel import (
    Failed,
    Kernel,
    MemoryStore,
    PollContext,
    PollResult,
    RunTemplate,
    SensorDefinition,
    Store,
)
from arcoflow.sdk import Launch, Launched, Plugins, RunState
from hypothesis import note
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from .compare import kernel_outcome, model_outcome
from .doubles import CountingConnector, Flaky, PollPlugin, SucceedingLauncher
from .invariants import (
    check_compaction,
    check_reopen,
    check_replay,
    check_state,
    check_step,
)
from .machines import KernelMachine
from .model import Model, MTicket
from .observe import Observation, diff, observe_kernel, observe_model
from .strategies import DST_STARTS

__all__ = ["PluginKit", "StoreKit"]


# -- the store kit -------------------------------------------------------------------------------


class StoreKit(KernelMachine):
    """The kernel-vs-model machine on the store ``store_factory(directory)`` makes, twinned
    with :class:`MemoryStore`. ``persistent``: the factory reopens what an earlier store in
    the same directory wrote (close/reopen and crash recovery are then exercised).

    The one way to run the machines on a store: subclass and set ``store_factory`` (see
    ``docs/plugins.md``, "Conformance kits"); ``twin = False`` drops the reference twin."""

    twin = True
    store_factory: ClassVar[Callable[[str], Store]] = staticmethod(lambda path: MemoryStore())
    persistent: ClassVar[bool] = True

    def make_store(self) -> Store:
        self._path = self.tempdir()
        return type(self).store_factory(self._path)

    def reopen_store(self, store: Store) -> Store | None:
        if not type(self).persistent:
            return None
        store.close()
        return type(self).store_factory(self._path)

    def teardown(self) -> None:
        """Log compaction, once the example's steps are done: compacted at the middle of the
        log's time and then whole, the store must still verify and rebuild exactly what the
        twin's never-compacted log rebuilds (:func:`~arcoflow.spec.invariants.check_compaction`)."""
        try:
            store, twin = self.store.inner, self.twin_store
            if twin is not None and callable(getattr(store, "write", None)):
                kernel = Kernel(store)
                times = [envelope.at for envelope in kernel.log()]
                if times:
                    check_compaction(kernel, twin.inner, times[len(times) // 2])
                check_compaction(kernel, twin.inner, self.now + 1)
        finally:
            super().teardown()


# -- the plugin kit ------------------------------------------------------------------------------


class PluginKit(RuleBasedStateMachine):
    """A connector and a launcher under test, driven with a kernel and the model.

    Class attributes (the one-line way): ``connector`` (a callable taking a
    :class:`~arcoflow.kernel.PollContext`, or a plugin object or module implementing
    ``arcoflow_poll``), ``launcher_factory`` (makes a launcher plugin per example). Unset,
    each is replaced by a small reference plugin, so a connector kit still launches runs and a
    launcher kit still has runs to launch.
    """

    connector: ClassVar[Any] = None
    launcher_factory: ClassVar[Callable[[], Any] | None] = None
    #: The plugin-call timeout the kit uses (seconds).
    timeout: ClassVar[float] = 10.0
    #: Launch attempts before a run is given up.
    max_attempts: ClassVar[int] = 3
    #: A poll that returns run requests must move the cursor on (see the module docstring).
    cursor_must_advance: ClassVar[bool] = True

    # -- hooks ---------------------------------------------------------------------------------

    def make_store(self) -> Store:
        return MemoryStore()

    def make_connector(self) -> Any:
        """The connector under test (default: the ``connector`` class attribute)."""
        return type(self).connector

    def make_launcher(self) -> Any:
        """The launcher under test (default: ``launcher_factory()``)."""
        factory = type(self).launcher_factory
        return factory() if factory is not None else None

    def connector_config(self) -> dict[str, Any]:
        """The sensor ``config`` the connector under test reads."""
        return {}

    def launcher_config(self) -> dict[str, Any]:
        """The ``[launchers.NAME]`` table the launcher under test receives."""
        return {}

    def stimulate(self, n: int) -> None:
        """Make new data appear for the connector under test (``n`` counts the calls)."""

    def finish(self, launcher: Any, run_id: str, succeeded: bool) -> None:
        """Nudge a launched run to finish, for launchers that need it (e.g. ``memory``)."""

    def tempdir(self) -> str:
        """A fresh directory for this example, removed at teardown."""
        path = tempfile.mkdtemp(prefix="arcoflow-kit-")
        self._dirs.append(path)
        return path

    # -- lifecycle -----------------------------------------------------------------------------

    def __init__(self) -> None:
        super().__init__()
        self._dirs: list[str] = []
        self.now = DST_STARTS[-1]
        self.model = Model()
        self.store = self.make_store()
        self.kernel = Kernel(self.store)
        self.plugins = Plugins()
        connector = self.make_connector()
        self.reference_connector = CountingConnector() if connector is None else None
        if connector is None:
            connector = self.reference_connector
        if callable(connector) and not hasattr(connector, "arcoflow_poll"):
            connector = PollPlugin(connector)
        self.flaky_connector = Flaky(connector, "arcoflow_poll")
        self.plugins.register(self.flaky_connector, "under-test")
        self.plugins.register(PollPlugin(CountingConnector(steady=True)), "control")
        launcher = self.make_launcher()
        self.launcher_object = launcher if launcher is not None else SucceedingLauncher()
        self.launcher = Flaky(self.launcher_object, "arcoflow_launch")
        self.plugins.register(self.launcher, "launcher")
        self.stimuli = 0
        self.handed: dict[str, list[tuple[int, str]]] = {}  # run id -> (attempt, run key)
        self.external: dict[str, str | None] = {}
        self.before: Observation | None = None

    def teardown(self) -> None:
        try:
            check_replay(self.kernel)
        finally:
            self.store.close()
            for path in self._dirs:
                shutil.rmtree(path, ignore_errors=True)

    @initialize(interval=st.sampled_from((1, 30, 300)))
    def define(self, interval: int) -> None:
        """Two poll sensors: the connector under test and a control one; both launch."""
        template = RunTemplate("kit.run", launcher="launcher", tags={"kit": "plugin"})
        tested = self.connector_config()
        problems = self.plugins.check_config("connector", "under-test", tested)
        assert not problems, f"the connector's config check refuses the kit's config: {problems}"
        for sid, conn, config in (
            ("tested", "under-test", tested),
            ("control", "control", {}),
        ):
            d = SensorDefinition(
                sid, "poll", template, connector=conn, config=config, minimum_interval=interval
            )
            self.kernel.define_sensor(d, self.now)
            self.model.define_sensor(d, self.now)

    # -- polls ---------------------------------------------------------------------------------

    def _poll(self, sid: str) -> None:
        ticket, context = self.kernel.poll_context(sid, self.now)
        assert context.cursor == (ticket.cursor.native() if ticket.cursor else None)
        mt = self.model.poll_ticket(sid)
        connector = self.kernel.sensor(sid).definition.connector
        assert connector is not None
        result = self.plugins.poll(connector, context, type(self).timeout)
        note(f"poll {sid}: {result!r}"[:300])
        self._check_cursor(context, result)
        self._record(ticket, mt, result)

    def _check_cursor(self, context: PollContext, result: PollResult | Failed) -> None:
        """New data moves the cursor on: a connector that hands out run requests and keeps
        its cursor would hand the same data out again at every poll."""
        if not type(self).cursor_must_advance or not isinstance(result, PollResult):
            return
        if result.run_requests and result.cursor in (None, context.cursor):
            raise AssertionError(
                f"connector returned {len(result.run_requests)} run request(s) without "
                f"advancing its cursor (still {context.cursor!r}): the same data would come "
                "back at every poll"
            )

    def _record(self, ticket: Any, mt: MTicket, result: PollResult | Failed) -> None:
        got = kernel_outcome(lambda: self.kernel.record_poll(ticket, result, self.now))
        # The model, written independently, takes a failure as its reason.
        told = result.reason if isinstance(result, Failed) else result
        expected = model_outcome(lambda: self.model.record_poll(mt, told, self.now))
        got_id = got[1].evaluation.eval_id if got[0] == "ok" else got[1]
        expected_id = expected[1].eval_id if expected[0] == "ok" else expected[1]
        assert got_id == expected_id, f"record poll: kernel {got!r}, model {expected!r}"

    @rule(delta=st.sampled_from((1, 30, 60, 300, 3600)))
    def cycle(self, delta: int) -> None:
        """Time passes; due sensors are polled, due runs launched, launched runs checked."""
        self.now += delta
        due = self.model.due_sensors(self.now)
        assert self.kernel.due_sensors(self.now) == due
        for sid in due:
            self._poll(sid)
        self._dispatch()
        self._check_runs()

    @rule()
    def new_data(self) -> None:
        """New data appears at the source (files written, messages queued...)."""
        self.stimuli += 1
        if self.reference_connector is not None:
            self.reference_connector.pending += 1
        self.stimulate(self.stimuli)

    @rule(sid=st.sampled_from(("tested", "control")))
    def poll_now(self, sid: str) -> None:
        self._poll(sid)

    @rule(other_first=st.booleans())
    def stale_poll(self, other_first: bool) -> None:
        """Two pollers read the same ticket; one records, then the other: the second writes
        nothing (a duplicate of the same answer, or a Conflict)."""
        ticket, context = self.kernel.poll_context("tested", self.now)
        mt = self.model.poll_ticket("tested")
        first = self.plugins.poll("under-test", context, type(self).timeout)
        if other_first:
            self._poll("tested")
        second = self.plugins.poll("under-test", context, type(self).timeout)
        self._check_cursor(context, first)
        self._check_cursor(context, second)
        self._record(ticket, mt, first)
        self._record(ticket, mt, second)

    @rule(broken=st.booleans())
    def sabotage_connector(self, broken: bool) -> None:
        """The connector under test starts (or stops) raising: only its sensor fails."""
        self.flaky_connector.broken = broken

    # -- launches ------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        due = self.model.due_launches(self.now)
        assert [r.run_id for r in self.kernel.due_launches(self.now)] == [r.run_id for r in due]
        for run in due:
            launch = Launch(
                run.run_id,
                run.run_key,
                run.target,
                dict(run.config),
                dict(run.tags),
                run.origin,
                run.attempts + 1,
                self.launcher_config(),
            )
            self.handed.setdefault(run.run_id, []).append((launch.attempt, run.run_key))
            outcome = self.plugins.launch("launcher", launch, type(self).timeout)
            note(f"launch {run.run_key} #{launch.attempt}: {outcome!r}"[:200])
            if isinstance(outcome, Launched):
                known = self.external.setdefault(run.run_id, outcome.external_id)
                assert known == outcome.external_id, "a repeated hand-over started a new run"
                kw: dict[str, Any] = {"external_id": outcome.external_id}
            else:
                kw = {"error": outcome.reason}
            k = self.kernel.record_launch(
                run.run_id, now=self.now, max_attempts=type(self).max_attempts, **kw
            )
            m = self.model.record_launch(
                run.run_id, now=self.now, max_attempts=type(self).max_attempts, **kw
            )
            assert k.status == m.status

    def _check_runs(self) -> None:
        if not self.plugins.implements("launcher", "arcoflow_run_state"):
            return
        for run in list(self.model.runs.values()):
            if run.status != "LAUNCHED":
                continue
            launch = Launch(
                run.run_id,
                run.run_key,
                run.target,
                dict(run.config),
                dict(run.tags),
                run.origin,
                run.attempts,
                self.launcher_config(),
            )
            state = self.plugins.run_state("launcher", launch, run.external_id, self.timeout)
            if isinstance(state, RunState):
                ok = state.status == "succeeded"
                k = self.kernel.complete_run(run.run_id, ok, state.detail, now=self.now)
                m = self.model.complete_run(run.run_id, ok, state.detail, now=self.now)
                assert k.status == m.status

    @rule(broken=st.booleans())
    def sabotage_launcher(self, broken: bool) -> None:
        """The launcher starts (or stops) raising: runs retry, then give up; others go on."""
        self.launcher.broken = broken

    @precondition(lambda self: bool(self.external))
    @rule(data=st.data())
    def hand_over_again(self, data: st.DataObject) -> None:
        """At-least-once delivery: a launched run is handed over again (a dispatcher that
        crashed before recording). The launcher must answer with the same external id."""
        rid = data.draw(st.sampled_from(sorted(self.external)), label="run")
        run = self.model.runs[rid]
        launch = Launch(
            rid,
            run.run_key,
            run.target,
            dict(run.config),
            dict(run.tags),
            run.origin,
            max(run.attempts, 1),
            self.launcher_config(),
        )
        outcome = self.launcher_object.arcoflow_launch(launch=launch)
        if isinstance(outcome, Launched):
            assert outcome.external_id == self.external[rid], (
                f"run {rid} handed over again got {outcome.external_id!r}, "
                f"first {self.external[rid]!r}: the launcher started it twice"
            )

    @precondition(lambda self: bool(self.external))
    @rule(data=st.data(), succeeded=st.booleans())
    def finish_run(self, data: st.DataObject, succeeded: bool) -> None:
        rid = data.draw(st.sampled_from(sorted(self.external)), label="run")
        self.finish(self.launcher_object, rid, succeeded)

    # -- invariants ----------------------------------------------------------------------------

    @invariant()
    def plugin_independent_invariants(self) -> None:
        seen = observe_kernel(self.kernel, self.now)
        differences = diff(seen, observe_model(self.model, self.now))
        assert not differences, "kernel differs from the model:\n" + "\n".join(differences)
        check_state(seen)
        if self.before is not None:
            check_step(self.before, seen)
        self.before = seen
        # At least once, under a stable run id: every run that was attempted was handed to the
        # launcher under its own run id and key, attempt after attempt.
        for run in seen.runs:
            handed = self.handed.get(run.run_id, [])
            assert [a for a, _ in handed][: run.attempts] == list(range(1, run.attempts + 1)), (
                f"run {run.run_key}: attempts {run.attempts}, hand-overs {handed}"
            )
            assert all(key == run.run_key for _, key in handed)
        # Failures are isolated: the control sensor never fails, whatever the tested one does.
        for e in seen.evaluations.get("control", ()):
            assert e.status != "FAILED", f"the control sensor failed: {e.reason}"

    def reopen_store(self, store: Store) -> Store | None:
        """Override with :meth:`KernelMachine.reopen_store`'s contract to exercise restarts."""
        return None

    @rule()
    def reopen(self) -> None:
        before = observe_kernel(self.kernel, self.now)
        reopened = self.reopen_store(self.store)
        if reopened is None:
            return
        self.store = reopened
        self.kernel = Kernel(reopened)
        check_reopen(before, observe_kernel(self.kernel, self.now))
