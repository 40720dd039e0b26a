"""A Hypothesis state machine for the runtime: several :class:`~arcoflow.sdk.Runtime` objects
over one store, driven as daemons would drive them.

The kernel machines drive the kernel's commands directly; this one drives ``sdk/runtime.py``:
two runtimes (each with its own :class:`Kernel` on the shared store, as two daemons have)
claim, launch and complete runs through a scripted launcher whose attempts succeed, fail or
hang past their timeout, with completion checks that page through fewer runs than are
launched. Every kernel command a runtime issues runs on the reference :class:`Model` too, and
both must agree; after every step the kernel's whole observable state must equal the model's.

On top, the rules of SPEC.md "Launch" that only the runtime can break:

* each attempt of a run is handed to a launcher **once**, by the runtime that holds its claim,
  as attempt ``attempts + 1``, while the claim's lease is live; the only exception is a claim
  whose lease ran out (a runtime stalled past it, as if it had died): then another runtime
  may hand the same attempt over again (at least once);
* every recorded attempt was handed over as that attempt (a runtime never records another
  runtime's attempt as its own);
* attempt ``n > 1`` is handed over no earlier than the failure of attempt ``n - 1`` plus the
  backoff, and never beyond ``max_attempts``;
* every finished run is completed within ``ceil(launched / page) + 1`` completion checks.

The class is named without a ``Test`` prefix so pytest does not collect it from the package;
``TestCase`` runs it (:class:`LmdbRuntimeMachine` on LMDB).
"""

from __future__ import annotations

import math
import shutil
import tempfile
import threading
from dataclasses import dataclass
from typing import Any, Final, Literal

from arcoflow.kernel import Kernel, LmdbStore, MemoryStore, RunTemplate, Store
from arcoflow.kernel.events import RunLaunched, RunLaunchFailed
from arcoflow.sdk import Launch, Launched, LaunchError, Plugins, RunState, hookimpl
from arcoflow.sdk.runtime import CycleReport, Runtime
from hypothesis import note
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from .compare import kernel_outcome, model_outcome
from .model import LAUNCH_BASE, LAUNCH_CAP, Model
from .observe import diff, observe_kernel, observe_model

__all__ = ["LmdbRuntimeMachine", "RuntimeMachine", "ScriptedLauncher"]

T0: Final = 1_893_456_000  # 2030-01-01T00:00:00Z
LAUNCHER: Final = "scripted"
HANG_TIMEOUT: Final = 0.01  # seconds a runtime waits for a hung launch
PAGE: Final = 2  # completion checks (and launches) per runtime cycle: fewer than the runs
MAX_ATTEMPTS: Final = 3
LEASE: Final = 300

Behaviour = Literal["ok", "fail", "hang"]


@dataclass(frozen=True)
class HandOver:
    """One call of the launcher: which run and attempt, by which runtime, at what time."""

    run_id: str
    attempt: int
    runtime: str
    at: int


class ScriptedLauncher:
    """A launcher whose attempts do what the machine scripted: ``ok`` (started, the same
    external id for a run every time), ``fail`` (raises) or ``hang`` (blocks until released,
    past the runtime's timeout). It checks each hand-over against the model, which mirrors the
    kernel (the runtime's thread waits for this call, so the model does not change under it).
    """

    def __init__(self, machine: RuntimeMachine) -> None:
        self.machine = machine
        self.script: dict[str, tuple[Behaviour, ...]] = {}
        self.handed: list[HandOver] = []
        self.finished: dict[str, RunState] = {}
        self.external: dict[str, str] = {}
        self.release = threading.Event()
        self.hung: list[threading.Thread] = []
        self._lock = threading.Lock()

    @hookimpl
    def arcoflow_launch(self, launch: Launch) -> Launched:
        m = self.machine
        with self._lock:
            self.handed.append(HandOver(launch.run_id, launch.attempt, m.acting, m.now))
            run = m.model.runs.get(launch.run_id)
            if run is None or run.status != "REQUESTED":
                m.problem(f"{launch.run_id[:8]} handed over while {run and run.status}")
            elif (run.claimed_by, launch.attempt) != (m.acting, run.attempts + 1):
                m.problem(
                    f"{launch.run_id[:8]} handed over as attempt {launch.attempt} by "
                    f"{m.acting}; the run has {run.attempts} attempts, claimed by "
                    f"{run.claimed_by}"
                )
            elif run.next_attempt_at is None or run.next_attempt_at <= m.now:
                m.problem(f"{launch.run_id[:8]} handed over without a live claim")
            script = self.script.get(launch.run_id, ())
            behaviour = script[launch.attempt - 1] if launch.attempt <= len(script) else "ok"
            if behaviour == "hang":
                self.hung.append(threading.current_thread())
        if behaviour == "hang":
            self.release.wait(30)
            raise LaunchError("answered after the timeout")
        if behaviour == "fail":
            raise LaunchError("no capacity")
        with self._lock:
            external = self.external.setdefault(launch.run_id, f"x{len(self.external) + 1}")
        return Launched(external)

    @hookimpl
    def arcoflow_run_state(self, launch: Launch) -> RunState | None:
        with self._lock:
            return self.finished.get(launch.run_id)

    def unhang(self) -> None:
        """Let every hung call return (the runtime gave up on them already) and wait until
        their threads end, so the next call for the same run is not refused as still running."""
        self.release.set()
        with self._lock:
            hung, self.hung = self.hung, []
        for thread in hung:
            thread.join(30)
        self.release.clear()


