"""The built-in HTTP API: push messages in, history out, JSON both ways (``docs/http.md``).

An ASGI application built on Starlette: :func:`arcoflow.plugins.http.app.create_app` returns
it, for an embedder to mount in their own application behind their own middleware;
``arcoflow serve`` runs it under uvicorn (:mod:`.serve`). Both need ``arcoflow[http]``; this
module itself imports neither, so the plugin (and its ``serve`` command) loads without them and
``arcoflow serve`` says what to install.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any, Final

from arcoflow.sdk import Kernel, Register, Subparsers, hookimpl

from .limits import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_CONNECTIONS, DEFAULT_REQUEST_SECONDS

__all__ = ["INSTALL_HINT", "arcoflow_add_commands", "serve_command"]

#: What ``arcoflow serve`` prints when the extra is missing.
INSTALL_HINT: Final = (
    "arcoflow: error: serve: the HTTP API needs its extra: pip install 'arcoflow[http]'"
)


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
    subparsers: Subparsers,
    register: Register,
) -> None:
    """Add ``arcoflow serve``."""
    parser = subparsers.add_parser(
        "serve",
        help="serve the HTTP API: push messages in, history out (needs arcoflow[http])",
        description="Serve the HTTP API (JSON) under uvicorn: POST /sensors/{id}/messages, "
        "the history queries and the operator verbs (docs/http.md). No authentication: it "
        "listens on loopback unless --host says otherwise.",
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
    """``arcoflow serve``: print the URL, serve until SIGTERM or SIGINT, drain, exit 0."""
    try:
        # Here, not at the top: the plugin loads without the extra, the command says so.
        from .serve import make_server  # noqa: PLC0415
    except ImportError:
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    kernel: Kernel = ctx["kernel"]
    mapper_for = getattr(ctx.get("plugins"), "push_mapper", None)
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
        # the CLI's error line, like every other command's
        print(f"arcoflow: error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    if args.host not in ("127.0.0.1", "::1", "localhost"):
        print(
            f"arcoflow serve: listening on {args.host} with no authentication",
            file=sys.stderr,
        )
    print(
        f"arcoflow: serving the HTTP API on {server.url} (SIGTERM or Ctrl-C stops it)", flush=True
    )
    server.serve()
    return 0
