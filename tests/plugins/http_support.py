"""Helpers shared by the HTTP plugin tests.

* :func:`served` runs ``make_server`` (uvicorn on a free loopback port) in a thread for the
  length of a ``with``.
* :class:`Client` is a ``urllib.request`` client that checks *every* answer: the content type,
  no traceback, and the body decoded (strictly: no unknown field) into the Struct the route
  documents for that status, or into :class:`Problem` for an error.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import msgspec
from arcoflow.kernel import Kernel, RunTemplate, ScheduleDefinition, SensorDefinition
from arcoflow.plugins.http.routes import PROBLEM_TYPE, ROUTES, Route, Text
from arcoflow.plugins.http.serve import Server, make_server
from arcoflow.plugins.http.shapes import Problem

__all__ = [
    "Client",
    "Reply",
    "assert_well_formed",
    "route_of",
    "seed",
    "served",
]


def route_of(method: str, path: str) -> Route | None:
    """The route that answers ``method path`` (``HEAD`` is answered by the ``GET`` route)."""
    method = "GET" if method == "HEAD" else method
    segments = [unquote(s) for s in path.partition("?")[0].split("/")[1:]]
    return next((r for r in ROUTES if r.method == method and r.match(segments) is not None), None)


@dataclass
class Reply:
    status: int
    headers: Any  # the answer's headers: case-insensitive (``http.client.HTTPMessage``)
    text: str

    @property
    def json(self) -> Any:
        return json.loads(self.text)


class Client:
    """A ``urllib.request`` client for one server; ``check`` validates every answer."""

    def __init__(self, server: Server, check: bool = True, base: str = "") -> None:
        self.base = server.url + base
        self.prefix = base  # the path the API is mounted at: its links start with it
        self.check = check
        self.replies: list[tuple[str, str, Reply]] = []

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        req = urllib.request.Request(
            self.base + path, data=body, method=method, headers=dict(headers or {})
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as answer:
                reply = Reply(answer.status, answer.headers, answer.read().decode())
        except urllib.error.HTTPError as exc:
            reply = Reply(exc.code, exc.headers, exc.read().decode())
        self.replies.append((method, path, reply))
        if self.check:
            assert_well_formed(method, path, reply)
        return reply

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(
        self,
        path: str,
        payload: Any = None,
        *,
        key: str | None = None,
        raw: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """POST JSON (``payload``) or ``raw`` bytes; ``key`` goes in ``Idempotency-Key``."""
        sent = {"Content-Type": "application/json"}
        if key is not None:
            sent["Idempotency-Key"] = key
        sent.update(headers or {})
        body = raw if raw is not None else json.dumps(payload).encode()
        return self.request("POST", path, body, sent)

    def walk(self, path: str, limit: int) -> list[list[dict[str, Any]]]:
        """Every page of a listing, following ``next`` until it is null."""
        pages: list[list[dict[str, Any]]] = []
        sep = "&" if "?" in path else "?"
        url: str | None = f"{path}{sep}limit={limit}"
        while url is not None:
            reply = self.get(url)
            assert reply.status == 200, reply.text
            pages.append(reply.json["items"])
            link = reply.json["next"]
            if link is not None:
                assert reply.headers["Link"] == f'<{link}>; rel="next"'
                assert reply.json["next_cursor"] in link
            if link is not None:
                assert link.startswith(self.prefix + "/"), link
                link = link.removeprefix(self.prefix)
            url = link
            assert len(pages) < 10_000, "pagination does not end"
        return pages


def assert_well_formed(method: str, path: str, reply: Reply) -> None:
    """The documented shape: a success decodes into its route's Struct, an error is a
    problem (RFC 9457) whose status is the answer's; never a traceback."""
    assert "Traceback" not in reply.text and 'File "' not in reply.text, reply.text
    if method == "HEAD":
        assert reply.text == "", reply.text
        return
    if path.partition("?")[0] == "/openapi.json" and reply.status == 200:
        assert reply.json["openapi"] == "3.1.0"  # tests/plugins/test_http_openapi.py checks it
        return
    route = route_of(method, path)
    shape = None if route is None else route.responses.get(reply.status)
    if reply.status >= 400 or shape is None:
        assert reply.status >= 400, f"{method} {path} answered {reply.status}, not documented"
        assert reply.headers.get("Content-Type") == "application/problem+json", reply.headers
        try:
            found = msgspec.json.decode(reply.text, type=Problem)
        except msgspec.ValidationError as exc:
            raise AssertionError(f"{method} {path} -> {reply.status}: {exc}") from None
        assert found.status == reply.status and found.type == PROBLEM_TYPE + found.title
        assert found.title and found.detail, found
        return
    if shape is Text:
        assert reply.headers.get("Content-Type", "").startswith("text/plain"), reply.headers
        return
    assert reply.headers.get("Content-Type") == "application/json", reply.headers
    try:  # strict: an undocumented, missing or mistyped field fails
        msgspec.json.decode(reply.text, type=shape)
    except msgspec.ValidationError as exc:
        raise AssertionError(f"{method} {path} -> {reply.status}: {exc}") from None


@contextmanager
def served(kernel: Kernel, **options: Any) -> Iterator[Server]:
    """``make_server`` on a free loopback port, served by a thread while the block runs."""
    server = make_server(kernel, "127.0.0.1", 0, **options)
    thread = server.serve_in_thread()
    try:
        yield server
    finally:
        server.stop()
        thread.join(15)


def seed(kernel: Kernel) -> None:
    """A push sensor ``orders`` (running) and ``paused`` (stopped), a poll sensor ``files``,
    and a schedule ``hourly`` with three triggered ticks."""
    template = RunTemplate("etl.load", tags={"team": "data"})
    kernel.define_sensor(SensorDefinition("orders", "push", template), now=0)
    kernel.define_sensor(SensorDefinition("paused", "push", template), now=0)
    kernel.set_sensor_running("paused", False, now=0)
    kernel.define_sensor(SensorDefinition("files", "poll", template, connector="filesystem"), now=0)
    kernel.define_schedule(ScheduleDefinition("hourly", "0 * * * *", template), now=0)
    for hour in (1, 2, 3):
        kernel.evaluate_schedule("hourly", now=hour * 3600)
