"""Plugin fault isolation: a plugin that raises, hangs past its timeout or returns garbage is
recorded as the failure of its sensor, tick or launch, and everything else in the same cycle
carries on."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from arcoflow.kernel import (
    Kernel,
    PollContext,
    PollResult,
    RunRequest,
    RunTemplate,
    SensorDefinition,
)
from arcoflow.plugins.memory_launcher import MemoryLauncher
from arcoflow.sdk import (
    Failed,
    FailureKind,
    Launch,
    Launched,
    Plugins,
    Runtime,
    TickResult,
    hookimpl,
)
from arcoflow.sdk.plugins import MAX_HUNG_CALLS
from arcoflow.sdk.testing import push, temporary_kernel

from .helpers import T0, Counter, Garbage, Hanging, Raising, hourly, poll_sensor

HOUR = 3600


@pytest.fixture
def kernel() -> Iterator[Kernel]:
    with temporary_kernel() as k:
        yield k


@pytest.fixture
def hanging() -> Iterator[Hanging]:
    plugin = Hanging()
    yield plugin
    plugin.release.set()  # let abandoned threads end


def _plugins(hanging: Hanging, **extra: Any) -> tuple[Plugins, MemoryLauncher]:
    plugins = Plugins()
    memory = MemoryLauncher()
    plugins.register(memory, "memory")
    plugins.register(Counter(), "good")
    plugins.register(Raising(), "raises")
    plugins.register(hanging, "hangs")
    plugins.register(Garbage(), "garbage")
    for name, plugin in extra.items():
        plugins.register(plugin, name)
    return plugins, memory


def test_connectors_that_raise_hang_or_return_garbage_fail_alone(
    kernel: Kernel, hanging: Hanging
) -> None:
    plugins, memory = _plugins(hanging)
    for name in ("good", "raises", "hangs", "garbage", "absent"):
        poll_sensor(kernel, name, connector=name, timeout=1)
    started = time.monotonic()
    report = Runtime(kernel, plugins).cycle(T0)
    assert time.monotonic() - started < 10  # the hang cost its timeout, not the cycle
    status = {e.evaluation.sensor_id: e.evaluation for e in report.evaluations}
    assert status["good"].status == "REQUESTED"
    assert status["raises"].reason == "RuntimeError: connector exploded"
    assert status["hangs"].reason == (
        "connector 'hangs' did not answer within 1s (the call was abandoned)"
    )
    assert status["garbage"].reason == "connector 'garbage' returned str, not PollResult"
    assert status["absent"].reason == "no connector plugin 'absent' installed"
    assert {e.status for n, e in status.items() if n != "good"} == {"FAILED"}
    assert {f.subject for f in report.failures} == {"raises", "hangs", "garbage", "absent"}
    # The healthy sensor's run was launched in the same cycle.
    assert [r.status for r in report.launches] == ["LAUNCHED"]
    assert memory.targets() == ["good.target"]
    # Failed sensors keep their cursor and back off.
    for name in ("raises", "hangs", "garbage"):
        row = kernel.sensor(name)
        assert row.cursor is None and row.failures == 1 and (row.next_eval_at or 0) > T0 + 1
    assert kernel.sensor("good").cursor is not None
    assert kernel.verify().ok


def test_a_hung_connector_is_not_called_again_until_it_returns(
    kernel: Kernel, hanging: Hanging
) -> None:
    plugins, _ = _plugins(hanging)
    poll_sensor(kernel, "hangs", connector="hangs", timeout=1)
    runtime = Runtime(kernel, plugins)
    first = runtime.poll_sensor("hangs", T0)
    assert first is not None and first.evaluation.status == "FAILED"
    second = runtime.poll_sensor("hangs", T0 + 600)
    assert second is not None and "still running" in (second.evaluation.reason or "")
    assert hanging.calls == 1 and plugins.abandoned == 1
    hanging.release.set()  # the abandoned call returns; its late answer is dropped
    deadline = time.monotonic() + 5
    while True:
        third = runtime.poll_sensor("hangs", T0 + 1200)
        assert third is not None and time.monotonic() < deadline
        if third.evaluation.status == "REQUESTED":
            break
        time.sleep(0.05)
    assert third.evaluation.run_keys == ("sensor:hangs:late",)
    assert hanging.calls == 2


def _unchecked(**fields: Any) -> PollResult:
    """A PollResult built around its validators, as a careless plugin might."""
    result = PollResult()
    for name, value in fields.items():
        object.__setattr__(result, name, value)
    return result


def _changed_after_building(**config: Any) -> RunRequest:
    request = RunRequest("k")
    request.config.update(config)  # the dict is mutable: its validator ran on the empty one
    return request


@pytest.mark.parametrize(
    "value",
    [
        None,
        42,
        _unchecked(run_requests=["not a request"]),
        _unchecked(cursor_version="1"),
        _unchecked(run_requests=[_changed_after_building(n=2**70)]),
    ],
    ids=["none", "int", "bad-requests", "bad-version", "int-over-64-bits"],
)
def test_malformed_poll_results_are_garbage(kernel: Kernel, value: object) -> None:
    plugins = Plugins()
    plugins.register(Garbage(value), "garbage")
    poll_sensor(kernel, "s", connector="garbage")
    row = Runtime(kernel, plugins).poll_sensor("s", T0)
    assert row is not None and row.evaluation.status == "FAILED"
    assert row.evaluation.reason is not None and "connector 'garbage'" in row.evaluation.reason
    assert kernel.runs() == [] and kernel.verify().ok


def test_evaluators_that_raise_hang_or_return_garbage_fail_their_tick_only(
    kernel: Kernel, hanging: Hanging
) -> None:
    plugins, memory = _plugins(hanging)
    for name in ("good", "raises", "hangs", "garbage", "absent"):
        hourly(kernel, name, evaluator=name)
    hourly(kernel, "plain")
    report = Runtime(kernel, plugins, evaluator_timeout=0.3).cycle(T0 + HOUR)
    ticks = {t.schedule_id: t for t in report.ticks}
    assert ticks["good"].status == ticks["plain"].status == "TRIGGERED"
    assert ticks["raises"].reason == "RuntimeError: evaluator exploded"
    assert ticks["hangs"].reason == (
        "PluginTimeout: evaluator 'hangs' did not answer within 0.3s (the call was abandoned)"
    )
    assert ticks["garbage"].reason == (
        "PluginGarbage: evaluator 'garbage' returned str, not TickResult"
    )
    assert ticks["absent"].reason == "PluginMissing: no evaluator plugin 'absent' installed"
    failed = {"raises", "hangs", "garbage", "absent"}
    assert {ticks[n].status for n in failed} == {"FAILED"}
    assert all(ticks[n].run_keys == () for n in failed)
    assert sorted(memory.targets()) == ["good.target", "plain.target"]
    good_run = kernel.run_by_key(ticks["good"].run_keys[0])
    assert memory.launched[good_run.run_id].config == {"evaluated": True}
    assert kernel.verify().ok


def test_an_evaluator_returning_a_malformed_tick_result_is_garbage(kernel: Kernel) -> None:
    plugins = Plugins()
    result = TickResult(run_requests=[])
    object.__setattr__(result, "run_requests", [{"run_key": "x"}])  # around its validators
    plugins.register(Garbage(result), "garbage")
    hourly(kernel, "s", evaluator="garbage")
    [tick] = Runtime(kernel, plugins).cycle(T0 + HOUR).ticks
    assert tick.status == "FAILED" and "RunRequest" in (tick.reason or "")


def test_launchers_that_raise_hang_or_return_garbage_fail_their_launch_only(
    kernel: Kernel, hanging: Hanging
) -> None:
    plugins, _ = _plugins(hanging)
    runs = {
        name: kernel.request_run(name, RunTemplate("t", launcher=name), now=T0)
        for name in ("memory", "raises", "hangs", "garbage", "absent")
    }
    config = {"hangs": {"launch_timeout": 1}}
    report = Runtime(kernel, plugins, config).cycle(T0)
    after = {name: kernel.run(run.run_id) for name, run in runs.items()}
    assert after["memory"].status == "LAUNCHED" and after["memory"].external_id == "memory-1"
    assert after["raises"].last_error == "RuntimeError: launcher exploded"
    assert after["hangs"].last_error == (
        "launcher 'hangs' did not answer within 1s (the call was abandoned)"
    )
    assert after["garbage"].last_error == "launcher 'garbage' returned str, not Launched"
    assert after["absent"].last_error == "no launcher plugin 'absent' installed"
    for name in ("raises", "hangs", "garbage", "absent"):
        assert after[name].status == "REQUESTED" and after[name].attempts == 1
        assert (after[name].next_attempt_at or 0) > T0
    assert len(report.launches) == 5 and len(report.failures) == 4
    assert kernel.verify().ok


def test_push_mappers_that_raise_hang_or_return_garbage_fail_their_message_only(
    kernel: Kernel, hanging: Hanging
) -> None:
    plugins, _ = _plugins(hanging)
    for name in ("good", "raises", "hangs", "garbage"):
        kernel.define_sensor(
            SensorDefinition(name, "push", RunTemplate("t"), connector=name, timeout=1), now=T0
        )
    kernel.define_sensor(SensorDefinition("plain", "push", RunTemplate("t")), now=T0)
    results = {
        name: push(kernel, plugins, name, "m1", {"x": 1}, now=T0)
        for name in ("good", "raises", "hangs", "garbage", "plain")
    }
    assert results["good"].evaluation.evaluation.run_keys == (
        "sensor:good:m1-0",
        "sensor:good:m1-1",
    )
    assert results["plain"].evaluation.evaluation.run_keys == ("sensor:plain:m1",)
    reasons = {n: r.evaluation.evaluation.reason for n, r in results.items()}
    assert reasons["raises"] == "RuntimeError: push mapper exploded"
    assert reasons["hangs"] == (
        "PluginTimeout: connector 'hangs' did not answer within 1s (the call was abandoned)"
    )
    assert reasons["garbage"] == (
        "PluginGarbage: connector 'garbage' (push) returned str, not a list of RunRequest"
    )
    # A re-delivery answers with the original evaluation; the plugin is not asked again.
    again = push(kernel, plugins, "raises", "m1", {"x": 1}, now=T0 + 5)
    assert again.duplicate and again.evaluation == results["raises"].evaluation
    assert kernel.verify().ok


class Exits:
    """Plugins that try to end the process."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    @hookimpl
    def arcoflow_poll(self, context: object) -> PollResult:
        raise self.exc

    @hookimpl
    def arcoflow_launch(self, launch: object) -> Launched:
        raise self.exc


