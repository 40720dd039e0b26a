"""The daemon: apply a definitions file, then run cycles until told to stop.

``SIGINT`` or ``SIGTERM`` asks the daemon to stop: the cycle in flight finishes — every tick,
evaluation and launch it started is recorded — and :func:`run_daemon` returns 0. A second
signal stops at once (``KeyboardInterrupt``); a write cut short that way is rolled back by the
store, never half-applied. Several daemons may run on one store: idempotency keys and
compare-and-set make their duplicate work harmless.

Plugins are checked before anything runs: a definitions file that names a plugin that is not
installed, or gives one a config its ``arcoflow_check_config`` refuses, is refused whole;
stored sensors whose connector is missing or refuses its config are logged as warnings (they
fail at their polls, the others run). After each cycle the daemon counts it in its
:class:`~arcoflow.sdk.metrics.Metrics` (if given) and records its heartbeat, which
``GET /healthz`` reports: a file next to the store (if given a directory), or a row in a
PostgreSQL store's schema (always: the daemons of a cluster share no directory).

Between cycles the daemon waits ``interval`` seconds; on PostgreSQL a run requested on any
node (a ``NOTIFY`` from the launch outbox) cuts the wait short, so it is launched at once
(:func:`~arcoflow.kernel.store.work.wakeups`).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Final

from arcoflow.kernel import (
    InputError,
    Kernel,
    SourceDefinition,
    StoreError,
    StoreUnavailable,
    load_definitions,
)
from arcoflow.kernel.store import TimedWakeups, Wakeups, daemon_status, wakeups

from .heartbeat import beat, write_heartbeat
from .plugins import Plugins
from .runtime import Listener, Runtime
from .sources import Source, make_sources, running_sources

if TYPE_CHECKING:
    from .metrics import Metrics

__all__ = ["run_daemon"]

log = logging.getLogger("arcoflow.daemon")


#: The longest interval between cycles, as for every duration (``parse_duration``).
_MAX_INTERVAL: Final = 366 * 86_400


def run_daemon(
    kernel: Kernel,
    plugins: Plugins,
    definitions_path: str | None,
    interval: float,
    once: bool,
    *,
    duration: float | None = None,
    listener: Listener | None = None,
    clock: Callable[[], int] | None = None,
    stop: threading.Event | None = None,
    metrics: Metrics | None = None,
    heartbeat_dir: str | None = None,
) -> int:
    """Apply ``definitions_path`` (if given), then run a cycle every ``interval`` seconds.

    ``once``: one cycle, then return. ``duration``: stop after that many seconds. ``stop``: an
    event another thread may set to stop the daemon (signals set it too). ``listener`` sees
    each change applied (``("change", Change)``) and everything the cycles do (see
    :data:`~arcoflow.sdk.runtime.Listener`). ``metrics``: counts each cycle.
    ``heartbeat_dir``: the store's directory, where each completed cycle is recorded (a
    PostgreSQL store records them in its schema without being asked).

    Returns the exit code: 0 after a clean stop, 1 if the store failed or, with ``once``, if
    the cycle recorded failures. A definitions file that does not load, or that the installed
    plugins refuse, raises :class:`~arcoflow.kernel.InvalidDefinition` before anything is
    written.
    """
    if not 0 < interval <= _MAX_INTERVAL:  # NaN too; inf would overflow the timed waits
        raise InputError(
            f"interval must be positive, at most {_MAX_INTERVAL} seconds (366 days), got {interval}"
        )
    launchers: dict[str, dict[str, object]] = {}
    sources: list[tuple[SourceDefinition, Source]] = []
    if definitions_path is not None:
        definitions = load_definitions(definitions_path)
        plugins.require_definitions(definitions, definitions_path)
        sources = make_sources(plugins, definitions.sources)  # a bad one is refused up front
        launchers = {name: dict(table) for name, table in definitions.launchers.items()}
        runtime = Runtime(kernel, plugins, launchers, clock=clock, listener=listener)
        for change in kernel.apply(definitions, now=clock() if clock else None):
            log.info(
                "%s %s %s (version %d)",
                change.kind,
                change.id,
                change.action,
                change.definition_version,
            )
            if listener is not None:
                listener("change", change)
    else:
        runtime = Runtime(kernel, plugins, clock=clock, listener=listener)
    _warn_about_stored_sensors(kernel, plugins)
    stop = stop or threading.Event()
    deadline = None if duration is None else time.monotonic() + duration
    cycles = 0
    code = 0
    waker: Wakeups = TimedWakeups() if once else wakeups(kernel.store)
    keeps_status = daemon_status(kernel.store) is not None
    with (
        _stop_on_signals(stop),
        contextlib.closing(waker),
        running_sources(kernel, plugins, [] if once else sources, runtime.runtime_id),
    ):
        while True:
            started = time.monotonic()
            try:
                report = runtime.cycle()
            except StoreUnavailable as exc:
                # The database is restarting, or a connection was cut: the store is fine, and
                # the next cycle tries again (what this one recorded is committed or not at all).
                log.warning("the store is unavailable; trying again next cycle: %s", exc)
                if once:
                    return 1
            except StoreError as exc:
                log.error("the store failed; stopping: %s", exc)
                return 1
            else:
                cycles += 1
                if metrics is not None:
                    metrics.observe(report, time.monotonic() - started)
                if heartbeat_dir is not None:
                    _beat(heartbeat_dir, cycles, interval)
                elif keeps_status:
                    _beat_in_store(kernel, runtime.runtime_id, cycles, interval)
                log.debug("cycle %d: %s", cycles, report.summary())
                if once:
                    code = 1 if report.failures else 0
                    break
            if stop.is_set():
                break
            wait = interval
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    break
            if waker.wait(wait, stop):
                break
    log.info("stopped cleanly after %d cycle(s)", cycles)
    return code


def _warn_about_stored_sensors(kernel: Kernel, plugins: Plugins) -> None:
    """Log each running sensor whose connector is missing or refuses its config: it would
    only fail at every poll, and the operator should hear of it at start."""
    for row in kernel.sensors():
        d = row.definition
        if not row.running or d.connector is None:
            continue
        role = "connector" if d.type == "poll" else "push connector"
        for problem in plugins.check_config(role, d.connector, d.config):
            log.warning("sensor %s: %s", d.id, problem)


def _beat(store_dir: str, cycles: int, interval: float) -> None:
    try:
        write_heartbeat(store_dir, cycles, interval, time.time())
    except OSError as exc:  # health reporting must never stop the daemon
        log.warning("could not write the heartbeat file in %s: %s", store_dir, exc)


def _beat_in_store(kernel: Kernel, daemon: str, cycles: int, interval: float) -> None:
    try:
        beat(kernel.store, daemon, cycles, interval, time.time())
    except StoreError as exc:  # the next cycle will tell whether the store is really gone
        log.warning("could not record the heartbeat in the store: %s", exc)


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM set ``stop`` (the cycle in flight finishes); a second one interrupts.

    Signal handlers can only be installed from the main thread; elsewhere (an embedder's
    worker thread) the caller stops the daemon through ``stop``.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        log.warning(
            "%s: finishing the cycle in flight, then stopping (send again to stop now)",
            signal.Signals(signum).name,
        )
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
