"""The HTTP server: parses requests, routes them (:mod:`.routes`), answers in JSON.

Standard library only: :class:`http.server.ThreadingHTTPServer`, one thread per connection,
bounded by ``max_connections`` (more are answered 503 at once).

A thread per connection makes a slot cheap to hold, so every request has a deadline for the
whole of it, request line, headers and body (``request_seconds``), not only a limit on idle
time: a client that trickles a byte now and then is dropped when its deadline passes, however
regularly it sends. Headers that would make the request ambiguous are refused with 400: a line
without a colon, a folded continuation line, and a repeated framing or identity header
(``Content-Length``, ``Idempotency-Key``...) whose copies disagree.
"""

from __future__ import annotations

import io
import json
import math
import re
import socket
import sys
import threading
import time
from collections.abc import Sequence
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import unquote

from arcoflow.sdk import InputError, Kernel

from .routes import (
    JSON,
    MAX_PARAM,
    ROUTES,
    MapperFor,
    Request,
    RequestError,
    Text,
    bad_request,
    error_body,
    failure,
    log,
    parse_query,
    split_target,
)

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_REQUEST_SECONDS",
    "ApiServer",
    "make_server",
]

DEFAULT_MAX_BODY_BYTES: Final = 1024 * 1024
DEFAULT_MAX_CONNECTIONS: Final = 64
#: The longest a client may take to send one whole request (line, headers and body).
DEFAULT_REQUEST_SECONDS: Final = 10.0
#: Headers that must not be repeated with different values: which copy counts would be a guess
#: (and a proxy in front may have guessed the other way).
_SINGLE_HEADERS: Final = (
    "Content-Length",
    "Content-Type",
    "Transfer-Encoding",
    "Host",
    "Idempotency-Key",
    "X-Message-Id",
)
DRAIN_SECONDS: Final = 10.0
_LINGER_SECONDS: Final = 2.0
_LINGER_BYTES: Final = 16 * 1024 * 1024


class _DeadlineReader(io.BufferedIOBase):
    """The connection's reader, with a deadline for each whole request.

    Between requests a client may stay idle for the handler's ``timeout``; from the first byte
    of a request (from the accept, for a connection's first request), the rest of it must
    arrive within ``request_seconds``. Every read waits at most for what is left of that time,
    one ``recv`` at a time, so a trickle of bytes cannot stretch it."""

    def __init__(self, raw: io.BufferedReader, sock: socket.socket, idle: float, budget: float):
        super().__init__()
        self._raw = raw
        self._sock = sock
        self._idle = idle
        self._budget = budget
        self._deadline: float | None = time.monotonic() + budget

    def next_request(self) -> None:
        """The request is read: until the next one starts, the idle timeout applies."""
        self._deadline = None
        self._sock.settimeout(self._idle)

    def _arm(self) -> None:
        if self._deadline is None:
            if self._raw.peek(1):  # one recv, waiting at most the idle timeout
                self._deadline = time.monotonic() + self._budget
            return
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request did not arrive within its deadline")
        self._sock.settimeout(left)

    def readable(self) -> bool:
        return True

    def readline(self, limit: int | None = -1) -> bytes:
        line = bytearray()
        limit = -1 if limit is None else limit
        while limit < 0 or len(line) < limit:
            self._arm()
            buffered = self._raw.peek(1)  # at most one recv
            if not buffered:
                break
            end = buffered.find(b"\n")
            take = len(buffered) if end < 0 else end + 1
            if limit >= 0:
                take = min(take, limit - len(line))
            line += self._raw.read(take)  # from the buffer: no recv
            if line.endswith(b"\n"):
                break
        return bytes(line)

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            raise ValueError("read() needs a size: requests are framed by Content-Length")
        data = bytearray()
        while len(data) < size:
            self._arm()
            chunk = self._raw.read1(size - len(data))  # at most one recv
            if not chunk:
                break
            data += chunk
        return bytes(data)

    def read1(self, size: int = -1) -> bytes:
        self._arm()
        return self._raw.read1(size if size >= 0 else 64 * 1024)  # at most one recv


def _header_problem(headers: Message) -> str | None:
    """Why a request's headers are ambiguous (None: they are not)."""
    if headers.defects or headers.get_payload():
        return "a header line is malformed (every header line needs a name and a colon)"
    for name, value in headers.items():
        if "\n" in value or "\r" in value:
            return f"the {name} header is folded over several lines"
    for name in _SINGLE_HEADERS:
        values = {v.strip() for v in headers.get_all(name, ())}
        if len(values) > 1:
            return f"the {name} header is repeated with different values"
    return None


