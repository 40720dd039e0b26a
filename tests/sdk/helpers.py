"""Small plugins for the SDK tests: well-behaved ones and the three kinds of misbehaviour."""

from __future__ import annotations

import threading
from typing import Any

from arcoflow.kernel import Kernel, RunTemplate, ScheduleDefinition, SensorDefinition
from arcoflow.sdk import (
    Launch,
    Launched,
    PollContext,
    PollResult,
    PushMessage,
    RunRequest,
    TickContext,
    TickResult,
    hookimpl,
)

T0 = 1_893_456_000  # 2030-01-01T00:00:00Z


class Counter:
    """A connector, evaluator and push mapper that always works: one run per call."""

    def __init__(self) -> None:
        self.polls = 0
        self.ticks: list[str] = []

    @hookimpl
    def arcoflow_poll(self, context: PollContext) -> PollResult:
        self.polls += 1
        n = int(context.cursor or "0") + 1
        return PollResult([RunRequest(f"n{n}", config={"n": n})], cursor=str(n))

    @hookimpl
    def arcoflow_evaluate_tick(self, context: TickContext) -> TickResult:
        self.ticks.append(context.tick_id)
        return TickResult([RunRequest(config={"evaluated": True})])

    @hookimpl
    def arcoflow_push(self, message: PushMessage) -> list[RunRequest]:
        return [RunRequest(f"{message.message_id}-{i}") for i in range(2)]


class Raising:
    """Every hook raises."""

    @hookimpl
    def arcoflow_poll(self, context: PollContext) -> PollResult:
        raise RuntimeError("connector exploded")

    @hookimpl
    def arcoflow_evaluate_tick(self, context: TickContext) -> TickResult:
        raise RuntimeError("evaluator exploded")

    @hookimpl
    def arcoflow_push(self, message: PushMessage) -> list[RunRequest]:
        raise RuntimeError("push mapper exploded")

    @hookimpl
    def arcoflow_launch(self, launch: Launch) -> Launched:
        raise RuntimeError("launcher exploded")


class Hanging:
    """Every hook blocks until ``release`` is set (or a minute passes)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.calls = 0

    def _hang(self) -> None:
        self.calls += 1
        self.entered.set()
        self.release.wait(60)

    @hookimpl
    def arcoflow_poll(self, context: PollContext) -> PollResult:
        self._hang()
        return PollResult([RunRequest("late")], cursor="late")

    @hookimpl
    def arcoflow_evaluate_tick(self, context: TickContext) -> TickResult:
        self._hang()
        return TickResult()

    @hookimpl
    def arcoflow_push(self, message: PushMessage) -> list[RunRequest]:
        self._hang()
        return []

    @hookimpl
    def arcoflow_launch(self, launch: Launch) -> Launched:
        self._hang()
        return Launched("late")


class Garbage:
    """Every hook returns the wrong kind of value (``value``, by default a string)."""

    def __init__(self, value: Any = "garbage") -> None:
        self.value = value

    @hookimpl
    def arcoflow_poll(self, context: PollContext) -> Any:
        return self.value

    @hookimpl
    def arcoflow_evaluate_tick(self, context: TickContext) -> Any:
        return self.value

    @hookimpl
    def arcoflow_push(self, message: PushMessage) -> Any:
        return self.value

    @hookimpl
    def arcoflow_launch(self, launch: Launch) -> Any:
        return self.value


def poll_sensor(
    kernel: Kernel,
    sensor_id: str,
    connector: str,
    launcher: str | None = "memory",
    timeout: int = 30,
    now: int = T0,
) -> None:
    kernel.define_sensor(
        SensorDefinition(
            sensor_id,
            "poll",
            RunTemplate(f"{sensor_id}.target", launcher=launcher),
            connector=connector,
            minimum_interval=60,
            timeout=timeout,
        ),
        now=now,
    )


def hourly(
    kernel: Kernel,
    schedule_id: str,
    evaluator: str | None = None,
    launcher: str | None = "memory",
    now: int = T0,
) -> None:
    kernel.define_schedule(
        ScheduleDefinition(
            schedule_id,
            "0 * * * *",
            RunTemplate(f"{schedule_id}.target", launcher=launcher),
            evaluator=evaluator,
        ),
        now=now,
    )
