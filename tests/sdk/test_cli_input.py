"""Issue 9: bad command-line input exits 2 with one ``arcoflow: error:`` line, no traceback,
and leaves the store exactly as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from arcoflow.kernel import Kernel, LmdbStore
from arcoflow.kernel.rows import Table
from arcoflow.sdk.cli import main

DEFINITIONS = """
[[schedule]]
id = "hourly"
cron = "0 * * * *"
run = {{ target = "etl" }}

[[sensor]]
id = "files"
type = "poll"
connector = "filesystem"
minimum_interval = 1
config = {{ path = "{incoming}" }}
run = {{ target = "ingest" }}

[[sensor]]
id = "hook"
type = "push"
run = {{ target = "hooked" }}
"""

_S = '[[schedule]]\nid = "a"\ncron = "0 * * * *"\n'
BAD_TOML = {
    "enabled-0": _S + 'enabled = 0\nrun = { target = "x" }',
    "enabled-yes": _S + 'enabled = "yes"\nrun = { target = "x" }',
    "int-2**64": _S + 'max_tick_retries = 18446744073709551616\nrun = { target = "x" }',
    "config-int-2**64": _S + 'run = { target = "x", config = { n = 18446744073709551616 } }',
    "config-datetime": _S + 'run = { target = "x", config = { at = 2026-01-01T00:00:00Z } }',
    "config-nan": _S + 'run = { target = "x", config = { n = nan } }',
    "budget-too-large": _S + 'max_catchup_ticks = 523926\nrun = { target = "x" }',
    "cron-random": '[[schedule]]\nid = "a"\ncron = "R R * * *"\nrun = { target = "x" }',
    "jitter-2": '[[sensor]]\nid = "s"\ntype = "push"\nrun = { target = "x" }\n'
    "backoff = { jitter = 2.0 }",
    "type-unknown": '[[sensor]]\nid = "s"\ntype = "pull"\nrun = { target = "x" }',
}


@pytest.fixture
def store(tmp_path: Path) -> str:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    (incoming / "a.csv").write_text("x\n")
    defs = tmp_path / "defs.toml"
    defs.write_text(DEFINITIONS.format(incoming=incoming))
    path = str(tmp_path / "store")
    assert main(["--store", path, "apply", str(defs)]) == 0
    return path


def _dump(path: str) -> dict[Table, tuple[tuple[bytes, bytes], ...]]:
    store = LmdbStore(path)
    try:
        with store.read() as txn:
            return {table: tuple(txn.scan(table)) for table in Table}
    finally:
        store.close()


def _refused(path: str, args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    before = _dump(path)
    code = main(["--store", path, *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("arcoflow: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert _dump(path) == before
    return err


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["evaluate", "--now", "9999-12-31T23:59:59Z"], "--now: "),
        (["evaluate", "--now", "1969-12-31T23:59:00Z"], "--now: "),
        (["preview", "hourly", "--from", "9999-12-31T23:58:00Z"], "--from: "),
        (["preview", "hourly", "--from", "0001-01-01T00:00:00+01:00"], "--from: "),
        (["request", "k", "--target", "t", "--config", "[1,2]"], "config"),
        (["request", "k", "--target", "t", "--config", '{"n":18446744073709551616}'], "64 bits"),
        (["request", "k", "--target", "t", "--tags", '{"a": 1}'], "tags"),
        (["push", "hook", "--message-id", "m", "--payload", "NaN"], "NaN"),
        (["push", "hook", "--message-id", "m", "--payload", '{"x": -Infinity}'], "Infinity"),
        (["push", "hook", "--message-id", "m", "--payload", "[" * 100_000], "--payload"),
        (["push", "hook", "--message-id", "m", "--payload", "9" * 5000], "--payload"),
        (["push", "hook", "--message-id", "m", "--payload", "1e999"], "finite"),
    ],
)
def test_bad_arguments_exit_2_and_write_nothing(
    store: str, args: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert says in _refused(store, args, capsys)


def test_apply_of_a_binary_file_exits_2(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    binary = tmp_path / "ls"
    binary.write_bytes(b"\x7fELF\x02\x01\x01\x00\xff\xfe" * 100)
    assert "not UTF-8" in _refused(store, ["apply", str(binary)], capsys)
    assert "cannot read" in _refused(store, ["apply", str(tmp_path)], capsys)


@pytest.mark.parametrize("body", BAD_TOML.values(), ids=BAD_TOML.keys())
def test_apply_of_bad_values_exits_2_and_writes_nothing(
    store: str, tmp_path: Path, body: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text = body + "\n"
    path = tmp_path / "bad.toml"
    path.write_text(text)
    _refused(store, ["apply", str(path)], capsys)


def test_enabled_false_applies_and_everything_reads_back(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "off.toml"
    path.write_text(
        '[[schedule]]\nid = "off"\ncron = "0 * * * *"\nenabled = false\nrun = { target = "x" }\n'
        '[[sensor]]\nid = "quiet"\ntype = "push"\nenabled = false\nrun = { target = "x" }\n'
    )
    assert main(["--store", store, "apply", str(path)]) == 0
    assert main(["--store", store, "request", "k", "--target", "t", "--config", '{"n": 1}']) == 0
    assert main(["--store", store, "evaluate", "--now", "8999-12-31T23:59:59Z"]) == 0
    capsys.readouterr()
    for query in (["schedules"], ["sensors"], ["runs"], ["evals", "files"], ["verify"]):
        assert main(["--store", store, "--json", *query]) == 0, query
        json.loads(capsys.readouterr().out)  # one JSON document, no bare NaN
    kernel_store = LmdbStore(store)
    try:
        kernel = Kernel(kernel_store)
        assert not kernel.schedule("off").enabled and not kernel.sensor("quiet").running
        assert kernel.verify().ok
    finally:
        kernel_store.close()


@pytest.mark.parametrize(
    "argv",
    [
        ["apply", "{bad_toml}"],
        ["apply", "{bad_schedule}"],
        ["push", "hook", "--message-id", "m", "--payload", "{{bad"],
        ["push", "hook", "--message-id", "m"],
        ["evaluate", "--now", "yesterday"],
        ["complete", "00000000-0000-5000-8000-000000000000", "succeeded"],
        ["backfill", "hourly", "--from", "a", "--to", "b"],
        ["compact", "--keep", "5x"],
        ["run", "--once", "--config", "{bad_toml}"],
    ],
)
@pytest.mark.parametrize("place", ["missing", "empty directory"])
def test_a_write_refused_on_a_new_store_leaves_no_store_behind(
    argv: list[str], place: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad input writes nothing, not even the store a write command would have created."""
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("bad = [\n")
    bad_schedule = tmp_path / "bad-schedule.toml"
    bad_schedule.write_text('[[schedule]]\nid = "Bad ID"\ncron = "x"\n')
    target = tmp_path / "new"
    if place == "empty directory":
        target.mkdir()
    args = [a.format(bad_toml=bad_toml, bad_schedule=bad_schedule) for a in argv]
    assert main(["--store", str(target), *args]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("arcoflow: error: ") and err.count("\n") == 1 and out == ""
    if place == "missing":
        assert not target.exists()
    else:
        assert list(target.iterdir()) == []


def test_a_write_refused_on_an_existing_store_keeps_it(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("bad = [\n")
    assert main(["--store", store, "apply", str(bad)]) == 2
    assert main(["--store", store, "--json", "schedules"]) == 0
    assert [s["schedule_id"] for s in json.loads(capsys.readouterr().out)] == ["hourly"]


@pytest.mark.parametrize(
    "args",
    [
        ["ticks", "hourly", "--limit", "abc"],
        ["ticks", "hourly", "--status", "NOPE"],
        ["history", "sensor", "files", "--before", "abc"],
        ["runs", "--bogus"],
        ["push"],
        ["no-such-command"],
        ["--log-format", "yaml", "schedules"],
    ],
)
def test_a_command_line_that_does_not_parse_is_one_error_line_and_exit_2(
    store: str, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: argparse printed its usage block above the error and raised SystemExit out of
    ``main`` (documented to return the exit code)."""
    err = _refused(store, args, capsys)
    assert "--help" in err and not err.startswith("arcoflow: error: usage")


def test_compact_of_a_missing_store_is_refused_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``compact`` writes, but there is nothing to compact at a mistyped path: it used to
    create an empty store there and say ``ok``."""
    typo = tmp_path / "TYPO"
    assert main(["--store", str(typo), "compact"]) == 2
    assert capsys.readouterr().err == f"arcoflow: error: no store at {typo}\n"
    assert not typo.exists()
    assert main(["--store", str(typo), "apply", "/dev/null"]) == 0  # an empty store compacts
    assert main(["--store", str(typo), "compact"]) == 0


@pytest.mark.parametrize(
    "argv", [["schedules"], ["apply", "/dev/null"], ["request", "k", "--target", "t"]]
)
def test_a_store_path_that_is_a_file_is_named_as_such(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: a write command said ``cannot open store at P: [Errno 17] File exists: 'P'``
    (exit 1), a read command ``no store at P``; now both say what is wrong, exit 2."""
    path = tmp_path / "notes.txt"
    path.write_text("mine")
    assert main(["--store", str(path), *argv]) == 2
    assert capsys.readouterr().err == (
        f"arcoflow: error: no store at {path}: it is a file, not a store directory\n"
    )
    assert path.read_text() == "mine"


def test_runs_of_one_run_id_refuses_the_list_filters(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: ``arcoflow runs RUN_ID --status FAILED`` showed a REQUESTED run, exit 0."""
    assert main(["--store", store, "--json", "request", "k", "--target", "t"]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    err = _refused(store, ["runs", run_id, "--status", "FAILED"], capsys)
    assert "--status filter the list; not with a RUN_ID" in err
    _refused(store, ["runs", run_id, "--before", run_id], capsys)
    assert main(["--store", store, "--json", "runs", run_id]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "REQUESTED"


def test_a_conflicting_request_says_so_on_stderr(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: the same note as a plain repeat ("already had a run: returned it"), though the
    request asked for other content and was recorded as a conflict."""
    assert main(["--store", store, "request", "k", "--target", "t"]) == 0
    capsys.readouterr()
    assert main(["--store", store, "request", "k", "--target", "t"]) == 0
    assert "conflict" not in capsys.readouterr().err
    assert main(["--store", store, "--json", "request", "k", "--target", "other"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["conflict"] is True
    assert "recorded as a conflict" in err and err.count("\n") == 1


@pytest.mark.parametrize("interval", ["0", "-1", "nan", "inf", "1e308"])
def test_run_refuses_an_interval_that_is_not_a_real_wait(
    store: str, interval: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: ``--interval nan`` started a daemon, ``--interval inf`` ended with an
    OverflowError traceback from a timed wait, ``1e308`` was taken as given."""
    err = _refused(store, ["run", "--once", "--interval", interval], capsys)
    assert "interval must be positive, at most 31622400 seconds" in err
