"""The daemon: apply, cycle, stop cleanly — in-process, and as a real process on SIGTERM."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from arcoflow.kernel import InvalidDefinition, Kernel, LmdbStore
from arcoflow.plugins.memory_launcher import MemoryLauncher
from arcoflow.sdk import Plugins
from arcoflow.sdk.cli import main
from arcoflow.sdk.daemon import run_daemon
from arcoflow.sdk.testing import Clock, temporary_kernel

from .helpers import T0, Counter

SLOW_PLUGIN = textwrap.dedent(
    """
    import time
    from arcoflow.sdk import PollResult, RunRequest, hookimpl

    @hookimpl
    def arcoflow_poll(context):
        marker = context.sensor.config["marker"]
        n = int(context.cursor or "0") + 1
        with open(marker, "a") as fh:
            fh.write(f"start {n}\\n")
        time.sleep(context.sensor.config["sleep"])
        with open(marker, "a") as fh:
            fh.write(f"end {n}\\n")
        return PollResult([RunRequest(f"batch-{n}")], cursor=str(n))
    """
)

EMBEDDED_DAEMON = textwrap.dedent(
    """
    import sys
    from arcoflow.kernel import Kernel, LmdbStore
    from arcoflow.sdk import Plugins
    from arcoflow.sdk.daemon import run_daemon
    import slowplug

    plugins = Plugins.discover()
    plugins.register(slowplug, "slowplug")
    store = LmdbStore(sys.argv[1])
    code = run_daemon(
        Kernel(store), plugins, sys.argv[2], 0.2, False,
        listener=lambda kind, item: print(kind, flush=True),
    )
    store.close()
    sys.exit(code)
    """
)


def _definitions(tmp_path: Path, marker: Path, connector: str = "slowplug") -> Path:
    path = tmp_path / "arcoflow.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            [[sensor]]
            id = "slow"
            type = "poll"
            connector = "{connector}"
            minimum_interval = 1
            timeout = 30
            config = {{ marker = "{marker}", sleep = 1.5 }}
            run = {{ target = "etl.batch", launcher = "memory" }}
            """
        )
    )
    return path


def _plugin_dir(tmp_path: Path, installed: bool = True) -> Path:
    """The slow connector module, found through PYTHONPATH; ``installed``: with a dist-info
    folder declaring its ``arcoflow`` entry point, as pip would leave it."""
    root = tmp_path / "site"
    root.mkdir()
    (root / "slowplug.py").write_text(SLOW_PLUGIN)
    if installed:
        info = root / "slowplug-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: slowplug\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text("[arcoflow]\nslowplug = slowplug\n")
    return root


