"""The ``memory`` launcher: records launches in memory, for tests, examples and dry runs.

Nothing is started. Each run id is launched once (a repeated hand-over of the same run id
returns the same external id) and stays "running" until :meth:`MemoryLauncher.finish` reports
it, so a test controls completion. It can be told to fail, to exercise retries and giving up:

* in code: ``MemoryLauncher(fail="quota exceeded")`` or ``launcher.fail = ...`` (a reason, or
  ``None`` to succeed), ``fail_times=2`` to fail only the first two attempts;
* in a definitions file: ``[launchers.memory] fail = "quota exceeded"``.

The ``memory`` entry point registers the module-level :data:`launcher`; a test usually
registers its own fresh instance instead::

    plugins = Plugins()
    plugins.register(MemoryLauncher(), "memory")
"""

from __future__ import annotations

import threading
from typing import Any

from arcoflow.sdk import Launch, Launched, LaunchError, RunState, hookimpl

__all__ = ["MemoryLauncher", "launcher"]


class MemoryLauncher:
    """A launcher that only remembers. Thread-safe.

    >>> from arcoflow.sdk import Launch
    >>> m = MemoryLauncher()
    >>> launch = Launch("id-1", "manual:a", "etl", {}, {}, "manual", 1, {})
    >>> m.arcoflow_launch(launch).external_id
    'memory-1'
    >>> m.arcoflow_launch(launch).external_id  # the same run id: the same launch
    'memory-1'
    >>> m.finish("id-1", succeeded=True)
    >>> m.arcoflow_run_state(launch).status
    'succeeded'
    """

    def __init__(self, fail: str | None = None, fail_times: int | None = None) -> None:
        #: A reason to fail launches with, or ``None`` to succeed.
        self.fail = fail
        #: Fail only this many attempts (then succeed); ``None``: as long as ``fail`` is set.
        self.fail_times = fail_times
        #: Every call, in order, including failed and repeated ones.
        self.calls: list[Launch] = []
        #: Run id -> the launch that started it (one entry per run id).
        self.launched: dict[str, Launch] = {}
        self._external: dict[str, str] = {}
        self._finished: dict[str, RunState] = {}
        self._failures = 0
        self._lock = threading.Lock()

    @hookimpl
    def arcoflow_launch(self, launch: Launch) -> Launched:
        with self._lock:
            self.calls.append(launch)
            if launch.run_id in self._external:  # run_id is the idempotency token
                return Launched(self._external[launch.run_id])
            reason = self.fail or _configured_failure(launch.launcher_config)
            if reason is not None and (self.fail_times is None or self._failures < self.fail_times):
                self._failures += 1
                raise LaunchError(reason)
            external = f"memory-{len(self._external) + 1}"
            self._external[launch.run_id] = external
            self.launched[launch.run_id] = launch
            return Launched(external)

    @hookimpl
    def arcoflow_run_state(self, launch: Launch) -> RunState | None:
        with self._lock:
            return self._finished.get(launch.run_id)

    def finish(self, run_id: str, succeeded: bool = True, detail: str | None = None) -> None:
        """Mark a launched run finished; the next cycle's run-state check completes it."""
        with self._lock:
            if run_id not in self._external:
                raise LaunchError(f"run {run_id} was not launched by this memory launcher")
            self._finished[run_id] = RunState("succeeded" if succeeded else "failed", detail)

    def targets(self) -> list[str]:
        """The targets launched, in launch order."""
        with self._lock:
            return [launch.target for launch in self.launched.values()]


def _configured_failure(config: dict[str, Any] | Any) -> str | None:
    reason = config.get("fail") if hasattr(config, "get") else None
    if reason in (None, False):
        return None
    return str(reason) if reason is not True else "configured to fail"


#: The instance the ``memory`` entry point registers.
launcher = MemoryLauncher()
