"""Every command of the CLI against a ``postgresql://`` store (issue 11: "everywhere a store is
named, a PostgreSQL URL works"), the errors of a URL that does not lead to a store, and where a
PostgreSQL store keeps what a directory store keeps beside it (the daemon's heartbeat, the
sources' state). Each test has a schema of its own, dropped afterwards."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import postgres_support
import pytest
from arcoflow.kernel import Kernel, StoreNotFound, StoreUnavailable
from arcoflow.kernel.store import open_store
from arcoflow.kernel.store.postgres import PostgresStore, split_schema
from arcoflow.sdk import cli
from arcoflow.sdk.heartbeat import beat, store_heartbeats
from arcoflow.sdk.sources import SourceState, store_status

ARCOFLOW = Path(sys.executable).with_name("arcoflow")

DEFINITIONS = """
[[schedule]]
id = "hourly"
cron = "0 * * * *"
catchup_window = "2h"
run = { target = "etl.hourly", launcher = "memory" }

[[sensor]]
id = "hook"
type = "push"
run = { target = "etl.hook", launcher = "memory" }

[[sensor]]
id = "files"
type = "poll"
connector = "filesystem"
minimum_interval = "1s"
config = { path = "INCOMING", pattern = "*.csv" }
run = { target = "etl.files", launcher = "memory" }
"""


@pytest.fixture
def url() -> Iterator[str]:
    """A ``postgresql://`` URL naming a fresh schema (``?schema=``), dropped afterwards."""
    schema = postgres_support.fresh_schema()
    yield f"{postgres_support.require_server()}?schema={schema}"
    postgres_support.drop_schema(schema)


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    try:
        data = json.loads(out) if out.strip() else None
    except json.JSONDecodeError:
        data = out
    return code, data, err


def _schema_exists(schema: str) -> bool:
    row = (
        postgres_support.admin()
        .execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,))
        .fetchone()
    )
    return bool(row and row[0])


