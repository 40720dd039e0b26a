"""The subprocess launcher: the run in the child's environment, its pid recorded, its exit
status reported, one process per run id."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from arcoflow.kernel import Kernel, RunRow, RunTemplate
from arcoflow.plugins.subprocess_launcher import SubprocessLauncher
from arcoflow.sdk import Plugins, Runtime
from arcoflow.sdk.testing import temporary_kernel

from .helpers import T0

CHILD = textwrap.dedent(
    """
    import json, os, sys
    names = [n for n in os.environ if n.startswith("ARCOFLOW_") or n == "EXTRA"]
    record = {n: os.environ[n] for n in names} | {"pid": os.getpid(), "cwd": os.getcwd()}
    out = os.path.join(sys.argv[1], os.environ["ARCOFLOW_RUN_ID"] + ".json")
    with open(out, "a") as fh:
        fh.write(json.dumps(record) + "\\n")
    print("hello from", os.environ["ARCOFLOW_TARGET"])
    config = json.loads(os.environ["ARCOFLOW_CONFIG"])
    if config.get("signal"):
        os.kill(os.getpid(), config["signal"])
    sys.exit(config.get("exit", 0))
    """
)


@pytest.fixture
def kernel() -> Iterator[Kernel]:
    with temporary_kernel() as k:
        yield k


@pytest.fixture
def launcher() -> SubprocessLauncher:
    return SubprocessLauncher()


def _runtime(kernel: Kernel, launcher: SubprocessLauncher, **config: Any) -> Runtime:
    plugins = Plugins()
    plugins.register(launcher, "subprocess")
    return Runtime(kernel, plugins, {"subprocess": config})


def _request(kernel: Kernel, key: str, **config: Any) -> RunRow:
    template = RunTemplate("etl.load", launcher="subprocess", config=config, tags={"team": "data"})
    return kernel.request_run(key, template, now=T0)


def test_the_child_sees_the_run_and_its_pid_and_exit_status_are_recorded(
    kernel: Kernel, launcher: SubprocessLauncher, tmp_path: Path
) -> None:
    runtime = _runtime(
        kernel,
        launcher,
        command=[sys.executable, "-c", CHILD, str(tmp_path)],
        env={"EXTRA": "yes"},
        cwd=str(tmp_path),
    )
    ok = _request(kernel, "ok", region="eu")
    bad = _request(kernel, "bad", exit=3)
    killed = _request(kernel, "killed", signal=9)
    report = runtime.cycle(T0)
    assert {r.status for r in report.launches} == {"LAUNCHED"}
    # A child may finish before the completion check of the cycle that launched it (then it
    # completes in that cycle, and is reaped there): nothing below depends on which cycle.
    codes = {
        key: launcher.wait(run.run_id, timeout=30)
        for key, run in (("ok", ok), ("bad", bad), ("killed", killed))
    }
    assert codes == {"ok": 0, "bad": 3, "killed": -9}
    seen = json.loads((tmp_path / f"{ok.run_id}.json").read_text())
    assert seen["ARCOFLOW_RUN_ID"] == ok.run_id
    assert seen["ARCOFLOW_RUN_KEY"] == "manual:ok"
    assert seen["ARCOFLOW_TARGET"] == "etl.load"
    assert seen["ARCOFLOW_ORIGIN"] == "manual"
    assert seen["ARCOFLOW_ATTEMPT"] == "1"
    assert json.loads(seen["ARCOFLOW_CONFIG"]) == {"region": "eu"}
    assert json.loads(seen["ARCOFLOW_TAGS"]) == {"team": "data"}
    assert seen["EXTRA"] == "yes" and Path(seen["cwd"]) == tmp_path
    assert kernel.run(ok.run_id).external_id == str(seen["pid"])
    completions = [*report.completions, *runtime.cycle(T0 + 5).completions]
    done = {r.run_id: r for r in completions}
    assert len(completions) == len(done) == 3  # each run completed once
    assert (done[ok.run_id].status, done[ok.run_id].detail) == ("SUCCEEDED", None)
    assert (done[bad.run_id].status, done[bad.run_id].detail) == ("FAILED", "exit status 3")
    assert (done[killed.run_id].status, done[killed.run_id].detail) == (
        "FAILED",
        "killed by SIGKILL",
    )
    assert kernel.launched_runs("subprocess") == [] and kernel.verify().ok


def test_wait_gives_the_exit_code_of_a_run_already_reaped_by_a_completion_check(
    kernel: Kernel, launcher: SubprocessLauncher, tmp_path: Path
) -> None:
    """The race behind a flaky test: the launching cycle's own completion check saw the child
    exit (and reaped it); ``wait`` then answered 1 instead of the child's code."""
    runtime = _runtime(kernel, launcher, command=[sys.executable, "-c", CHILD, str(tmp_path)])
    run = _request(kernel, "reaped", exit=3)
    runtime.cycle(T0)
    launch = runtime._launch(kernel.run(run.run_id), 1)
    deadline = time.monotonic() + 30
    while launcher.arcoflow_run_state(launch) is None:  # the completion check, until it exits
        assert time.monotonic() < deadline, "the child did not exit"
        time.sleep(0.01)
    assert launcher.wait(run.run_id, timeout=30) == 3


