"""The built-in HTTP API: push messages in, history out, JSON both ways.

(The text down to "Embed it" is the README's section "HTTP API", in Markdown.)

## HTTP API

`arcoflow --store DIR serve` serves a store over HTTP, on loopback by default. It takes push
messages for push sensors and mirrors the CLI's history queries; every row has exactly the
shape of the CLI's `--json` output. There is no authentication: keep it on loopback, or behind
a proxy that authenticates, before you pass `--host 0.0.0.0`.

```console
$ arcoflow --store ./state serve --port 8080          # --port 0 picks a free port
arcoflow: serving the HTTP API on http://127.0.0.1:8080 (SIGTERM or Ctrl-C stops it)

# Deliver a message to the push sensor "orders". The message id makes delivery idempotent:
# the first delivery answers 201, every re-delivery 200 with the ORIGINAL evaluation.
$ curl -s -X POST localhost:8080/sensors/orders/messages \\
    -H 'Content-Type: application/json' -H 'Idempotency-Key: order-1042' \\
    -d '{"order": 1042, "total": 99.5}'
{"evaluation":{"eval_id":"...","sensor_id":"orders","kind":"push","status":"REQUESTED",
 "message_id":"order-1042","run_keys":["sensor:orders:order-1042"],...},"duplicate":false}

# The same message id in the body instead (an "envelope"): a duplicate.
$ curl -s -X POST localhost:8080/sensors/orders/messages \\
    -H 'Content-Type: application/json' \\
    -d '{"message_id": "order-1042", "payload": {"order": 1042}}'
{"evaluation":{...the same evaluation...},"duplicate":true}

# History, newest first, paginated: pass next_cursor back until it is null.
$ curl -s 'localhost:8080/schedules/nightly-etl/ticks?status=TRIGGERED&limit=20'
{"items":[{"tick_id":"nightly-etl:2026-03-08T06:30:00Z",...}],"next_cursor":"YzF8dGlja3N8..."}
$ curl -s 'localhost:8080/schedules/nightly-etl/ticks?limit=20&cursor=YzF8dGlja3N8...'
$ curl -s localhost:8080/ticks/nightly-etl:2026-03-08T06:30:00Z     # one tick and its runs
$ curl -s 'localhost:8080/runs?status=REQUESTED'
$ curl -s localhost:8080/sensors/orders/evaluations
$ curl -s localhost:8080/openapi.json                             # the OpenAPI 3.1 document
```

Routes: `POST /sensors/{id}/messages`; `GET /schedules`, `/schedules/{id}`,
`/schedules/{id}/ticks`, `/schedules/{id}/history`, `/ticks/{tick_id}`, `/sensors`,
`/sensors/{id}`, `/sensors/{id}/evaluations`, `/sensors/{id}/history`, `/runs`,
`/runs/{run_id}`, `/conflicts`, `/healthz` (with the last cycle of a daemon on the store),
`/metrics` (Prometheus text; needs `arcoflow[metrics]`, else 501), `/openapi.json`; the
operator verbs `POST /sensors/{id}/cursor` (`{"cursor": "..." | null, "expected_version": N}`,
409 if the version moved), `POST /schedules/{id}/backfill` (`{"from": ISO, "to": ISO,
"max_runs"?, "dry_run"?}`), `POST /runs/{run_id}/retry`.

**Messages.** The message id comes from the `Idempotency-Key` header, the `X-Message-Id`
header or the body's `message_id` field (when several are given they must agree). A JSON
object body with a `message_id` or `payload` key is an envelope, `{"message_id": ...,
"payload": ...}`, and may hold no other key; any other JSON body is the payload itself (so to
push an object that has its own `payload` key, wrap it in an envelope). A sensor that names a
`connector` hands each new message to that plugin's `arcoflow_push` hook; a connector that
fails records a `FAILED` evaluation, it does not fail the request.

**Lists** answer `{"items": [...], "next_cursor": "..." | null}`. A cursor is opaque: it names
its listing (and the schedule or sensor it pages) and carries a checksum; an altered cursor, or
one from another listing, gets a 400.

**Limits and errors.** Bodies up to 1 MiB (`--max-body-bytes`), JSON only, `limit` 1-1000
(default 50), unknown query parameters refused, at most 64 connections (`--max-connections`).
Every error is `{"error": {"type": ..., "message": ...}}`, never a traceback: 400 bad input,
404 unknown route or item, 405 wrong method, 408 body too slow, 409 a lost compare-and-set,
411 no Content-Length, 413 body or payload too large, 415 not JSON, 500 (details in the server
log), 503 too many connections.

Embed it without the CLI (`make_server` binds; serve it in a thread)::

    server = make_server(kernel, "127.0.0.1", 0, mapper_for=plugins.push_mapper)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.url)
    ...
    server.shutdown()
    server.server_close()
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

from arcoflow.sdk import Kernel, hookimpl

from .routes import (
    ROUTES,
    MapperFor,
    Request,
    RequestError,
    Route,
    decode_cursor,
    encode_cursor,
    log,
    openapi_document,
)
from .server import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_REQUEST_SECONDS,
    DRAIN_SECONDS,
    ApiServer,
    make_server,
)

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_REQUEST_SECONDS",
    "ROUTES",
    "ApiServer",
    "MapperFor",
    "Request",
    "RequestError",
    "Route",
    "arcoflow_add_commands",
    "decode_cursor",
    "encode_cursor",
    "make_server",
    "openapi_document",
    "serve_command",
    "serve_until_stopped",
]


def serve_until_stopped(server: ApiServer, stop: threading.Event | None = None) -> None:
    """Serve until ``stop`` is set, or SIGTERM/SIGINT arrives (when called on the main
    thread); then stop accepting, let requests in flight finish, and close."""
    stop = stop or threading.Event()
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    worker = threading.Thread(
        target=server.serve_forever, args=(0.2,), name="arcoflow-http", daemon=True
    )
    worker.start()
    try:
        while worker.is_alive() and not stop.wait(0.2):
            pass
    finally:
        server.shutdown()
        if not server.drain():
            log.warning("stopped with requests still in flight after %ss", DRAIN_SECONDS)
        server.server_close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# -- the CLI command ------------------------------------------------------------------------------


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, got {text!r}")
    return int(text)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return int(text)


@hookimpl
def arcoflow_add_commands(
    subparsers: argparse._SubParsersAction,  # type: ignore[type-arg]
    register: Callable[[str, Callable[[argparse.Namespace, Mapping[str, Any]], int]], None],
) -> None:
    """Add ``arcoflow serve``."""
    parser = subparsers.add_parser(
        "serve",
        help="serve the HTTP API: push messages in, history out",
        description="Serve the HTTP API (JSON): POST /sensors/{id}/messages and the history "
        "queries. No authentication: it listens on loopback unless --host says otherwise.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=_port, default=8080, help="port; 0 picks a free one")
    parser.add_argument(
        "--max-body-bytes", type=_positive, default=DEFAULT_MAX_BODY_BYTES, help="(1 MiB)"
    )
    parser.add_argument(
        "--max-connections", type=_positive, default=DEFAULT_MAX_CONNECTIONS, help="(64)"
    )
    parser.add_argument(
        "--request-seconds",
        type=_positive,
        default=DEFAULT_REQUEST_SECONDS,
        help="longest time a client may take to send one whole request (10)",
    )
    register("serve", serve_command)


def serve_command(args: argparse.Namespace, ctx: Mapping[str, Any]) -> int:
    """``arcoflow serve``: print the URL, serve until SIGTERM or SIGINT, exit 0."""
    kernel: Kernel = ctx["kernel"]
    mapper_for: MapperFor | None = getattr(ctx.get("plugins"), "push_mapper", None)
    try:
        server = make_server(
            kernel,
            args.host,
            args.port,
            mapper_for,
            max_body_bytes=args.max_body_bytes,
            max_connections=args.max_connections,
            request_seconds=args.request_seconds,
        )
    except OSError as exc:
        print(f"arcoflow serve: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    if args.host not in ("127.0.0.1", "::1", "localhost"):
        print(
            f"arcoflow serve: listening on {args.host} with no authentication",
            file=sys.stderr,
        )
    print(
        f"arcoflow: serving the HTTP API on {server.url} (SIGTERM or Ctrl-C stops it)", flush=True
    )
    serve_until_stopped(server)
    return 0