def test_every_command_works_on_a_postgresql_url(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    (incoming / "a.csv").write_text("1\n")
    defs = tmp_path / "defs.toml"
    defs.write_text(DEFINITIONS.replace("INCOMING", str(incoming)))
    s = ("--store", url, "--json")

    code, changes, err = _cli(capsys, *s, "apply", str(defs))
    assert code == 0, err
    assert sorted(c["id"] for c in changes) == ["files", "hook", "hourly"]
    code, rows, _ = _cli(capsys, *s, "schedules")
    assert [r["schedule_id"] for r in rows] == ["hourly"]
    code, report, err = _cli(capsys, *s, "evaluate", "--now", "2099-01-01T00:00:30Z")
    assert code == 0, err
    assert [t["status"] for t in report["ticks"]] == ["TRIGGERED"]
    assert [e["sensor_id"] for e in report["evaluations"]] == ["files"]
    code, ticks, _ = _cli(capsys, *s, "ticks", "hourly")
    assert [t["tick_id"] for t in ticks] == ["hourly:2099-01-01T00:00:00Z"]
    code, tick, _ = _cli(capsys, *s, "tick", "hourly:2099-01-01T00:00:00Z")
    assert tick["run_id"] is not None
    code, pushed, _ = _cli(capsys, *s, "push", "hook", "--message-id", "m1", "--payload", "{}")
    assert code == 0 and pushed["duplicate"] is False
    code, requested, _ = _cli(capsys, *s, "request", "by-hand", "--target", "t")
    assert requested["run_key"] == "manual:by-hand"
    code, sensors, _ = _cli(capsys, *s, "sensors")
    assert {r["sensor_id"] for r in sensors} == {"files", "hook"}
    code, evals, _ = _cli(capsys, *s, "evals", "files")
    assert len(evals) == 1 and evals[0]["run_keys"]
    code, history, _ = _cli(capsys, *s, "history", "sensor", "files")
    assert code == 0 and history[0]["change"] == "created"
    code, backfilled, err = _cli(
        capsys,
        *s,
        "backfill",
        "hourly",
        "--from",
        "2098-12-31T22:00:00Z",
        "--to",
        "2098-12-31T23:00:00Z",
    )
    assert code == 0, err  # an operator verb writes through the same store
    assert len(backfilled) == 2
    code, cycle, err = _cli(capsys, *s, "run", "--once")
    assert code == 0, err
    assert {r["status"] for r in cycle["launches"]} == {"LAUNCHED"}
    code, runs, _ = _cli(capsys, *s, "runs")
    assert len(runs) == 6  # the tick's, the file's, the push's, by hand, two backfilled
    code, sources, _ = _cli(capsys, *s, "sources")
    assert code == 0 and sources == []  # no daemon ran sources on this store
    code, verified, err = _cli(capsys, *s, "verify")
    assert code == 0, err
    assert verified["ok"] is True and verified["events"] > 10


@pytest.mark.slow
def test_serve_answers_from_a_postgresql_store(url: str) -> None:
    """``arcoflow serve`` on a URL: its health check reads the store and the heartbeat that a
    daemon recorded in the schema (no directory involved)."""
    daemon = subprocess.run(
        [str(ARCOFLOW), "--store", url, "run", "--once"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert daemon.returncode == 0, daemon.stderr
    proc = subprocess.Popen(
        [str(ARCOFLOW), "--store", url, "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert found, f"no URL printed: {line!r}"
        with urllib.request.urlopen(f"http://127.0.0.1:{found[1]}/healthz", timeout=30) as r:
            health = json.loads(r.read())
        assert health["status"] == "ok"
        assert health["daemon"]["cycles"] == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_command_that_reads_creates_no_schema(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _, schema = split_schema(url)
    assert schema is not None
    for command in (["schedules"], ["runs"], ["verify"], ["sources"], ["ticks", "x"]):
        code, _, err = _cli(capsys, "--store", url, *command)
        assert code == 2
        assert err.startswith("arcoflow: error: no arcoflow store at") and err.count("\n") == 1
    assert not _schema_exists(schema)
    with pytest.raises(StoreNotFound):
        open_store(url, create=False)
    assert not _schema_exists(schema)


@pytest.mark.parametrize(
    ("store", "code", "message"),
    [
        ("postgresql://postgres@127.0.0.1:1/test", 1, "cannot connect to PostgreSQL"),
        ("postgresql://no_such_role_x@127.0.0.1:5432/test", 1, "cannot connect to PostgreSQL"),
        ("postgresql://postgres@127.0.0.1:5432/test?bogus=1", 2, "not a PostgreSQL URL"),
        ("postgresql://postgres@[::1:5432/test", 2, "not a PostgreSQL URL"),
    ],
)
def test_a_url_that_leads_nowhere_is_one_typed_line(
    store: str, code: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    postgres_support.require_server()  # the good server answers; these URLs do not reach it
    for command in (["runs"], ["request", "k", "--target", "t"]):
        got, _, err = _cli(capsys, "--store", store, *command)
        assert got == code
        assert err.startswith(f"arcoflow: error: {message}") and err.count("\n") == 1, err
        assert "Traceback" not in err


def test_an_unreachable_server_is_store_unavailable_and_names_no_password() -> None:
    with pytest.raises(StoreUnavailable, match="cannot connect") as caught:
        PostgresStore("postgresql://u:s3cret@127.0.0.1:1/db", connect_timeout=1)
    assert "s3cret" not in str(caught.value)


def test_the_schema_parameter_is_arcoflows_and_the_rest_reaches_libpq() -> None:
    assert split_schema("postgresql://h/db?schema=eu&sslmode=disable") == (
        "postgresql://h/db?sslmode=disable",
        "eu",
    )
    assert split_schema("postgresql://h/db") == ("postgresql://h/db", None)
    assert split_schema("host=h dbname=db") == ("host=h dbname=db", None)


def test_the_environment_variable_names_the_store_for_every_command(
    url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARCOFLOW_STORE", url)
    code, requested, err = _cli(capsys, "--json", "request", "k", "--target", "t")
    assert code == 0, err
    store = open_store(url, create=False)
    try:
        assert [r.run_key for r in Kernel(store).runs()] == [requested["run_key"]]
    finally:
        store.close()


def test_heartbeats_and_sources_of_every_daemon_live_in_the_schema(url: str) -> None:
    """Two daemons (on two hosts, say) record their heartbeats and sources' state in the
    schema: any process sees both, newest first."""
    first, second = open_store(url), open_store(url)
    try:
        beat(first, "host-a:1", 3, 5.0, 1000.0)
        beat(second, "host-b:2", 7, 5.0, 2000.0)
        beat(first, "host-a:1", 4, 5.0, 1005.0)  # a daemon's row is replaced, not added
        beats = store_heartbeats(second)
        assert [(b.cycles, b.finished_at) for b in beats] == [(7, 2000.0), (4, 1005.0)]
        put = first.put_status  # type: ignore[attr-defined]
        put("host-a:1", "sources", msgspec.json.encode([SourceState("s1", "nats", "hook")]))
        put("host-b:2", "sources", b"not json")  # a damaged row is skipped, not fatal
        assert [s.id for s in store_status(second)] == ["s1"]
    finally:
        first.close()
        second.close()