def _wait_for(proc: subprocess.Popen[str], path: Path, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the daemon exited early: {proc.communicate()}")
        time.sleep(0.02)
    raise AssertionError(f"{text!r} never appeared in {path}")


def _assert_nothing_lost(store_dir: str, marker: Path) -> None:
    started = marker.read_text().count("start")
    assert started >= 1 and marker.read_text().count("end") == started  # none cut short
    store = LmdbStore(store_dir)
    try:
        kernel = Kernel(store)
        assert kernel.verify().ok
        evaluations = kernel.evaluations("slow")
        assert len(evaluations) == started  # the in-flight poll was recorded
        assert {e.evaluation.status for e in evaluations} == {"REQUESTED"}
        runs = kernel.runs()
        assert len(runs) == started
        assert {r.status for r in runs} == {"LAUNCHED"}  # its cycle finished: launched too
    finally:
        store.close()


def _sigterm_mid_cycle(
    command: list[str], env: dict[str, str], marker: Path
) -> tuple[int, str, str]:
    """Start ``command``, send SIGTERM once its first launch has begun (``marker`` says
    ``start 1``), and return its exit code, stdout and stderr."""
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_for(proc, marker, "start 1")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out, err


@pytest.mark.slow
def test_an_embedded_daemon_stops_cleanly_on_sigterm_mid_cycle(
    tmp_path: Path, store_dir: str
) -> None:
    marker = tmp_path / "marker"
    site = _plugin_dir(tmp_path, installed=False)  # registered in code by the embedder
    env = os.environ | {"PYTHONPATH": str(site)}
    code, out, err = _sigterm_mid_cycle(
        [sys.executable, "-c", EMBEDDED_DAEMON, store_dir, str(_definitions(tmp_path, marker))],
        env,
        marker,
    )
    assert code == 0, err
    assert "SIGTERM: finishing the cycle in flight" in err
    assert out.split()[:3] == ["change", "evaluation", "launch"]
    _assert_nothing_lost(store_dir, marker)


@pytest.mark.slow
def test_the_run_command_stops_cleanly_on_sigterm_mid_cycle(tmp_path: Path, store_dir: str) -> None:
    arcoflow = shutil.which("arcoflow", path=os.path.dirname(sys.executable))
    assert arcoflow is not None, "the arcoflow console script is not installed"
    marker = tmp_path / "marker"
    env = os.environ | {"PYTHONPATH": str(_plugin_dir(tmp_path))}
    config = _definitions(tmp_path, marker)
    code, out, err = _sigterm_mid_cycle(
        [arcoflow, "--store", store_dir, "run", "--config", str(config), "--interval", "0.2"],
        env,
        marker,
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "change      sensor slow created (v1)"
    assert lines[1].startswith("evaluation  slow REQUESTED -> sensor:slow:batch-1")
    assert lines[2].endswith("sensor:slow:batch-1 LAUNCHED via memory (memory-1)")
    _assert_nothing_lost(store_dir, marker)


def test_run_once_applies_the_file_and_reports_one_json_document(
    tmp_path: Path, store_dir: str
) -> None:
    marker = tmp_path / "marker"
    env = os.environ | {"PYTHONPATH": str(_plugin_dir(tmp_path))}
    config = _definitions(tmp_path, marker)
    config.write_text(config.read_text().replace("sleep = 1.5", "sleep = 0"))
    done = _cli(env, "--store", store_dir, "--json", "run", "--config", str(config), "--once")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert [c["action"] for c in document["changes"]] == ["created"]
    assert [e["run_keys"] for e in document["evaluations"]] == [["sensor:slow:batch-1"]]
    assert [r["status"] for r in document["launches"]] == ["LAUNCHED"]
    assert document["failures"] == []


def test_the_plugins_command_lists_installed_plugins_and_their_hooks(
    tmp_path: Path, store_dir: str
) -> None:
    env = os.environ | {"PYTHONPATH": str(_plugin_dir(tmp_path))}
    done = _cli(env, "--store", store_dir, "--json", "plugins")
    assert done.returncode == 0, done.stderr
    plugins = {p["name"]: p for p in json.loads(done.stdout)}
    assert plugins["slowplug"] == {
        "name": "slowplug",
        "hooks": ["arcoflow_poll"],
        "source": "slowplug 1.0 (slowplug)",
        "status": "loaded",
        "error": None,
    }
    assert plugins["subprocess"]["hooks"] == [
        "arcoflow_launch",
        "arcoflow_run_state",
        "arcoflow_check_config",
    ]
    table = _cli(env | {"ARCOFLOW_DISABLE_PLUGINS": "http"}, "--store", store_dir, "plugins").stdout
    assert "slowplug    poll" in table and "http" not in table


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``arcoflow ARGS`` in a child process with ``env``; its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "arcoflow.sdk.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _daemon_kernel_setup(tmp_path: Path) -> tuple[Path, Plugins, MemoryLauncher]:
    config = tmp_path / "defs.toml"
    config.write_text(
        textwrap.dedent(
            """
            [[schedule]]
            id = "minutely"
            cron = "* * * * *"
            run = { target = "t", launcher = "memory" }

            [[sensor]]
            id = "counter"
            type = "poll"
            connector = "counter"
            minimum_interval = 60
            run = { target = "c", launcher = "memory" }

            [launchers.memory]
            max_attempts = 2
            """
        )
    )
    plugins = Plugins()
    memory = MemoryLauncher()
    plugins.register(memory, "memory")
    plugins.register(Counter(), "counter")
    return config, plugins, memory


def test_run_daemon_once_applies_then_cycles(tmp_path: Path) -> None:
    config, plugins, memory = _daemon_kernel_setup(tmp_path)
    events: list[tuple[str, Any]] = []
    clock = Clock(T0 - 30)
    with temporary_kernel() as kernel:
        code = run_daemon(
            kernel,
            plugins,
            str(config),
            1,
            True,
            clock=clock,
            listener=lambda k, i: events.append((k, i)),
        )
        assert code == 0
        kinds = [k for k, _ in events]
        assert kinds == ["change", "change", "evaluation", "launch"]
        clock.advance(60)
        assert run_daemon(kernel, plugins, None, 1, True, clock=clock) == 0
        assert len(memory.launched) == 3  # the sensor's first run, a tick, a second poll
        assert [t.status for t in kernel.ticks("minutely")] == ["TRIGGERED"]


def test_run_daemon_stops_when_its_stop_event_is_set(tmp_path: Path) -> None:
    config, plugins, _ = _daemon_kernel_setup(tmp_path)
    stop = threading.Event()
    cycles: list[str] = []
    result: list[int] = []
    with temporary_kernel() as kernel:
        # Off the main thread no signal handlers are installed: ``stop`` is the way to stop.
        thread = threading.Thread(
            target=lambda: result.append(
                run_daemon(
                    kernel,
                    plugins,
                    str(config),
                    0.05,
                    False,
                    stop=stop,
                    listener=lambda k, i: cycles.append(k),
                )
            )
        )
        thread.start()
        time.sleep(0.3)
        stop.set()
        thread.join(10)
        assert not thread.is_alive() and result == [0]


def test_run_daemon_for_a_duration(tmp_path: Path) -> None:
    config, plugins, _ = _daemon_kernel_setup(tmp_path)
    with temporary_kernel() as kernel:
        started = time.monotonic()
        assert run_daemon(kernel, plugins, str(config), 0.1, False, duration=0.4) == 0
        assert 0.3 < time.monotonic() - started < 5


def test_a_bad_definitions_file_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[schedule]]\nid = "x"\ncron = "61 * * * *"\nrun = { target = "t" }\n')
    with temporary_kernel() as kernel:
        with pytest.raises(InvalidDefinition, match="schedule 'x'"):
            run_daemon(kernel, Plugins(), str(bad), 1, True)
        assert kernel.schedules() == [] and list(kernel.log()) == []


def test_bad_launcher_settings_are_input_errors(tmp_path: Path) -> None:
    config, plugins, _ = _daemon_kernel_setup(tmp_path)
    config.write_text(config.read_text().replace("max_attempts = 2", "max_attempts = 0"))
    with temporary_kernel() as kernel, pytest.raises(ValueError, match="max_attempts"):
        run_daemon(kernel, plugins, str(config), 1, True)


def test_run_json_streams_one_object_per_event(
    tmp_path: Path, store_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "marker"
    config = _definitions(tmp_path, marker, connector="filesystem")
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    (incoming / "a.csv").write_text("a")
    config.write_text(
        config.read_text().replace(
            f'{{ marker = "{marker}", sleep = 1.5 }}', f'{{ path = "{incoming}" }}'
        )
    )
    code = main(
        [
            "--store",
            store_dir,
            "--json",
            "run",
            "--config",
            str(config),
            "--for",
            "1",
            "--interval",
            "0.2",
        ]
    )
    assert code == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["event"] for e in events][:3] == ["change", "evaluation", "launch"]
    assert events[1]["run_keys"][0].startswith("sensor:slow:a.csv@")
    assert events[2]["status"] == "LAUNCHED" and events[2]["launcher"] == "memory"
