"""The typed facade over pluggy: the only way the rest of arcoflow reaches a plugin.

A :class:`Plugins` holds a :class:`pluggy.PluginManager` for the project ``arcoflow`` with the
specs of :mod:`arcoflow.sdk.hookspecs`. Definitions name the plugin that serves them
(``connector = "filesystem"``, ``launcher = "subprocess"``, ``evaluator = "business-days"``),
and each call goes to *that plugin's* implementation only.

Every call is isolated, here and only here (:meth:`Plugins._answer`). A plugin that raises,
hangs past its timeout or returns something that is not the documented type becomes a frozen
:class:`~arcoflow.kernel.Failed` value (its reason and a
:class:`~arcoflow.kernel.FailureKind`), which the kernel records as the failure of that
sensor, tick or launch. Nothing a plugin does can stop a cycle.

Output: plugin code (imports, hook calls, in whichever thread) prints to stderr, never to
stdout, which carries the CLI's ``--json`` document (see :mod:`arcoflow.sdk.stdout`).

Timeouts: the call runs in a daemon worker thread and the caller stops waiting after
``timeout`` seconds. Python cannot kill a thread, so a hung call is *abandoned*, not stopped:
its thread keeps running until the plugin returns (its result is then dropped), and the
process exits without waiting for it. While an abandoned call for the same sensor, tick or run
is still running, a new call for it is refused ("still running") rather than piling up
threads, and a plugin with :data:`MAX_HUNG_CALLS` abandoned calls still running is not called
at all until one returns (so one hung backend cannot stall every cycle for a timeout per
item); :attr:`Plugins.abandoned` counts the calls given up on.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, NamedTuple, TypeVar

import pluggy
from arcoflow.kernel import (
    ArcoflowError,
    Definitions,
    Failed,
    FailureKind,
    InputError,
    InvalidDefinition,
    PollContext,
    PollResult,
    PushMessage,
    RunRequest,
    SensorDefinition,
    SourceDefinition,
    TickContext,
    TickResult,
    describe,
    guarded,
    run_requests,
)

from . import hookspecs
from .sources import Source
from .stdout import plugin_code, routed_stdout
from .types import Launch, Launched, Register, RunState, Subparsers

__all__ = [
    "CHECK_TIMEOUT",
    "DISABLE_ENV",
    "ENTRY_POINT_GROUP",
    "ROLE_HOOKS",
    "PluginBusy",
    "PluginError",
    "PluginGarbage",
    "PluginInfo",
    "PluginLoadError",
    "PluginMissing",
    "PluginProblem",
    "PluginTimeout",
    "Plugins",
]

log = logging.getLogger("arcoflow.plugins")
_T = TypeVar("_T")

#: The entry-point group plugins register under (``[project.entry-points.arcoflow]``).
ENTRY_POINT_GROUP: Final = "arcoflow"
#: Comma-separated entry-point names not to load; ``*`` blocks every entry point.
DISABLE_ENV: Final = "ARCOFLOW_DISABLE_PLUGINS"
#: The hooks of :mod:`arcoflow.sdk.hookspecs`, in lifecycle order.
HOOKS: Final = (
    "arcoflow_poll",
    "arcoflow_push",
    "arcoflow_source",
    "arcoflow_evaluate_tick",
    "arcoflow_launch",
    "arcoflow_run_state",
    "arcoflow_check_config",
    "arcoflow_add_commands",
)
_ROLE: Final = {
    "arcoflow_poll": "connector",
    "arcoflow_push": "connector",
    "arcoflow_source": "source",
    "arcoflow_evaluate_tick": "evaluator",
    "arcoflow_launch": "launcher",
    "arcoflow_run_state": "launcher",
    "arcoflow_check_config": "plugin",
    "arcoflow_add_commands": "command",
}
#: The hook a plugin must implement to serve in each role a definition names.
ROLE_HOOKS: Final = {
    "connector": "arcoflow_poll",
    "push connector": "arcoflow_push",
    "evaluator": "arcoflow_evaluate_tick",
    "launcher": "arcoflow_launch",
    "source": "arcoflow_source",
}
#: Seconds a plugin's config check may take before it counts as a problem.
CHECK_TIMEOUT: Final = 10.0
#: Abandoned calls of one plugin still running before it is not called at all until one returns.
MAX_HUNG_CALLS: Final = 4
_MAX_EXTERNAL_ID: Final = 1024
_MAX_DETAIL: Final = 4096


class PluginError(ArcoflowError):
    """A plugin call did not give a usable answer; the message is the recorded reason."""


class PluginMissing(PluginError):
    """No plugin of that name is installed, or it does not implement the hook."""


class PluginTimeout(PluginError):
    """A plugin did not answer within its timeout; the call was abandoned (not killed)."""


class PluginBusy(PluginError):
    """An earlier, abandoned call for the same sensor, tick or run is still running."""


class PluginGarbage(PluginError):
    """A plugin returned something other than the documented type."""


class PluginLoadError(PluginError):
    """A plugin could not be imported or does not match the hook specifications."""


class PluginInfo(NamedTuple):
    """One registered plugin: its name, the hooks it implements and where it came from."""

    name: str
    hooks: tuple[str, ...]
    source: str


class PluginProblem(NamedTuple):
    """A plugin that was found but could not be registered."""

    name: str
    source: str
    error: str


def describe_error(exc: BaseException) -> str:
    """``TypeName: message``: the reason recorded for a plugin's exception."""
    if isinstance(exc, PluginError):  # already phrased as a reason
        return str(exc).strip() or type(exc).__name__
    return describe(exc)


