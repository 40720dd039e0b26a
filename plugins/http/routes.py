"""The routes of the HTTP API: request parsing rules, page cursors, and one handler per route.

Nothing here touches a socket: a handler takes a :class:`Request` and returns a status and a
JSON body, or raises; :mod:`.server` turns both into HTTP. Every row goes through
:mod:`arcoflow.kernel.views`, so the API answers exactly what ``arcoflow ... --json`` prints.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any, Final, Literal, NamedTuple, Protocol, TypeVar, get_args
from urllib.parse import parse_qs

from arcoflow.sdk import (
    ArcoflowError,
    InputError,
    Kernel,
    NotFound,
    PushMessage,
    RunRequest,
    RunStatus,
    SensorDefinition,
    error_kind,
    validate_run_id,
    views,
)
from arcoflow.sdk.heartbeat import store_heartbeat
from arcoflow.sdk.metrics import CONTENT_TYPE, exposition
from arcoflow.sdk.sources import status_row, store_status

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "MAX_PARAM",
    "ROUTES",
    "Mapper",
    "MapperFor",
    "Request",
    "RequestError",
    "Route",
    "Text",
    "decode_cursor",
    "encode_cursor",
    "error_body",
    "failure",
    "openapi_document",
    "parse_query",
    "split_target",
]

log = logging.getLogger("arcoflow.http")

JSON = dict[str, Any]
Mapper = Callable[[PushMessage], "Sequence[RunRequest] | None"]
#: Finds the push mapper of a sensor's connector (``Plugins.push_mapper``); ``None``: default.
MapperFor = Callable[[SensorDefinition], "Mapper | None"]
_T = TypeVar("_T")

DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 1000
MAX_PARAM: Final = 512  # longest path parameter, query value or cursor, in characters
_MAX_QUERY_FIELDS: Final = 16
_TICK_STATUSES: Final = ("TRIGGERED", "SKIPPED", "FAILED")
_RUN_STATUSES: Final = get_args(RunStatus)


class RequestError(ArcoflowError):
    """A request the API refuses, with its HTTP status and error type."""

    def __init__(
        self, status: int, type_: str, message: str, headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.headers = tuple(headers)


def bad_request(type_: str, message: str) -> RequestError:
    return RequestError(400, type_, message)


# -- cursors -------------------------------------------------------------------------------------

_CURSOR_FORMAT: Final = "c1"
_DIGEST: Final = 8


def _digest(body: bytes) -> bytes:
    return hashlib.blake2s(body, digest_size=_DIGEST, person=b"afcursor").digest()


def encode_cursor(kind: str, scope: str, value: str) -> str:
    """An opaque page cursor: the listing ``kind``, its ``scope`` (a schedule or sensor id, or
    empty) and the last item's key, with a checksum, in URL-safe base64.

    >>> token = encode_cursor("runs", "", "abc")
    >>> decode_cursor(token, "runs", "")
    'abc'
    """
    body = "|".join((_CURSOR_FORMAT, kind, scope, value)).encode()
    return base64.urlsafe_b64encode(body + _digest(body)).rstrip(b"=").decode("ascii")


def decode_cursor(token: str, kind: str, scope: str) -> str:
    """The key inside ``token``; :class:`RequestError` (400) if it was altered, truncated, or
    belongs to another listing. The checksum catches damage, it is not a secret: a forged
    cursor still only reaches the kernel's own validation."""
    if len(token) > MAX_PARAM or re.fullmatch(r"[A-Za-z0-9_-]+", token) is None:
        raise bad_request("InvalidCursor", "cursor is not valid: pass back a next_cursor unchanged")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise bad_request(
            "InvalidCursor", "cursor is not valid: pass back a next_cursor unchanged"
        ) from None
    body, digest = raw[:-_DIGEST], raw[-_DIGEST:]
    if len(raw) <= _DIGEST or not hmac.compare_digest(_digest(body), digest):
        raise bad_request("InvalidCursor", "cursor is damaged: pass back a next_cursor unchanged")
    parts = body.decode("utf-8", "replace").split("|")
    if len(parts) != 4 or parts[0] != _CURSOR_FORMAT:
        raise bad_request("InvalidCursor", "cursor is from another version of the API")
    if parts[1] != kind or parts[2] != scope:
        where = f"{parts[1]} of {parts[2]!r}" if parts[2] else parts[1]
        raise bad_request("InvalidCursor", f"cursor belongs to another listing ({where})")
    return parts[3]