class _MirroredKernel(Kernel):
    """The kernel one runtime drives: each launch command runs on the model as well, and
    both must give the same outcome. A problem is reported to the machine, never raised: the
    runtime would catch it as a launch error."""

    def __init__(self, store: Store, machine: RuntimeMachine, index: int) -> None:
        super().__init__(store)
        self.machine = machine
        self.index = index  # which of the machine's runtimes drives it

    def _mirror(self, name: str, kernel_call: Any, model_call: Any, view: Any) -> Any:
        got = kernel_outcome(kernel_call)
        expected = model_outcome(model_call)
        got_view = (got[0], view(got[1])) if got[0] == "ok" else got
        expected_view = (expected[0], view(expected[1])) if expected[0] == "ok" else expected
        if got_view != expected_view:
            self.machine.problem(f"{name}: kernel {got_view!r}, model {expected_view!r}")
        if got[0] == "error":
            kernel_call()  # raise the kernel's own error again, for the runtime
        return got[1]

    def claim_launches(self, claimer: str, now: Any = None, *, lease: int, limit: int = 100) -> Any:
        model = self.machine.model
        return self._mirror(
            f"{claimer} claims at {now}",
            lambda: Kernel.claim_launches(self, claimer, now, lease=lease, limit=limit),
            lambda: model.claim_launches(claimer, now, lease, limit),
            lambda runs: [r.run_id for r in runs],
        )

    def record_launch(self, run_id: str, **kw: Any) -> Any:
        self.machine.before_record(self, run_id)
        model = self.machine.model
        return self._mirror(
            f"{kw.get('claimer')} records {run_id[:8]}: {kw.get('error') or 'started'}",
            lambda: Kernel.record_launch(self, run_id, **kw),
            lambda: model.record_launch(run_id, **kw),
            lambda r: (r.status, r.attempts),
        )

    def complete_run(
        self, run_id: str, succeeded: bool, detail: str | None = None, now: Any = None
    ) -> Any:
        model = self.machine.model
        return self._mirror(
            f"complete {run_id[:8]}",
            lambda: Kernel.complete_run(self, run_id, succeeded, detail, now),
            lambda: model.complete_run(run_id, succeeded, detail, now),
            lambda r: r.status,
        )


