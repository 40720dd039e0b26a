"""The CLI as people use it: global options anywhere, ``--version``, read-only commands that
never create a store, unknown ids as errors, one error mapping shared with the HTTP API,
progress on a terminal, plugins checked at ``apply``, ``run --once`` failing loudly."""

from __future__ import annotations

import importlib.metadata
import io
import json
import logging
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from arcoflow.kernel import (
    ArcoflowError,
    Conflict,
    InputError,
    InvalidId,
    Kernel,
    LmdbStore,
    NotFound,
    PayloadTooLarge,
    RunTemplate,
    ScheduleDefinition,
    SensorDefinition,
    StoreError,
)
from arcoflow.plugins.http.routes import failure
from arcoflow.plugins.http.serve import make_server
from arcoflow.sdk import ERROR_KINDS, error_kind
from arcoflow.sdk.cli import main
from arcoflow.sdk.progress import Progress

T0 = 1_893_456_000  # 2030-01-01T00:00:00Z


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def seeded(store_dir: str) -> str:
    """A store with a schedule ``hourly`` (two ticks), a push sensor ``orders`` and a run."""
    store = LmdbStore(store_dir)
    try:
        kernel = Kernel(store)
        template = RunTemplate("etl.load")
        kernel.define_schedule(ScheduleDefinition("hourly", "0 * * * *", template), now=T0)
        kernel.evaluate_schedule("hourly", now=T0 + 3600)
        kernel.evaluate_schedule("hourly", now=T0 + 2 * 3600)
        kernel.define_sensor(SensorDefinition("orders", "push", template), now=T0)
        kernel.request_run("by-hand", template, now=T0)
    finally:
        store.close()
    return store_dir


# -- global options before or after the command ------------------------------------------------


def test_global_options_go_after_the_command_too(
    seeded: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "--store", seeded, "schedules", "--json")
    assert code == 0, err
    assert [s["schedule_id"] for s in json.loads(out)] == ["hourly"]
    code, out, err = run(capsys, "ticks", "hourly", "--store", seeded, "--json")
    assert code == 0, err
    assert len(json.loads(out)) == 2


def test_a_global_option_after_the_command_wins_over_one_before(
    seeded: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "--store", str(tmp_path / "typo"), "schedules", "--store", seeded)
    assert code == 0, err
    assert "hourly" in out
    assert not (tmp_path / "typo").exists()


def test_commands_added_by_the_runtime_and_plugins_take_the_global_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(tmp_path / "s")
    code, out, err = run(capsys, "run", "--once", "--store", store, "--json")
    assert code == 0, err
    assert set(json.loads(out)) >= {"changes", "ticks", "failures"}
    code, out, err = run(capsys, "plugins", "--json")
    assert code == 0, err
    assert "filesystem" in {p["name"] for p in json.loads(out)}
    with pytest.raises(SystemExit) as stopped:
        main(["serve", "--help"])
    assert stopped.value.code == 0
    assert "--store" in capsys.readouterr().out  # the http plugin's command has them


def test_version_comes_from_the_package_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out.strip() == f"arcoflow {importlib.metadata.version('arcoflow')}"