# -- requests, routes and handlers ---------------------------------------------------------------


class Headers(Protocol):
    """The request headers (case-insensitive lookup)."""

    def get(self, name: str, /) -> Any: ...


class Request(NamedTuple):
    """What a route handler sees."""

    kernel: Kernel
    params: dict[str, str]  # path parameters, percent-decoded
    query: dict[str, str]  # query parameters, validated against the route's list
    headers: Headers
    body: Callable[[], Any]  # reads and parses the JSON body
    mapper_for: MapperFor | None


class Text(NamedTuple):
    """An answer that is not JSON (the metrics exposition): its bytes and content type."""

    data: bytes
    content_type: str


Reply = tuple[int, "JSON | Text"]
Handler = Callable[[Request], Reply]


class Route(NamedTuple):
    """One route: its method, its OpenAPI path template, the query parameters it accepts."""

    method: str
    path: str
    handler: Handler
    query: tuple[str, ...] = ()

    def match(self, segments: Sequence[str]) -> dict[str, str] | None:
        """The path parameters if ``segments`` (decoded, without the leading '') fit."""
        template = self.path.split("/")[1:]
        if len(template) != len(segments):
            return None
        params = {}
        for want, got in zip(template, segments, strict=True):
            if want.startswith("{"):
                if not got:
                    return None
                params[want[1:-1]] = got
            elif want != got:
                return None
        return params


def _limit(query: Mapping[str, str]) -> int:
    raw = query.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if re.fullmatch(r"[0-9]{1,4}", raw) is None or not 1 <= int(raw) <= MAX_LIMIT:
        raise bad_request(
            "InvalidParameter", f"limit must be an integer 1-{MAX_LIMIT}, got {raw!r}"
        )
    return int(raw)


def _status(query: Mapping[str, str], allowed: Sequence[str]) -> str | None:
    status = query.get("status")
    if status is not None and status not in allowed:
        raise bad_request("InvalidParameter", f"status must be one of {', '.join(allowed)}")
    return status


def _page(
    query: Mapping[str, str],
    kind: str,
    scope: str,
    fetch: Callable[[str | None, int], list[_T]],
    key: Callable[[_T], str],
    view: Callable[[_T], JSON],
) -> Reply:
    """One page of a listing that the kernel serves newest first (or by id) with a ``before``
    key. The next cursor is set only when another item really follows (a one-item probe), so
    a client stops at ``null`` without fetching an empty page."""
    limit = _limit(query)
    token = query.get("cursor")
    before = None if token is None else decode_cursor(token, kind, scope)
    try:
        rows = fetch(before, limit)
    except (InputError, NotFound) as exc:
        if before is None:
            raise
        raise bad_request("InvalidCursor", f"cursor does not name an item: {exc}") from None
    following = None
    if len(rows) == limit and fetch(key(rows[-1]), 1):
        following = encode_cursor(kind, scope, key(rows[-1]))
    return 200, {"items": [view(r) for r in rows], "next_cursor": following}


def _after(rows: Sequence[_T], key: Callable[[_T], str], before: str | None, n: int) -> list[_T]:
    return [r for r in rows if before is None or key(r) > before][:n]


def _schedules(req: Request) -> Reply:
    def key(r: Any) -> str:
        return str(r.schedule_id)

    rows = req.kernel.schedules()
    return _page(
        req.query, "schedules", "", lambda b, n: _after(rows, key, b, n), key, views.schedule_json
    )


def _schedule(req: Request) -> Reply:
    return 200, views.schedule_json(req.kernel.schedule(req.params["schedule_id"]))


def _ticks(req: Request) -> Reply:
    sid = req.params["schedule_id"]
    req.kernel.schedule(sid)  # 404 for an unknown schedule rather than an empty list
    status = _status(req.query, _TICK_STATUSES)
    return _page(
        req.query,
        "ticks",
        sid,
        lambda b, n: req.kernel.ticks(sid, status=status, limit=n, before=b),
        lambda r: r.tick_id,
        views.tick_json,
    )


def _tick(req: Request) -> Reply:
    return 200, views.tick_detail_json(req.kernel.tick(req.params["tick_id"]))


def _sensors(req: Request) -> Reply:
    def key(r: Any) -> str:
        return str(r.sensor_id)

    rows = req.kernel.sensors()
    return _page(
        req.query, "sensors", "", lambda b, n: _after(rows, key, b, n), key, views.sensor_json
    )


