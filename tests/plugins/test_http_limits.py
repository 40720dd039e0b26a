"""Slow clients cannot deny service, and ambiguous headers are refused (issue 9, item 5).

Over real sockets, with a short request deadline so that the tests stay fast. Before: a client
that trickled one byte now and then held its connection (and one of the ``max_connections``
slots) for as long as it liked, since only idle time was bounded; every other client got 503.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import pytest
from arcoflow.kernel import InputError, Kernel
from arcoflow.plugins.http.app import create_app
from arcoflow.plugins.http.serve import Server, make_server

try:  # tests/plugins may become a package
    from .http_support import Client, served
except ImportError:
    from http_support import Client, served

MESSAGES = "/sensors/orders/messages"
DEADLINE = 1.0  # seconds for a whole request, in these tests
SLOTS = 8


def _post(key: str, body: bytes = b'{"n": 1}', extra: bytes = b"") -> bytes:
    return (
        b"POST " + MESSAGES.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Idempotency-Key: " + key.encode() + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body
    )


def _answer(sock: socket.socket) -> tuple[int, Any]:
    """Read one answer: its status and JSON body (status 0: closed without an answer)."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        if not chunk:
            return 0, None
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(h.split(":")[1]) for h in lines if h.lower().startswith("content-length"))
    while len(body) < length:
        body += sock.recv(65536)
    return int(lines[0].split()[1]), json.loads(body)


def _raw(server: Any, data: bytes) -> tuple[int, Any]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(data)
        return _answer(sock)


class _Trickler(threading.Thread):
    """Sends ``head`` at once, then the rest one byte every ``every`` seconds, and notes when
    the server answered or dropped the connection."""

    def __init__(self, port: int, head: bytes, rest: bytes, every: float) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.head, self.rest, self.every = head, rest, every
        self.started = time.monotonic()
        self.ended: float | None = None
        self.status: int | None = None
        self.start()

    def run(self) -> None:
        try:
            self.sock.sendall(self.head)
            for byte in self.rest:
                time.sleep(self.every)
                self.sock.sendall(bytes([byte]))
        except OSError:
            pass  # the server dropped the connection: what the test waits for
        try:
            self.sock.settimeout(10)
            self.status, _ = _answer(self.sock)
        except OSError:
            self.status = 0
        self.ended = time.monotonic()
        self.sock.close()


def _get_ok(server: Any) -> bool:
    return Client(server).get("/healthz").status == 200


@pytest.mark.parametrize("part", ["body", "headers"])
def test_trickling_clients_are_dropped_at_the_deadline_and_others_get_through(
    kernel: Kernel, part: str
) -> None:
    """Every slot taken by a client trickling a byte every 0.2 s (well inside the idle
    timeout): they are all dropped at the request deadline, and a waiting client gets in."""
    with served(kernel, max_connections=SLOTS, request_seconds=DEADLINE) as server:
        request = _post("slow", body=b'{"n": "' + b"x" * 40 + b'"}')
        split = request.index(b"\r\n\r\n") + 4 if part == "body" else 30
        tricklers = []
        for _ in range(SLOTS):  # one at a time: the listen backlog is short
            tricklers.append(_Trickler(server.port, request[:split], request[split:], 0.2))
            time.sleep(0.02)
        time.sleep(0.2)
        assert not _get_ok(server)  # the slots are all held: 503
        began = time.monotonic()
        while not _get_ok(server):
            assert time.monotonic() - began < 4 * DEADLINE, "the tricklers still hold the slots"
            time.sleep(0.05)
        for t in tricklers:
            t.join(10)
            assert t.ended is not None
            assert t.ended - t.started < 3 * DEADLINE
            # A trickled body is answered 408; trickled headers end the connection unanswered.
            assert t.status == (408 if part == "body" else 0)
    assert kernel.evaluations("orders") == []  # nothing half-sent was ingested


def test_a_request_inside_its_deadline_is_served_however_it_is_split(kernel: Kernel) -> None:
    with served(kernel, request_seconds=DEADLINE) as server:
        request = _post("steady")
        t = _Trickler(server.port, b"", request, every=DEADLINE / (2 * len(request)))
        t.join(10)
        assert t.status == 201


