"""``python -m benchmarks.report``: one line per target, exit status 0 only when every selected
target is met; a target not measured yet counts as not met; an unknown name is a usage error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _report(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.report", "--quick", *args],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_selected_targets_that_are_met_exit_0() -> None:
    # Two targets met by a wide margin (tens of times their 6x), so a loaded machine cannot
    # turn this test red; what it checks is the report's exit status, not the figures.
    done = _report("--only", "cron-weekly,cron-weekdays")
    lines = [line.split()[:1] for line in done.stdout.splitlines()]
    assert done.returncode == 0, done.stdout + done.stderr
    assert ["cron-weekly"] in lines and ["cron-weekdays"] in lines
    assert "2 of 2 targets met" in done.stdout


def test_a_target_not_measured_yet_fails_the_report() -> None:
    code = (
        "import sys; from benchmarks import report as r; "
        "r.TARGETS = (r.Target('later', 'w', 'b', 1.0, r.Direction.AT_LEAST),); "
        "sys.exit(r.main(['--quick']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    assert "not measured yet" in done.stdout
    assert "0 of 1 targets met" in done.stdout


def test_an_unknown_target_is_a_usage_error() -> None:
    done = _report("--only", "cron-weekly,nope")
    assert done.returncode == 2
    assert "unknown target(s) nope" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_postgres_target_without_a_server_is_skipped_with_the_reason_and_not_met() -> None:
    env = {k: v for k, v in os.environ.items() if k != "ARCOFLOW_TEST_POSTGRES"}
    done = _report("--only", "pg-append", env=env)
    assert done.returncode == 1
    assert "skipped" in done.stdout and "set ARCOFLOW_TEST_POSTGRES" in done.stdout
    assert "0 of 1 targets met" in done.stdout
