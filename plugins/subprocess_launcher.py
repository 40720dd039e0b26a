"""The ``subprocess`` launcher: runs a configured command for each run.

Launcher config, in the definitions file::

    [launchers.subprocess]
    command = ["python3", "-m", "etl.run"]   # a list of arguments, or one string split like a shell
    cwd = "/srv/etl"                         # optional working directory
    env = { ETL_ENV = "prod" }               # optional extra environment variables
    log_dir = "/var/log/arcoflow"            # optional: output to LOG_DIR/<run_id>.log
    state_dir = "/var/lib/arcoflow/runs"     # optional: share run state across daemons

The command gets the run in its environment (on top of the daemon's own):

* ``ARCOFLOW_RUN_ID``, ``ARCOFLOW_RUN_KEY``, ``ARCOFLOW_TARGET``, ``ARCOFLOW_ORIGIN``;
* ``ARCOFLOW_CONFIG`` and ``ARCOFLOW_TAGS``: the run's config and tags as JSON;
* ``ARCOFLOW_ATTEMPT``: the launch attempt, 1 for the first.

The external id recorded for the run is the process id. The command's standard output and
error go to ``log_dir`` if set, else to the daemon's standard *error* (so the daemon's standard
output stays clean for ``run --json``). The process starts in its own session: a Ctrl-C meant
for the daemon does not kill runs. ``arcoflow_run_state`` reports the exit status: 0 is
``succeeded``; anything else is ``failed`` with "exit status N" or "killed by SIGNAME".

Idempotency. Several daemons on one store do not hand the same attempt over twice: each
claims a run in the store before launching it. Only a daemon that dies between its claim and
its record (its lease then ends) lets another daemon hand the run over again. Without
``state_dir``, a run id handed over again to the *same* launcher (the same daemon process)
returns the process already started; but nothing is shared between processes: after such a
lost claim the run may be started twice (the kernel still records one launch), and the exit
status of a run started by a daemon that has since exited is unknown — its run stays
``LAUNCHED`` until reported with ``arcoflow complete RUN_ID succeeded|failed``.

With ``state_dir`` (a directory every daemon of the store can reach on a local file system),
each run id is claimed by creating ``<run_id>.json`` there exclusively, so exactly one process
ever starts it, whichever daemon is asked; and the command runs under a small wrapper
(``python -m arcoflow.plugins.subprocess_launcher``) that writes its exit status to
``<run_id>.exit.json``, so any daemon, including one started later or a ``run --once`` in the
next cron slot, reports how it ended. The external id is then the wrapper's pid.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import IO, Any, Final, NamedTuple

from arcoflow.sdk import (
    LAUNCH_TIMEOUT_KEY,
    MAX_ATTEMPTS_KEY,
    Launch,
    Launched,
    LaunchError,
    RunState,
    hookimpl,
)

__all__ = ["SETTINGS", "SubprocessLauncher", "launcher", "main"]

#: The keys of ``[launchers.subprocess]``: this launcher's own, then the runtime's.
SETTINGS: Final = (
    "command",
    "cwd",
    "env",
    "log_dir",
    "state_dir",
    LAUNCH_TIMEOUT_KEY,
    MAX_ATTEMPTS_KEY,
)

#: Finished runs remembered (for idempotency and their state) before the oldest are forgotten.
KEEP_FINISHED: Final = 10_000


class _Config(NamedTuple):
    command: list[str]
    cwd: str | None
    env: dict[str, str]
    log_dir: str | None
    state_dir: str | None


class _Finished(NamedTuple):
    pid: int
    returncode: int  # Popen's: negative for a signal
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
            if config.state_dir is None:
                proc = self._start(config, launch, config.command)
            else:
                claimed = _claim(config.state_dir, launch.run_id)
                if claimed is not None:  # another process started it (or is starting it)
                    return Launched(str(claimed))
                try:
                    proc = self._start(config, launch, _wrapped(config, launch.run_id))
                except BaseException:
                    os.unlink(_record(config.state_dir, launch.run_id))  # a retry may claim it
                    raise
                _write_json(_record(config.state_dir, launch.run_id), {"pid": proc.pid})
            self._running[launch.run_id] = proc
            return Launched(str(proc.pid))

    def _start(
        self, config: _Config, launch: Launch, command: list[str]
    ) -> subprocess.Popen[bytes]:
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
            return subprocess.Popen(
                command,
                cwd=config.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise LaunchError(
                f"subprocess launcher: cannot start {command[0]!r}: {exc.strerror or exc}"
            ) from None
        finally:
            if not isinstance(output, int):
                output.close()  # the child has its own copy

    @hookimpl
    def arcoflow_check_config(self, role: str, config: Mapping[str, Any]) -> list[str]:
        """The shape of ``[launchers.subprocess]``, at ``apply``: a command, known keys,
        values of the right types. Directories are checked (and ``state_dir`` created) at
        launch, where the command runs."""
        if role != "launcher":
            return []
        problems = [
            f"unknown setting {k!r} (the settings are {', '.join(SETTINGS)})"
            for k in sorted(set(config) - set(SETTINGS))
        ]
        try:
            _parse(config)
        except LaunchError as exc:
            problems.append(str(exc).removeprefix("subprocess launcher: "))
        return problems

    @hookimpl
    def arcoflow_run_state(self, launch: Launch) -> RunState | None:
        state_dir = _state_dir(launch.launcher_config)
        with self._lock:
            finished = self._finished.get(launch.run_id)
            if finished is not None:
                return finished.state
            proc = self._running.get(launch.run_id)
            if proc is None:
                if state_dir is None:
                    return None  # started by another process: its exit status is unknown here
                return _shared_state(state_dir, launch.run_id)
            code = proc.poll()
            if code is None:
                return None
            state = _state(code)
            if state_dir is not None:  # the wrapper's status file has the command's own code
                state = _exit_file_state(state_dir, launch.run_id) or _wrapper_lost(code)
            del self._running[launch.run_id]
            self._finished[launch.run_id] = _Finished(proc.pid, code, state)
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
        """Wait for the process of ``run_id`` to exit; its return code (for tests and tools),
        also when a completion check has already seen it exit."""
        with self._lock:
            proc = self._running.get(run_id)
            finished = self._finished.get(run_id)
        if proc is not None:
            return proc.wait(timeout)
        if finished is not None:
            return finished.returncode
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
    config = _parse(raw)
    if config.cwd is not None and not os.path.isdir(config.cwd):
        raise LaunchError(f"subprocess launcher: cwd {config.cwd!r} is not a directory")
    if config.state_dir is not None:
        try:
            os.makedirs(config.state_dir, exist_ok=True)
        except OSError as exc:
            raise LaunchError(
                f"subprocess launcher: state_dir {config.state_dir!r}: {exc}"
            ) from None
    return config


def _parse(raw: Mapping[str, Any]) -> _Config:
    """The settings in ``raw``, checked for shape only (no file-system access)."""
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
    if cwd is not None and (not isinstance(cwd, str) or not cwd):
        raise LaunchError(f"subprocess launcher: cwd {cwd!r} is not a directory path")
    env = raw.get("env", {})
    if not isinstance(env, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise LaunchError("subprocess launcher: env must map names to string values")
    log_dir = raw.get("log_dir")
    if log_dir is not None and not isinstance(log_dir, str):
        raise LaunchError("subprocess launcher: log_dir must be a directory path")
    return _Config(list(command), cwd, dict(env), log_dir, _state_dir(raw))


def _state_dir(raw: Mapping[str, Any]) -> str | None:
    state_dir = raw.get("state_dir")
    if state_dir is not None and (not isinstance(state_dir, str) or not state_dir):
        raise LaunchError("subprocess launcher: state_dir must be a directory path")
    return os.path.abspath(state_dir) if state_dir is not None else None


# -- shared run state (state_dir) ----------------------------------------------------------------


def _record(state_dir: str, run_id: str) -> str:
    return os.path.join(state_dir, f"{run_id}.json")


def _exit_file(state_dir: str, run_id: str) -> str:
    return os.path.join(state_dir, f"{run_id}.exit.json")


def _claim(state_dir: str, run_id: str) -> int | None:
    """Claim ``run_id`` (``None``: ours to start), or the pid of whoever claimed it first."""
    path = _record(state_dir, run_id)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        return None
    except FileExistsError:
        pass
    deadline = time.monotonic() + 2
    while True:  # the claimant writes its pid right after starting the process
        pid = _read_json(path).get("pid")
        if isinstance(pid, int):
            return pid
        if time.monotonic() > deadline:
            raise LaunchError(
                f"subprocess launcher: run {run_id} was claimed in {path} but its process id "
                "was never written (a daemon died while starting it?); if no process runs it, "
                "delete that file and arcoflow will start it"
            )
        time.sleep(0.02)


def _shared_state(state_dir: str, run_id: str) -> RunState | None:
    """The state of a run another process started: its exit file, or a vanished process."""
    state = _exit_file_state(state_dir, run_id)
    if state is not None:
        return state
    pid = _read_json(_record(state_dir, run_id)).get("pid")
    if not isinstance(pid, int) or _alive(pid):
        return None  # not started here, or still running
    # Gone: its exit file may have landed between the two reads.
    return _exit_file_state(state_dir, run_id) or RunState(
        "failed", f"process {pid} ended without recording an exit status"
    )


def _exit_file_state(state_dir: str, run_id: str) -> RunState | None:
    code = _read_json(_exit_file(state_dir, run_id)).get("returncode")
    return _state(code) if isinstance(code, int) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _read_json(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: str, data: Mapping[str, Any]) -> None:
    """Write atomically: a reader sees the old file or the whole new one."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def _wrapped(config: _Config, run_id: str) -> list[str]:
    assert config.state_dir is not None
    wrapper = [sys.executable, "-m", "arcoflow.plugins.subprocess_launcher"]
    return [*wrapper, "--exit-file", _exit_file(config.state_dir, run_id), "--", *config.command]


