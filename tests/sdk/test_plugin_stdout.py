"""Plugins cannot corrupt output (issue 9, item 6): ``--json`` prints one JSON document, whatever
a plugin prints, from whichever thread, and whatever its subprocesses print.

Before: a connector that printed put its text into ``arcoflow --json evaluate``'s stdout.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import threading
from contextlib import redirect_stdout
from datetime import UTC, datetime
from pathlib import Path

import pytest
from arcoflow.sdk import (
    Plugins,
    PollContext,
    PollResult,
    RunRequest,
    RunTemplate,
    SensorDefinition,
    hookimpl,
)
from arcoflow.sdk.stdout import RoutedStdout, document_stdout, plugin_code

CHATTY = """
import os, subprocess, sys, threading
from arcoflow.sdk import PollResult, RunRequest, hookimpl

print("chatty: imported")

@hookimpl
def arcoflow_poll(context):
    print("chatty: print")
    sys.stdout.write("chatty: sys.stdout.write\\n")
    sys.stdout.flush()
    os.write(1, b"chatty: fd 1\\n")
    subprocess.run([sys.executable, "-c", "print('chatty: a child process')"], check=True)
    helper = threading.Thread(target=print, args=("chatty: its own thread",))
    helper.start()
    helper.join()
    return PollResult([RunRequest("k1")], cursor="1")
"""
DEFINITIONS = """
[[sensor]]
id = "chat"
type = "poll"
connector = "chatty"
run = { target = "t" }
"""
SAID = [
    "chatty: imported",
    "chatty: print",
    "chatty: sys.stdout.write",
    "chatty: fd 1",
    "chatty: a child process",
    "chatty: its own thread",
]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A distribution that declares the ``chatty`` connector, found through PYTHONPATH."""
    site = tmp_path / "site"
    info = site / "chatty-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: chatty\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[arcoflow]\nchatty = chatty\n")
    (site / "chatty.py").write_text(CHATTY)
    return os.environ | {"PYTHONPATH": str(site)}


def _arcoflow(env: dict[str, str], store: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "arcoflow.sdk.cli", "--store", str(store), "--json", *argv],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_json_output_is_one_document_whatever_a_connector_prints(
    tmp_path: Path, env: dict[str, str]
) -> None:
    definitions = tmp_path / "arcoflow.toml"
    definitions.write_text(DEFINITIONS)
    store = tmp_path / "store"
    applied = _arcoflow(env, store, "apply", str(definitions))
    assert applied.returncode == 0, applied.stderr
    json.loads(applied.stdout)
    done = _arcoflow(env, store, "evaluate", "--now", "2030-01-01T00:00:00Z")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # exactly one document: nothing before or after it
    assert [e["run_keys"] for e in report["evaluations"]] == [["sensor:chat:k1"]]
    for line in SAID:
        assert line in done.stderr  # not lost: in the log stream
        assert line not in done.stdout


def test_a_plugin_command_still_prints_its_own_output(tmp_path: Path, env: dict[str, str]) -> None:
    """``arcoflow plugins`` and plugin commands are the command: their output stays on stdout."""
    done = _arcoflow(env, tmp_path / "store", "plugins")
    assert done.returncode == 0, done.stderr
    assert "chatty" in {p["name"] for p in json.loads(done.stdout)}
    assert "chatty: imported" in done.stderr


class Chatty:
    @hookimpl
    def arcoflow_poll(self, context: PollContext) -> PollResult:
        print("chatty in a worker thread")
        return PollResult([RunRequest("k")], cursor="1")


def test_a_plugin_call_prints_to_stderr_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    """The same in one process (the embedding case): the hook runs in a worker thread."""
    plugins = Plugins()
    plugins.register(Chatty(), "chatty")
    sensor = SensorDefinition("s", "poll", RunTemplate("t"), connector="chatty")
    context = PollContext(sensor, None, None, 0, datetime(2030, 1, 1, tzinfo=UTC))
    result = plugins.poll("chatty", context, timeout=5)
    assert isinstance(result, PollResult)
    print("the caller's own line")
    captured = capsys.readouterr()
    assert captured.out == "the caller's own line\n"
    assert captured.err == "chatty in a worker thread\n"


def test_only_the_command_thread_writes_to_the_document_stream() -> None:
    document = io.StringIO()
    with redirect_stdout(document), document_stdout() as stream:
        assert stream is document
        print("the command")
        worker = threading.Thread(target=print, args=("another thread",))
        worker.start()
        worker.join()
        with plugin_code():
            print("plugin code on the command's thread")
    assert document.getvalue() == "the command\n"


def test_the_routing_proxy_is_installed_once() -> None:
    with redirect_stdout(io.StringIO()):
        with plugin_code():
            first = sys.stdout
        with plugin_code():
            assert sys.stdout is first
        assert isinstance(sys.stdout, RoutedStdout)


def test_fd_1_points_at_stderr_while_a_command_runs(tmp_path: Path) -> None:
    """In a process of its own (it moves file descriptors): a child process's output, and
    writes to fd 1, land on stderr; the document on the real stdout; fd 1 is put back."""
    code = textwrap.dedent(
        """
        import os, subprocess, sys
        from arcoflow.sdk.stdout import document_stdout
        with document_stdout() as out:
            os.write(1, b"fd1\\n")
            subprocess.run([sys.executable, "-c", "print('child')"], check=True)
            out.write("document\\n")
        print("after")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60
    )
    assert done.stdout == "document\nafter\n"
    assert done.stderr == "fd1\nchild\n"
