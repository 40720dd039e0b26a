"""The small values launcher plugins receive and return (sensor and evaluator values come from
:mod:`arcoflow.kernel.definitions` and are re-exported by :mod:`arcoflow.sdk`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs
from arcoflow.kernel import ArcoflowError

__all__ = ["ConnectorError", "Launch", "LaunchError", "Launched", "RunState"]


@attrs.frozen
class Launch:
    """A run handed to a launcher. ``run_id`` is the idempotency token: the same run id may be
    handed over more than once (the outbox delivers at least once)."""

    run_id: str
    run_key: str
    target: str
    config: Mapping[str, Any]
    tags: Mapping[str, str]
    origin: str
    attempt: int  # 1 for the first attempt
    launcher_config: Mapping[str, Any]  # the [launchers.NAME] table of the definitions file


@attrs.frozen
class Launched:
    """A successful launch: the launcher's own id for the run (a pid, a job name...)."""

    external_id: str | None = None


@attrs.frozen
class RunState:
    """A finished run, as its launcher saw it."""

    status: Literal["succeeded", "failed"]
    detail: str | None = None


class LaunchError(ArcoflowError):
    """A launch attempt failed; the runtime retries with backoff, then gives up."""


class ConnectorError(ArcoflowError):
    """A connector could not poll (bad config, source unreachable): the evaluation is recorded
    ``FAILED`` with this message and the sensor backs off. Raise it with a message that says
    what to fix."""