def _sensor(req: Request) -> Reply:
    return 200, views.sensor_json(req.kernel.sensor(req.params["sensor_id"]))


def _evaluations(req: Request) -> Reply:
    sid = req.params["sensor_id"]
    req.kernel.sensor(sid)
    return _page(
        req.query,
        "evaluations",
        sid,
        lambda b, n: req.kernel.evaluations(sid, limit=n, before=b),
        lambda r: r.evaluation.eval_id,
        views.eval_json,
    )


def _runs(req: Request) -> Reply:
    status = _status(req.query, _RUN_STATUSES)
    return _page(
        req.query,
        "runs",
        "",
        lambda b, n: req.kernel.runs(limit=n, before=b, status=status),
        lambda r: r.run_id,
        views.run_json,
    )


def _run(req: Request) -> Reply:
    return 200, views.run_json(req.kernel.run(validate_run_id(req.params["run_id"])))


def _conflicts(req: Request) -> Reply:
    def fetch(before: str | None, n: int) -> list[Any]:
        if before is not None and re.fullmatch(r"[0-9]{1,19}", before) is None:
            raise InputError(f"{before!r} is not a sequence number")
        return req.kernel.conflicts(limit=n, before=None if before is None else int(before))

    return _page(req.query, "conflicts", "", fetch, lambda r: str(r.seq), views.conflict_json)


def _healthz(req: Request) -> Reply:
    """The store is readable (else 503), and when a daemon on this store last completed a
    cycle (its heartbeat file; ``daemon`` is null when none has run). Reported, not judged:
    the server may well run with no daemon; alert on ``age_seconds`` against the interval."""
    try:
        with req.kernel.store.read():
            pass
    except Exception as exc:
        log.warning("health check: the store cannot be read: %s", exc)
        raise RequestError(503, "StoreUnavailable", "the store cannot be read") from None
    beat = store_heartbeat(req.kernel.store)  # the newest of every daemon's, on PostgreSQL
    daemon = None
    if beat is not None:
        daemon = {
            "last_cycle_at": datetime.fromtimestamp(beat.finished_at, UTC)
            .isoformat(timespec="seconds")
            .replace("+00:00", "Z"),
            "age_seconds": round(max(time.time() - beat.finished_at, 0.0), 3),
            "interval_seconds": beat.interval,
            "cycles": beat.cycles,
            "host": beat.host,
            "pid": beat.pid,
        }
    return 200, {"status": "ok", "daemon": daemon}


def _metrics(req: Request) -> Reply:
    """Prometheus metrics: this process's (a daemon's, when one runs in it) and the store's.
    Needs ``arcoflow[metrics]``; without it, 501."""
    try:
        data = exposition(req.kernel)
    except ImportError as exc:
        raise RequestError(501, "MetricsUnavailable", str(exc)) from None
    return 200, Text(data, CONTENT_TYPE)


@cache
def openapi_document() -> JSON:
    """The OpenAPI 3.1 document of this API (``plugins/openapi.json``)."""
    text = resources.files("arcoflow.plugins").joinpath("openapi.json").read_text("utf-8")
    document: JSON = json.loads(text)
    return document


def _sources(req: Request) -> Reply:
    """The sources' state the daemons last recorded (see ``arcoflow sources``)."""
    states = store_status(req.kernel.store)
    return 200, {"sources": [status_row(s) for s in states]}


def _openapi(req: Request) -> Reply:
    return 200, openapi_document()


def _message(body: Any, headers: Headers) -> tuple[str, Any]:
    """The message id and payload of a push delivery (see the module docstring)."""
    named = {h: v for h in ("Idempotency-Key", "X-Message-Id") if (v := headers.get(h))}
    if len(set(named.values())) > 1:
        raise bad_request("InvalidMessage", "the Idempotency-Key and X-Message-Id headers disagree")
    header_id = next(iter(named.values()), None)
    body_id: Any = None
    payload = body
    if isinstance(body, dict) and ("message_id" in body or "payload" in body):
        extra = sorted(set(body) - {"message_id", "payload"})
        if extra:
            raise bad_request(
                "InvalidMessage",
                f"a body with message_id or payload is an envelope and takes no other key "
                f"(got {', '.join(map(repr, extra[:5]))}); to push such an object, "
                'wrap it: {"payload": {...}}',
            )
        body_id = body.get("message_id")
        payload = body.get("payload")
        if body_id is not None and not isinstance(body_id, str):
            raise bad_request("InvalidMessage", "message_id must be a string")
    if header_id is not None and body_id is not None and header_id != body_id:
        raise bad_request("InvalidMessage", "the message id in the header and in the body disagree")
    message_id = header_id or body_id
    if not message_id:
        raise bad_request(
            "InvalidMessage",
            "no message id: send an Idempotency-Key header or a message_id field",
        )
    return message_id, payload


