"""``arcoflow serve``: the ASGI application (:mod:`.app`) under uvicorn, on one bound socket.

uvicorn speaks HTTP/1.1 (h11), keeps connections alive, and on SIGTERM or SIGINT stops
accepting, lets the requests in flight finish and closes (a graceful drain). A thin subclass
of its protocol adds what the API promised before it ran under uvicorn:

* at most ``max_connections`` connections; one more is answered 503 at once and closed;
* a deadline for the request line and headers (``request_seconds``, from the first byte of a
  request), so a client that trickles a byte now and then is dropped instead of holding its
  connection; the application holds the body to the same deadline (408);
* headers that would make the request ambiguous are refused with 400: a line without a colon,
  a folded continuation line (h11 would quietly join it; a proxy in front may not), a framing
  or identity header repeated with different values;
* every refusal in the one error shape, RFC 9457 problem JSON, never uvicorn's plain text.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import threading
from types import FrameType
from typing import Any, Final

import h11
import msgspec
import uvicorn
from arcoflow.sdk import InputError, Kernel
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from .app import SINGLE_HEADERS, create_app
from .limits import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_REQUEST_SECONDS,
    DRAIN_SECONDS,
    IDLE_SECONDS,
)
from .routes import MapperFor, problem

__all__ = ["Server", "head_problem", "make_server"]

log = logging.getLogger("arcoflow.http")

_MAX_HEAD: Final = 64 * 1024
_LINGER_SECONDS: Final = 2.0
_LINGER_BYTES: Final = 16 * 1024 * 1024


def _raw_problem(status: int, phrase: str, type_: str, message: str, *extra: str) -> bytes:
    body = json.dumps(msgspec.to_builtins(problem(status, type_, message))).encode()
    head = [
        f"HTTP/1.1 {status} {phrase}",
        "Content-Type: application/problem+json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *extra,
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def head_problem(head: bytes) -> str | None:
    """Why the header block ``head`` (without the blank line that ends it) is ambiguous."""
    lines = head.split(b"\r\n")[1:]
    seen: dict[bytes, set[bytes]] = {}
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            return "a header is folded over several lines"
        field, colon, value = line.partition(b":")
        if not colon or not field.strip() or field != field.strip():
            return "a header line is malformed (every header line needs a name and a colon)"
        seen.setdefault(field.lower(), set()).add(value.strip())
    for name in SINGLE_HEADERS:
        if len(seen.get(name.lower().encode(), ())) > 1:
            return f"the {name} header is repeated with different values"
    return None


class _Lingering:
    """The connection's transport, with a ``close`` that lingers when the client is still
    sending a body the API did not read (it answered 413, 415... first): closing a socket with
    unread input resets the connection, and the reset can destroy the answer before the
    client has read it. So: half-close, drop what still comes (bounded in bytes and time),
    then close."""

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def close(self) -> None:
        protocol, transport = self._protocol, self._transport
        if (
            protocol.conn.their_state is h11.SEND_BODY
            and not transport.is_closing()
            and transport.can_write_eof()
            and protocol.lingering is None
        ):
            # Within the request's deadline: a client past it (answered 408) waits no more.
            left = min(_LINGER_SECONDS, protocol.deadline_at - protocol.loop.time())
            if left > 0:
                transport.write_eof()
                protocol.lingering = 0
                protocol.loop.call_later(left, transport.close)
                return
        transport.close()


class _Protocol(H11Protocol):
    """uvicorn's h11 protocol with a connection limit, a header deadline and strict headers."""

    max_connections: int = DEFAULT_MAX_CONNECTIONS
    request_seconds: float = DEFAULT_REQUEST_SECONDS

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # uvicorn writes an answer's head and body separately: without TCP_NODELAY, Nagle
            # holds the body until the client's delayed ACK of the head, ~40 ms per request
            # on a keep-alive connection. (asyncio sets it only for sockets made with
            # proto=IPPROTO_TCP.)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        lingering = _Lingering(transport, self)
        super().connection_made(lingering)  # type: ignore[arg-type]
        self.lingering: int | None = None  # bytes dropped since the answer (None: not yet)
        self.deadline_at = 0.0  # when the request being read must have arrived (loop time)
        self._head = b""
        self._refused = False
        self._deadline: asyncio.TimerHandle | None = None
        if len(self.connections) > self.max_connections:
            self._refuse(
                503,
                "Service Unavailable",
                "Busy",
                "too many connections; retry shortly",
                "Retry-After: 1",
            )
            return
        self._arm()  # a connection's first request: its deadline runs from the accept

    def _arm(self) -> None:
        if self._deadline is None:
            self.deadline_at = self.loop.time() + self.request_seconds * 1.5
            # A little past the application's own body deadline, which answers 408 first.
            self._deadline = self.loop.call_later(self.request_seconds * 1.5, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.conn.their_state in (h11.IDLE, h11.SEND_BODY) and not self.transport.is_closing():
            log.info("dropped a connection whose request missed its deadline")
            self.transport.close()

    def _refuse(self, status: int, phrase: str, type_: str, message: str, *extra: str) -> None:
        self._refused = True
        self._disarm()
        self.transport.write(_raw_problem(status, phrase, type_, message, *extra))
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self.lingering is not None:  # answered and half-closed: drop the rest of the body
            self.lingering += len(data)
            if self.lingering > _LINGER_BYTES:
                self.transport.close()
            return
        if self.conn.their_state is h11.IDLE:
            self._arm()
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if 0 <= end <= _MAX_HEAD:
                trouble = head_problem(self._head[:end])
                self._head = b""
                if trouble is not None:
                    self._refuse(400, "Bad Request", "AmbiguousHeaders", trouble)
                    return
            if max(end, len(self._head)) > _MAX_HEAD:
                self._refuse(
                    431,
                    "Request Header Fields Too Large",
                    "RequestHeaderFieldsTooLarge",
                    f"the request line and headers are over {_MAX_HEAD} bytes",
                )
                return
        super().data_received(data)
        if self.conn.their_state is h11.DONE:
            self._disarm()  # the whole request arrived

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._disarm()
        self._head = bytes(self.conn.trailing_data[0])  # a pipelined request's first bytes

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, "Bad Request", "InvalidRequest", f"not a valid HTTP/1.1 request: {msg}")