def _state(code: int) -> RunState:
    if code == 0:
        return RunState("succeeded")
    if code < 0:
        try:
            return RunState("failed", f"killed by {signal.Signals(-code).name}")
        except ValueError:
            return RunState("failed", f"killed by signal {-code}")
    return RunState("failed", f"exit status {code}")


def _wrapper_lost(code: int) -> RunState:
    how = _state(code).detail or "exit status 0"
    return RunState("failed", f"the launcher wrapper ended ({how}) without an exit status")


def main(argv: Sequence[str] | None = None) -> int:
    """The wrapper: run a command, forward termination signals to it, record its exit status
    (Popen's return code: negative for a signal) in ``--exit-file``, exit like it."""
    parser = argparse.ArgumentParser(prog="python -m arcoflow.plugins.subprocess_launcher")
    parser.add_argument("--exit-file", required=True)
    parser.add_argument("command", nargs="+")
    args = parser.parse_args(argv)
    try:
        child = subprocess.Popen(args.command)
    except OSError as exc:
        print(f"cannot start {args.command[0]!r}: {exc.strerror or exc}", file=sys.stderr)
        _write_json(args.exit_file, {"returncode": 127})
        return 127

    def forward(signum: int, frame: FrameType | None) -> None:
        child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    code = child.wait()
    _write_json(args.exit_file, {"returncode": code})
    return code if code >= 0 else 128 - code


#: The instance the ``subprocess`` entry point registers.
launcher = SubprocessLauncher()

if __name__ == "__main__":
    sys.exit(main())