def _post_message(req: Request) -> Reply:
    row = req.kernel.sensor(req.params["sensor_id"])
    message_id, payload = _message(req.body(), req.headers)
    mapper = None if req.mapper_for is None else req.mapper_for(row.definition)
    ingested = req.kernel.ingest(row.sensor_id, message_id, payload, connector=mapper)
    body = {"evaluation": views.eval_json(ingested.evaluation), "duplicate": ingested.duplicate}
    return (200 if ingested.duplicate else 201), body


# -- history of changes and operator verbs -------------------------------------------------------


def _history(kind: Literal["schedule", "sensor"]) -> Handler:
    """``GET /schedules/{id}/history``, ``GET /sensors/{id}/history``: changes, newest first."""

    def handler(req: Request) -> Reply:
        item = req.params[f"{kind}_id"]
        getattr(req.kernel, kind)(item)  # 404 for an unknown id rather than an empty list

        def fetch(before: str | None, n: int) -> list[Any]:
            if before is not None and re.fullmatch(r"[0-9]{1,19}", before) is None:
                raise InputError(f"{before!r} is not a sequence number")
            seq = None if before is None else int(before)
            return req.kernel.history(kind, item, limit=n, before=seq)

        return _page(
            req.query, f"{kind}-history", item, fetch, lambda r: str(r.seq), views.history_json
        )

    return handler


def _fields(body: Any, required: Sequence[str], optional: Sequence[str] = ()) -> dict[str, Any]:
    """The fields of a JSON object body: every ``required`` one present, no unknown one."""
    if not isinstance(body, dict):
        raise bad_request("InvalidBody", "the body must be a JSON object")
    unknown = sorted(set(body) - {*required, *optional})
    if unknown:
        raise bad_request(
            "InvalidBody", f"unknown field(s) {', '.join(map(repr, unknown[:5]))} in the body"
        )
    missing = [name for name in required if name not in body]
    if missing:
        raise bad_request("InvalidBody", f"the body needs {', '.join(map(repr, missing))}")
    return body


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request("InvalidBody", f"{name} must be an integer")
    return value


def _instant(value: Any, name: str) -> int:
    """Epoch seconds from an ISO-8601 string with its offset (``2026-03-08T07:00:00Z``)."""
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise bad_request(
            "InvalidBody", f"{name} must be an ISO-8601 time such as 2026-03-08T07:00:00Z"
        ) from None
    if moment.tzinfo is None:
        raise bad_request("InvalidBody", f"{name} needs an offset (Z or +HH:MM)")
    return int(moment.timestamp())


def _set_cursor(req: Request) -> Reply:
    """``POST /sensors/{id}/cursor`` ``{"cursor": "..." | null, "expected_version": N}``."""
    body = _fields(req.body(), ("cursor", "expected_version"), ("cursor_version",))
    cursor = body["cursor"]
    if cursor is not None and not isinstance(cursor, str):
        raise bad_request("InvalidBody", "cursor must be a string or null")
    row = req.kernel.set_cursor(
        req.params["sensor_id"],
        cursor,
        expected_version=_int(body["expected_version"], "expected_version"),
        cursor_version=_int(body.get("cursor_version", 1), "cursor_version"),
        requested_by="http",
    )
    return 200, views.sensor_json(row)


def _backfill(req: Request) -> Reply:
    """``POST /schedules/{id}/backfill`` ``{"from": ..., "to": ..., "max_runs"?, "dry_run"?}``:
    201 if it requested a new run, else 200 (a dry run, or every run existed)."""
    body = _fields(req.body(), ("from", "to"), ("max_runs", "dry_run"))
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise bad_request("InvalidBody", "dry_run must be true or false")
    ticks = req.kernel.backfill(
        req.params["schedule_id"],
        _instant(body["from"], "from"),
        _instant(body["to"], "to"),
        dry_run=dry_run,
        max_runs=_int(body.get("max_runs", 100), "max_runs"),
        requested_by="http",
    )
    created = any(t.run is not None and not t.existing for t in ticks) and not dry_run
    return (201 if created else 200), {"items": [views.backfill_json(t) for t in ticks]}


