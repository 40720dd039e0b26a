"""``arcoflow serve``: registered through the ``arcoflow_add_commands`` hook, found by entry
point, run as a real process that prints its port and exits 0 on SIGTERM."""

from __future__ import annotations

import argparse
import json
import queue
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

import arcoflow.plugins.http as http_plugin
import pytest
from arcoflow.kernel import Kernel, LmdbStore
from arcoflow.plugins.http.serve import make_server
from arcoflow.sdk import Plugins

ARCOFLOW = Path(sys.executable).with_name("arcoflow")


def _serve_exists() -> bool:
    if not ARCOFLOW.exists():
        return False
    done = subprocess.run(
        [str(ARCOFLOW), "--help"], check=False, capture_output=True, text=True, timeout=60
    )
    return re.search(r"^\s+serve\b", done.stdout + done.stderr, re.MULTILINE) is not None


def _parser() -> tuple[argparse.ArgumentParser, dict[str, Any]]:
    plugins = Plugins()
    plugins.register(http_plugin, "http")
    parser = argparse.ArgumentParser(prog="arcoflow")
    sub = parser.add_subparsers(dest="command")
    handlers: dict[str, Any] = {}
    problems = plugins.add_commands(sub, handlers.__setitem__)
    assert problems == []
    return parser, handlers


def test_the_hook_registers_serve_with_its_options() -> None:
    parser, handlers = _parser()
    assert handlers == {"serve": http_plugin.serve_command}
    args = parser.parse_args(["serve", "--port", "0"])
    assert (args.host, args.port) == ("127.0.0.1", 0)
    assert args.max_body_bytes == 1024 * 1024
    for bad in (["--port", "70000"], ["--port", "x"], ["--max-body-bytes", "0"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["serve", *bad])


def test_serve_reports_a_port_it_cannot_bind(
    store_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parser, handlers = _parser()
    store = LmdbStore(store_dir)
    try:
        taken = make_server(Kernel(store), "127.0.0.1", 0)
        try:
            args = parser.parse_args(["serve", "--port", str(taken.port)])
            assert handlers["serve"](args, {"kernel": Kernel(store), "plugins": object()}) == 1
        finally:
            taken.close()
    finally:
        store.close()
    err = capsys.readouterr().err
    # one line in the CLI's error format (was "arcoflow serve: cannot listen ...")
    assert err.startswith("arcoflow: error: cannot listen on 127.0.0.1:") and err.count("\n") == 1


def test_serve_without_the_extra_says_what_to_install_in_one_line(
    store_dir: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # As on a machine without arcoflow[http]: uvicorn and starlette cannot be imported.
    for name in ("uvicorn", "starlette"):
        monkeypatch.setitem(sys.modules, name, None)
    for name in list(sys.modules):
        if name.startswith(("arcoflow.plugins.http.", "starlette.", "uvicorn.")):
            monkeypatch.delitem(sys.modules, name)
    parser, handlers = _parser()  # the plugin itself loads, and registers the command
    args = parser.parse_args(["serve", "--port", "0"])
    store = LmdbStore(store_dir)
    try:
        assert handlers["serve"](args, {"kernel": Kernel(store)}) == 2
    finally:
        store.close()
    captured = capsys.readouterr()
    assert captured.err == http_plugin.INSTALL_HINT + "\n"
    assert "pip install 'arcoflow[http]'" in captured.err and captured.out == ""
    assert captured.err.startswith("arcoflow: error: ")


def _line(stream: Any, timeout: float) -> str:
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    return lines.get(timeout=timeout)


@pytest.mark.slow
def test_serve_subprocess_takes_a_message_and_exits_0_on_sigterm(
    store_dir: str, tmp_path: Path
) -> None:
    if not _serve_exists():
        pytest.skip("the arcoflow CLI has no serve command yet")
    config = tmp_path / "defs.toml"
    config.write_text('[[sensor]]\nid = "orders"\ntype = "push"\nrun = { target = "etl.orders" }\n')
    applied = subprocess.run(
        [str(ARCOFLOW), "--store", store_dir, "apply", str(config)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert applied.returncode == 0, applied.stderr
    proc = subprocess.Popen(
        [str(ARCOFLOW), "--store", store_dir, "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = _line(proc.stdout, 60)
        found = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert found, f"no URL printed: {line!r}"
        base = f"http://127.0.0.1:{found.group(1)}"
        request = urllib.request.Request(
            base + "/sensors/orders/messages",
            data=json.dumps({"order": 7}).encode(),
            headers={"Content-Type": "application/json", "Idempotency-Key": "order-7"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 201
            evaluation = json.loads(answer.read())["evaluation"]
        with urllib.request.urlopen(base + "/runs", timeout=30) as answer:
            runs = json.loads(answer.read())["items"]
        assert [r["run_key"] for r in runs] == ["sensor:orders:order-7"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stderr = proc.stderr.read() if proc.stderr else ""
    assert "Traceback" not in stderr, stderr
    # The message is durable: the store, reopened, has the evaluation the server returned.
    store = LmdbStore(store_dir)
    try:
        (row,) = Kernel(store).evaluations("orders")
        assert row.evaluation.eval_id == evaluation["eval_id"]
    finally:
        store.close()