class RuntimeMachine(RuleBasedStateMachine):
    """Two runtimes (0 and 1), a scripted launcher and the model; see the module docstring."""

    def make_store(self) -> Store:
        """A fresh, empty store for one example (override in a subclass)."""
        return MemoryStore()

    def tempdir(self) -> str:
        path = tempfile.mkdtemp(prefix="arcoflow-runtime-")
        self._dirs.append(path)
        return path

    def __init__(self) -> None:
        super().__init__()
        self._dirs: list[str] = []
        self.store = self.make_store()
        self.kernel = Kernel(self.store)
        self.model = Model()
        self.now = T0
        self.launcher = ScriptedLauncher(self)
        self.plugins = Plugins()
        self.plugins.register(self.launcher, LAUNCHER)
        self.problems: list[str] = []
        self.acting = ""
        self.restarts = 0
        self.runtime = [self._runtime(0), self._runtime(1)]
        self.keys = 0
        #: Records of this runtime's kernel first let the other runtime run a cycle.
        self.inside: int | None = None
        #: This runtime stalls before its next record: (runtime, seconds past its lease).
        self.stall: tuple[int, int] | None = None
        self.expired: set[tuple[str, int]] = set()  # attempts whose claim's lease ran out
        self.recorded: list[tuple[str, int, int, bool]] = []  # run, attempt, at, failed
        self.seq = 0

    def _runtime(self, i: int) -> Runtime:
        return Runtime(
            _MirroredKernel(self.store, self, i),
            self.plugins,
            {LAUNCHER: {"launch_timeout": HANG_TIMEOUT, "max_attempts": MAX_ATTEMPTS}},
            batch=PAGE,
            clock=lambda: self.now,
            runtime_id=f"runtime{i}.{self.restarts}",
            launch_lease=LEASE,
        )

    def teardown(self) -> None:
        try:
            self.launcher.unhang()
            assert self.kernel.verify().ok, "the log does not replay to the state"
        finally:
            self.store.close()
            for path in self._dirs:
                shutil.rmtree(path, ignore_errors=True)

    def problem(self, text: str) -> None:
        note(f"PROBLEM: {text}")
        self.problems.append(text)

    # -- driving a runtime -------------------------------------------------------------------

    def step(self, i: int, what: Literal["cycle", "dispatch", "check"]) -> CycleReport:
        runtime = self.runtime[i]
        self.launcher.unhang()  # a call still hung would be refused as "still running"
        before, self.acting = self.acting, runtime.runtime_id
        report = CycleReport(self.now)
        try:
            if what == "cycle":
                report = runtime.cycle()
            elif what == "dispatch":
                runtime.dispatch_launches(None, report)
            else:
                runtime.check_runs(None, report)
        finally:
            self.acting = before
            self.launcher.unhang()
        note(f"{runtime.runtime_id} {what} at {self.now}: {report.summary()}")
        unexpected = [f for f in report.failures if f.kind == "run"]
        assert not unexpected, f"{runtime.runtime_id}: unexpected errors {unexpected}"
        return report

    def before_record(self, kernel: _MirroredKernel, run_id: str) -> None:
        """Between a runtime's launch and its record, the other runtime may work (``inside``),
        or this one stalls until its lease has run out (``stall``): a runtime that dies after
        claiming looks the same to the others."""
        if self.inside == kernel.index:
            self.step(1 - kernel.index, "cycle")
        if self.stall is not None and self.stall[0] == kernel.index:
            past = self.stall[1]
            self.stall = None
            run = self.model.runs[run_id]
            self.expired.add((run_id, run.attempts + 1))
            note(f"stall: {run_id[:8]}'s lease runs out")
            self.now = max(self.now, (run.next_attempt_at or self.now) + past)
            self.step(1 - kernel.index, "cycle")

    # -- rules -------------------------------------------------------------------------------

    @rule(
        count=st.integers(1, 3),
        script=st.lists(st.sampled_from(("ok", "ok", "fail", "hang")), max_size=MAX_ATTEMPTS),
    )
    def request_runs(self, count: int, script: list[Behaviour]) -> None:
        """New runs for the scripted launcher; their attempts will do as ``script`` says."""
        for _ in range(count):
            self.keys += 1
            key, now = f"r{self.keys}", self.now
            template = RunTemplate("job", launcher=LAUNCHER)
            run = self.kernel.request_run(key, template, now)
            assert self.model.request_run(key, template, now).run_id == run.run_id
            self.launcher.script[run.run_id] = tuple(script)
            note(f"request {key} ({run.run_id[:8]}) at {now}: {script}")

    @rule(i=st.integers(0, 1), delta=st.sampled_from((0, 1, 10, 60, 600)))
    def cycle(self, i: int, delta: int) -> None:
        """Time passes; one runtime runs a whole cycle (claims, launches, completion checks)."""
        self.now += delta
        self.step(i, "cycle")

    def _due(self) -> bool:
        return bool(self.model.due_launches(self.now))

    @precondition(_due)
    @rule(i=st.integers(0, 1))
    def dispatch_inside_another(self, i: int) -> None:
        """Runtime ``i`` dispatches; before each of its outcomes is recorded, the other
        runtime runs a whole cycle at the same time: claims keep it off ``i``'s runs."""
        self.inside = i
        try:
            self.step(i, "dispatch")
        finally:
            self.inside = None

    @precondition(_due)
    @rule(i=st.integers(0, 1), past=st.sampled_from((0, 1, 3600)))
    def stalled_past_the_lease(self, i: int, past: int) -> None:
        """Runtime ``i`` dispatches but stalls before recording its first outcome, past its
        lease; the other runtime claims the run again and works on. The stalled runtime's
        late outcome must be refused (the kernel's compare-and-set on the attempt)."""
        self.stall = (i, past)
        try:
            self.step(i, "dispatch")
        finally:
            self.stall = None

    @precondition(_due)
    @rule(i=st.integers(0, 1))
    def dies_after_claiming(self, i: int) -> None:
        """Runtime ``i`` claims a run and dies before handing it over; it restarts under a
        new identity. The run waits for the lease to end, then any runtime may launch it."""
        runtime = self.runtime[i]
        claimed = runtime.kernel.claim_launches(runtime.runtime_id, self.now, lease=LEASE, limit=1)
        note(f"{runtime.runtime_id} claims {[r.run_id[:8] for r in claimed]} and dies")
        self.restarts += 1
        self.runtime[i] = self._runtime(i)

    @precondition(lambda self: any(r.status == "LAUNCHED" for r in self.model.runs.values()))
    @rule(data=st.data(), succeeded=st.booleans())
    def finish(self, data: st.DataObject, succeeded: bool) -> None:
        """A launched run finishes at the launcher; a completion check will notice."""
        launched = sorted(
            rid
            for rid, r in self.model.runs.items()
            if r.status == "LAUNCHED" and rid not in self.launcher.finished
        )
        if not launched:
            return
        rid = data.draw(st.sampled_from(launched), label="run")
        self.launcher.finished[rid] = RunState("succeeded" if succeeded else "failed")
        note(f"{rid[:8]} finishes")

    @rule(i=st.integers(0, 1))
    def drain_completions(self, i: int) -> None:
        """Completion checks by one runtime, as many as it takes to page through every
        launched run once more: each finished run is then completed."""
        launched = sum(r.status == "LAUNCHED" for r in self.model.runs.values())
        for _ in range(math.ceil(launched / PAGE) + 1):
            self.step(i, "check")
        for rid, state in self.launcher.finished.items():
            status = self.kernel.run(rid).status
            assert status == state.status.upper(), (
                f"{rid[:8]} finished {state.status} at the launcher but is {status} after "
                f"{math.ceil(launched / PAGE) + 1} completion checks of {launched} runs"
            )

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def no_problems(self) -> None:
        assert not self.problems, self.problems[0]

    @invariant()
    def each_attempt_handed_over_once(self) -> None:
        seen: dict[tuple[str, int], str] = {}
        for h in self.launcher.handed:
            slot = (h.run_id, h.attempt)
            assert h.attempt <= MAX_ATTEMPTS, f"{h.run_id[:8]} handed over beyond max_attempts"
            if slot in seen and slot not in self.expired:
                raise AssertionError(
                    f"{h.run_id[:8]} attempt {h.attempt} handed over twice: by {seen[slot]} "
                    f"and by {h.runtime}, though no claim on it expired"
                )
            seen[slot] = h.runtime

    @invariant()
    def recorded_attempts_were_handed_over_after_their_backoff(self) -> None:
        for envelope in self.kernel.log(after=self.seq):
            self.seq = envelope.seq
            e = envelope.event
            if isinstance(e, RunLaunched | RunLaunchFailed):
                failed = isinstance(e, RunLaunchFailed)
                self.recorded.append((e.run_id, e.attempt, envelope.at, failed))
        handed = {(h.run_id, h.attempt) for h in self.launcher.handed}
        failures = {(rid, n): at for rid, n, at, failed in self.recorded if failed}
        for rid, n, _, _ in self.recorded:
            assert (rid, n) in handed, f"{rid[:8]} attempt {n} recorded, never handed over"
        for h in self.launcher.handed:
            if h.attempt > 1:
                failed_at = failures.get((h.run_id, h.attempt - 1))
                assert failed_at is not None, f"{h.run_id[:8]} attempt {h.attempt} too early"
                due = failed_at + min(LAUNCH_CAP, LAUNCH_BASE * 2 ** (h.attempt - 2))
                assert h.at >= due, (
                    f"{h.run_id[:8]} attempt {h.attempt} handed over at {h.at}, before its "
                    f"backoff ended at {due}"
                )

    @invariant()
    def kernel_matches_model(self) -> None:
        differences = diff(
            observe_kernel(self.kernel, self.now), observe_model(self.model, self.now)
        )
        assert not differences, "\n".join(differences)


class LmdbRuntimeMachine(RuntimeMachine):
    """The same machine on the LMDB store."""

    def make_store(self) -> Store:
        return LmdbStore(self.tempdir(), map_size=4 * 1024 * 1024)
