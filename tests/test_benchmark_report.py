"""``python -m benchmarks.report``: one line per target, exit status 0 only when every selected
target is met; a target not measured yet counts as not met; an unknown name is a usage error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _report(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.report", "--quick", *args],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_selected_targets_that_are_met_exit_0() -> None:
    done = _report("--only", "cron-weekly,catchup")
    lines = [line.split()[:1] for line in done.stdout.splitlines()]
    assert done.returncode == 0, done.stdout + done.stderr
    assert ["cron-weekly"] in lines and ["catchup"] in lines
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
