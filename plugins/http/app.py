"""The HTTP API as an ASGI application: :func:`create_app`.

Built on Starlette (routing, requests, responses, mounting, middleware): the API is a value an
embedder mounts inside their own application, behind their own authentication, rather than a
server they must run. ``arcoflow serve`` runs the same application under uvicorn
(:mod:`.serve`). Starlette rather than Litestar: it is small (Starlette and anyio, no more),
mounts in any ASGI host (FastAPI, Litestar and Django included), and arcoflow already derives
the JSON encoding and the OpenAPI document from its own msgspec Structs (:mod:`.openapi`), so
Litestar's native msgspec support would add a framework without removing any code.

The route handlers (:mod:`.routes`) are plain functions that call the :class:`Kernel`; they run
in a thread pool, so concurrent requests reach the store concurrently, where appends that
arrive together can share one commit.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Awaitable, Callable
from functools import cache
from typing import Any, Final

import anyio
import anyio.to_thread
import msgspec
from arcoflow.sdk import InputError, Kernel
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.requests import Request as HttpRequest
from starlette.responses import Response
from starlette.routing import Route as StarletteRoute

from .limits import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_IN_FLIGHT, DEFAULT_REQUEST_SECONDS
from .openapi import openapi_document
from .routes import (
    MAX_PARAM,
    ROUTES,
    MapperFor,
    Reply,
    Request,
    RequestError,
    Route,
    Text,
    bad_request,
    failure,
    log,
    parse_query,
    problem,
)

__all__ = [
    "SINGLE_HEADERS",
    "create_app",
    "header_problem",
]

#: Headers that must not be repeated with different values: which copy counts would be a guess
#: (and a proxy in front may have guessed the other way).
SINGLE_HEADERS: Final = (
    "Content-Length",
    "Content-Type",
    "Transfer-Encoding",
    "Host",
    "Idempotency-Key",
    "X-Message-Id",
)
_JSON_TYPE: Final = re.compile(r"application/(?:json|[\w.+-]+\+json)")
_CHARSET: Final = re.compile(r"charset\s*=\s*\"?([\w-]+)", re.IGNORECASE)
_ENCODER: Final = msgspec.json.Encoder()
_HEADERS: Final = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def header_problem(headers: Headers) -> str | None:
    """Why a request's headers are ambiguous (None: they are not)."""
    for name in SINGLE_HEADERS:
        if len({v.strip() for v in headers.getlist(name)}) > 1:
            return f"the {name} header is repeated with different values"
    return None


def _encode(body: msgspec.Struct) -> bytes:
    try:
        return _ENCODER.encode(body)
    except UnicodeEncodeError:
        # A lone surrogate a client sent (echoed in an error message): JSON's ASCII escapes
        # can carry it, UTF-8 cannot.
        return json.dumps(msgspec.to_builtins(body), separators=(",", ":")).encode()


def _problem_response(
    status: int, type_: str, message: str, headers: tuple[tuple[str, str], ...] = ()
) -> Response:
    return Response(
        _encode(problem(status, type_, message)),
        status,
        {**_HEADERS, **dict(headers)},
        media_type="application/problem+json",
    )


def _response(reply: Reply) -> Response:
    if isinstance(reply.body, Text):  # the one answer that is not JSON: /metrics
        data, media = reply.body.data, reply.body.content_type
    else:
        data, media = _encode(reply.body), "application/json"
    return Response(data, reply.status, {**_HEADERS, **dict(reply.headers)}, media_type=media)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: JSON has no infinity, and neither do the views
        raise ValueError(f"{text} is out of range")
    return value


class _Limits:
    """The application's settings and its count of requests in flight."""

    def __init__(self, max_body_bytes: int, request_seconds: float, max_in_flight: int) -> None:
        if max_body_bytes < 1 or max_in_flight < 1:
            raise InputError("max_body_bytes and max_in_flight must be positive")
        if not 0 < request_seconds <= 3600:
            raise InputError("request_seconds must be above 0 and at most 3600")
        self.max_body_bytes = max_body_bytes
        self.request_seconds = request_seconds
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self._threads: anyio.CapacityLimiter | None = None

    @property
    def threads(self) -> anyio.CapacityLimiter:
        # Created on first use: a limiter belongs to the event loop that runs the app.
        if self._threads is None:
            self._threads = anyio.CapacityLimiter(self.max_in_flight)
        return self._threads

    async def json_body(self, request: HttpRequest) -> Any:
        """The request's JSON body, read within the size limit and the deadline."""
        headers = request.headers
        mime, _, params = headers.get("content-type", "").partition(";")
        charset = _CHARSET.search(params)
        if _JSON_TYPE.fullmatch(mime.strip().lower()) is None:
            raise RequestError(
                415,
                "UnsupportedMediaType",
                "send the body as JSON (Content-Type: application/json)",
            )
        if charset is not None and charset.group(1).lower() not in ("utf-8", "utf8"):
            raise RequestError(415, "UnsupportedMediaType", "JSON bodies must be UTF-8")
        if "transfer-encoding" in headers:
            raise RequestError(411, "LengthRequired", "send a Content-Length, not chunks")
        raw = headers.get("content-length")
        if raw is None:
            raise RequestError(411, "LengthRequired", "send a Content-Length header")
        if re.fullmatch(r"\s*[0-9]{1,15}\s*", raw) is None:
            raise bad_request("InvalidRequest", "Content-Length is not a number")
        limit = self.max_body_bytes
        if int(raw) > limit:
            raise RequestError(
                413, "RequestTooLarge", f"body is {int(raw)} bytes; the limit is {limit}"
            )
        data = bytearray()
        try:
            with anyio.fail_after(self.request_seconds):
                async for chunk in request.stream():
                    data += chunk
                    if len(data) > limit:  # cannot happen past h11's framing; a guard still
                        raise RequestError(413, "RequestTooLarge", f"the limit is {limit} bytes")
        except TimeoutError:
            raise RequestError(
                408,
                "RequestTimeout",
                "the body did not arrive in time",
                (("Connection", "close"),),
            ) from None
        try:
            return json.loads(
                data.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite
            )
        except UnicodeDecodeError:
            raise bad_request("InvalidJSON", "the body is not valid UTF-8") from None
        except RecursionError:
            raise bad_request("InvalidJSON", "the body is nested too deeply") from None
        except ValueError as exc:
            raise bad_request("InvalidJSON", f"the body is not valid JSON: {exc}") from None