class Plugins:
    """The installed plugins, and typed, isolated calls to them.

    >>> from arcoflow.sdk import Plugins, hookimpl, Launched
    >>> class Echo:
    ...     @hookimpl
    ...     def arcoflow_launch(self, launch):
    ...         return Launched(external_id=launch.run_id)
    >>> plugins = Plugins()
    >>> plugins.register(Echo(), "echo")
    >>> plugins.names()
    ['echo']
    """

    def __init__(self) -> None:
        self._pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self._pm.add_hookspecs(hookspecs)
        self._sources: dict[str, str] = {}
        self._problems: list[PluginProblem] = []
        self._callers: dict[tuple[str, str], Callable[..., Any]] = {}
        self._busy: set[tuple[str, str]] = set()
        self._hung: dict[str, int] = {}  # plugin name -> abandoned calls still running
        self._lock = threading.Lock()
        #: How many calls were abandoned after their timeout (their threads may still run).
        self.abandoned = 0

    # -- discovery and registration ------------------------------------------------------------

    @classmethod
    def discover(cls, block: Iterable[str] = ()) -> Plugins:
        """Plugins from the ``arcoflow`` entry-point group of every installed distribution.

        Names in ``block`` and in ``$ARCOFLOW_DISABLE_PLUGINS`` (comma-separated; ``*`` for
        all) are skipped. A plugin that fails to import or to validate is left out and listed
        by :meth:`problems`; the others load regardless.
        """
        plugins = cls()
        blocked = {b.strip() for b in block} | {
            b.strip() for b in os.environ.get(DISABLE_ENV, "").split(",")
        }
        blocked.discard("")
        seen: dict[str, str] = {}
        for dist in importlib.metadata.distributions():
            for ep in dist.entry_points:
                if ep.group != ENTRY_POINT_GROUP:
                    continue
                if "*" in blocked or ep.name in blocked:
                    log.debug("plugin %r is blocked", ep.name)
                    continue
                if seen.get(ep.name) == ep.value:
                    continue  # one distribution found twice on sys.path
                seen[ep.name] = ep.value
                source = f"{dist.metadata['Name']} {dist.version} ({ep.value})"
                if plugins._pm.has_plugin(ep.name):
                    plugins._problems.append(
                        PluginProblem(
                            ep.name, source, f"another plugin is already named {ep.name!r}"
                        )
                    )
                    continue
                try:
                    with plugin_code():  # importing a plugin runs its code
                        plugin = ep.load()
                    plugins.register(plugin, ep.name, source)
                except Exception as exc:  # one broken plugin must not stop the others
                    reason = describe_error(exc)
                    log.warning("plugin %r (%s) not loaded: %s", ep.name, source, reason)
                    plugins._problems.append(PluginProblem(ep.name, source, reason))
        return plugins

    def register(self, plugin: object, name: str, source: str | None = None) -> None:
        """Register ``plugin`` (a module, class instance or any object with hook
        implementations) under ``name``, the name definitions use to refer to it.

        Raises :class:`PluginLoadError` if the name is taken or a hook implementation does
        not match its specification (an unknown ``arcoflow_*`` hook name, a wrong argument).
        """
        if not isinstance(name, str) or not name:
            raise PluginLoadError(f"plugin name {name!r} must be a non-empty string")
        if self._pm.has_plugin(name):
            raise PluginLoadError(f"a plugin named {name!r} is already registered")
        try:
            self._pm.register(plugin, name)
        except ValueError as exc:  # the same object under another name
            raise PluginLoadError(f"plugin {name!r}: {exc}") from None
        except pluggy.PluginValidationError as exc:
            raise PluginLoadError(f"plugin {name!r}: {exc}") from None
        try:  # an implementation of a hook that has no spec is a typo: refuse it now
            self._pm.check_pending()
        except pluggy.PluginValidationError as exc:
            self._pm.unregister(name=name)
            raise PluginLoadError(
                f"plugin {name!r}: {exc} (the hooks are {', '.join(HOOKS)})"
            ) from None
        self._sources[name] = source or f"registered in code ({_origin(plugin)})"
        self._callers.clear()

    def unregister(self, name: str) -> None:
        """Remove the plugin registered under ``name`` (no error if there is none)."""
        if self._pm.has_plugin(name):
            self._pm.unregister(name=name)
        self._sources.pop(name, None)
        self._callers.clear()

    def get(self, name: str) -> object | None:
        """The plugin object registered under ``name``, or ``None``."""
        plugin: object | None = self._pm.get_plugin(name)
        return plugin

    def names(self) -> list[str]:
        """Names of the registered plugins, sorted."""
        return sorted(self._sources)

    def implements(self, name: str, hook: str) -> bool:
        """Whether the plugin ``name`` implements ``hook`` (e.g. ``"arcoflow_run_state"``)."""
        return any(i.plugin_name == name for i in getattr(self._pm.hook, hook).get_hookimpls())

    def describe(self) -> list[PluginInfo]:
        """Each registered plugin with the hooks it implements and its source, by name."""
        return [
            PluginInfo(name, tuple(h for h in HOOKS if self.implements(name, h)), source)
            for name, source in sorted(self._sources.items())
        ]

    def problems(self) -> list[PluginProblem]:
        """Plugins found by :meth:`discover` that could not be loaded, with the reason."""
        return list(self._problems)

    # -- checks before use ----------------------------------------------------------------------

    def check_plugin(self, role: str, name: str) -> str | None:
        """Why the plugin ``name`` cannot serve as ``role`` (a key of :data:`ROLE_HOOKS`):
        not installed (naming the installed ones), or not implementing the role's hook;
        ``None`` when it can."""
        hook = ROLE_HOOKS[role]
        if not self._pm.has_plugin(name):
            able = [n for n in self.names() if self.implements(n, hook)]
            installed = ", ".join(able) if able else "none"
            return f"no {role} plugin {name!r} is installed (installed {role}s: {installed})"
        if not self.implements(name, hook):
            return f"plugin {name!r} is not a {role}: it does not implement {hook}"
        return None

    def check_config(self, role: str, name: str, config: Mapping[str, Any]) -> list[str]:
        """The problems with ``config`` for the plugin ``name`` serving as ``role``: that the
        plugin is missing or of another kind, else what its ``arcoflow_check_config`` says (a
        check that raises, hangs or returns garbage is a problem too)."""
        missing = self.check_plugin(role, name)
        if missing is not None:
            return [missing]
        if not self.implements(name, "arcoflow_check_config"):
            return []
        kind = "launcher" if role == "launcher" else "connector"
        try:
            answer = self._call(
                "arcoflow_check_config",
                name,
                CHECK_TIMEOUT,
                f"config {kind} {name}",
                role=kind,
                config=dict(config),
            )
        except Exception as exc:
            return [f"{role} {name!r}: the config check failed: {describe_error(exc)}"]
        if answer is None:
            return []
        if not isinstance(answer, (list, tuple)) or not all(isinstance(p, str) for p in answer):
            return [f"{role} {name!r}: the config check returned {answer!r}, not a list of str"]
        return [f"{role} {name!r}: {p}" for p in answer]

    def check_definitions(self, definitions: Definitions) -> list[str]:
        """Every problem a definitions file has with the installed plugins, before any of it is
        applied: each connector, evaluator, launcher and source plugin it names must be
        installed and of the right kind, and each config must pass its plugin's
        ``arcoflow_check_config``.

        This is the SDK's check, not the kernel's: a kernel embedded without plugins accepts
        any name (a run whose launcher is missing fails at launch instead)."""
        problems: list[str] = []
        for sensor in definitions.sensors:
            if sensor.connector is not None:
                role = "connector" if sensor.type == "poll" else "push connector"
                problems += [
                    f"sensor {sensor.id!r}: {p}"
                    for p in self.check_config(role, sensor.connector, sensor.config)
                ]
        for schedule in definitions.schedules:
            if schedule.evaluator is not None:
                missing = self.check_plugin("evaluator", schedule.evaluator)
                if missing is not None:
                    problems.append(f"schedule {schedule.id!r}: {missing}")
        for source in definitions.sources:
            missing = self.check_plugin("source", source.plugin)
            if missing is not None:
                problems.append(f"source {source.id!r}: {missing}")
                continue
            try:  # the plugin reads its config when it makes the consumer (which connects later)
                self.source(source)
            except ArcoflowError as exc:
                problems.append(str(exc))
        templates = [d.run for d in definitions.schedules] + [d.run for d in definitions.sensors]
        used = {t.launcher for t in templates if t.launcher is not None}
        for name in sorted(used | set(definitions.launchers)):
            problems += self.check_config("launcher", name, definitions.launchers.get(name, {}))
        return problems

    def require_definitions(self, definitions: Definitions, source: str) -> None:
        """Raise :class:`~arcoflow.kernel.InvalidDefinition` listing every problem
        :meth:`check_definitions` finds in ``definitions`` (read from ``source``)."""
        problems = self.check_definitions(definitions)
        if problems:
            raise InvalidDefinition(f"{source}: " + "; ".join(problems))

    # -- isolated calls ------------------------------------------------------------------------

    def _caller(self, hook: str, name: str) -> Callable[..., Any]:
        cached = self._callers.get((hook, name))
        if cached is not None:
            return cached
        role = _ROLE[hook]
        if not self._pm.has_plugin(name):
            raise PluginMissing(f"no {role} plugin {name!r} installed")
        if not self.implements(name, hook):
            raise PluginMissing(f"plugin {name!r} is not a {role}: it does not implement {hook}")
        others = [p for n, p in self._pm.list_name_plugin() if n != name and p is not None]
        caller: Callable[..., Any] = self._pm.subset_hook_caller(hook, others)
        self._callers[(hook, name)] = caller
        return caller

    def _call(
        self,
        hook: str,
        name: str,
        timeout: float | None,
        subject: str,
        **kwargs: Any,
    ) -> object:
        """Call ``name``'s ``hook`` in a worker thread, waiting at most ``timeout`` seconds.

        Raises :class:`PluginError` for arcoflow's own reasons and re-raises what the plugin
        raised (an ``Exception``; a ``BaseException`` such as ``SystemExit`` becomes a
        :class:`PluginError`, so a plugin cannot end the daemon).
        """
        caller = self._caller(hook, name)
        role = _ROLE[hook]
        slot = (hook, subject)
        with self._lock:
            hung = self._hung.get(name, 0)
            if hung >= MAX_HUNG_CALLS:
                raise PluginBusy(
                    f"{role} {name!r} has {hung} calls that timed out and are still running; "
                    "not calling it again until one returns"
                )
            if slot in self._busy:
                what = subject.partition(" ")[0]
                raise PluginBusy(
                    f"{role} {name!r}: an earlier call for this {what} timed out and is still "
                    "running; not calling again until it returns"
                )
            self._busy.add(slot)
        box: dict[str, Any] = {}
        done = threading.Event()

        def work() -> None:
            try:
                with plugin_code():  # its prints go to stderr: stdout carries --json
                    box["value"] = caller(**kwargs)
            except BaseException as exc:  # reported to the caller, never lost in the thread
                box["error"] = exc
            finally:
                with self._lock:  # ``done`` is set under the lock: see the timeout below
                    self._busy.discard(slot)
                    if box.get("abandoned"):
                        self._hung[name] -= 1
                    done.set()

        routed_stdout()  # installed here, not by the worker: sys.stdout is the caller's
        thread = threading.Thread(target=work, name=f"arcoflow {role} {name}", daemon=True)
        thread.start()
        if not done.wait(timeout):
            with self._lock:
                abandon = not done.is_set()  # it may have finished just now: then use it
                if abandon:
                    box["abandoned"] = True
                    self._hung[name] = self._hung.get(name, 0) + 1
                    self.abandoned += 1
            if abandon:
                log.warning("%s %r: call for %s abandoned after %gs", role, name, subject, timeout)
                raise PluginTimeout(
                    f"{role} {name!r} did not answer within {timeout:g}s (the call was abandoned)"
                )
        error = box.get("error")
        if error is not None:
            if isinstance(error, Exception):
                raise error
            raise PluginError(f"{role} {name!r} raised {type(error).__name__}")
        return box.get("value")

    def _answer(
        self,
        hook: str,
        name: str,
        timeout: float,
        subject: str,
        expect: type[_T],
        describe: Callable[[BaseException], str] = describe_error,
        **kwargs: Any,
    ) -> _T | Failed:
        """The one isolated plugin call: ``name``'s ``hook`` in a worker thread for at most
        ``timeout`` seconds. Its answer if it is an ``expect``, else :class:`Failed`
        (``TIMED_OUT``, ``BUSY``, ``RAISED`` or ``WRONG_TYPE``, with the reason history
        records; ``describe`` phrases an exception)."""

        def call() -> object:
            try:
                return self._call(hook, name, timeout, subject, **kwargs)
            except PluginTimeout as exc:
                return Failed(describe(exc), FailureKind.TIMED_OUT)
            except PluginBusy as exc:
                return Failed(describe(exc), FailureKind.BUSY)

        answer = guarded(call, expect, f"{_ROLE[hook]} {name!r}", describe)
        if isinstance(answer, Failed):
            log.debug("%s of %s failed (%s): %s", hook, subject, answer.kind.value, answer)
        return answer

    def poll(self, connector: str, context: PollContext, timeout: float) -> PollResult | Failed:
        """Ask ``connector`` for new data: its :class:`PollResult`, or how the call failed."""
        subject = f"sensor {context.sensor.id!r}"
        # Its fields are the kernel's to check (record_poll), for every caller alike.
        return self._answer(
            "arcoflow_poll", connector, timeout, subject, PollResult, context=context
        )

    def push_mapper(
        self, sensor: SensorDefinition
    ) -> Callable[[PushMessage], Sequence[RunRequest] | Failed | None] | None:
        """The callable the kernel's ``ingest(connector=...)`` takes for ``sensor``, or
        ``None`` when the sensor names no connector (one default run per message).

        The callable answers the run requests, ``None`` (the default run) or :class:`Failed`,
        which the kernel records as the message's ``FAILED`` evaluation.
        """
        connector = sensor.connector
        if connector is None:
            return None
        what = f"connector {connector!r} (push)"

        def mapper(message: PushMessage) -> Sequence[RunRequest] | Failed | None:
            subject = f"message {message.message_id!r} of sensor {sensor.id!r}"
            answer = self._answer(
                "arcoflow_push", connector, sensor.timeout, subject, object, _typed, message=message
            )
            return None if answer is None else run_requests(answer, f"PluginGarbage: {what}")

        return mapper

    def source(self, definition: SourceDefinition) -> Source:
        """The consumer the plugin ``definition.plugin`` makes for ``definition``.

        Raises :class:`PluginMissing`, :class:`InputError` (the plugin refused its config),
        :class:`PluginGarbage` (no ``run`` coroutine) or :class:`PluginError`.
        """
        caller = self._caller("arcoflow_source", definition.plugin)
        what = f"source plugin {definition.plugin!r} (source {definition.id!r})"
        try:
            made: object = caller(source=definition)
        except InputError as exc:
            raise InputError(f"{what}: {exc}") from exc
        except Exception as exc:
            raise PluginError(f"{what}: {describe_error(exc)}") from exc
        if not inspect.iscoroutinefunction(getattr(made, "run", None)):
            raise PluginGarbage(f"{what} returned {type(made).__name__}, not a Source")
        return made  # type: ignore[return-value]

    def evaluator(self, timeout: float) -> Callable[[TickContext], TickResult | Failed]:
        """The ``evaluate=`` callable of ``Kernel.evaluate_schedules``: calls the plugin named
        by each schedule's ``evaluator``; answers :class:`Failed` (recorded as the tick's
        ``FAILED`` reason) when it is missing, hangs or returns garbage."""

        def evaluate(context: TickContext) -> TickResult | Failed:
            name = context.schedule.evaluator
            if name is None:  # the kernel does not ask; a default tick needs no plugin
                return TickResult()
            subject = f"tick {context.tick_id}"
            answer = self._answer(
                "arcoflow_evaluate_tick",
                name,
                timeout,
                subject,
                TickResult,
                _typed,
                context=context,
            )
            if isinstance(answer, Failed) and answer.kind is FailureKind.WRONG_TYPE:
                return Failed(f"PluginGarbage: {answer}", answer.kind)
            return answer

        return evaluate

    def launch(self, launcher: str, launch: Launch, timeout: float) -> Launched | Failed:
        """Hand a run to ``launcher``: its :class:`Launched`, or how the attempt failed."""
        subject = f"run {launch.run_id}"
        answer = self._answer(
            "arcoflow_launch", launcher, timeout, subject, Launched, launch=launch
        )
        if isinstance(answer, Failed):
            return answer
        return _checked_text(answer, f"launcher {launcher!r}: external_id", answer.external_id)

    def run_state(
        self, launcher: str, launch: Launch, external_id: str | None, timeout: float
    ) -> RunState | Failed | None:
        """Ask ``launcher`` whether a launched run finished: :class:`RunState`, ``None``
        (still running or unknown) or how the question failed."""
        subject = f"run {launch.run_id}"
        answer = self._answer(
            "arcoflow_run_state",
            launcher,
            timeout,
            subject,
            object,
            launch=launch,
            external_id=external_id,
        )
        if answer is None or isinstance(answer, Failed):
            return answer
        if not isinstance(answer, RunState):
            return _garbage(f"launcher {launcher!r} returned {type(answer).__name__}, not RunState")
        if answer.status not in ("succeeded", "failed"):
            return _garbage(
                f"launcher {launcher!r}: RunState status {answer.status!r} is not 'succeeded' or "
                "'failed'"
            )
        return _checked_text(answer, f"launcher {launcher!r}: detail", answer.detail, _MAX_DETAIL)

    def add_commands(
        self,
        subparsers: Subparsers,
        register: Register,
    ) -> list[PluginProblem]:
        """Let every plugin add CLI subcommands. A plugin that raises is skipped (and
        returned as a problem); the CLI works without its commands."""
        problems = []
        for name in self.names():
            if not self.implements(name, "arcoflow_add_commands"):
                continue
            caller = self._pm.subset_hook_caller(
                "arcoflow_add_commands",
                [p for n, p in self._pm.list_name_plugin() if n != name and p is not None],
            )
            try:
                with plugin_code():
                    caller(subparsers=subparsers, register=register)
            except Exception as exc:
                reason = describe_error(exc)
                log.warning("plugin %r could not add its commands: %s", name, reason)
                problems.append(PluginProblem(name, self._sources[name], reason))
        return problems


# -- return-value checks (a plugin's "garbage" is recorded, never passed on) -------------------

_A = TypeVar("_A", Launched, RunState)


def _garbage(reason: str) -> Failed:
    return Failed(reason, FailureKind.WRONG_TYPE)


def _checked_text(
    answer: _A, what: str, value: object, limit: int = _MAX_EXTERNAL_ID
) -> _A | Failed:
    """``answer`` unless its text field ``value`` is not a string (or None) within ``limit``."""
    if value is not None and not isinstance(value, str):
        return _garbage(f"{what} must be a string or None, not {type(value).__name__}")
    if value is not None and len(value) > limit:
        return _garbage(f"{what} is {len(value)} characters; the limit is {limit}")
    return answer


#: ``TypeName: message`` even for arcoflow's own reasons: how the reasons of evaluators and
#: push connectors (which the kernel records through its callables) have always read.
_typed: Final = describe


def _origin(plugin: object) -> str:
    module = getattr(plugin, "__name__", None)
    if isinstance(module, str) and type(plugin).__name__ == "module":
        return module
    cls = type(plugin)
    return f"{cls.__module__}.{cls.__qualname__}"