# -- read-only commands never create a store -----------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["schedules"],
        ["schedule", "show", "hourly"],
        ["ticks", "hourly"],
        ["tick", "hourly:2030-01-01T01:00:00Z"],
        ["missed", "hourly"],
        ["preview", "hourly"],
        ["sensors"],
        ["sensor", "show", "orders"],
        ["evals", "orders"],
        ["runs"],
        ["conflicts"],
        ["verify"],
    ],
)
def test_read_only_commands_refuse_a_missing_store_and_create_nothing(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    typo = tmp_path / "TYPO"
    code, out, err = run(capsys, "--store", str(typo), *argv)
    assert code == 2
    assert err == f"arcoflow: error: no store at {typo}\n"
    assert out == ""
    assert not typo.exists()


def test_a_missing_store_is_named_as_it_was_typed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """README: ``arcoflow --store TYPO schedules`` exits 2 with ``no store at TYPO`` (it said
    the resolved absolute path instead), through a symlink too."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    for typed in ("TYPO", "link/TYPO", "./TYPO"):
        code, out, err = run(capsys, "--store", typed, "schedules")
        assert (code, out, err) == (2, "", f"arcoflow: error: no store at {typed}\n")


def test_an_empty_directory_is_not_a_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "--store", str(tmp_path), "runs")
    assert code == 2 and "no store at" in err
    assert list(tmp_path.iterdir()) == []


def test_commands_that_need_no_store_leave_no_store_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ARCOFLOW_STORE", raising=False)
    defs = tmp_path / "defs.toml"
    defs.write_text('[[schedule]]\nid = "s"\ncron = "0 * * * *"\nrun = { target = "t" }\n')
    assert run(capsys, "plugins")[0] == 0
    assert run(capsys, "preview", "s", "--file", str(defs), "--count", "2")[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["defs.toml"]


def test_write_commands_create_the_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "new"
    code, _, err = run(capsys, "--store", str(store), "request", "k", "--target", "t")
    assert code == 0, err
    assert (store / "data.mdb").is_file()


# -- unknown ids, and one mapping of errors for the CLI and HTTP -------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ticks", "nope"], "no schedule 'nope'"),
        (["missed", "nope"], "no schedule 'nope'"),
        (["evals", "nope"], "no sensor 'nope'"),
        (["schedule", "show", "nope"], "no schedule 'nope'"),
        (["tick", "nope:2030-01-01T00:00:00Z"], "no tick"),
        (["runs", "6f1c1f0e-7a4b-5c1e-9d2a-a1c0f10a0001"], "no run"),
        (["runs", "nope"], "run id 'nope' is not valid: run ids are lower-case UUIDs"),
    ],
)
def test_every_history_command_refuses_an_unknown_id(
    argv: list[str], message: str, seeded: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "--store", seeded, *argv)
    assert code == 2
    assert err.startswith("arcoflow: error: ") and message in err, err
    assert out == ""


@pytest.mark.parametrize(
    "exc",
    [
        PayloadTooLarge("big"),
        InvalidId("bad id"),
        InputError("bad"),
        NotFound("no such thing"),
        Conflict("row", 1, 2),
        StoreError("disk on fire"),
        ArcoflowError("other"),
    ],
)
def test_the_cli_and_http_map_each_error_kind_the_same_way(exc: ArcoflowError) -> None:
    kind = error_kind(exc)
    assert kind is not None
    status = failure(exc)[0]
    assert status == kind.http_status
    assert (kind.exit_code, status // 100) in {(2, 4), (1, 4), (1, 5)}
    assert kind.exit_code == (2 if isinstance(exc, (InputError, NotFound)) else 1)


def test_the_mapping_lists_specific_kinds_before_their_parents() -> None:
    for i, row in enumerate(ERROR_KINDS):
        for later in ERROR_KINDS[i + 1 :]:
            assert not issubclass(later.error, row.error), (later, row)
    assert error_kind(ValueError("not ours")) is None


def test_an_unknown_run_id_fails_the_same_way_on_the_cli_and_http(
    seeded: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = LmdbStore(seeded)
    try:
        server = make_server(Kernel(store))
        try:
            thread = server.serve_in_thread()
            with pytest.raises(urllib.error.HTTPError) as answer:
                urllib.request.urlopen(f"{server.url}/runs/nope", timeout=10)
            body = json.loads(answer.value.read())
        finally:
            server.stop()
            thread.join(15)
    finally:
        store.close()
    code, _, err = run(capsys, "--store", seeded, "runs", "nope")
    kind = error_kind(InvalidId("x"))
    assert kind is not None
    assert (answer.value.code, code) == (kind.http_status, kind.exit_code)
    assert err == f"arcoflow: error: {body['detail']}\n"


# -- progress on a terminal -----------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_shown_on_a_terminal_only() -> None:
    clock = iter(range(100)).__next__
    shown = _Terminal()
    progress = Progress("verify", "events", shown, clock=lambda: float(clock()), interval=1)
    for done in (1000, 2000, 3000):
        progress(done, 3000)
    progress.finish(3000, 3000)
    assert shown.getvalue().split("\r")[1:] == [
        "verify: 1,000/3,000 events",
        "verify: 2,000/3,000 events",
        "verify: 3,000/3,000 events",
        "verify: 3,000/3,000 events\n",
    ]
    piped = io.StringIO()
    quiet = Progress("verify", "events", piped)
    quiet(1, 2)
    quiet.finish(2, 2)
    assert piped.getvalue() == ""


def test_verify_and_apply_show_progress_when_stderr_is_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(tmp_path / "s")
    defs = tmp_path / "many.toml"
    defs.write_text(
        "".join(
            f'[[schedule]]\nid = "s{i}"\ncron = "0 * * * *"\nrun = {{ target = "t" }}\n'
            for i in range(250)
        )
    )
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["--store", store, "apply", str(defs)]) == 0
    assert "apply: 250/250 definitions\n" in terminal.getvalue()
    assert main(["--store", store, "verify"]) == 0
    assert "verify: 250/250 events replayed\n" in terminal.getvalue()
    assert "\r" not in capsys.readouterr().out  # stdout stays clean


def test_no_progress_when_stderr_is_not_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(tmp_path / "s")
    assert run(capsys, "--store", store, "request", "k", "--target", "t")[0] == 0
    code, out, err = run(capsys, "--store", store, "verify")
    assert code == 0 and err == "" and out.startswith("ok: replaying 1 events")


# -- plugins checked at apply --------------------------------------------------------------------


def _apply(capsys: pytest.CaptureFixture[str], tmp_path: Path, toml: str) -> tuple[int, str]:
    defs = tmp_path / "defs.toml"
    defs.write_text(toml)
    store = tmp_path / "s"
    code, _, err = run(capsys, "--store", str(store), "apply", str(defs))
    if code != 0 and (store / "data.mdb").exists():
        s = LmdbStore(str(store))
        try:
            assert Kernel(s).schedules(include_deleted=True) == []  # nothing written
            assert Kernel(s).sensors(include_deleted=True) == []
        finally:
            s.close()
    return code, err


SCHEDULE = '[[schedule]]\nid = "s"\ncron = "0 * * * *"\nrun = {{ target = "t"{extra} }}\n'


def test_apply_refuses_an_unknown_launcher_naming_the_installed_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _apply(capsys, tmp_path, SCHEDULE.format(extra=', launcher = "k8s"'))
    assert code == 2
    assert "no launcher plugin 'k8s' is installed" in err
    assert "installed launchers: memory, subprocess" in err


def test_apply_refuses_an_unknown_connector_and_evaluator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = (
        '[[sensor]]\nid = "q"\ntype = "poll"\nconnector = "kafka"\nrun = { target = "t" }\n'
        '[[schedule]]\nid = "s"\ncron = "0 * * * *"\nevaluator = "holidays"\n'
        'run = { target = "t" }\n'
    )
    code, err = _apply(capsys, tmp_path, toml)
    assert code == 2
    assert "sensor 'q': no connector plugin 'kafka' is installed" in err
    assert "installed connectors: filesystem" in err
    assert "schedule 's': no evaluator plugin 'holidays' is installed" in err


def test_apply_refuses_a_plugin_of_the_wrong_kind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _apply(capsys, tmp_path, SCHEDULE.format(extra=', launcher = "filesystem"'))
    assert code == 2
    assert "plugin 'filesystem' is not a launcher: it does not implement arcoflow_launch" in err


def test_apply_checks_the_filesystem_connector_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sensor = '[[sensor]]\nid = "f"\ntype = "poll"\nconnector = "filesystem"\nconfig = CONFIG\n'
    sensor += 'run = { target = "t" }\n'
    code, err = _apply(
        capsys, tmp_path, sensor.replace("CONFIG", '{ path = "i", max_files = "x" }')
    )
    assert code == 2
    assert "sensor 'f': connector 'filesystem': config.max_files must be an integer" in err
    code, err = _apply(capsys, tmp_path, sensor.replace("CONFIG", '{ pattern = "*.csv" }'))
    assert code == 2 and "config.path (the directory to watch) is required" in err
    code, err = _apply(capsys, tmp_path, sensor.replace("CONFIG", '{ path = "i", patern = "*" }'))
    assert code == 2 and "unknown config key(s) patern" in err
    # The directory need not exist yet at apply: the poll checks it.
    code, err = _apply(capsys, tmp_path, sensor.replace("CONFIG", '{ path = "not-yet" }'))
    assert code == 0, err


def test_apply_checks_the_subprocess_launcher_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    schedule = SCHEDULE.format(extra=', launcher = "subprocess"')
    code, err = _apply(capsys, tmp_path, schedule + "[launchers.subprocess]\ncwd = 3\n")
    assert code == 2
    assert "launcher 'subprocess': set [launchers.subprocess] command" in err
    code, err = _apply(
        capsys, tmp_path, schedule + '[launchers.subprocess]\ncommand = "true"\nlog_dri = "x"\n'
    )
    assert code == 2 and "unknown setting 'log_dri'" in err
    code, err = _apply(
        capsys,
        tmp_path,
        schedule + '[launchers.subprocess]\ncommand = "true"\nmax_attempts = 3\n',
    )
    assert code == 0, err


def test_a_launcher_table_for_a_missing_plugin_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _apply(capsys, tmp_path, SCHEDULE.format(extra="") + "[launchers.nomad]\nx = 1\n")
    assert code == 2 and "no launcher plugin 'nomad' is installed" in err


def test_run_checks_its_config_file_before_applying(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    defs = tmp_path / "defs.toml"
    defs.write_text(SCHEDULE.format(extra=', launcher = "k8s"'))
    store = tmp_path / "s"
    code, _, err = run(capsys, "--store", str(store), "run", "--once", "--config", str(defs))
    assert code == 2 and "no launcher plugin 'k8s' is installed" in err


def test_run_once_exits_1_when_its_cycle_recorded_failures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    defs = tmp_path / "defs.toml"
    defs.write_text(
        '[[sensor]]\nid = "f"\ntype = "poll"\nconnector = "filesystem"\n'
        f'config = {{ path = "{tmp_path / "missing"}" }}\nrun = {{ target = "t" }}\n'
    )
    store = str(tmp_path / "s")
    code, out, err = run(capsys, "--store", store, "--json", "run", "--once", "--config", str(defs))
    assert code == 1, err
    (evaluation,) = json.loads(out)["evaluations"]
    assert evaluation["status"] == "FAILED" and "is not a directory" in evaluation["reason"]
    (tmp_path / "missing").mkdir()
    code, _, err = run(capsys, "--store", store, "run", "--once")
    assert code == 0, err


def test_json_logs_are_one_object_per_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "arcoflow.sdk.cli", "run", "--once", "-v", "--log-format", "json"],
        env=os.environ | {"ARCOFLOW_STORE": str(tmp_path / "s")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    records: list[dict[str, Any]] = [json.loads(line) for line in done.stderr.splitlines()]
    assert records, "-v logs at least the clean stop"
    assert all(set(r) >= {"time", "level", "logger", "message"} for r in records)
    assert any(r["message"].startswith("stopped cleanly") for r in records)


def test_the_daemon_warns_at_start_about_stored_sensors_whose_config_is_refused(
    store_dir: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    store = LmdbStore(store_dir)
    try:  # written through the kernel, which knows no plugins: the SDK's check is bypassed
        config = {"path": "in", "max_files": "ten"}
        sensor = SensorDefinition(
            "f", "poll", RunTemplate("t"), connector="filesystem", config=config
        )
        Kernel(store).define_sensor(sensor, now=T0)
    finally:
        store.close()
    caplog.set_level(logging.WARNING, "arcoflow.daemon")
    run(capsys, "--store", store_dir, "run", "--once")
    assert "sensor f: connector 'filesystem': config.max_files must be an integer" in caplog.text


def test_metrics_without_the_extra_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    store = str(tmp_path / "s")
    code, _, err = run(capsys, "--store", store, "run", "--once", "--metrics-port", "9")
    assert code == 2
    assert err == (
        "arcoflow: error: --metrics-port: metrics need the prometheus_client library: "
        "pip install 'arcoflow[metrics]'\n"
    )
