"""Several runtimes on one store: launch claims keep them off each other's runs, a runtime
whose lease ran out cannot record its stale attempt, and completion checks page through every
launched run."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from arcoflow.kernel import InputError, Kernel, RunTemplate
from arcoflow.plugins.memory_launcher import MemoryLauncher
from arcoflow.sdk import Launch, Launched, LaunchError, Plugins, RunState, Runtime, hookimpl
from arcoflow.sdk.testing import Clock, temporary_kernel

from .helpers import T0


class Meanwhile:
    """A launcher that lets something else happen while it launches (``during``, once per run
    and attempt), then fails the attempts listed in ``failing`` and starts the rest."""

    def __init__(self, failing: set[tuple[str, int]] | None = None) -> None:
        self.during: Callable[[Launch], None] | None = None
        self.failing = failing or set()
        self.calls: list[tuple[str, int]] = []
        self.finished: dict[str, RunState] = {}

    @hookimpl
    def arcoflow_launch(self, launch: Launch) -> Launched:
        self.calls.append((launch.run_id, launch.attempt))
        during, self.during = self.during, None
        if during is not None:
            during(launch)
        if (launch.run_id, launch.attempt) in self.failing:
            raise LaunchError("no capacity")
        return Launched(f"x-{launch.run_id[:8]}")

    @hookimpl
    def arcoflow_run_state(self, launch: Launch) -> RunState | None:
        return self.finished.get(launch.run_id)


def _plugins(launcher: Any) -> Plugins:
    plugins = Plugins()
    plugins.register(launcher, "memory")
    return plugins


def test_a_second_runtime_cycling_while_the_first_launches_keeps_off_its_run() -> None:
    with temporary_kernel("memory") as kernel:
        run = kernel.request_run("r", RunTemplate("etl", launcher="memory"), now=T0)
        launcher = Meanwhile()
        # Two daemons: each its own kernel and plugins (the launcher is the same system).
        first = Runtime(kernel, _plugins(launcher))
        second = Runtime(Kernel(kernel.store), _plugins(launcher))
        seen: list[int] = []
        launcher.during = lambda launch: seen.append(len(second.cycle(T0).launches))
        [row] = first.cycle(T0).launches
        assert seen == [0]  # the second runtime found nothing due: the run was claimed
        assert launcher.calls == [(run.run_id, 1)]
        assert (row.status, row.attempts, row.claimed_by) == ("LAUNCHED", 1, first.runtime_id)


def test_a_runtime_whose_lease_ran_out_does_not_record_its_stale_attempt() -> None:
    """The defect of issue 15: the first runtime hands attempt 1 over and stalls past its
    lease; the second claims the run, hands attempt 1 over (at least once: the first may have
    died) and records it failed. The first one's late outcome must not be recorded as attempt
    2: that would skip the retry's backoff. The retry is attempt 2, after the backoff."""
    with temporary_kernel("memory") as kernel:
        run = kernel.request_run("r", RunTemplate("etl", launcher="memory"), now=T0)
        launcher = Meanwhile(failing={(run.run_id, 1)})
        clock = Clock(T0)
        first = Runtime(kernel, _plugins(launcher), clock=clock)
        second = Runtime(Kernel(kernel.store), _plugins(launcher), clock=clock)

        def stall(launch: Launch) -> None:
            clock.advance("1h")  # the first runtime's lease (90s) runs out
            [failed] = second.cycle().launches
            assert (failed.status, failed.attempts) == ("REQUESTED", 1)

        launcher.during = stall
        assert first.cycle().launches == []  # its outcome was refused, nothing recorded
        row = kernel.run(run.run_id)
        assert (row.status, row.attempts, row.next_attempt_at) == ("REQUESTED", 1, T0 + 3610)
        assert launcher.calls == [(run.run_id, 1), (run.run_id, 1)]
        clock.advance(9)
        assert first.cycle().launches == []  # still backing off
        clock.advance(1)
        [launched] = first.cycle().launches
        assert (launched.status, launched.attempts) == ("LAUNCHED", 2)
        assert launcher.calls[-1] == (run.run_id, 2)
        assert kernel.verify().ok


def test_completion_checks_reach_finished_runs_beyond_a_first_page_still_running() -> None:
    """With a page of 2, finished runs on later pages complete within ceil(n / page) + 1
    cycles even though the runs of the first page never finish."""
    with temporary_kernel("memory") as kernel:
        launcher = Meanwhile()
        runtime = Runtime(kernel, _plugins(launcher), batch=2)
        for i in range(5):
            kernel.request_run(f"r{i}", RunTemplate("etl", launcher="memory"), now=T0)
        for i in range(3):
            runtime.cycle(T0 + i)
        launched = kernel.launched_runs("memory")
        assert len(launched) == 5
        later = [r.run_id for r in launched[2:]]  # by run id, as the checks page
        for run_id in later:
            launcher.finished[run_id] = RunState("succeeded")
        for i in range(math.ceil(5 / 2) + 1):
            runtime.cycle(T0 + 10 + i)
        assert [kernel.run(r).status for r in later] == ["SUCCEEDED"] * 3
        assert [r.status for r in launched[:2] if kernel.run(r.run_id).status == "LAUNCHED"]


def test_claims_name_the_runtime_and_last_the_longest_timeout_plus_a_margin() -> None:
    with temporary_kernel("memory") as kernel:
        kernel.request_run("r", RunTemplate("etl", launcher="memory"), now=T0)
        slow = {"memory": {"launch_timeout": "5m"}}
        plugins = _plugins(MemoryLauncher())
        a, b = Runtime(kernel, plugins), Runtime(kernel, plugins, slow)
        assert a.runtime_id != b.runtime_id  # unique per instance, even in one process
        assert (a.launch_lease, b.launch_lease) == (90, 360)
        assert Runtime(kernel, plugins, runtime_id="blue", launch_lease=5).launch_lease == 5
        [row] = Runtime(kernel, plugins, runtime_id="blue").cycle(T0).launches
        assert row.claimed_by == "blue"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"launch_lease": 0}, "launch_lease"),
        ({"launch_lease": 1.5}, "launch_lease"),
        ({"launchers_config": {"x": {"launch_timeout": 0.0}}}, "launch_timeout"),
        ({"launchers_config": {"x": {"launch_timeout": float("nan")}}}, "launch_timeout"),
    ],
)
def test_lease_and_timeout_settings_are_validated(kwargs: dict[str, Any], match: str) -> None:
    with temporary_kernel("memory") as kernel, pytest.raises(InputError, match=match):
        Runtime(kernel, Plugins(), **kwargs)


def test_a_fractional_launch_timeout_is_seconds() -> None:
    with temporary_kernel("memory") as kernel:
        runtime = Runtime(kernel, Plugins(), {"memory": {"launch_timeout": 0.25}})
        assert runtime._launch_settings["memory"] == (0.25, 5)