class _Handler(BaseHTTPRequestHandler):
    """Parses one request at a time off a connection, routes it and answers in JSON."""

    server: ApiServer
    protocol_version = "HTTP/1.1"  # keep-alive; every answer carries Content-Length
    server_version = "arcoflow"
    sys_version = ""
    timeout = 30  # seconds a client may stay idle between requests (a request: see setup)

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_OPTIONS(self) -> None:
        self._handle()

    # -- plumbing --

    def setup(self) -> None:
        super().setup()
        self.rfile = _DeadlineReader(
            self.rfile,  # type: ignore[arg-type]  # makefile("rb"): a BufferedReader
            self.connection,
            self.timeout,
            self.server.request_seconds,
        )

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        problem = _header_problem(self.headers)
        if problem is not None:
            self.send_error(400, problem)
            return False
        return True

    def _handle(self) -> None:
        self._body_read = False
        self._expired = False
        with self.server.in_flight():
            status, body, headers = self._respond()
            assert isinstance(self.rfile, _DeadlineReader)
            self.rfile.next_request()
            unread = not self._body_read and self._has_body()
            if unread:  # it would be parsed as the next request: end the connection
                self.close_connection = True
            self._send(status, body, headers)
            if unread and not self._expired:  # a client past its deadline waits no more
                self._linger()

    def _respond(self) -> tuple[int, JSON | Text, Sequence[tuple[str, str]]]:
        path, query = split_target(self.path)
        try:
            segments = [unquote(s, errors="strict") for s in path.split("/")[1:]]
        except UnicodeDecodeError:
            return 400, error_body("InvalidPath", "the path is not valid UTF-8"), ()
        try:
            matches = [(r, p) for r in ROUTES if (p := r.match(segments)) is not None]
            if not matches:
                raise RequestError(404, "RouteNotFound", f"no route {path!r}")
            found = [(r, p) for r, p in matches if r.method == self.command]
            if not found:
                allow = ", ".join(sorted({r.method for r, _ in matches}))
                raise RequestError(
                    405,
                    "MethodNotAllowed",
                    f"{self.command} is not allowed on {path!r} (allowed: {allow})",
                    [("Allow", allow)],
                )
            route, params = found[0]
            if any(len(v) > MAX_PARAM for v in params.values()):
                raise bad_request("InvalidParameter", "a path parameter is too long")
            request = Request(
                self.server.kernel,
                params,
                parse_query(query, route.query),
                self.headers,
                self._json_body,
                self.server.mapper_for,
            )
            status, body = route.handler(request)
            return status, body, ()
        except Exception as exc:
            status, type_, message, headers = failure(exc)
            if status >= 500 and status != 503:
                log.exception("%s %s failed", self.command, self.path)
            return status, error_body(type_, message), headers

    def _linger(self) -> None:
        """Half-close, then read and drop what the client is still sending (bounded in bytes
        and time). Closing a socket with unread input resets the connection, and the reset
        can destroy the answer (a 413, a 415) before the client has read it."""
        try:
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(_LINGER_SECONDS)
            deadline = time.monotonic() + _LINGER_SECONDS
            dropped = 0
            while dropped < _LINGER_BYTES and time.monotonic() < deadline:
                chunk = self.connection.recv(64 * 1024)
                if not chunk:
                    break
                dropped += len(chunk)
        except OSError:
            pass  # the client is gone or stalls: close anyway

    def _has_body(self) -> bool:
        length = self.headers.get("Content-Length", "0").strip()
        return "Transfer-Encoding" in self.headers or length not in ("", "0")

    def _json_body(self) -> Any:
        mime, _, params = self.headers.get("Content-Type", "").partition(";")
        mime = mime.strip().lower()
        charset = re.search(r"charset\s*=\s*\"?([\w-]+)", params, re.IGNORECASE)
        if not (mime == "application/json" or re.fullmatch(r"application/[\w.+-]+\+json", mime)):
            raise RequestError(
                415,
                "UnsupportedMediaType",
                "send the body as JSON (Content-Type: application/json)",
            )
        if charset is not None and charset.group(1).lower() not in ("utf-8", "utf8"):
            raise RequestError(415, "UnsupportedMediaType", "JSON bodies must be UTF-8")
        if "Transfer-Encoding" in self.headers:
            raise RequestError(411, "LengthRequired", "send a Content-Length, not chunks")
        raw = self.headers.get("Content-Length")
        if raw is None:
            raise RequestError(411, "LengthRequired", "send a Content-Length header")
        if re.fullmatch(r"\s*[0-9]{1,15}\s*", raw) is None:
            raise bad_request("InvalidRequest", "Content-Length is not a number")
        length = int(raw)
        limit = self.server.max_body_bytes
        if length > limit:
            raise RequestError(
                413, "RequestTooLarge", f"body is {length} bytes; the limit is {limit}"
            )
        try:
            data = self.rfile.read(length)
        except OSError:  # the request's deadline passed (or the client went away) mid-body
            self.close_connection = True
            self._expired = True
            raise RequestError(408, "RequestTimeout", "the body did not arrive in time") from None
        if len(data) < length:
            self.close_connection = True
            raise bad_request("InvalidRequest", "the body is shorter than its Content-Length")
        self._body_read = True
        try:
            text = data.decode("utf-8")
            return json.loads(text, parse_constant=_no_constant, parse_float=_finite)
        except UnicodeDecodeError:
            raise bad_request("InvalidJSON", "the body is not valid UTF-8") from None
        except RecursionError:
            raise bad_request("InvalidJSON", "the body is nested too deeply") from None
        except ValueError as exc:
            raise bad_request("InvalidJSON", f"the body is not valid JSON: {exc}") from None

    def _send(
        self, status: int, body: JSON | Text, headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        if isinstance(body, Text):  # the one answer that is not JSON: /metrics
            data, content_type = body.data, body.content_type
        else:
            # ASCII escapes: a lone surrogate from a client's JSON can never break the encoding.
            data, content_type = (
                json.dumps(body, separators=(",", ":")).encode(),
                "application/json",
            )
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The base class calls this for requests it cannot parse (400, 414, 431, 501):
        answer those in JSON too, and end the connection, whose framing is now unknown."""
        self.close_connection = True
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Error"
        log.info("refused a malformed request: %s %s", code, message or phrase)
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
            self.request_version = "HTTP/1.0"  # answer with a status line and headers
        if not hasattr(self, "command") or self.command is None:
            self.command = ""
        self._send(code, error_body(phrase.replace(" ", ""), message or phrase))

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def _json(body: JSON) -> bytes:
    # ASCII escapes: a lone surrogate from a client's JSON can never break the encoding.
    return json.dumps(body, separators=(",", ":")).encode()


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: JSON has no infinity, and neither do the views
        raise ValueError(f"{text} is out of range")
    return value


class ApiServer(ThreadingHTTPServer):
    """The HTTP API over one kernel. One thread per connection, at most ``max_connections``
    at a time (more get a 503 at once, so threads stay bounded)."""

    daemon_threads = True  # a stalled client never keeps the process alive
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        kernel: Kernel,
        mapper_for: MapperFor | None = None,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        request_seconds: float = DEFAULT_REQUEST_SECONDS,
    ) -> None:
        if max_body_bytes < 1 or max_connections < 1:
            raise InputError("max_body_bytes and max_connections must be positive")
        if not 0 < request_seconds <= 3600:
            raise InputError("request_seconds must be above 0 and at most 3600")
        self.kernel = kernel
        self.mapper_for = mapper_for
        self.max_body_bytes = max_body_bytes
        self.request_seconds = request_seconds
        self._slots = threading.BoundedSemaphore(max_connections)
        self._active = 0
        self._idle = threading.Condition()
        super().__init__(address, _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        host = str(self.server_address[0])
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            _refuse(request)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection broke outside a request's own handling: log it (the base class would
        print a traceback to stderr)."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            log.debug("connection from %s ended: %s", client_address, exc)
        else:
            log.exception("connection from %s failed", client_address)

    def in_flight(self) -> _InFlight:
        """Counts a request while it is handled, so shutdown can let it finish."""
        return _InFlight(self)

    def drain(self, timeout: float = DRAIN_SECONDS) -> bool:
        """Wait until no request is being handled (after ``shutdown``); ``False`` on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._active == 0, timeout)


