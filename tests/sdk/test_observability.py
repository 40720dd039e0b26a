"""Metrics (scraped for real, from the daemon's port and the HTTP API), the heartbeat that
``/healthz`` reports, and structured logs."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from arcoflow.kernel import Kernel, LmdbStore, load_definitions
from arcoflow.plugins import filesystem
from arcoflow.plugins.http.serve import make_server
from arcoflow.plugins.memory_launcher import MemoryLauncher
from arcoflow.sdk import Plugins
from arcoflow.sdk.cli import main
from arcoflow.sdk.daemon import run_daemon
from arcoflow.sdk.heartbeat import HEARTBEAT_FILE, read_heartbeat
from arcoflow.sdk.logs import JsonFormatter
from arcoflow.sdk.metrics import Metrics, StoreCollector, process_metrics
from prometheus_client import CollectorRegistry, generate_latest

from .helpers import T0

DEFS = """
[[schedule]]
id = "every-minute"
cron = "* * * * *"
catchup_window = "10m"
max_catchup_ticks = 3
run = { target = "t", launcher = "memory" }

[[sensor]]
id = "broken"
type = "poll"
connector = "filesystem"
minimum_interval = 1
config = { path = "does-not-exist" }
run = { target = "t" }
"""


def _sample(text: str, name: str, labels: str = "") -> float:
    """The value of one sample in a text exposition (``labels``: ``status="TRIGGERED"``)."""
    pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + r" (\S+)"
    found = re.search(r"^" + pattern + r"$", text, flags=re.M)
    assert found is not None, f"no sample {name}{{{labels}}} in:\n{text}"
    return float(found.group(1))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def daemon_store(tmp_path: Path) -> Iterator[tuple[Kernel, str, Path]]:
    defs = tmp_path / "defs.toml"
    defs.write_text(DEFS)
    path = str(tmp_path / "store")
    store = LmdbStore(path)
    try:
        yield Kernel(store), path, defs
    finally:
        store.close()


def _clock() -> Callable[[], int]:
    """Applies at T0, then every cycle reads T0+300: five minutes of ticks to catch up."""
    times = iter([T0])
    return lambda: next(times, T0 + 300)


def _plugins() -> Plugins:
    plugins = Plugins()
    plugins.register(MemoryLauncher(), "memory")
    plugins.register(filesystem, "filesystem")
    return plugins


def test_a_cycle_is_counted_by_status_and_outcome(
    daemon_store: tuple[Kernel, str, Path],
) -> None:
    kernel, _, defs = daemon_store
    metrics = Metrics(CollectorRegistry())
    code = run_daemon(kernel, _plugins(), str(defs), 1, True, clock=_clock(), metrics=metrics)
    assert code == 1  # the broken sensor's poll failed, and --once says so
    text = generate_latest(metrics.registry).decode()
    assert _sample(text, "arcoflow_ticks_total", 'status="TRIGGERED"') == 3
    assert _sample(text, "arcoflow_run_requests_total") == 3
    assert _sample(text, "arcoflow_launches_total", 'outcome="launched"') == 3
    assert _sample(text, "arcoflow_evaluations_total", 'status="FAILED"') == 1
    assert _sample(text, "arcoflow_failures_total", 'kind="evaluation"') == 1
    assert _sample(text, "arcoflow_cycle_duration_seconds_count") == 1
    # The three newest ticks at T0+300 (catch-up keeps 3): due 0, 60 and 120 seconds before.
    assert _sample(text, "arcoflow_tick_lag_seconds_count") == 3
    assert _sample(text, "arcoflow_tick_lag_seconds_sum") == 180
    assert _sample(text, "arcoflow_tick_lag_seconds_bucket", 'le="1.0"') == 1
    assert _sample(text, "arcoflow_tick_lag_seconds_bucket", 'le="60.0"') == 2
    assert _sample(text, "arcoflow_tick_lag_seconds_bucket", 'le="120.0"') == 3
    assert _sample(text, "arcoflow_last_cycle_timestamp_seconds") > 0


def test_the_daemon_serves_metrics_on_its_port(tmp_path: Path) -> None:
    defs = tmp_path / "defs.toml"
    defs.write_text(DEFS)
    store = str(tmp_path / "store")
    assert main(["--store", store, "request", "k", "--target", "t", "--launcher", "memory"]) == 0
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "arcoflow.sdk.cli",
            "run",
            "--config",
            str(defs),
            "--interval",
            "0.2",
            "--for",
            "60s",
            "--metrics-port",
            str(port),
            "--store",
            store,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 30
        text = ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    text = r.read().decode()
                if "arcoflow_cycle_duration_seconds_count" in text and (
                    _sample(text, "arcoflow_cycle_duration_seconds_count") >= 2
                ):
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.1)
        assert _sample(text, "arcoflow_cycle_duration_seconds_count") >= 2, text
        # The manual run, and the minutely schedule's run if the daemon crossed a minute.
        assert _sample(text, "arcoflow_launches_total", 'outcome="launched"') >= 1
        assert _sample(text, "arcoflow_failures_total", 'kind="evaluation"') >= 1
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    beat = read_heartbeat(store)
    assert beat is not None and beat.cycles >= 2 and beat.interval == 0.2


def test_the_http_api_serves_metrics_and_reports_the_last_cycle(
    daemon_store: tuple[Kernel, str, Path],
) -> None:
    kernel, path, defs = daemon_store
    server = make_server(kernel)
    thread = server.serve_in_thread()

    def get(route: str) -> tuple[str, str]:
        with urllib.request.urlopen(server.url + route, timeout=10) as answer:
            return answer.headers["Content-Type"], answer.read().decode()

    try:
        assert json.loads(get("/healthz")[1]) == {"status": "ok", "daemon": None}
        before = time.time()
        code = run_daemon(
            kernel,
            _plugins(),
            str(defs),
            1,
            True,
            clock=_clock(),
            metrics=process_metrics(),
            heartbeat_dir=path,
        )
        assert code == 1
        health = json.loads(get("/healthz")[1])
        daemon = health["daemon"]
        assert daemon["cycles"] == 1 and daemon["interval_seconds"] == 1
        assert daemon["pid"] == os.getpid() and 0 <= daemon["age_seconds"] < 60
        assert read_heartbeat(path) is not None
        assert read_heartbeat(path).finished_at >= before  # type: ignore[union-attr]
        content_type, text = get("/metrics")
        assert content_type.startswith("text/plain")
        # This process's daemon counters (the registry is process-wide, so at least)...
        assert _sample(text, "arcoflow_ticks_total", 'status="TRIGGERED"') >= 3
        # ...and the store's gauges, which any process can serve.
        assert _sample(text, "arcoflow_schedules", 'state="enabled"') == 1
        assert _sample(text, "arcoflow_sensors", 'state="failing"') == 1
        assert _sample(text, "arcoflow_due_lag_seconds", 'kind="schedule"') == 0
        assert _sample(text, "arcoflow_daemon_last_cycle_timestamp_seconds") >= int(before)
    finally:
        server.stop()
        thread.join(15)


def test_the_store_gauges_show_how_far_behind_the_most_overdue_schedule_is(
    daemon_store: tuple[Kernel, str, Path],
) -> None:
    kernel, _, defs = daemon_store
    kernel.apply(load_definitions(str(defs)), now=T0)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(kernel, clock=lambda: T0 + 3600))
    text = generate_latest(registry).decode()
    # Both first due at T0 (the minute the schedule was applied), read at T0+3600.
    assert _sample(text, "arcoflow_due_lag_seconds", 'kind="schedule"') == 3600
    assert _sample(text, "arcoflow_due_lag_seconds", 'kind="sensor"') == 3600
    assert _sample(text, "arcoflow_sensors", 'state="running"') == 1
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(kernel, clock=lambda: T0 - 1))
    text = generate_latest(registry).decode()
    assert _sample(text, "arcoflow_due_lag_seconds", 'kind="schedule"') == 0


def test_without_prometheus_client_metrics_say_which_extra_to_install(
    daemon_store: tuple[Kernel, str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel, _, _ = daemon_store
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ImportError, match=re.escape("pip install 'arcoflow[metrics]'")):
        Metrics()
    server = make_server(kernel)
    thread = server.serve_in_thread()
    try:
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(server.url + "/metrics", timeout=10)
        assert answer.value.code == 501
        assert "arcoflow[metrics]" in json.loads(answer.value.read())["detail"]
    finally:
        server.stop()
        thread.join(15)


def test_a_damaged_heartbeat_file_reads_as_no_heartbeat(tmp_path: Path) -> None:
    (tmp_path / HEARTBEAT_FILE).write_text("{not json")
    assert read_heartbeat(str(tmp_path)) is None
    assert read_heartbeat(str(tmp_path / "nowhere")) is None


def test_json_log_records_carry_time_level_logger_message_and_exception() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.LogRecord(
            "arcoflow.runtime", logging.ERROR, __file__, 1, "tick %s", ("x",), sys.exc_info()
        )
    data = json.loads(JsonFormatter().format(record))
    assert data["level"] == "ERROR" and data["logger"] == "arcoflow.runtime"
    assert data["message"] == "tick x" and "RuntimeError: boom" in data["exception"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", data["time"])