def _endpoint(
    route: Route, kernel: Kernel, mapper_for: MapperFor | None, limits: _Limits
) -> Callable[[HttpRequest], Awaitable[Response]]:
    async def endpoint(request: HttpRequest) -> Response:
        if limits.in_flight >= limits.max_in_flight:
            log.warning(
                "refused %s %s: %d requests in flight", request.method, route.path, limits.in_flight
            )
            return _problem_response(
                503, "Busy", "too many requests in flight; retry shortly", (("Retry-After", "1"),)
            )
        limits.in_flight += 1
        try:
            problem_text = header_problem(request.headers)
            if problem_text is not None:
                raise bad_request("AmbiguousHeaders", problem_text)
            params: dict[str, str] = dict(request.path_params)
            if any(len(v) > MAX_PARAM for v in params.values()):
                raise bad_request("InvalidParameter", "a path parameter is too long")
            query = parse_query(request.query_params.multi_items(), route.query)
            body = await limits.json_body(request) if route.body is not None else None
            call = Request(
                kernel,
                params,
                query,
                request.headers,
                body,
                mapper_for,
                request.scope.get("root_path", "").rstrip("/"),
            )
            reply = await anyio.to_thread.run_sync(route.handler, call, limiter=limits.threads)
            return _response(reply)
        except ClientDisconnect:
            return Response(status_code=400)  # the client is gone: nobody reads this
        except Exception as exc:
            status, type_, message, headers = failure(exc)
            if status >= 500 and status not in (501, 503):
                log.exception("%s %s failed", request.method, request.url.path)
            return _problem_response(status, type_, message, headers)
        finally:
            limits.in_flight -= 1

    return endpoint


async def _http_error(request: HttpRequest, exc: Exception) -> Response:
    """Starlette's own refusals (no route, wrong method) as problems too."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return _problem_response(404, "RouteNotFound", f"no route {request.url.path!r}")
    if exc.status_code == 405:
        allow = ", ".join(sorted((exc.headers or {}).get("Allow", "").split(", ")))
        return _problem_response(
            405,
            "MethodNotAllowed",
            f"{request.method} is not allowed on {request.url.path!r} (allowed: {allow})",
            (("Allow", allow),),
        )
    return _problem_response(exc.status_code, "HTTPError", str(exc.detail))


def create_app(
    kernel: Kernel,
    *,
    mapper_for: MapperFor | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    request_seconds: float = DEFAULT_REQUEST_SECONDS,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
) -> Starlette:
    """The HTTP API over ``kernel``, as an ASGI application to serve or to mount.

    ``mapper_for(sensor_definition)`` gives the push mapper of a sensor's connector (the SDK's
    ``Plugins.push_mapper``); without it every message requests the sensor's default run.
    ``max_body_bytes`` bounds a request body (413 above it), ``request_seconds`` the time a
    client may take to send it (408 after it), ``max_in_flight`` the requests handled at once
    (503 above it). Mount it under a prefix of your own application, behind your own
    middleware::

        from starlette.applications import Starlette
        from starlette.routing import Mount

        host = Starlette(routes=[Mount("/arcoflow", app=create_app(kernel))])

    ``examples/host_app.py`` runs one, with an authentication middleware in front.
    """
    limits = _Limits(max_body_bytes, request_seconds, max_in_flight)

    async def openapi(request: HttpRequest) -> Response:
        root = request.scope.get("root_path", "").rstrip("/")
        return Response(_openapi_bytes(root), headers=_HEADERS, media_type="application/json")

    routes = [
        StarletteRoute(r.path, _endpoint(r, kernel, mapper_for, limits), methods=[r.method])
        for r in ROUTES
    ]
    routes.append(StarletteRoute("/openapi.json", openapi, methods=["GET"]))
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    app.router.redirect_slashes = False  # "/runs/" is not "/runs": a 404, not a redirect
    return app


@cache
def _openapi_bytes(root: str) -> bytes:
    return json.dumps(openapi_document(server=root or "/")).encode()