class _InFlight:
    def __init__(self, server: ApiServer) -> None:
        self.server = server

    def __enter__(self) -> None:
        with self.server._idle:
            self.server._active += 1

    def __exit__(self, *exc: object) -> None:
        with self.server._idle:
            self.server._active -= 1
            self.server._idle.notify_all()


class _ApiServer6(ApiServer):
    address_family = socket.AF_INET6


def _refuse(sock: socket.socket) -> None:
    body = json.dumps(error_body("Busy", "too many connections; retry shortly")).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    )
    try:
        sock.settimeout(1.0)
        sock.sendall(head.encode() + body)
    except OSError:
        pass  # the client went away: nothing to tell it


def make_server(
    kernel: Kernel,
    host: str = "127.0.0.1",
    port: int = 0,
    mapper_for: MapperFor | None = None,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    request_seconds: float = DEFAULT_REQUEST_SECONDS,
) -> ApiServer:
    """Bind the HTTP API (port 0: a free port, see ``server.port``); serve it with
    ``server.serve_forever()``, stop it with ``shutdown()`` then ``server_close()``.

    ``request_seconds`` bounds the time a client may take to send one whole request.

    ``mapper_for(sensor_definition)`` gives the push mapper of a sensor's connector (the SDK's
    ``Plugins.push_mapper``); without it every message requests the sensor's default run.
    """
    cls = _ApiServer6 if ":" in host else ApiServer
    return cls(
        (host, port),
        kernel,
        mapper_for,
        max_body_bytes=max_body_bytes,
        max_connections=max_connections,
        request_seconds=request_seconds,
    )