@pytest.mark.parametrize("exc", [SystemExit(3), KeyboardInterrupt()], ids=["exit", "interrupt"])
def test_a_plugin_cannot_end_the_daemon(kernel: Kernel, exc: BaseException) -> None:
    plugins = Plugins()
    plugins.register(Exits(exc), "exits")
    plugins.register(Counter(), "good")
    poll_sensor(kernel, "a-exits", connector="exits", launcher="exits")
    poll_sensor(kernel, "b-good", connector="good", launcher="exits")
    kernel.request_run("r", RunTemplate("t", launcher="exits"), now=T0)
    report = Runtime(kernel, plugins).cycle(T0)
    status = {e.evaluation.sensor_id: e.evaluation for e in report.evaluations}
    assert status["a-exits"].reason == f"connector 'exits' raised {type(exc).__name__}"
    assert status["b-good"].status == "REQUESTED"
    assert {r.last_error for r in report.launches} == {
        f"launcher 'exits' raised {type(exc).__name__}"
    }


def test_push_mapper_for_a_sensor_without_connector_is_none() -> None:
    plugins = Plugins()
    sensor = SensorDefinition("p", "push", RunTemplate("t"))
    assert plugins.push_mapper(sensor) is None
    mapper = plugins.push_mapper(SensorDefinition("p", "push", RunTemplate("t"), connector="c"))
    assert mapper is not None


