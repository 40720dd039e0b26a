"""The operator's CLI (``sdk/operate.py``) and ``request`` telling that a run existed: one JSON
document with ``--json``, exit 2 for bad input or an unknown id, exit 1 for a lost CAS."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from arcoflow.kernel import Kernel, LmdbStore, RunTemplate
from arcoflow.sdk.cli import main

DEFINITIONS = """
[[schedule]]
id = "nightly"
cron = "30 2 * * *"
timezone = "America/New_York"
dst_gap = "skip"
run = { target = "etl" }

[[sensor]]
id = "files"
type = "poll"
connector = "filesystem"
config = { path = "." }
run = { target = "ingest" }
"""


@pytest.fixture
def store(tmp_path: Path) -> str:
    path = str(tmp_path / "store")
    toml = tmp_path / "defs.toml"
    toml.write_text(DEFINITIONS)
    assert main(["--store", path, "apply", str(toml)]) == 0
    return path


def _json(capsys: pytest.CaptureFixture[str], store: str, *argv: str) -> tuple[int, Any, str]:
    capsys.readouterr()
    code = main(["--store", store, "--json", *argv])
    out, err = capsys.readouterr()
    return code, json.loads(out) if code == 0 else out, err


def test_a_repeated_request_says_it_returned_the_existing_run(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, first, err = _json(capsys, store, "request", "k", "--target", "t")
    assert (code, first["existing"], first["conflict"], err) == (0, False, False, "")
    code, second, err = _json(capsys, store, "request", "k", "--target", "t")
    assert (code, second["existing"], second["run_id"]) == (0, True, first["run_id"])
    assert "already had a run" in err
    code, other, _ = _json(capsys, store, "request", "k", "--target", "other")
    assert (other["existing"], other["conflict"]) == (True, True)


def test_history_lists_changes_newest_first(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--store", store, "schedule", "disable", "nightly"]) == 0
    code, rows, _ = _json(capsys, store, "history", "schedule", "nightly")
    assert code == 0
    assert [r["change"] for r in rows] == ["disabled", "created"]
    assert set(rows[0]) >= {"at", "change", "old_version", "new_version", "seq"}
    assert rows[0]["seq"] > rows[1]["seq"]
    code, rows, _ = _json(capsys, store, "history", "sensor", "files")
    assert [r["change"] for r in rows] == ["created"]
    capsys.readouterr()
    assert main(["--store", store, "history", "schedule", "nope"]) == 2
    assert "no schedule 'nope'" in capsys.readouterr().err
    assert main(["--store", store, "history", "schedule", "nightly"]) == 0
    assert "CHANGE" in capsys.readouterr().out  # the readable table


def test_set_and_reset_cursor_with_the_expected_version(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ("set-cursor", "files", "--cursor", "a.csv", "--expected-version", "0")
    code, sensor, _ = _json(capsys, store, *argv)
    assert (code, sensor["cursor"], sensor["state_version"]) == (0, "a.csv", 1)
    code, again, _ = _json(capsys, store, *argv)
    assert (code, again["state_version"]) == (0, 1)  # the very same set again: one set
    code, _, err = _json(
        capsys, store, "set-cursor", "files", "--cursor", "b", "--expected-version", "0"
    )
    assert code == 1 and "expected state_version 0, found 1" in err
    code, sensor, _ = _json(capsys, store, "reset-cursor", "files", "--expected-version", "1")
    assert (code, sensor["cursor"], sensor["state_version"]) == (0, None, 2)
    code, rows, _ = _json(capsys, store, "history", "sensor", "files")
    assert [r["change"] for r in rows] == ["cursor_reset", "cursor_set", "created"]
    code, _, err = _json(capsys, store, "reset-cursor", "nope", "--expected-version", "0")
    assert code == 2 and "no sensor" in err


def test_backfill_previews_then_requests_once(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    span = ("--from", "2024-03-09T00:00:00Z", "--to", "2024-03-11T23:59:59Z")
    code, preview, _ = _json(capsys, store, "backfill", "nightly", *span, "--dry-run")
    assert code == 0
    assert [t["action"] for t in preview] == ["run", "skip", "run"]  # 2024-03-10: no 02:30
    with _opened(store) as kernel:
        assert kernel.runs() == []
    code, done, _ = _json(capsys, store, "backfill", "nightly", *span)
    assert [t["existing"] for t in done] == [False, False, False]
    assert [t["run_key"] for t in done if t["run_key"]] == [
        "backfill:nightly:2024-03-09T07:30:00Z",
        "backfill:nightly:2024-03-11T06:30:00Z",
    ]
    code, again, _ = _json(capsys, store, "backfill", "nightly", *span)
    assert [t["existing"] for t in again if t["run_key"]] == [True, True]
    code, _, err = _json(
        capsys, store, "backfill", "nightly", "--from", "2024-01-01", "--to", "2025-01-01"
    )
    assert code == 2 and "holds 366 ticks" in err
    code, _, err = _json(capsys, store, "backfill", "nightly", "--from", "x", "--to", "y")
    assert code == 2 and "ISO-8601" in err


def test_retry_a_run_that_gave_up(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    with _opened(store) as kernel:
        rid = kernel.request_run("k", RunTemplate("t", launcher="mem"), now=0).run_id
        kernel.record_launch(rid, error="down", now=1, max_attempts=1)
    code, run, _ = _json(capsys, store, "retry", rid)
    assert (code, run["status"], run["retries"]) == (0, "REQUESTED", 1)
    code, _, err = _json(capsys, store, "retry", rid)
    assert code == 2 and "only a GAVE_UP run can be retried" in err


@contextmanager
def _opened(path: str) -> Iterator[Kernel]:
    """A kernel on the store directory, closed on exit."""
    opened = LmdbStore(path)
    try:
        yield Kernel(opened)
    finally:
        opened.close()
