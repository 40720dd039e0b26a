"""The ``subprocess`` launcher: runs a configured command for each run.

Launcher config, in the definitions file::

    [launchers.subprocess]
    command = ["python3", "-m", "etl.run"]   # a list of arguments, or one string split like a shell
    cwd = "/srv/etl"                         # optional working directory
    env = { ETL_ENV = "prod" }               # optional extra environment variables
    log_dir = "/var/log/arcoflow"            # optional: output to LOG_DIR/<run_id>.log

The command gets the run in its environment (on top of the daemon's own):

* ``ARCOFLOW_RUN_ID``, ``ARCOFLOW_RUN_KEY``, ``ARCOFLOW_TARGET``, ``ARCOFLOW_ORIGIN``;
* ``ARCOFLOW_CONFIG`` and ``ARCOFLOW_TAGS``: the run's config and tags as JSON;
* ``ARCOFLOW_ATTEMPT``: the launch attempt, 1 for the first.

The external id recorded for the run is the process id. The command's standard output and
error go to ``log_dir`` if set, else to the daemon's standard *error* (so the daemon's standard
output stays clean for ``run --json``). The process starts in its own session: a Ctrl-C meant
for the daemon does not kill runs. ``arcoflow_run_state`` reports the exit status: 0 is
``succeeded``; anything else is ``failed`` with "exit status N" or "killed by SIGNAME".

Idempotency and its limit: a run id handed over again to the *same* launcher instance returns
the process already started (no second process). Across processes there is no shared
record: two daemons that dispatch the same run at the same instant may each start it (the
kernel still records one launch), and the exit status of a run started by a daemon that has
since exited is unknown — its run stays ``LAUNCHED`` until reported with
``arcoflow complete RUN_ID succeeded|failed``. Run one daemon per store with this launcher, or
make the command itself idempotent on ``ARCOFLOW_RUN_ID``.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import IO, Any, Final, NamedTuple

from arcoflow.sdk import Launch, Launched, LaunchError, RunState, hookimpl

__all__ = ["SubprocessLauncher", "launcher"]

#: Finished runs remembered (for idempotency and their state) before the oldest are forgotten.
KEEP_FINISHED: Final = 10_000


class _Config(NamedTuple):
    command: list[str]
    cwd: str | None
    env: dict[str, str]
    log_dir: str | None


class _Finished(NamedTuple):
    pid: int
    state: RunState


class SubprocessLauncher:
    """Starts one process per run id and reports how it exited. Thread-safe."""

    def __init__(self) -> None:
        self._running: dict[str, subprocess.Popen[bytes]] = {}
        self._finished: OrderedDict[str, _Finished] = OrderedDict()
        self._lock = threading.Lock()

    @hookimpl
    def arcoflow_launch(self, launch: Launch) -> Launched:
        with self._lock:
            known = self._pid(launch.run_id)
            if known is not None:  # run_id is the idempotency token
                return Launched(str(known))
            config = _config(launch.launcher_config)
            env = {**os.environ, **config.env, **_run_env(launch)}
            output: IO[bytes] | int = 2  # the daemon's stderr
            if config.log_dir is not None:
                try:
                    os.makedirs(config.log_dir, exist_ok=True)
                    output = open(os.path.join(config.log_dir, f"{launch.run_id}.log"), "ab")  # noqa: SIM115
                except OSError as exc:
                    raise LaunchError(
                        f"subprocess launcher: cannot open the log in {config.log_dir!r}: {exc}"
                    ) from None
            try:
                proc = subprocess.Popen(
                    config.command,
                    cwd=config.cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                raise LaunchError(
                    f"subprocess launcher: cannot start {config.command[0]!r}: "
                    f"{exc.strerror or exc}"
                ) from None
            finally:
                if not isinstance(output, int):
                    output.close()  # the child has its own copy
            self._running[launch.run_id] = proc
            return Launched(str(proc.pid))

    @hookimpl
    def arcoflow_run_state(self, launch: Launch) -> RunState | None:
        with self._lock:
            finished = self._finished.get(launch.run_id)
            if finished is not None:
                return finished.state
            proc = self._running.get(launch.run_id)
            if proc is None:
                return None  # started by another process: its exit status is unknown here
            code = proc.poll()
            if code is None:
                return None
            state = RunState("succeeded") if code == 0 else RunState("failed", _describe(code))
            del self._running[launch.run_id]
            self._finished[launch.run_id] = _Finished(proc.pid, state)
            while len(self._finished) > KEEP_FINISHED:
                self._finished.popitem(last=False)
            return state

    def pid(self, run_id: str) -> int | None:
        """The process id started for ``run_id`` by this launcher, if any."""
        with self._lock:
            return self._pid(run_id)

    def _pid(self, run_id: str) -> int | None:
        if run_id in self._running:
            return self._running[run_id].pid
        finished = self._finished.get(run_id)
        return finished.pid if finished is not None else None

    def wait(self, run_id: str, timeout: float | None = None) -> int:
        """Wait for the process of ``run_id`` to exit; its return code (for tests and tools)."""
        with self._lock:
            proc = self._running.get(run_id)
            finished = self._finished.get(run_id)
        if proc is not None:
            return proc.wait(timeout)
        if finished is not None:
            return 0 if finished.state.status == "succeeded" else 1
        raise LaunchError(f"run {run_id} was not started by this launcher")


def _run_env(launch: Launch) -> dict[str, str]:
    return {
        "ARCOFLOW_RUN_ID": launch.run_id,
        "ARCOFLOW_RUN_KEY": launch.run_key,
        "ARCOFLOW_TARGET": launch.target,
        "ARCOFLOW_ORIGIN": launch.origin,
        "ARCOFLOW_ATTEMPT": str(launch.attempt),
        "ARCOFLOW_CONFIG": json.dumps(dict(launch.config), sort_keys=True),
        "ARCOFLOW_TAGS": json.dumps(dict(launch.tags), sort_keys=True),
    }


def _config(raw: Mapping[str, Any]) -> _Config:
    command = raw.get("command")
    if isinstance(command, str):
        command = shlex.split(command)
    if (
        not isinstance(command, list)
        or not command
        or not all(isinstance(a, str) and a for a in command)
    ):
        raise LaunchError(
            'subprocess launcher: set [launchers.subprocess] command = ["program", "arg", ...]'
            " in the definitions file given to `arcoflow run --config`"
        )
    cwd = raw.get("cwd")
    if cwd is not None and (not isinstance(cwd, str) or not os.path.isdir(cwd)):
        raise LaunchError(f"subprocess launcher: cwd {cwd!r} is not a directory")
    env = raw.get("env", {})
    if not isinstance(env, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise LaunchError("subprocess launcher: env must map names to string values")
    log_dir = raw.get("log_dir")
    if log_dir is not None and not isinstance(log_dir, str):
        raise LaunchError("subprocess launcher: log_dir must be a directory path")
    return _Config(list(command), cwd, dict(env), log_dir)


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


#: The instance the ``subprocess`` entry point registers.
launcher = SubprocessLauncher()