def test_a_good_poll_result_passes_unchanged(kernel: Kernel) -> None:
    class Exact:
        @hookimpl
        def arcoflow_poll(self, context: object) -> PollResult:
            return PollResult(
                [RunRequest("k", tags={"a": "b"})], cursor=b"\x00\xff", cursor_version=7
            )

    plugins = Plugins()
    plugins.register(Exact(), "exact")
    poll_sensor(kernel, "s", connector="exact")
    row = Runtime(kernel, plugins).poll_sensor("s", T0)
    assert row is not None and row.evaluation.status == "REQUESTED"
    assert kernel.sensor("s").cursor is not None
    cursor = kernel.sensor("s").cursor
    assert cursor is not None and (cursor.native(), cursor.version) == (b"\x00\xff", 7)


def test_a_plugin_with_several_hung_calls_is_not_called_until_one_returns(
    hanging: Hanging,
) -> None:
    plugins = Plugins()
    plugins.register(hanging, "hangs")

    def launch(n: int) -> object:
        return plugins.launch("hangs", Launch(f"r{n}", f"k{n}", "t", {}, {}, "m", 1, {}), 0.05)

    reasons = [launch(n) for n in range(MAX_HUNG_CALLS)]
    assert all("did not answer within 0.05s" in str(r) for r in reasons)
    assert all(isinstance(r, Failed) and r.kind is FailureKind.TIMED_OUT for r in reasons)
    started = time.monotonic()
    refused = launch(99)
    assert time.monotonic() - started < 0.05  # refused at once: no new thread, no wait
    assert refused == Failed(
        f"launcher 'hangs' has {MAX_HUNG_CALLS} calls that timed out and are still running; "
        "not calling it again until one returns",
        FailureKind.BUSY,
    )
    assert hanging.calls == MAX_HUNG_CALLS and plugins.abandoned == MAX_HUNG_CALLS
    hanging.release.set()
    deadline = time.monotonic() + 5
    while (answer := launch(100)) != Launched("late"):
        assert time.monotonic() < deadline, answer
        time.sleep(0.01)


