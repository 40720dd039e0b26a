"""The small values launcher plugins receive and return (sensor and evaluator values come from
:mod:`arcoflow.kernel.definitions` and are re-exported by :mod:`arcoflow.sdk`), and the types
of CLI command registration."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol

import attrs
from arcoflow.kernel import ArcoflowError

__all__ = [
    "CommandHandler",
    "ConnectorError",
    "Launch",
    "LaunchError",
    "Launched",
    "Register",
    "RunState",
    "StoreUse",
    "Subparsers",
]

#: A CLI command's handler: the parsed arguments and the context, to the exit code.
CommandHandler = Callable[[argparse.Namespace, Mapping[str, Any]], int]


class Subparsers(Protocol):
    """Where a plugin adds its CLI commands: what ``argparse``'s ``add_subparsers()`` returns,
    as far as a plugin may use it (its class is private to ``argparse``)."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        """A new subcommand's parser (``help=``, ``description=``, ... as ``argparse`` takes)."""
        ...


#: What a command does with the store: nothing, only read it (it must exist), or write it
#: (created on first use); or a function of the parsed arguments that says which.
StoreUse = Literal["none", "read", "write"]


class Register(Protocol):
    """The CLI's ``register(name, handler, store="write")`` (see ``arcoflow_add_commands``)."""

    def __call__(
        self,
        name: str,
        handler: CommandHandler,
        store: StoreUse | Callable[[argparse.Namespace], StoreUse] = "write",
    ) -> None: ...


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