def test_one_process_per_run_id(
    kernel: Kernel, launcher: SubprocessLauncher, tmp_path: Path
) -> None:
    runtime = _runtime(kernel, launcher, command=[sys.executable, "-c", CHILD, str(tmp_path)])
    run = _request(kernel, "once")
    [row] = runtime.cycle(T0).launches
    again = runtime._launch(row, 2)  # the outbox handing it over a second time
    launched = launcher.arcoflow_launch(again)
    assert launched.external_id == row.external_id
    launcher.wait(run.run_id, timeout=30)
    assert launcher.arcoflow_launch(again).external_id == row.external_id  # also once finished
    lines = (tmp_path / f"{run.run_id}.json").read_text().splitlines()
    assert len(lines) == 1


def test_output_goes_to_the_log_dir(
    kernel: Kernel, launcher: SubprocessLauncher, tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    runtime = _runtime(
        kernel,
        launcher,
        command=[sys.executable, "-c", CHILD, str(tmp_path)],
        log_dir=str(logs),
    )
    run = _request(kernel, "logged")
    runtime.cycle(T0)
    launcher.wait(run.run_id, timeout=30)
    assert (logs / f"{run.run_id}.log").read_text() == "hello from etl.load\n"


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ({}, "set [launchers.subprocess] command"),
        ({"command": ["{missing}/arcoflow-program"]}, "cannot start '{missing}/"),
        ({"command": "true", "cwd": "{missing}/dir"}, "cwd '{missing}/dir'"),
        ({"command": "true", "env": {"N": 1}}, "env must map names to string values"),
    ],
)
def test_a_launch_that_cannot_start_is_a_failed_attempt(
    kernel: Kernel,
    launcher: SubprocessLauncher,
    config: dict[str, Any],
    reason: str,
    tmp_path: Path,
) -> None:
    missing = str(tmp_path / "missing")  # a path that surely does not exist, on any host
    config = json.loads(json.dumps(config).replace("{missing}", missing))
    reason = reason.replace("{missing}", missing)
    runtime = _runtime(kernel, launcher, **config)
    _request(kernel, "x")
    [row] = runtime.cycle(T0).launches
    assert row.status == "REQUESTED" and row.attempts == 1
    assert row.last_error is not None
    assert row.last_error.startswith("LaunchError: subprocess launcher: ")
    assert reason in row.last_error


def test_a_command_string_is_split_like_a_shell(
    kernel: Kernel, launcher: SubprocessLauncher, tmp_path: Path
) -> None:
    marker = tmp_path / "it ran"
    runtime = _runtime(kernel, launcher, command=f"touch '{marker}'")
    run = _request(kernel, "s")
    runtime.cycle(T0)
    assert launcher.wait(run.run_id, timeout=30) == 0 and marker.exists()


