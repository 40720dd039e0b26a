"""The launch outbox: every REQUESTED run reaches its launcher at least once, under its run id;
failed attempts are retried with backoff and finally given up, all visible in history."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from arcoflow.kernel import Kernel, LmdbStore, RunTemplate
from arcoflow.kernel.events import RunLaunched, RunLaunchFailed, RunRequested
from arcoflow.plugins.memory_launcher import MemoryLauncher
from arcoflow.sdk import Plugins, Runtime
from arcoflow.sdk.testing import launch_once, temporary_kernel

from .helpers import T0, hourly

HOUR = 3600

_DIES_BEFORE_DISPATCH = textwrap.dedent(
    """
    import os, sys
    from arcoflow.kernel import Kernel, LmdbStore, RunTemplate, ScheduleDefinition
    from arcoflow.sdk import Plugins, Runtime

    kernel = Kernel(LmdbStore(sys.argv[1]))
    t0 = int(sys.argv[2])
    kernel.define_schedule(
        ScheduleDefinition("hourly", "0 * * * *", RunTemplate("etl", launcher="memory")), now=t0
    )
    report = Runtime(kernel, Plugins()).evaluate(t0 + 3600)  # ticks and run requests recorded
    assert [t.status for t in report.ticks] == ["TRIGGERED"], report
    print(report.ticks[0].run_keys[0])
    sys.stdout.flush()
    os._exit(0)  # the process dies here: no dispatch, no clean close
    """
)


def test_a_run_requested_by_a_process_that_died_is_launched_next_cycle(store_dir: str) -> None:
    died = subprocess.run(
        [sys.executable, "-c", _DIES_BEFORE_DISPATCH, store_dir, str(T0)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    run_key = died.stdout.strip()
    store = LmdbStore(store_dir)
    try:
        kernel = Kernel(store)
        [pending] = kernel.due_launches(T0 + HOUR)
        assert (pending.run_key, pending.status, pending.attempts) == (run_key, "REQUESTED", 0)
        plugins = Plugins()
        memory = MemoryLauncher()
        plugins.register(memory, "memory")
        report = Runtime(kernel, plugins).cycle(T0 + HOUR + 5)
        [launched] = report.launches
        assert launched.run_id == pending.run_id and launched.status == "LAUNCHED"
        assert list(memory.launched) == [pending.run_id]
        assert memory.launched[pending.run_id].run_key == run_key
        assert kernel.due_launches(T0 + 2 * HOUR) == []
        assert kernel.verify().ok
    finally:
        store.close()


def test_a_launch_whose_outcome_was_lost_is_handed_over_again_with_the_same_run_id() -> None:
    with temporary_kernel() as kernel:
        plugins = Plugins()
        memory = MemoryLauncher()
        plugins.register(memory, "memory")
        run = kernel.request_run("k", RunTemplate("etl", launcher="memory"), now=T0)
        # A dispatcher handed the run over, then died before recording the outcome.
        runtime = Runtime(kernel, plugins)
        first = memory.arcoflow_launch(runtime._launch(run, 1))
        assert kernel.run(run.run_id).status == "REQUESTED"
        [row] = launch_once(kernel, plugins, now=T0 + 1)
        assert row.run_id == run.run_id and row.status == "LAUNCHED"
        assert row.external_id == first.external_id  # idempotent on run_id: no second start
        assert [c.run_id for c in memory.calls] == [run.run_id, run.run_id]
        assert len(memory.launched) == 1
        assert launch_once(kernel, plugins, now=T0 + 2) == []  # launched: out of the outbox


def _events(kernel: Kernel, run_id: str) -> list[object]:
    return [
        e.event
        for e in kernel.log()
        if isinstance(e.event, (RunRequested, RunLaunched, RunLaunchFailed))
        and e.event.run_id == run_id
    ]


def test_a_failing_launcher_is_retried_with_backoff_then_given_up() -> None:
    with temporary_kernel() as kernel:
        plugins = Plugins()
        memory = MemoryLauncher(fail="quota exceeded")
        plugins.register(memory, "memory")
        hourly(kernel, "etl")
        runtime = Runtime(kernel, plugins, {"memory": {"max_attempts": 3}})
        report = runtime.cycle(T0 + HOUR)
        [run] = report.launches
        assert (run.status, run.attempts, run.next_attempt_at) == ("REQUESTED", 1, T0 + HOUR + 10)
        assert run.last_error == "LaunchError: quota exceeded"
        assert [f.kind for f in report.failures] == ["launch"]
        assert runtime.cycle(T0 + HOUR + 9).launches == []  # backing off: not due yet
        assert len(memory.calls) == 1
        [run] = runtime.cycle(T0 + HOUR + 10).launches
        assert (run.status, run.attempts, run.next_attempt_at) == ("REQUESTED", 2, T0 + HOUR + 30)
        assert runtime.cycle(T0 + HOUR + 29).launches == []
        [run] = runtime.cycle(T0 + HOUR + 30).launches
        assert (run.status, run.attempts, run.next_attempt_at) == ("GAVE_UP", 3, None)
        assert runtime.cycle(T0 + 2 * HOUR - 1).launches == []  # given up: never again
        assert len(memory.calls) == 3 and memory.launched == {}
        # All of it is in history: the run's row, the runs query and the log.
        assert [r.run_id for r in kernel.runs(status="GAVE_UP")] == [run.run_id]
        assert kernel.run(run.run_id).last_error == "LaunchError: quota exceeded"
        events = _events(kernel, run.run_id)
        assert isinstance(events[0], RunRequested)
        failed = [e for e in events[1:] if isinstance(e, RunLaunchFailed)]
        assert [(e.attempt, e.next_attempt_at) for e in failed] == [
            (1, T0 + HOUR + 10),
            (2, T0 + HOUR + 30),
            (3, None),
        ]
        assert kernel.verify().ok


def test_a_launcher_that_recovers_launches_on_a_later_attempt() -> None:
    with temporary_kernel("memory") as kernel:
        plugins = Plugins()
        memory = MemoryLauncher(fail="flaky", fail_times=2)
        plugins.register(memory, "memory")
        run = kernel.request_run("k", RunTemplate("etl", launcher="memory"), now=T0)
        runtime = Runtime(kernel, plugins)
        for at in (T0, T0 + 10, T0 + 30):
            runtime.cycle(at)
        row = kernel.run(run.run_id)
        assert (row.status, row.attempts, row.external_id) == ("LAUNCHED", 3, "memory-1")
        assert [c.attempt for c in memory.calls] == [1, 2, 3]
        # The launcher later reports completion; the run finishes.
        memory.finish(run.run_id, succeeded=False, detail="exit status 2")
        [done] = runtime.cycle(T0 + 40).completions
        assert (done.status, done.detail) == ("FAILED", "exit status 2")
        assert kernel.launched_runs("memory") == []


def test_launcher_failure_configured_in_the_definitions_table() -> None:
    with temporary_kernel("memory") as kernel:
        plugins = Plugins()
        plugins.register(MemoryLauncher(), "memory")
        kernel.request_run("k", RunTemplate("etl", launcher="memory"), now=T0)
        [row] = launch_once(kernel, plugins, T0, {"memory": {"fail": "disk full"}})
        assert row.status == "REQUESTED" and row.last_error == "LaunchError: disk full"


def test_runs_without_launcher_stay_requested_for_an_external_system() -> None:
    with temporary_kernel("memory") as kernel:
        plugins = Plugins()
        plugins.register(MemoryLauncher(), "memory")
        run = kernel.request_run("k", RunTemplate("etl"), now=T0)
        assert Runtime(kernel, plugins).cycle(T0 + 60).idle
        assert kernel.run(run.run_id).status == "REQUESTED"