class _Uvicorn(uvicorn.Server):
    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # SIGTERM and SIGINT are the normal end of ``arcoflow serve``: drain and exit 0.
        # uvicorn would re-raise the signal after the drain (so the process dies of it).
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True  # a second Ctrl-C: stop waiting for the drain
        self.should_exit = True


class Server:
    """The API served by uvicorn on one socket bound at creation (port 0: a free port)."""

    def __init__(
        self,
        app: ASGIApp,
        sock: socket.socket,
        *,
        max_connections: int,
        request_seconds: float,
    ) -> None:
        self.socket = sock
        protocol = type(
            "ArcoflowProtocol",
            (_Protocol,),
            {"max_connections": max_connections, "request_seconds": request_seconds},
        )
        config = uvicorn.Config(
            app,
            http=protocol,
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_keep_alive=IDLE_SECONDS,
            timeout_graceful_shutdown=DRAIN_SECONDS,
        )
        self._server = _Uvicorn(config)

    @property
    def port(self) -> int:
        return int(self.socket.getsockname()[1])

    @property
    def url(self) -> str:
        host = str(self.socket.getsockname()[0])
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    @property
    def started(self) -> bool:
        return bool(self._server.started)

    def serve(self) -> None:
        """Serve until :meth:`stop`, or SIGTERM/SIGINT (on the main thread); then drain."""
        try:
            self._server.run(sockets=[self.socket])
        finally:
            self.socket.close()

    def close(self) -> None:
        """Close the socket of a server that never served."""
        self.socket.close()

    def stop(self) -> None:
        """Stop accepting; the requests in flight finish (``serve`` then returns)."""
        self._server.should_exit = True

    def serve_in_thread(self) -> threading.Thread:
        """Serve on a daemon thread; returns once the server accepts connections."""
        thread = threading.Thread(target=self.serve, name="arcoflow-http", daemon=True)
        thread.start()
        while not self.started and thread.is_alive():
            thread.join(0.01)
        return thread


def make_server(
    kernel: Kernel,
    host: str = "127.0.0.1",
    port: int = 0,
    mapper_for: MapperFor | None = None,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    request_seconds: float = DEFAULT_REQUEST_SECONDS,
) -> Server:
    """Bind ``host:port`` and build the server (``serve()`` runs it); :class:`OSError` if the
    address cannot be bound, :class:`InputError` for a bad setting."""
    if max_connections < 1:
        raise InputError("max_connections must be positive")
    app = create_app(
        kernel,
        mapper_for=mapper_for,
        max_body_bytes=max_body_bytes,
        request_seconds=request_seconds,
        max_in_flight=max(max_connections, DEFAULT_MAX_IN_FLIGHT),
    )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return Server(app, sock, max_connections=max_connections, request_seconds=request_seconds)