def test_an_idle_keep_alive_connection_gets_a_new_deadline_per_request(kernel: Kernel) -> None:
    with (
        served(kernel, request_seconds=DEADLINE) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock,
    ):
        for n in range(2):
            sock.sendall(_post(f"k{n}"))
            assert _answer(sock)[0] == 201
            time.sleep(DEADLINE * 1.2)  # idle between requests: not part of a deadline
        sock.sendall(_post("k-last"))
        assert _answer(sock)[0] == 201


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (b"Content-Length: 99\r\n", "Content-Length header is repeated"),
        (b"Idempotency-Key: other\r\n", "Idempotency-Key header is repeated"),
        (b"X-Message-Id: a\r\nX-Message-Id: b\r\n", "X-Message-Id header is repeated"),
        (b"Content-Type: text/plain\r\n", "Content-Type header is repeated"),
        (b"NoColonHere\r\n", "malformed"),
        (b"X-Folded: a\r\n b\r\n", "folded"),
    ],
)
def test_ambiguous_headers_are_refused_with_400(kernel: Kernel, extra: bytes, says: str) -> None:
    """Before: the first copy of a repeated header silently won, and a line without a colon
    ended the headers (those after it were dropped); each of these requests was ingested."""
    with served(kernel) as server:
        status, body = _raw(server, _post("m-dup", extra=extra))
    assert status == 400
    assert says in body["detail"]
    assert kernel.evaluations("orders") == []


def test_identical_repeated_headers_are_accepted(kernel: Kernel) -> None:
    with served(kernel) as server:
        status, _ = _raw(
            server, _post("m-same", extra=b"Content-Length: 8\r\nIdempotency-Key: m-same\r\n")
        )
    assert status == 201


@pytest.mark.parametrize("seconds", [0, -1, 3601])
def test_the_request_deadline_must_be_sane(kernel: Kernel, seconds: float) -> None:
    with pytest.raises(InputError, match="request_seconds"):
        make_server(kernel, request_seconds=seconds)


class _Gate:
    """Makes ``GET /sensors/{id}`` wait until the test opens the gate (and say it began)."""

    def __init__(self, kernel: Kernel, monkeypatch: pytest.MonkeyPatch) -> None:
        self.started = threading.Event()
        self.open = threading.Event()
        real = kernel.sensor

        def held(sensor_id: str) -> Any:
            self.started.set()
            assert self.open.wait(20), "the test never opened the gate"
            return real(sensor_id)

        monkeypatch.setattr(kernel, "sensor", held)


def _get_in_thread(server: Any, path: str) -> tuple[threading.Thread, dict[str, Any]]:
    answer: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: answer.update(reply=Client(server).get(path)))
    thread.start()
    return thread, answer


def test_requests_beyond_the_in_flight_limit_get_503_at_once(
    kernel: Kernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = _Gate(kernel, monkeypatch)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = Server(
        create_app(kernel, max_in_flight=1), sock, max_connections=8, request_seconds=10
    )
    thread = server.serve_in_thread()
    try:
        first, answer = _get_in_thread(server, "/sensors/orders")
        assert gate.started.wait(10)
        busy = Client(server).get("/healthz")  # while the first is held: refused, not queued
        assert busy.status == 503 and busy.json["title"] == "Busy"
        assert busy.headers["Retry-After"] == "1"
        assert first.is_alive()
        gate.open.set()
        first.join(10)
        assert answer["reply"].status == 200
        assert Client(server).get("/healthz").status == 200  # the slot is free again
    finally:
        gate.open.set()
        server.stop()
        thread.join(15)


def test_stop_drains_a_request_in_flight_and_accepts_no_more(
    kernel: Kernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What SIGTERM does to ``arcoflow serve`` (uvicorn's signal handler sets the same flag):
    stop accepting, finish the requests in flight, then return."""
    gate = _Gate(kernel, monkeypatch)
    server = make_server(kernel)
    thread = server.serve_in_thread()
    inflight, answer = _get_in_thread(server, "/sensors/orders")
    try:
        assert gate.started.wait(10)
        server.stop()
        began = time.monotonic()
        while True:  # the listener closes while the request is still held
            try:
                socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
            except OSError:
                break
            assert time.monotonic() - began < 10, "still accepting after stop"
            time.sleep(0.05)
        assert inflight.is_alive() and thread.is_alive()  # draining
    finally:
        gate.open.set()
    inflight.join(10)
    thread.join(15)
    assert not thread.is_alive()
    assert answer["reply"].status == 200 and answer["reply"].json["sensor_id"] == "orders"