def test_runs_started_elsewhere_are_unknown_not_failed(
    kernel: Kernel, launcher: SubprocessLauncher
) -> None:
    run = _request(kernel, "elsewhere")
    kernel.record_launch(run.run_id, external_id="12345", now=T0)
    runtime = _runtime(kernel, launcher, command="true")
    report = runtime.cycle(T0 + 5)
    assert report.idle and kernel.run(run.run_id).status == "LAUNCHED"


# -- state_dir: run state shared by every daemon of a store -------------------------------------


def test_with_a_state_dir_only_one_process_ever_starts_a_run(
    kernel: Kernel, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    config = {"command": [sys.executable, "-c", CHILD, str(tmp_path)], "state_dir": str(state)}
    first, second = SubprocessLauncher(), SubprocessLauncher()  # two daemons
    run = _request(kernel, "shared", exit=3)
    [launched] = _runtime(kernel, first, **config).cycle(T0).launches
    again = second.arcoflow_launch(_runtime(kernel, second, **config)._launch(launched, 2))
    assert again.external_id == launched.external_id  # the wrapper's pid, from the claim file
    assert first.wait(run.run_id, timeout=30) == 3
    assert len((tmp_path / f"{run.run_id}.json").read_text().splitlines()) == 1
    assert json.loads((state / f"{run.run_id}.exit.json").read_text()) == {"returncode": 3}


def test_with_a_state_dir_a_later_daemon_reports_how_a_run_ended(
    kernel: Kernel, tmp_path: Path
) -> None:
    config = {
        "command": [sys.executable, "-c", CHILD, str(tmp_path)],
        "state_dir": str(tmp_path / "state"),
    }
    earlier = SubprocessLauncher()
    ok, bad = _request(kernel, "ok"), _request(kernel, "bad", exit=4)
    report = _runtime(kernel, earlier, **config).cycle(T0)  # `arcoflow run --once`, then exit
    assert {r.status for r in report.launches} == {"LAUNCHED"}
    for run in (ok, bad):
        earlier.wait(run.run_id, timeout=30)
    child = json.loads((tmp_path / f"{ok.run_id}.json").read_text())
    assert child["ARCOFLOW_RUN_ID"] == ok.run_id  # the run's environment reaches the command
    later = _runtime(kernel, SubprocessLauncher(), **config)  # the next `run --once`
    done = {r.run_id: r for r in later.cycle(T0 + 60).completions}
    assert (done[ok.run_id].status, done[bad.run_id].detail) == ("SUCCEEDED", "exit status 4")
    assert kernel.verify().ok


def test_with_a_state_dir_a_killed_wrapper_is_a_failed_run(kernel: Kernel, tmp_path: Path) -> None:
    config = {
        "command": [sys.executable, "-c", "import time; time.sleep(60)"],
        "state_dir": str(tmp_path / "state"),
    }
    first = SubprocessLauncher()
    run = _request(kernel, "killed")
    [launched] = _runtime(kernel, first, **config).cycle(T0).launches
    other = _runtime(kernel, SubprocessLauncher(), **config)
    assert other.cycle(T0 + 1).idle  # still running: nothing to report
    os.killpg(int(launched.external_id or 0), signal.SIGKILL)  # the wrapper and its command
    assert first.wait(run.run_id, timeout=30) == -9
    [done] = other.cycle(T0 + 2).completions
    assert done.status == "FAILED"
    assert done.detail == f"process {launched.external_id} ended without recording an exit status"


def test_the_wrapper_forwards_termination_and_records_the_signal(tmp_path: Path) -> None:
    exit_file = tmp_path / "exit.json"
    wrapper = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "arcoflow.plugins.subprocess_launcher",
            "--exit-file",
            str(exit_file),
            "--",
            sys.executable,
            "-c",
            "import time; print('up', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert wrapper.stdout is not None and wrapper.stdout.readline() == "up\n"
    wrapper.terminate()
    assert wrapper.wait(timeout=30) == 128 + signal.SIGTERM
    assert json.loads(exit_file.read_text()) == {"returncode": -signal.SIGTERM}
