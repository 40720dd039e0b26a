"""Every hook a plugin can implement, grouped by lifecycle phase.

A plugin is a module or object registered under a *name* (its entry-point name in the
``arcoflow`` group, or the name an embedder passes to ``Plugins.register``). Definitions refer
to plugins by that name (``connector = "filesystem"``, ``launcher = "subprocess"``,
``evaluator = "business-days"``), and the runtime calls *only that plugin's* implementation of
the hook, so a plugin never has to check whether a call is meant for it.

Implement hooks with :data:`arcoflow.sdk.hookimpl`. Every hook is called with keyword
arguments; an implementation may accept any subset of them (pluggy's rule).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy
from arcoflow.kernel import (
    PollContext,
    PollResult,
    PushMessage,
    RunRequest,
    SourceDefinition,
    TickContext,
    TickResult,
)

from .types import Launch, Launched, Register, RunState, Subparsers

if TYPE_CHECKING:
    from .sources import Source

hookspec = pluggy.HookspecMarker("arcoflow")
#: Marks a plugin's function or method as the implementation of the hook of the same name.
hookimpl = pluggy.HookimplMarker("arcoflow")

# -- sensors -------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def arcoflow_poll(context: PollContext) -> PollResult | None:
    """Poll for new data: called for each due poll sensor whose ``connector`` is this plugin.

    Receives the sensor definition, the current cursor (``None`` the first time) and the time.
    Returns :class:`PollResult`: run requests and the next cursor (``None`` keeps the current
    one), or a ``skip_reason``. Raising, hanging past the sensor's ``timeout`` or returning
    anything else records a ``FAILED`` evaluation and backs the sensor off; the cursor stays.
    """


@hookspec(firstresult=True)
def arcoflow_push(message: PushMessage) -> Sequence[RunRequest] | None:
    """Map one pushed message to run requests (push sensors whose ``connector`` is this plugin).

    Return ``None`` for the default (one run keyed by the message id), or a list (possibly
    empty: the message is recorded with no run). Never called twice for one message id.
    """


@hookspec(firstresult=True)
def arcoflow_source(source: SourceDefinition) -> Source | None:
    """Make the consumer for a ``[[source]]`` whose ``plugin`` is this plugin.

    Receives the :class:`SourceDefinition` (``id``, ``sensor``, ``batch_size`` and the
    plugin's own ``config``); raise :class:`InputError` for a config it cannot use (the daemon
    refuses to start). Returns a :class:`~arcoflow.sdk.sources.Source`: its ``run(sink)``
    coroutine consumes until cancelled and hands each message to ``sink.put``; the daemon
    ingests them in batches, acks each only after its batch committed, rejects what the kernel
    refuses, and restarts a source that raises with capped backoff. Called once per source at
    daemon start.
    """


# -- schedules -----------------------------------------------------------------------------------


@hookspec(firstresult=True)
def arcoflow_evaluate_tick(context: TickContext) -> TickResult | None:
    """Decide what a due tick does (schedules whose ``evaluator`` is this plugin).

    Return :class:`TickResult`: ``run_requests`` (``None``: the schedule's single default
    run) or a ``skip_reason``. Raising records the tick ``FAILED``; it is retried under the same
    tick id up to the schedule's ``max_tick_retries``.
    """


# -- runs ----------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def arcoflow_launch(launch: Launch) -> Launched | None:
    """Start a run (runs whose template names this plugin as ``launcher``).

    Called at least once per run: use ``launch.run_id`` as the idempotency token, so a second
    call for the same run id does not start a second run. Return :class:`Launched` with an
    external id; raise :class:`LaunchError` (or anything) for a failed attempt, which is retried
    with backoff and finally given up.
    """


@hookspec(firstresult=True)
def arcoflow_run_state(launch: Launch, external_id: str | None) -> RunState | None:
    """Report whether a launched run has finished: :class:`RunState` or ``None`` (still
    running, or unknown). Called each cycle for this launcher's ``LAUNCHED`` runs."""


# -- definitions --------------------------------------------------------------------------------


@hookspec(firstresult=True)
def arcoflow_check_config(role: str, config: Mapping[str, Any]) -> Sequence[str] | None:
    """Check the config a definition gives this plugin, before anything runs with it.

    Called at ``arcoflow apply`` and when the daemon starts, once per use: ``role`` is
    ``"connector"`` with a sensor's ``config`` table, or ``"launcher"`` with the plugin's
    ``[launchers.NAME]`` table. Return the problems found, one sentence each (``None`` or an
    empty list: the config is fine); any problem refuses the whole file, with nothing
    written. Check the *shape* (keys, types, values); leave what the environment may still
    change (a directory created later) to the first poll or launch. Optional: a plugin
    without it is checked only for being installed.
    """


# -- command line --------------------------------------------------------------------------------


@hookspec
def arcoflow_add_commands(
    subparsers: Subparsers,
    register: Register,
) -> None:
    """Add subcommands to the ``arcoflow`` CLI.

    Add a parser with ``subparsers.add_parser(name, help=...)`` and register its handler with
    ``register(name, handler)``, or ``register(name, handler, store="read")`` for a command that
    only reads the store (it then refuses a store that does not exist and creates none;
    ``"none"``: the command needs no store; the default ``"write"`` creates it). Every command
    takes the global options (``--store``, ``--json``, ``-v``, ``--log-format``) before or
    after its name; an option of the same name on the plugin's own parser wins. The handler
    gets the parsed arguments and a context mapping (``kernel``, unless ``store="none"``;
    ``plugins``, ``store_path``, ``json``: whether ``--json`` was given, ``out``: prints one
    JSON document or a table) and returns the exit code. A plugin that raises here
    is skipped; the CLI works without its commands.
    """
