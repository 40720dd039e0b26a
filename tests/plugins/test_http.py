"""The HTTP plugin against a real LMDB store: push delivery, idempotency under concurrency,
every refusal path, pagination, and the server's own limits.

Every answer read through :class:`Client` is also checked against ``plugins/openapi.json``.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from arcoflow.kernel import (
    Conflict,
    InputError,
    Kernel,
    NotFound,
    PayloadTooLarge,
    PushMessage,
    RunRequest,
    RunTemplate,
    ScheduleDefinition,
    SensorDefinition,
    StoreError,
    views,
)
from arcoflow.plugins.http.routes import encode_cursor
from arcoflow.plugins.http.serve import make_server
from arcoflow.sdk import Plugins, hookimpl

try:  # tests/plugins may become a package
    from .http_support import Client, Reply, assert_well_formed, served
except ImportError:
    from http_support import Client, Reply, assert_well_formed, served

MESSAGES = "/sensors/orders/messages"


@pytest.fixture
def server(kernel: Kernel) -> Iterator[Any]:
    with served(kernel) as s:
        yield s


@pytest.fixture
def client(server: Any) -> Client:
    return Client(server)


# -- push delivery ---------------------------------------------------------------------------


def test_new_message_is_201_and_a_redelivery_returns_the_original(
    client: Client, kernel: Kernel
) -> None:
    first = client.post(MESSAGES, {"order": 1}, key="m-1")
    assert first.status == 201
    assert first.json["duplicate"] is False
    evaluation = first.json["evaluation"]
    assert evaluation["message_id"] == "m-1"
    assert evaluation["status"] == "REQUESTED"
    assert evaluation["run_keys"] == ["sensor:orders:m-1"]

    # A re-delivery with another body, and the id in the body this time: still the original.
    again = client.post(MESSAGES, {"message_id": "m-1", "payload": {"order": 999}})
    assert again.status == 200
    assert again.json == {"evaluation": evaluation, "duplicate": True}

    assert len(kernel.evaluations("orders")) == 1
    (run,) = kernel.runs()[:1]
    assert run.run_key == "sensor:orders:m-1"
    assert run.config == {"payload": {"order": 1}}  # the first delivery's payload
    assert sum(r.run_key == "sensor:orders:m-1" for r in kernel.runs(limit=1000)) == 1


@pytest.mark.parametrize(
    ("body", "headers", "message_id", "payload"),
    [
        ({"a": 1}, {"Idempotency-Key": "h-1"}, "h-1", {"a": 1}),
        ({"a": 1}, {"X-Message-Id": "x-1"}, "x-1", {"a": 1}),
        ({"message_id": "b-1", "payload": [1, 2]}, {}, "b-1", [1, 2]),
        ({"message_id": "b-2"}, {}, "b-2", None),
        ({"payload": "text"}, {"Idempotency-Key": "h-2"}, "h-2", "text"),
        ([1, 2, 3], {"Idempotency-Key": "h-3"}, "h-3", [1, 2, 3]),
        ("just a string", {"Idempotency-Key": "h-4"}, "h-4", "just a string"),
        ({"message_id": "same"}, {"Idempotency-Key": "same"}, "same", None),
    ],
)
def test_message_id_and_payload_sources(
    client: Client,
    kernel: Kernel,
    body: Any,
    headers: dict[str, str],
    message_id: str,
    payload: Any,
) -> None:
    reply = client.post(MESSAGES, body, headers=headers)
    assert reply.status == 201, reply.text
    assert reply.json["evaluation"]["message_id"] == message_id
    run = kernel.run(reply.json["evaluation"]["run_ids"][0])
    assert run.config == {"payload": payload}


def test_concurrent_duplicate_posts_give_exactly_one_evaluation(
    client: Client, kernel: Kernel
) -> None:
    threads = 8
    barrier = threading.Barrier(threads)
    replies: list[Any] = []

    def deliver(n: int) -> None:
        barrier.wait()
        replies.append(client.post(MESSAGES, {"from": n}, key="race-1"))

    workers = [threading.Thread(target=deliver, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    assert sorted(r.status for r in replies) == [200] * (threads - 1) + [201]
    evaluations = {json.dumps(r.json["evaluation"], sort_keys=True) for r in replies}
    assert len(evaluations) == 1, "every delivery must answer with the one evaluation"
    assert [r.json["duplicate"] for r in replies].count(False) == 1
    assert len(kernel.evaluations("orders")) == 1
    assert [r.run_key for r in kernel.runs(limit=1000)].count("sensor:orders:race-1") == 1
    assert kernel.verify().ok


def test_concurrent_distinct_messages_are_all_recorded(client: Client, kernel: Kernel) -> None:
    def deliver(n: int) -> None:
        for i in range(4):
            assert client.post(MESSAGES, {"i": i}, key=f"t{n}-{i}").status == 201

    workers = [threading.Thread(target=deliver, args=(n,)) for n in range(6)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    ids = {e.evaluation.message_id for e in kernel.evaluations("orders", limit=100)}
    assert ids == {f"t{n}-{i}" for n in range(6) for i in range(4)}


def test_push_mapper_of_the_sensor_connector_is_used(kernel: Kernel) -> None:
    kernel.define_sensor(
        SensorDefinition("hooks", "push", RunTemplate("t"), connector="fanout"), now=0
    )
    seen: list[PushMessage] = []

    def fan_out(message: PushMessage) -> list[RunRequest]:
        seen.append(message)
        return [RunRequest(f"{message.message_id}/{n}") for n in message.payload["parts"]]

    def mapper_for(definition: SensorDefinition) -> Any:
        return fan_out if definition.connector == "fanout" else None

    with served(kernel, mapper_for=mapper_for) as server:
        client = Client(server)
        reply = client.post("/sensors/hooks/messages", {"parts": ["a", "b"]}, key="m")
        assert reply.status == 201
        assert reply.json["evaluation"]["run_keys"] == ["sensor:hooks:m/a", "sensor:hooks:m/b"]
        # A sensor without that connector keeps the default mapping.
        plain = client.post(MESSAGES, {"x": 1}, key="plain")
        assert plain.json["evaluation"]["run_keys"] == ["sensor:orders:plain"]
        # The connector is not asked again about a delivered message.
        assert client.post("/sensors/hooks/messages", {"parts": []}, key="m").status == 200
    assert [m.message_id for m in seen] == ["m"]
    assert seen[0].sensor.id == "hooks" and seen[0].payload == {"parts": ["a", "b"]}


def test_a_failing_push_mapper_is_a_failed_evaluation_not_an_error(kernel: Kernel) -> None:
    def broken(message: PushMessage) -> Any:
        raise RuntimeError("connector exploded")

    with served(kernel, mapper_for=lambda d: broken) as server:
        reply = Client(server).post(MESSAGES, {}, key="boom")
    assert reply.status == 201
    assert reply.json["evaluation"]["status"] == "FAILED"
    assert "connector exploded" in reply.json["evaluation"]["reason"]


# -- refusals: every one a JSON error, never a traceback -------------------------------------

BIG = 1024 * 1024  # the server's default body limit
HUGE = b"0" * 30  # digits of an integer beyond 64 bits


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "error"),
    [
        # bodies
        ("POST", MESSAGES, b"{not json", {}, 400, "InvalidJSON"),
        ("POST", MESSAGES, b"", {}, 400, "InvalidJSON"),
        ("POST", MESSAGES, b'{"a": NaN}', {}, 400, "InvalidJSON"),
        ("POST", MESSAGES, b'{"a": -Infinity}', {}, 400, "InvalidJSON"),
        ("POST", MESSAGES, b'{"message_id": "f", "payload": 1e400}', {}, 400, "InvalidJSON"),
        ("POST", MESSAGES, b'{"message_id": "i", "payload": 1%s}' % HUGE, {}, 400, "InputError"),
        ("POST", MESSAGES, b'{"message_id": "s", "payload": "\\ud800"}', {}, 400, "InputError"),
        ("POST", MESSAGES, b'{"message_id": "\\udfff"}', {}, 400, "InputError"),
        ("POST", MESSAGES, b"\xff\xfe{}", {}, 400, "InvalidJSON"),
        ("POST", MESSAGES, b"[" * 100_000 + b"]" * 100_000, {}, 400, "InvalidJSON"),
        ("POST", MESSAGES, b"x" * (BIG + 1), {}, 413, "RequestTooLarge"),
        ("POST", MESSAGES, b"{}", {"Content-Type": "text/plain"}, 415, "UnsupportedMediaType"),
        (
            "POST",
            MESSAGES,
            b"{}",
            {"Content-Type": "application/json; charset=latin-1"},
            415,
            "UnsupportedMediaType",
        ),
        ("POST", MESSAGES, b'{"a": 1}', {"Idempotency-Key": ""}, 400, "InvalidMessage"),
        (
            "POST",
            MESSAGES,
            b'{"message_id": "a", "payload": 1, "extra": 2}',
            {},
            400,
            "InvalidMessage",
        ),
        ("POST", MESSAGES, b'{"message_id": 7}', {}, 400, "InvalidMessage"),
        ("POST", MESSAGES, b'{"message_id": "a"}', {"Idempotency-Key": "b"}, 400, "InvalidMessage"),
        (
            "POST",
            MESSAGES,
            b"{}",
            {"Idempotency-Key": "a", "X-Message-Id": "b"},
            400,
            "InvalidMessage",
        ),
        ("POST", MESSAGES, b"{}", {"Idempotency-Key": "k" * 257}, 400, "InputError"),
        # sensors that do not take this message
        ("POST", "/sensors/nope/messages", b"{}", {"Idempotency-Key": "a"}, 404, "NotFound"),
        ("POST", "/sensors/Bad%20Id/messages", b"{}", {"Idempotency-Key": "a"}, 400, "InvalidId"),
        ("POST", "/sensors/files/messages", b"{}", {"Idempotency-Key": "a"}, 400, "InputError"),
        ("POST", "/sensors/paused/messages", b"{}", {"Idempotency-Key": "a"}, 400, "InputError"),
        # query parameters
        ("GET", "/runs?limit=0", None, {}, 400, "InvalidParameter"),
        ("GET", "/runs?limit=1001", None, {}, 400, "InvalidParameter"),
        ("GET", "/runs?limit=abc", None, {}, 400, "InvalidParameter"),
        ("GET", "/runs?limit=-1", None, {}, 400, "InvalidParameter"),
        ("GET", "/runs?limit=99999999999999999999", None, {}, 400, "InvalidParameter"),
        ("GET", "/runs?limit=1&limit=2", None, {}, 400, "InvalidParameter"),
        ("GET", "/runs?lmit=5", None, {}, 400, "InvalidParameter"),
        ("GET", "/runs?status=DONE", None, {}, 400, "InvalidParameter"),
        ("GET", "/schedules/hourly/ticks?status=RUN", None, {}, 400, "InvalidParameter"),
        ("GET", "/schedules/hourly?limit=5", None, {}, 400, "InvalidParameter"),
        ("GET", "/runs?cursor=%21%21%21", None, {}, 400, "InvalidCursor"),
        ("GET", "/runs?cursor=" + "A" * 600, None, {}, 400, "InvalidParameter"),
        ("GET", "/runs?cursor=YWJj", None, {}, 400, "InvalidCursor"),
        ("GET", "/sensors/orders/evaluations?limit=5000", None, {}, 400, "InvalidParameter"),
        # unknown or invalid items
        ("GET", "/schedules/nope", None, {}, 404, "NotFound"),
        ("GET", "/schedules/nope/ticks", None, {}, 404, "NotFound"),
        ("GET", "/schedules/NOT_VALID", None, {}, 400, "InvalidId"),
        ("GET", "/sensors/nope", None, {}, 404, "NotFound"),
        ("GET", "/sensors/nope/evaluations", None, {}, 404, "NotFound"),
        ("GET", "/ticks/hourly:1999-01-01T00:00:00Z", None, {}, 404, "NotFound"),
        ("GET", "/ticks/not-a-tick", None, {}, 400, "InputError"),
        ("GET", "/runs/6f1c1f0e-7a4b-5c1e-9d2a-a1c0f10a0001", None, {}, 404, "NotFound"),
        ("GET", "/runs/not-a-run", None, {}, 400, "InvalidId"),
        ("GET", "/runs/" + "a" * 600, None, {}, 400, "InvalidParameter"),
        ("GET", "/schedules/%ff", None, {}, 400, "InvalidId"),
        # routes and methods
        ("GET", "/nope", None, {}, 404, "RouteNotFound"),
        ("GET", "/schedules/", None, {}, 404, "RouteNotFound"),
        ("GET", "/sensors/orders/messages", None, {}, 405, "MethodNotAllowed"),
        ("POST", "/runs", b"{}", {}, 405, "MethodNotAllowed"),
        ("DELETE", "/schedules/hourly", None, {}, 405, "MethodNotAllowed"),
        ("PUT", "/sensors/orders", b"{}", {}, 405, "MethodNotAllowed"),
    ],
)
def test_refusals_are_json_errors(
    client: Client,
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str],
    status: int,
    error: str,
) -> None:
    sent = {"Content-Type": "application/json"} if body is not None else {}
    sent.update(headers)
    reply = client.request(method, path, body, sent)  # the client checks the error shape
    assert reply.status == status, reply.text
    assert reply.json["title"] == error, reply.text
    if status == 405:
        assert reply.headers["Allow"] in ("GET, HEAD", "POST")


def test_payload_above_the_sensor_limit_is_413(client: Client, kernel: Kernel) -> None:
    kernel.define_sensor(
        SensorDefinition("tiny", "push", RunTemplate("t"), max_payload_bytes=64), now=0
    )
    reply = client.post("/sensors/tiny/messages", {"blob": "x" * 100}, key="big")
    assert reply.status == 413
    assert reply.json["title"] == "PayloadTooLarge"
    assert kernel.evaluations("tiny") == []


def test_the_server_body_limit_is_configurable(kernel: Kernel) -> None:
    with served(kernel, max_body_bytes=32) as server:
        client = Client(server)
        assert client.post(MESSAGES, {"a": "x" * 40}, key="k").status == 413
        assert client.post(MESSAGES, {"a": 1}, key="k").status == 201


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InputError("bad"), 400),
        (PayloadTooLarge("too big"), 413),
        (NotFound("no such thing"), 404),
        (Conflict("sensor orders", 1, 2), 409),
        (StoreError("disk on fire at /secret/path"), 500),
        (RuntimeError("secret internals"), 500),
    ],
)
def test_kernel_errors_map_to_statuses(
    client: Client,
    kernel: Kernel,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    error: Exception,
    status: int,
) -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise error

    monkeypatch.setattr(kernel, "sensor", fail)
    with caplog.at_level(logging.ERROR, logger="arcoflow.http"):
        reply = client.get("/sensors/orders")
    assert reply.status == status
    if status == 500:
        assert reply.json["title"] == "InternalError"
        assert "secret" not in reply.text  # the details stay in the server's log
        assert any(r.exc_info for r in caplog.records), "the traceback must be logged"
    else:
        assert reply.json["title"] == type(error).__name__
        assert reply.json["detail"] == str(error)


def _raw(server: Any, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes; parse one answer (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(data)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed early: {received!r}"
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
        while len(body) < int(headers.get("content-length", 0)):
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", 400),
        (b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n", 404),
        (b"BREW /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 405),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 431),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-A: " + b"b" * 70_000 + b"\r\n\r\n", 431),
    ],
)
def test_malformed_requests_get_problem_answers(server: Any, data: bytes, status: int) -> None:
    """uvicorn's own refusals (h11 cannot parse the request, the head is too large) are
    problems too, never its plain-text 400."""
    got, headers, body = _raw(server, data)
    assert got == status
    assert headers["content-type"] == "application/problem+json"
    problem = json.loads(body)
    assert set(problem) == {"type", "title", "status", "detail"}
    assert problem["status"] == status
    assert b"Traceback" not in body


def test_chunked_and_lengthless_bodies_are_refused(server: Any) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request(
        "POST",
        MESSAGES,
        body=iter([b'{"a": 1}']),
        headers={"Content-Type": "application/json", "Idempotency-Key": "c"},
        encode_chunked=True,
    )
    answer = conn.getresponse()
    assert answer.status == 411
    assert json.loads(answer.read())["title"] == "LengthRequired"
    conn.close()
    status, _, body = _raw(
        server,
        b"POST /sensors/orders/messages HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nIdempotency-Key: n\r\n\r\n",
    )
    assert status == 411 and json.loads(body)["title"] == "LengthRequired"


def test_keep_alive_survives_answers_and_refusals(server: Any) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    for _ in range(3):
        conn.request("GET", "/healthz")
        answer = conn.getresponse()
        assert answer.status == 200 and json.loads(answer.read())["status"] == "ok"
    conn.request("GET", "/nope")
    answer = conn.getresponse()
    assert answer.status == 404 and answer.getheader("Connection") != "close"
    answer.read()
    # A body the API never reads is drained by the server, not parsed as the next request.
    conn.request("POST", MESSAGES, body=b"GET /x HTTP/1.1", headers={"Content-Type": "text/plain"})
    answer = conn.getresponse()
    assert answer.status == 415
    answer.read()
    conn.request("GET", "/healthz")
    assert conn.getresponse().status == 200
    conn.close()


def test_head_answers_every_get_route_without_a_body(client: Client, server: Any) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    for path in ("/runs", "/schedules/hourly", "/healthz", "/openapi.json"):
        conn.request("HEAD", path)
        answer = conn.getresponse()
        assert answer.status == 200, path
        assert answer.read() == b""
        conn.request("GET", path)
        full = conn.getresponse()
        body = full.read()
        assert answer.getheader("Content-Type") == full.getheader("Content-Type")
        assert int(answer.getheader("Content-Length", "-1")) == len(body)
    conn.request("HEAD", "/schedules/nope")
    answer = conn.getresponse()
    assert answer.status == 404 and answer.read() == b""
    conn.close()
    assert client.request("HEAD", "/runs").status == 200  # checked: an empty body


def test_connections_beyond_the_limit_get_503(kernel: Kernel) -> None:
    with served(kernel, max_connections=1) as server:
        holder = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        holder.request("GET", "/healthz")  # keep-alive: the connection keeps its slot
        assert holder.getresponse().read() == b'{"status":"ok","daemon":null}'
        reply = Client(server).get("/healthz")
        assert reply.status == 503
        assert reply.json["title"] == "Busy"
        assert reply.headers["Retry-After"] == "1"
        holder.close()


# -- history and pagination ------------------------------------------------------------------


def test_history_rows_equal_the_views(client: Client, kernel: Kernel) -> None:
    assert client.get("/schedules/hourly").json == views.schedule_json(kernel.schedule("hourly"))
    tick = "hourly:1970-01-01T02:00:00Z"
    detail = client.get(f"/ticks/{tick}").json
    assert detail == views.tick_detail_json(kernel.tick(tick))
    assert detail["run_status"] == "REQUESTED" and len(detail["runs"]) == 1
    run_id = detail["run_id"]
    assert client.get(f"/runs/{run_id}").json == views.run_json(kernel.run(run_id))
    assert client.get("/sensors/files").json == views.sensor_json(kernel.sensor("files"))
    assert client.get("/sensors/paused").json["status"] == "STOPPED"
    ids = [s["sensor_id"] for s in client.get("/sensors").json["items"]]
    assert ids == ["files", "orders", "paused"]


def _flat(pages: list[list[dict[str, Any]]], field: str) -> list[Any]:
    return [row[field] for page in pages for row in page]


def _check_pages(pages: list[list[dict[str, Any]]], limit: int, total: int) -> None:
    assert all(len(p) == limit for p in pages[:-1])
    assert 0 < len(pages[-1]) <= limit or total == 0
    assert len(pages) == max(1, -(-total // limit))  # no empty trailing page


@pytest.mark.parametrize(("count", "limit"), [(0, 5), (1, 1), (5, 5), (12, 5), (7, 1000)])
def test_runs_pagination_walks_every_run_once(
    client: Client, kernel: Kernel, count: int, limit: int
) -> None:
    before = kernel.runs(limit=1000)
    for i in range(count):
        kernel.request_run(f"manual-{i}", RunTemplate("t"), now=10_000 + i)
    pages = client.walk("/runs", limit)
    expected = [r.run_id for r in kernel.runs(limit=1000)]
    assert len(expected) == len(before) + count
    assert _flat(pages, "run_id") == expected
    _check_pages(pages, limit, len(expected))


def test_runs_pagination_with_a_status_filter(client: Client, kernel: Kernel) -> None:
    runs = [kernel.request_run(f"r{i}", RunTemplate("t"), now=100 + i) for i in range(9)]
    for run in runs[::3]:
        kernel.complete_run(run.run_id, True, now=200)
    done = client.walk("/runs?status=SUCCEEDED", 2)
    assert _flat(done, "run_id") == [r.run_id for r in reversed(runs[::3])]
    waiting = _flat(client.walk("/runs?status=REQUESTED", 4), "run_id")
    assert waiting == [r.run_id for r in kernel.runs(limit=1000, status="REQUESTED")]
    assert set(waiting).isdisjoint(_flat(done, "run_id"))


def test_ticks_pagination_newest_first(client: Client, kernel: Kernel) -> None:
    kernel.define_schedule(ScheduleDefinition("minutely", "* * * * *", RunTemplate("t")), now=0)
    for minute in range(1, 24):
        kernel.evaluate_schedule("minutely", now=minute * 60)
    pages = client.walk("/schedules/minutely/ticks", 5)
    ids = _flat(pages, "tick_id")
    assert ids == [t.tick_id for t in kernel.ticks("minutely", limit=1000)]
    assert len(ids) == 23 == len(set(ids))
    assert ids == sorted(ids, reverse=True)
    _check_pages(pages, 5, 23)
    triggered = _flat(client.walk("/schedules/minutely/ticks?status=TRIGGERED", 7), "tick_id")
    assert triggered == ids
    assert _flat(client.walk("/schedules/minutely/ticks?status=SKIPPED", 7), "tick_id") == []


def test_evaluations_schedules_sensors_and_conflicts_paginate(
    client: Client, kernel: Kernel
) -> None:
    for i in range(11):
        kernel.ingest("orders", f"m{i:02}", {"i": i}, now=50 + i)
    evaluations = _flat(client.walk("/sensors/orders/evaluations", 3), "message_id")
    assert evaluations == [f"m{i:02}" for i in reversed(range(11))]

    for i in range(6):
        kernel.define_schedule(ScheduleDefinition(f"s{i}", "0 0 * * *", RunTemplate("t")), now=0)
    schedules = _flat(client.walk("/schedules", 2), "schedule_id")
    assert schedules == sorted(["hourly", *(f"s{i}" for i in range(6))])

    sensors = _flat(client.walk("/sensors", 2), "sensor_id")
    assert sensors == ["files", "orders", "paused"]

    for i in range(5):
        kernel.request_run(f"c{i}", RunTemplate("one"), now=300)
        kernel.request_run(f"c{i}", RunTemplate("other"), now=301)  # same key, new content
    pages = client.walk("/conflicts", 2)
    assert _flat(pages, "run_key") == [f"manual:c{i}" for i in reversed(range(5))]
    _check_pages(pages, 2, 5)


def test_cursors_are_bound_to_their_listing_and_checked(client: Client, kernel: Kernel) -> None:
    for i in range(4):
        kernel.request_run(f"k{i}", RunTemplate("t"), now=100 + i)
    cursor = client.get("/runs?limit=2").json["next_cursor"]
    assert cursor is not None
    assert client.get(f"/runs?limit=2&cursor={cursor}").status == 200

    def refused(path: str) -> str:
        reply = client.get(path)
        assert reply.status == 400, reply.text
        assert reply.json["title"] == "InvalidCursor"
        return str(reply.json["detail"])

    tampered = cursor[:5] + ("A" if cursor[5] != "A" else "B") + cursor[6:]
    assert "damaged" in refused(f"/runs?cursor={tampered}")
    assert "damaged" in refused(f"/runs?cursor={cursor[:-3]}")
    assert "another listing" in refused(f"/conflicts?cursor={cursor}")
    # A ticks cursor belongs to its schedule.
    kernel.define_schedule(ScheduleDefinition("other", "0 * * * *", RunTemplate("t")), now=0)
    tick_cursor = client.get("/schedules/hourly/ticks?limit=1").json["next_cursor"]
    assert tick_cursor is not None
    assert "another listing" in refused(f"/schedules/other/ticks?cursor={tick_cursor}")
    # A well-formed cursor that names nothing still reaches only the kernel's checks.
    ghost = encode_cursor("runs", "", "6f1c1f0e-7a4b-5c1e-9d2a-a1c0f10a0001")
    assert "does not name" in refused(f"/runs?cursor={ghost}")
    assert "does not name" in refused(f"/conflicts?cursor={encode_cursor('conflicts', '', 'x')}")
    bad_tick = encode_cursor("ticks", "hourly", "other:1970-01-01T01:00:00Z")
    assert "does not name" in refused(f"/schedules/hourly/ticks?cursor={bad_tick}")
    bad_eval = encode_cursor("evaluations", "orders", "nope")
    assert "does not name" in refused(f"/sensors/orders/evaluations?cursor={bad_eval}")


def test_blank_query_values_mean_not_given(client: Client) -> None:
    reply = client.get("/runs?status=&limit=&cursor=")
    assert reply.status == 200
    assert len(reply.json["items"]) == 3


def test_healthz_and_openapi_document(client: Client, kernel: Kernel) -> None:
    assert client.get("/healthz").json == {"status": "ok", "daemon": None}
    document = client.get("/openapi.json").json
    assert document["openapi"] == "3.1.0"
    assert "/sensors/{sensor_id}/messages" in document["paths"]


def test_healthz_reports_an_unreadable_store(
    client: Client, kernel: Kernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> Any:
        raise StoreError("gone")

    monkeypatch.setattr(kernel.store, "read", broken)
    reply = client.get("/healthz")
    assert reply.status == 503 and reply.json["title"] == "StoreUnavailable"


def test_stop_finishes_and_closes(kernel: Kernel) -> None:
    server = make_server(kernel, "127.0.0.1", 0)
    runner = server.serve_in_thread()
    reply = Client(server).post(MESSAGES, {"a": 1}, key="before-stop")
    assert reply.status == 201
    server.stop()
    runner.join(15)
    assert not runner.is_alive()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
    assert len(kernel.evaluations("orders")) == 1


def test_every_reply_of_this_module_was_checked() -> None:
    # Client.request runs assert_well_formed; make sure it refuses a bad answer.
    with pytest.raises(AssertionError):
        assert_well_formed("GET", "/healthz", Reply(200, {"Content-Type": "text/html"}, "{}"))
    with pytest.raises(AssertionError):
        assert_well_formed(
            "GET", "/healthz", Reply(200, {"Content-Type": "application/json"}, '{"status": 1}')
        )


def test_an_oversized_body_still_gets_its_413(server: Any) -> None:
    # The server answers before reading the body, then drains it (within the request
    # deadline): closing with unread input would reset the connection and could destroy the
    # answer before the client reads it.
    size = 8 * BIG
    head = (
        "POST /sensors/orders/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Idempotency-Key: big\r\nContent-Length: {size}\r\n\r\n"
    ).encode()
    status, _, body = _raw(server, head + b" " * size)
    assert status == 413
    assert json.loads(body)["title"] == "RequestTooLarge"


def test_messages_reach_a_push_plugin_through_the_sdk(kernel: Kernel) -> None:
    class Split:
        @hookimpl
        def arcoflow_push(self, message: PushMessage) -> list[RunRequest]:
            return [RunRequest(str(item)) for item in message.payload["items"]]

    plugins = Plugins()
    plugins.register(Split(), "split")
    kernel.define_sensor(
        SensorDefinition("batches", "push", RunTemplate("t"), connector="split"), now=0
    )
    kernel.define_sensor(
        SensorDefinition("orphan", "push", RunTemplate("t"), connector="missing"), now=0
    )
    with served(kernel, mapper_for=plugins.push_mapper) as server:
        client = Client(server)
        reply = client.post("/sensors/batches/messages", {"items": [1, 2]}, key="b1")
        assert reply.status == 201
        assert reply.json["evaluation"]["run_keys"] == ["sensor:batches:1", "sensor:batches:2"]
        # A connector that is not installed fails the message, visibly, not the server.
        orphan = client.post("/sensors/orphan/messages", {"items": []}, key="o1")
        assert orphan.status == 201
        assert orphan.json["evaluation"]["status"] == "FAILED"
        assert "missing" in orphan.json["evaluation"]["reason"]