def _retry(req: Request) -> Reply:
    """``POST /runs/{run_id}/retry``: a GAVE_UP run back to the launch outbox."""
    run_id = validate_run_id(req.params["run_id"])
    return 200, views.run_json(req.kernel.retry_run(run_id, requested_by="http"))


#: Every route the server answers; ``tests/plugins`` checks it against ``openapi.json``.
ROUTES: Final[tuple[Route, ...]] = (
    Route("POST", "/sensors/{sensor_id}/messages", _post_message),
    Route("GET", "/schedules", _schedules, ("limit", "cursor")),
    Route("GET", "/schedules/{schedule_id}", _schedule),
    Route("GET", "/schedules/{schedule_id}/ticks", _ticks, ("status", "limit", "cursor")),
    Route("GET", "/ticks/{tick_id}", _tick),
    Route("GET", "/sensors", _sensors, ("limit", "cursor")),
    Route("GET", "/sensors/{sensor_id}", _sensor),
    Route("GET", "/sensors/{sensor_id}/evaluations", _evaluations, ("limit", "cursor")),
    Route("GET", "/runs", _runs, ("status", "limit", "cursor")),
    Route("GET", "/runs/{run_id}", _run),
    Route("GET", "/conflicts", _conflicts, ("limit", "cursor")),
    Route("GET", "/sources", _sources),
    Route("GET", "/healthz", _healthz),
    Route("GET", "/metrics", _metrics),
    Route("GET", "/openapi.json", _openapi),
    Route("GET", "/schedules/{schedule_id}/history", _history("schedule"), ("limit", "cursor")),
    Route("GET", "/sensors/{sensor_id}/history", _history("sensor"), ("limit", "cursor")),
    Route("POST", "/sensors/{sensor_id}/cursor", _set_cursor),
    Route("POST", "/schedules/{schedule_id}/backfill", _backfill),
    Route("POST", "/runs/{run_id}/retry", _retry),
)


def split_target(target: str) -> tuple[str, str]:
    """The path and the query string of a request target (origin form: ``/path?query``).
    Not ``urlsplit``, which reads ``//runs`` as a host name; leading slashes collapse into
    one, as ``http.server`` itself does since Python 3.11.4."""
    path, _, query = target.partition("#")[0].partition("?")
    if path.startswith("//"):
        path = "/" + path.lstrip("/")
    return path, query


def parse_query(raw: str, allowed: Sequence[str]) -> dict[str, str]:
    try:
        pairs = parse_qs(raw, keep_blank_values=True, max_num_fields=_MAX_QUERY_FIELDS)
    except ValueError:
        raise bad_request("InvalidParameter", "too many query parameters") from None
    query = {}
    for name, values in pairs.items():
        if name not in allowed:
            accepted = ", ".join(allowed) or "none"
            raise bad_request(
                "InvalidParameter", f"unknown query parameter {name!r} (accepted: {accepted})"
            )
        if len(values) > 1:
            raise bad_request(
                "InvalidParameter", f"query parameter {name!r} is given more than once"
            )
        if len(values[0]) > MAX_PARAM:
            raise bad_request("InvalidParameter", f"query parameter {name!r} is too long")
        if values[0]:  # a blank value (``?status=``) means "not given", as in HTML forms
            query[name] = values[0]
    return query


def failure(exc: BaseException) -> tuple[int, str, str, tuple[tuple[str, str], ...]]:
    """Status, error type, message and extra headers for an exception a handler raised.

    Arcoflow's own errors take their status from the SDK's one mapping
    (:data:`arcoflow.sdk.ERROR_KINDS`, shared with the CLI's exit codes); a server error
    keeps its details in the server log."""
    if isinstance(exc, RequestError):
        return exc.status, exc.type, exc.message, exc.headers
    kind = error_kind(exc)
    if kind is None or kind.http_status >= 500:
        return 500, "InternalError", "internal error; the server log has the details", ()
    return kind.http_status, type(exc).__name__, str(exc), ()


def error_body(type_: str, message: str) -> JSON:
    return {"error": {"type": type_, "message": message}}
