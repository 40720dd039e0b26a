"""The runtime cycle end to end, its report, logging and listener; the testing helpers and
the pytest fixtures a plugin author gets."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from typing import Any

import pytest
from arcoflow.kernel import InputError, Kernel, RunTemplate, SensorDefinition
from arcoflow.plugins.memory_launcher import MemoryLauncher
from arcoflow.sdk import Plugins, Runtime
from arcoflow.sdk.testing import Clock, launch_once, poll_once, push, temporary_kernel

from .helpers import T0, Counter, hourly, poll_sensor

HOUR = 3600


def _setup(kernel: Kernel) -> tuple[Plugins, MemoryLauncher]:
    plugins = Plugins()
    memory = MemoryLauncher()
    plugins.register(memory, "memory")
    plugins.register(Counter(), "counter")
    hourly(kernel, "plain")
    hourly(kernel, "evaluated", evaluator="counter")
    poll_sensor(kernel, "numbers", connector="counter")
    return plugins, memory


def test_one_cycle_ticks_polls_launches_and_completes() -> None:
    with temporary_kernel() as kernel:
        plugins, memory = _setup(kernel)
        events: list[tuple[str, Any]] = []
        runtime = Runtime(kernel, plugins, listener=lambda k, i: events.append((k, i)))
        report = runtime.cycle(T0 + HOUR)
        assert [t.status for t in report.ticks] == ["TRIGGERED", "TRIGGERED"]
        assert [e.evaluation.run_keys for e in report.evaluations] == [("sensor:numbers:n1",)]
        assert len(report.launches) == 3 and not report.failures and not report.idle
        assert [k for k, _ in events] == ["tick", "tick", "evaluation"] + ["launch"] * 3
        for run_id in memory.launched:
            memory.finish(run_id)
        report = runtime.cycle(T0 + HOUR + 1)
        assert len(report.completions) == 3 and {r.status for r in report.completions} == {
            "SUCCEEDED"
        }
        assert runtime.cycle(T0 + HOUR + 2).idle
        data = json.loads(json.dumps(report.to_json()))
        assert data["now"] == "2030-01-01T01:00:01Z"
        assert [r["status"] for r in data["completions"]] == ["SUCCEEDED"] * 3
        assert report.summary().startswith("0 ticks, 0 evaluations, 0 launches, 3 completions")


def test_evaluate_does_not_launch() -> None:
    with temporary_kernel("memory") as kernel:
        plugins, memory = _setup(kernel)
        report = Runtime(kernel, plugins).evaluate(T0 + HOUR)
        assert len(report.ticks) == 2 and len(report.evaluations) == 1
        assert report.launches == [] and memory.calls == []
        assert len(kernel.due_launches(T0 + HOUR)) == 3


def test_one_info_line_per_tick_evaluation_and_launch(caplog: pytest.LogCaptureFixture) -> None:
    with temporary_kernel("memory") as kernel:
        plugins, _ = _setup(kernel)
        with caplog.at_level(logging.INFO, logger="arcoflow"):
            Runtime(kernel, plugins).cycle(T0 + HOUR)
        lines = [r.getMessage() for r in caplog.records if r.name == "arcoflow.runtime"]
        assert sum(m.startswith("tick ") for m in lines) == 2
        assert sum(m.startswith("evaluation of sensor numbers") for m in lines) == 1
        assert sum(m.startswith("launched run ") for m in lines) == 3
        assert len(lines) == 6
        assert all(r.levelno == logging.INFO for r in caplog.records)


def test_arcoflow_logs_nothing_at_the_default_level(caplog: pytest.LogCaptureFixture) -> None:
    with temporary_kernel("memory") as kernel:
        plugins, _ = _setup(kernel)
        with caplog.at_level(logging.WARNING, logger="arcoflow"):
            Runtime(kernel, plugins).cycle(T0 + HOUR)
        assert caplog.records == []


def test_a_failing_listener_does_not_break_the_cycle(caplog: pytest.LogCaptureFixture) -> None:
    def listener(kind: str, item: object) -> None:
        raise RuntimeError("display broke")

    with temporary_kernel("memory") as kernel:
        plugins, memory = _setup(kernel)
        report = Runtime(kernel, plugins, listener=listener).cycle(T0 + HOUR)
        assert len(report.launches) == 3 and len(memory.launched) == 3
        assert "runtime listener failed" in caplog.text


def test_completion_checks_page_through_many_launched_runs() -> None:
    with temporary_kernel("memory") as kernel:
        plugins = Plugins()
        memory = MemoryLauncher()
        plugins.register(memory, "memory")
        runs = [
            kernel.request_run(f"r{i}", RunTemplate("t", launcher="memory"), now=T0)
            for i in range(7)
        ]
        runtime = Runtime(kernel, plugins, batch=3)
        for i in range(3):  # three cycles of three launches drain the outbox of seven
            runtime.cycle(T0 + i)
        assert len(memory.launched) == 7
        for run in runs:
            memory.finish(run.run_id)
        completed = [len(runtime.cycle(T0 + 10 + i).completions) for i in range(4)]
        assert completed == [3, 3, 1, 0]
        assert {kernel.run(r.run_id).status for r in runs} == {"SUCCEEDED"}


def test_an_operator_completing_a_run_first_is_not_a_problem() -> None:
    with temporary_kernel("memory") as kernel:
        plugins = Plugins()
        memory = MemoryLauncher()
        plugins.register(memory, "memory")
        run = kernel.request_run("r", RunTemplate("t", launcher="memory"), now=T0)
        runtime = Runtime(kernel, plugins)
        runtime.cycle(T0)
        memory.finish(run.run_id, succeeded=True)
        kernel.complete_run(run.run_id, succeeded=True, now=T0 + 1)  # reported by hand first
        assert runtime.cycle(T0 + 2).idle
        assert kernel.run(run.run_id).status == "SUCCEEDED"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"launchers_config": {"x": {"launch_timeout": "soon"}}}, r"\[launchers.x\] launch_t"),
        ({"launchers_config": {"x": {"max_attempts": True}}}, "max_attempts"),
        ({"evaluator_timeout": 0}, "evaluator_timeout"),
        ({"batch": 0}, "batch"),
    ],
)
def test_runtime_settings_are_validated(kwargs: dict[str, Any], match: str) -> None:
    with temporary_kernel("memory") as kernel, pytest.raises(InputError, match=match):
        Runtime(kernel, Plugins(), **kwargs)


def test_the_clock_is_read_when_no_time_is_given() -> None:
    clock = Clock(T0)
    with temporary_kernel("memory") as kernel:
        plugins, _ = _setup(kernel)
        runtime = Runtime(kernel, plugins, clock=clock)
        assert [e.evaluation.sensor_id for e in runtime.cycle().evaluations] == ["numbers"]
        assert runtime.cycle().ticks == []
        clock.advance("1h")
        assert len(runtime.cycle().ticks) == 2


# -- arcoflow.sdk.testing ------------------------------------------------------------------------


def test_clock() -> None:
    clock = Clock("2030-01-01T00:00:00Z")
    assert clock() == clock.now == T0
    assert clock.advance("5m") == T0 + 300 and clock.advance(7) == T0 + 307
    assert clock.set(datetime(2031, 1, 1, tzinfo=UTC)) == 1_924_992_000
    assert clock.iso() == "2031-01-01T00:00:00Z" and repr(clock) == "Clock('2031-01-01T00:00:00Z')"
    assert clock.set(T0) == T0 and clock.datetime() == datetime(2030, 1, 1, tzinfo=UTC)
    for bad in ("yesterday", True, datetime(2030, 1, 1)):
        with pytest.raises(InputError):
            Clock(bad)


def test_temporary_kernel_cleans_up() -> None:
    with temporary_kernel() as kernel:
        path = kernel.store.path  # type: ignore[attr-defined]
        assert os.path.isdir(path)
    assert not os.path.exists(path)
    with pytest.raises(InputError), temporary_kernel("sqlite"):  # type: ignore[arg-type]
        pass


def test_helpers_drive_the_plugins() -> None:
    with temporary_kernel() as kernel:
        plugins, memory = _setup(kernel)
        clock = Clock(T0)
        row = poll_once(kernel, plugins, "numbers", clock)
        assert row is not None and row.evaluation.run_keys == ("sensor:numbers:n1",)
        kernel.define_sensor(
            SensorDefinition("hook", "push", RunTemplate("t"), connector="counter"), now=T0
        )
        first = push(kernel, plugins, "hook", "m", {"a": 1}, clock)
        again = push(kernel, plugins, "hook", "m", {"a": 1}, clock)
        assert first.evaluation.evaluation.run_keys == ("sensor:hook:m-0", "sensor:hook:m-1")
        assert again.duplicate and not first.duplicate
        launched = launch_once(kernel, plugins, clock)
        assert [r.status for r in launched] == ["LAUNCHED"]  # the push runs have no launcher
        assert memory.targets() == ["numbers.target"]


def test_the_pytest_fixtures(
    arcoflow_kernel: Kernel, arcoflow_clock: Clock, arcoflow_plugins: Plugins
) -> None:
    assert arcoflow_plugins.names() == []
    assert arcoflow_clock() == T0
    assert arcoflow_kernel.schedules() == [] and arcoflow_kernel.verify().ok
    arcoflow_plugins.register(MemoryLauncher(), "memory")
    arcoflow_kernel.request_run("k", RunTemplate("t", launcher="memory"), now=arcoflow_clock())
    assert [r.status for r in launch_once(arcoflow_kernel, arcoflow_plugins, arcoflow_clock)] == [
        "LAUNCHED"
    ]
