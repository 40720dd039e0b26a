"""An embedder's web application that mounts arcoflow's HTTP API under ``/arcoflow``, behind
its own authentication.

The host owns the process, the routes and the middleware; arcoflow's API is one ASGI
application among its routes (``create_app``). Here every request under ``/arcoflow`` needs
``Authorization: Bearer <token>``; the host's own ``/`` stays public.

Run it (needs ``arcoflow[http]``)::

    ARCOFLOW_TOKEN=s3cret python examples/host_app.py --store ./state --port 8000
    curl -H 'Authorization: Bearer s3cret' localhost:8000/arcoflow/runs

``tests/plugins/test_http_embed.py`` runs this very file over real HTTP.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os

import uvicorn
from arcoflow.kernel import Kernel, LmdbStore
from arcoflow.plugins.http.app import create_app
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send


class BearerAuth:
    """ASGI middleware: a request without the right bearer token gets 401, as a problem."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                body = json.dumps(
                    {"type": "about:blank", "title": "Unauthorized", "status": 401}
                ).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/problem+json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"www-authenticate", b"Bearer"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


async def home(request: Request) -> JSONResponse:
    return JSONResponse({"app": "the host", "automation": "/arcoflow"})


def host_app(kernel: Kernel, token: str) -> Starlette:
    """The host application: its own ``/`` and arcoflow's API under ``/arcoflow``."""
    api = BearerAuth(create_app(kernel), token)
    return Starlette(routes=[Route("/", home), Mount("/arcoflow", app=api)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    token = os.environ["ARCOFLOW_TOKEN"]
    with LmdbStore(args.store) as store:
        uvicorn.run(host_app(Kernel(store), token), host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
