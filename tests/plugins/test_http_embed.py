"""The example host application (``examples/host_app.py``) over real HTTP: arcoflow's API
mounted under ``/arcoflow`` behind the host's own authentication middleware, with links,
``Location`` and the OpenAPI document all relative to the mount."""

from __future__ import annotations

import importlib.util
import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from arcoflow.kernel import Kernel, LmdbStore, RunTemplate
from arcoflow.plugins.http.serve import Server

try:  # tests/plugins may become a package
    from .http_support import Client, seed
except ImportError:
    from http_support import Client, seed

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "host_app.py"
TOKEN = "s3cret"


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("host_app", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["host_app"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def host(store_dir: str) -> Iterator[tuple[Server, Kernel]]:
    store = LmdbStore(store_dir)
    kernel = Kernel(store)
    seed(kernel)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = Server(
        _example().host_app(kernel, TOKEN), sock, max_connections=16, request_seconds=10
    )
    thread = server.serve_in_thread()
    try:
        yield server, kernel
    finally:
        server.stop()
        thread.join(15)
        store.close()


def _authorized(server: Server) -> Client:
    client = Client(server, base="/arcoflow")

    def request(method: str, path: str, body: Any = None, headers: Any = None) -> Any:
        sent = {"Authorization": f"Bearer {TOKEN}", **(headers or {})}
        return Client.request(client, method, path, body, sent)

    client.request = request  # type: ignore[method-assign]
    return client


def test_the_host_authenticates_before_arcoflow_answers(host: tuple[Server, Kernel]) -> None:
    server, kernel = host
    anonymous = Client(server, check=False)
    assert anonymous.get("/").json == {"app": "the host", "automation": "/arcoflow"}
    for path in ("/arcoflow/runs", "/arcoflow/openapi.json", "/arcoflow/healthz"):
        refused = anonymous.get(path)
        assert refused.status == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
    wrong = anonymous.request(
        "POST",
        "/arcoflow/sensors/orders/messages",
        b"{}",
        {"Authorization": "Bearer nope", "Content-Type": "application/json"},
    )
    assert wrong.status == 401
    assert kernel.evaluations("orders") == []  # refused before it reached the kernel


def test_the_mounted_api_answers_with_links_under_its_prefix(
    host: tuple[Server, Kernel],
) -> None:
    server, kernel = host
    client = _authorized(server)  # checks every answer's shape, as the other HTTP tests
    pushed = client.post("/sensors/orders/messages", {"order": 1}, key="m-1")
    assert pushed.status == 201
    location = pushed.headers["Location"]
    assert location.startswith("/arcoflow/evaluations/")
    assert client.get(location.removeprefix("/arcoflow")).json == pushed.json["evaluation"]
    for i in range(3):
        kernel.request_run(f"r{i}", RunTemplate("t"), now=100 + i)
    first = client.get("/runs?limit=2")
    assert first.json["next"].startswith("/arcoflow/runs?")
    assert first.headers["Link"] == f'<{first.json["next"]}>; rel="next"'
    pages = client.walk("/runs", 2)
    assert [r["run_id"] for p in pages for r in p] == [r.run_id for r in kernel.runs(limit=100)]
    document = client.get("/openapi.json").json
    assert document["servers"] == [{"url": "/arcoflow"}]
    assert "/sensors/{sensor_id}/messages" in document["paths"]
    assert json.loads(json.dumps(document))["openapi"] == "3.1.0"