def test_every_isolated_call_answers_a_typed_failure(hanging: Hanging) -> None:
    """Issue 12: a plugin call answers its value or a frozen ``Failed`` whose kind says what
    happened (never a bare string), for polls, launches and run states alike."""

    class BadState:
        @hookimpl
        def arcoflow_launch(self, launch: Launch) -> Launched:
            return Launched("x")

        @hookimpl
        def arcoflow_run_state(self, launch: Launch, external_id: str | None) -> Any:
            return "done"

    plugins, _ = _plugins(hanging, badstate=BadState())
    context = PollContext(
        SensorDefinition("s", "poll", RunTemplate("t"), connector="x"),
        None,
        None,
        0,
        datetime.fromtimestamp(T0, UTC),
    )

    def kind(answer: object) -> FailureKind | None:
        return answer.kind if isinstance(answer, Failed) else None

    assert isinstance(plugins.poll("good", context, 5), PollResult)
    assert kind(plugins.poll("raises", context, 5)) is FailureKind.RAISED
    assert kind(plugins.poll("garbage", context, 5)) is FailureKind.WRONG_TYPE
    assert kind(plugins.poll("absent", context, 5)) is FailureKind.RAISED
    assert kind(plugins.poll("hangs", context, 0.05)) is FailureKind.TIMED_OUT
    assert kind(plugins.poll("hangs", context, 0.05)) is FailureKind.BUSY  # same sensor
    launch = Launch("r", "k", "t", {}, {}, "m", 1, {})
    assert kind(plugins.launch("raises", launch, 5)) is FailureKind.RAISED
    assert kind(plugins.launch("garbage", launch, 5)) is FailureKind.WRONG_TYPE
    assert kind(plugins.run_state("badstate", launch, "x", 5)) is FailureKind.WRONG_TYPE
    assert kind(plugins.run_state("garbage", launch, "x", 5)) is FailureKind.RAISED  # no hook
    failed = plugins.poll("garbage", context, 5)
    with pytest.raises(AttributeError):  # frozen: a recorded failure cannot be edited
        failed.reason = "other"  # type: ignore[misc, union-attr]
