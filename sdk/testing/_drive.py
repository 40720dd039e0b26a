"""Drive one plugin call through the real runtime code path, for tests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from arcoflow.kernel import EvalRow, Ingested, Kernel, RunRow

from ..plugins import Plugins
from ..runtime import CycleReport, Runtime
from ._clock import Clock

__all__ = ["launch_once", "poll_once", "push"]

When = int | Clock | None


def _epoch(now: When) -> int | None:
    return now() if isinstance(now, Clock) else now


def poll_once(kernel: Kernel, plugins: Plugins, sensor_id: str, now: When = None) -> EvalRow | None:
    """Poll ``sensor_id`` once through its connector plugin, as the daemon would (with the
    sensor's timeout and the same isolation), and record it; due or not.

    Returns the evaluation, or ``None`` if another poller recorded this poll first.
    """
    return Runtime(kernel, plugins).poll_sensor(sensor_id, _epoch(now))


def push(
    kernel: Kernel,
    plugins: Plugins,
    sensor_id: str,
    message_id: str,
    payload: Any = None,
    now: When = None,
) -> Ingested:
    """Deliver one message to a push sensor through its connector plugin (if it names one).
    A re-delivery of ``message_id`` returns the original evaluation (``duplicate=True``)."""
    mapper = plugins.push_mapper(kernel.sensor(sensor_id).definition)
    return kernel.ingest(sensor_id, message_id, payload, now=_epoch(now), connector=mapper)


def launch_once(
    kernel: Kernel,
    plugins: Plugins,
    now: When = None,
    launchers_config: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[RunRow]:
    """Hand every due run of the launch outbox to its launcher once, as a daemon cycle would;
    the runs after recording each attempt (``LAUNCHED``, ``REQUESTED`` with a retry time, or
    ``GAVE_UP``)."""
    at = _epoch(now)
    runtime = Runtime(kernel, plugins, launchers_config)
    report = CycleReport(at if at is not None else runtime.clock())
    return runtime.dispatch_launches(at, report)
