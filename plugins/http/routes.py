"""The routes of the HTTP API: request rules, page cursors, the answer shapes, one handler each.

Nothing here touches a socket or an event loop: a handler takes a :class:`Request` (its JSON
body already read and parsed) and returns a :class:`Reply`, or raises; :mod:`.app` turns both
into HTTP. Every row is a view of :mod:`arcoflow.kernel.views`, so the API answers exactly what
``arcoflow ... --json`` prints, and :mod:`.openapi` documents each route from the same Structs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Literal, NamedTuple, TypeVar
from urllib.parse import quote, urlencode

import msgspec
from arcoflow.sdk import (
    DEFAULT_PAGE,
    MAX_PAGE,
    RUN_STATUSES,
    TICK_STATUSES,
    ArcoflowError,
    InputError,
    Kernel,
    NotFound,
    PushMessage,
    RunRequest,
    SensorDefinition,
    check_limit,
    error_kind,
    iso,
    parse_iso,
    status_row,
    store_heartbeat,
    store_status,
    validate_run_id,
    views,
)
from arcoflow.sdk.metrics import CONTENT_TYPE, exposition

from .shapes import (
    BackfillBody,
    Backfilled,
    ClaimBody,
    Claimed,
    CompleteBody,
    CursorBody,
    Daemon,
    Health,
    LaunchBody,
    MessageBody,
    Page,
    Problem,
    Pushed,
    ResetCursorBody,
    Sources,
)

__all__ = [
    "MAX_PARAM",
    "MESSAGE_ID_HEADERS",
    "PROBLEM_TYPE",
    "ROUTES",
    "Mapper",
    "MapperFor",
    "Reply",
    "Request",
    "RequestError",
    "Route",
    "Text",
    "decode_cursor",
    "encode_cursor",
    "failure",
    "parse_query",
    "problem",
]

log = logging.getLogger("arcoflow.http")

Mapper = Callable[[PushMessage], "Sequence[RunRequest] | None"]
#: Finds the push mapper of a sensor's connector (``Plugins.push_mapper``); ``None``: default.
MapperFor = Callable[[SensorDefinition], "Mapper | None"]
_T = TypeVar("_T")
_V = TypeVar("_V", bound=msgspec.Struct)

MAX_PARAM: Final = 512  # longest path parameter, query value or cursor, in characters
_MAX_QUERY_FIELDS: Final = 16
#: Every problem's ``type`` is this prefix and its kind (RFC 9457: a URI naming the problem).
PROBLEM_TYPE: Final = "urn:arcoflow:problem:"


class RequestError(ArcoflowError):
    """A request the API refuses, with its HTTP status and problem kind."""

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


def _decode(body: Any, shape: type[_T]) -> _T:
    if not isinstance(body, dict):
        raise bad_request("InvalidBody", "the body must be a JSON object")
    try:
        return msgspec.convert(body, shape)
    except msgspec.ValidationError as exc:
        raise bad_request("InvalidBody", f"the body is not valid: {exc}") from None


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


class Request(NamedTuple):
    """What a route handler sees."""

    kernel: Kernel
    params: dict[str, str]  # path parameters, percent-decoded
    query: dict[str, str]  # query parameters, validated against the route's list
    headers: Mapping[str, str]  # case-insensitive; a repeated header was refused before
    body: Any  # the parsed JSON body (None for a route that takes none)
    mapper_for: MapperFor | None
    base: str  # the path the API is mounted at ("" at the root): links and Location use it


class Text(NamedTuple):
    """An answer that is not JSON (the metrics exposition): its bytes and content type."""

    data: bytes
    content_type: str


class Reply(NamedTuple):
    """A handler's answer: status, body (a Struct, or :class:`Text`) and extra headers."""

    status: int
    body: msgspec.Struct | Text
    headers: tuple[tuple[str, str], ...] = ()


Handler = Callable[[Request], Reply]


class Route(NamedTuple):
    """One route: method, path template, handler, the query parameters it accepts, and what
    the OpenAPI document says of it (the body it reads, the shape of each success status)."""

    method: str
    path: str
    handler: Handler
    summary: str
    responses: Mapping[int, type[msgspec.Struct] | type[Text]]
    query: tuple[str, ...] = ()
    body: type[msgspec.Struct] | None = None
    statuses: tuple[str, ...] = ()  # the values ``status`` accepts, when it is a parameter
    headers: tuple[str, ...] = ()  # the request headers it reads (documented as parameters)

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
        return DEFAULT_PAGE
    try:  # the digits first: int() would take "+5", " 5" and "5_0"
        return check_limit(int(raw) if re.fullmatch(r"[0-9]{1,4}", raw) else None)
    except InputError:
        raise bad_request(
            "InvalidParameter", f"limit must be an integer 1-{MAX_PAGE}, got {raw!r}"
        ) from None


def _status(query: Mapping[str, str], allowed: Sequence[str]) -> str | None:
    status = query.get("status")
    if status is not None and status not in allowed:
        raise bad_request("InvalidParameter", f"status must be one of {', '.join(allowed)}")
    return status


def _path(req: Request, template: str) -> str:
    """The URL path of ``template`` (``/runs/{run_id}``) under the mount, parameters quoted."""
    return req.base + re.sub(
        r"\{(\w+)\}", lambda m: quote(req.params[m.group(1)], safe=":"), template
    )


def _page(
    req: Request,
    kind: str,
    scope: str,
    fetch: Callable[[str | None, int], list[_T]],
    key: Callable[[_T], str],
    view: Callable[[_T], _V],
    template: str,
) -> Reply:
    """One page of a listing that the kernel serves newest first (or by id) with a ``before``
    key. The next cursor is set only when another item really follows (a one-item probe), so
    a client stops at ``null`` without fetching an empty page; ``next`` is its URL (the same
    query with that cursor), also sent as ``Link: <...>; rel="next"`` (RFC 8288)."""
    limit = _limit(req.query)
    token = req.query.get("cursor")
    before = None if token is None else decode_cursor(token, kind, scope)
    try:
        rows = fetch(before, limit)
    except (InputError, NotFound) as exc:
        if before is None:
            raise
        raise bad_request("InvalidCursor", f"cursor does not name an item: {exc}") from None
    following = link = None
    headers: tuple[tuple[str, str], ...] = ()
    if len(rows) == limit and fetch(key(rows[-1]), 1):
        following = encode_cursor(kind, scope, key(rows[-1]))
        link = _path(req, template) + "?" + urlencode({**req.query, "cursor": following})
        headers = (("Link", f'<{link}>; rel="next"'),)
    return Reply(200, Page([view(r) for r in rows], following, link), headers)


def _after(rows: Sequence[_T], key: Callable[[_T], str], before: str | None, n: int) -> list[_T]:
    return [r for r in rows if before is None or key(r) > before][:n]


def _sequence(before: str | None) -> int | None:
    if before is not None and re.fullmatch(r"[0-9]{1,19}", before) is None:
        raise InputError(f"{before!r} is not a sequence number")
    return None if before is None else int(before)


def _by_id(
    kind: str,
    rows: Callable[[Kernel], Sequence[_T]],
    key: Callable[[_T], str],
    view: Callable[[_T], _V],
) -> Handler:
    """The handler of ``GET /{kind}``: every definition of that kind, paged by id (the kernel
    returns them all, sorted by id; a page is the ids after the cursor)."""

    def handler(req: Request) -> Reply:
        every = rows(req.kernel)
        return _page(req, kind, "", lambda b, n: _after(every, key, b, n), key, view, f"/{kind}")

    return handler


_schedules = _by_id("schedules", Kernel.schedules, lambda r: r.schedule_id, views.schedule_view)
_sensors = _by_id("sensors", Kernel.sensors, lambda r: r.sensor_id, views.sensor_view)


def _schedule(req: Request) -> Reply:
    return Reply(200, views.schedule_view(req.kernel.schedule(req.params["schedule_id"])))


def _ticks(req: Request) -> Reply:
    sid = req.params["schedule_id"]
    req.kernel.schedule(sid)  # 404 for an unknown schedule rather than an empty list
    status = _status(req.query, TICK_STATUSES)
    return _page(
        req,
        "ticks",
        sid,
        lambda b, n: req.kernel.ticks(sid, status=status, limit=n, before=b),
        lambda r: r.tick_id,
        views.tick_view,
        "/schedules/{schedule_id}/ticks",
    )


def _tick(req: Request) -> Reply:
    return Reply(200, views.tick_detail_view(req.kernel.tick(req.params["tick_id"])))


def _sensor(req: Request) -> Reply:
    return Reply(200, views.sensor_view(req.kernel.sensor(req.params["sensor_id"])))


def _evaluations(req: Request) -> Reply:
    sid = req.params["sensor_id"]
    req.kernel.sensor(sid)
    return _page(
        req,
        "evaluations",
        sid,
        lambda b, n: req.kernel.evaluations(sid, limit=n, before=b),
        lambda r: r.evaluation.eval_id,
        views.eval_view,
        "/sensors/{sensor_id}/evaluations",
    )


def _evaluation(req: Request) -> Reply:
    return Reply(200, views.eval_view(req.kernel.evaluation(req.params["eval_id"])))


def _runs(req: Request) -> Reply:
    status = _status(req.query, RUN_STATUSES)
    return _page(
        req,
        "runs",
        "",
        lambda b, n: req.kernel.runs(limit=n, before=b, status=status),
        lambda r: r.run_id,
        views.run_view,
        "/runs",
    )


def _run(req: Request) -> Reply:
    return Reply(200, views.run_view(req.kernel.run(validate_run_id(req.params["run_id"]))))


def _conflicts(req: Request) -> Reply:
    return _page(
        req,
        "conflicts",
        "",
        lambda b, n: req.kernel.conflicts(limit=n, before=_sequence(b)),
        lambda r: str(r.seq),
        views.conflict_view,
        "/conflicts",
    )


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
        daemon = Daemon(
            last_cycle_at=iso(int(beat.finished_at)),
            age_seconds=round(max(time.time() - beat.finished_at, 0.0), 3),
            interval_seconds=beat.interval,
            cycles=beat.cycles,
            host=beat.host,
            pid=beat.pid,
        )
    return Reply(200, Health("ok", daemon))


def _metrics(req: Request) -> Reply:
    """Prometheus metrics: this process's (a daemon's, when one runs in it) and the store's.
    Needs ``arcoflow[metrics]``; without it, 501."""
    try:
        data = exposition(req.kernel)
    except ImportError as exc:
        raise RequestError(501, "MetricsUnavailable", str(exc)) from None
    return Reply(200, Text(data, CONTENT_TYPE))


def _sources(req: Request) -> Reply:
    """The sources' state the daemons last recorded (see ``arcoflow sources``)."""
    return Reply(200, Sources([status_row(s) for s in store_status(req.kernel.store)]))


#: The request headers that may carry a push message's id (they must agree when both are sent).
MESSAGE_ID_HEADERS: Final = ("Idempotency-Key", "X-Message-Id")


def _message(body: Any, headers: Mapping[str, str]) -> tuple[str, Any]:
    """The message id and payload of a push delivery (see docs/http.md, "Messages")."""
    named = {h: v for h in MESSAGE_ID_HEADERS if (v := headers.get(h.lower()))}
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
    """201 with ``Location`` of the new evaluation; a re-delivery 200 with the original."""
    row = req.kernel.sensor(req.params["sensor_id"])
    message_id, payload = _message(req.body, req.headers)
    mapper = None if req.mapper_for is None else req.mapper_for(row.definition)
    ingested = req.kernel.ingest(row.sensor_id, message_id, payload, connector=mapper)
    body = Pushed(views.eval_view(ingested.evaluation), ingested.duplicate)
    if ingested.duplicate:
        return Reply(200, body)
    where = req.base + "/evaluations/" + quote(body.evaluation.eval_id, safe=":")
    return Reply(201, body, (("Location", where),))


# -- history of changes, operator verbs, launch reports -----------------------------------------


def _history(kind: Literal["schedule", "sensor"]) -> Handler:
    """``GET /schedules/{id}/history``, ``GET /sensors/{id}/history``: changes, newest first."""

    def handler(req: Request) -> Reply:
        item = req.params[f"{kind}_id"]
        getattr(req.kernel, kind)(item)  # 404 for an unknown id rather than an empty list
        return _page(
            req,
            f"{kind}-history",
            item,
            lambda b, n: req.kernel.history(kind, item, limit=n, before=_sequence(b)),
            lambda r: str(r.seq),
            views.history_view,
            f"/{kind}s/{{{kind}_id}}/history",
        )

    return handler


def _instant(value: str, name: str) -> int:
    """Epoch seconds from an ISO-8601 string with its offset (``2026-03-08T07:00:00Z``)."""
    try:
        return parse_iso(value, name, naive_is_utc=False)
    except InputError as exc:
        raise bad_request("InvalidBody", str(exc)) from None


def _set_cursor(req: Request) -> Reply:
    body = _decode(req.body, CursorBody)
    row = req.kernel.set_cursor(
        req.params["sensor_id"],
        body.cursor,
        expected_version=body.expected_version,
        cursor_version=body.cursor_version,
        requested_by="http",
    )
    return Reply(200, views.sensor_view(row))


def _reset_cursor(req: Request) -> Reply:
    body = _decode(req.body, ResetCursorBody)
    row = req.kernel.reset_cursor(
        req.params["sensor_id"], expected_version=body.expected_version, requested_by="http"
    )
    return Reply(200, views.sensor_view(row))


def _backfill(req: Request) -> Reply:
    """201 (``Location``: the first new run) if it requested a new run, else 200 (a dry run,
    or every run existed)."""
    body = _decode(req.body, BackfillBody)
    ticks = req.kernel.backfill(
        req.params["schedule_id"],
        _instant(body.from_, "from"),
        _instant(body.to, "to"),
        dry_run=body.dry_run,
        max_runs=body.max_runs,
        requested_by="http",
    )
    new = [t.run for t in ticks if t.run is not None and not t.existing and not body.dry_run]
    result = Backfilled([views.backfill_view(t) for t in ticks])
    if not new:
        return Reply(200, result)
    return Reply(201, result, (("Location", f"{req.base}/runs/{new[0].run_id}"),))


def _retry(req: Request) -> Reply:
    """A GAVE_UP run back to the launch outbox."""
    run_id = validate_run_id(req.params["run_id"])
    return Reply(200, views.run_view(req.kernel.retry_run(run_id, requested_by="http")))


def _claim(req: Request) -> Reply:
    body = _decode(req.body, ClaimBody)
    runs = req.kernel.claim_launches(body.claimer, lease=body.lease, limit=body.limit)
    return Reply(200, Claimed([views.run_view(r) for r in runs]))


def _launch(req: Request) -> Reply:
    body = _decode(req.body, LaunchBody)
    row = req.kernel.record_launch(
        validate_run_id(req.params["run_id"]),
        external_id=body.external_id,
        error=body.error,
        max_attempts=body.max_attempts,
        claimer=body.claimer,
        expected_attempts=body.expected_attempts,
    )
    return Reply(200, views.run_view(row))


def _complete(req: Request) -> Reply:
    body = _decode(req.body, CompleteBody)
    row = req.kernel.complete_run(
        validate_run_id(req.params["run_id"]), body.succeeded, body.detail
    )
    return Reply(200, views.run_view(row))


_PAGE: Final = ("limit", "cursor")

#: Every route the API answers (``GET`` routes answer ``HEAD`` too); :mod:`.openapi` derives
#: the document from this table, and ``tests/plugins`` checks the two agree.
ROUTES: Final[tuple[Route, ...]] = (
    Route(
        "POST",
        "/sensors/{sensor_id}/messages",
        _post_message,
        "Deliver a message to a push sensor (idempotent by message id)",
        {201: Pushed, 200: Pushed},
        body=MessageBody,
        headers=MESSAGE_ID_HEADERS,
    ),
    Route(
        "GET", "/schedules", _schedules, "Schedules, by id", {200: Page[views.ScheduleView]}, _PAGE
    ),
    Route("GET", "/schedules/{schedule_id}", _schedule, "One schedule", {200: views.ScheduleView}),
    Route(
        "GET",
        "/schedules/{schedule_id}/ticks",
        _ticks,
        "Ticks of a schedule, newest first",
        {200: Page[views.TickView]},
        ("status", *_PAGE),
        statuses=TICK_STATUSES,
    ),
    Route("GET", "/ticks/{tick_id}", _tick, "One tick and its runs", {200: views.TickDetailView}),
    Route("GET", "/sensors", _sensors, "Sensors, by id", {200: Page[views.SensorView]}, _PAGE),
    Route("GET", "/sensors/{sensor_id}", _sensor, "One sensor", {200: views.SensorView}),
    Route(
        "GET",
        "/sensors/{sensor_id}/evaluations",
        _evaluations,
        "Evaluations of a sensor, newest first",
        {200: Page[views.EvalView]},
        _PAGE,
    ),
    Route("GET", "/evaluations/{eval_id}", _evaluation, "One evaluation", {200: views.EvalView}),
    Route(
        "GET",
        "/runs",
        _runs,
        "Runs, newest first",
        {200: Page[views.RunView]},
        ("status", *_PAGE),
        statuses=RUN_STATUSES,
    ),
    Route("GET", "/runs/{run_id}", _run, "One run", {200: views.RunView}),
    Route(
        "GET",
        "/conflicts",
        _conflicts,
        "Run-key conflicts, newest first",
        {200: Page[views.ConflictView]},
        _PAGE,
    ),
    Route("GET", "/sources", _sources, "The broker sources' state", {200: Sources}),
    Route(
        "GET",
        "/healthz",
        _healthz,
        "Health of the store, and the daemon's last cycle",
        {200: Health},
    ),
    Route("GET", "/metrics", _metrics, "Prometheus metrics (needs arcoflow[metrics])", {200: Text}),
    Route(
        "GET",
        "/schedules/{schedule_id}/history",
        _history("schedule"),
        "Changes made to a schedule, newest first",
        {200: Page[views.HistoryView]},
        _PAGE,
    ),
    Route(
        "GET",
        "/sensors/{sensor_id}/history",
        _history("sensor"),
        "Changes made to a sensor, newest first",
        {200: Page[views.HistoryView]},
        _PAGE,
    ),
    Route(
        "POST",
        "/sensors/{sensor_id}/cursor",
        _set_cursor,
        "Set a sensor's cursor (compare-and-set on its state version)",
        {200: views.SensorView},
        body=CursorBody,
    ),
    Route(
        "POST",
        "/sensors/{sensor_id}/cursor/reset",
        _reset_cursor,
        "Reset a sensor's cursor (compare-and-set on its state version)",
        {200: views.SensorView},
        body=ResetCursorBody,
    ),
    Route(
        "POST",
        "/schedules/{schedule_id}/backfill",
        _backfill,
        "Request the ticks of a time range",
        {201: Backfilled, 200: Backfilled},
        body=BackfillBody,
    ),
    Route(
        "POST",
        "/runs/{run_id}/retry",
        _retry,
        "Send a run that gave up back to the launch outbox",
        {200: views.RunView},
    ),
    Route(
        "POST",
        "/launches/claim",
        _claim,
        "Claim due runs for an external launcher (a lease)",
        {200: Claimed},
        body=ClaimBody,
    ),
    Route(
        "POST",
        "/runs/{run_id}/launch",
        _launch,
        "Report a launch attempt of a run",
        {200: views.RunView},
        body=LaunchBody,
    ),
    Route(
        "POST",
        "/runs/{run_id}/complete",
        _complete,
        "Report that a run finished",
        {200: views.RunView},
        body=CompleteBody,
    ),
)


def parse_query(pairs: Sequence[tuple[str, str]], allowed: Sequence[str]) -> dict[str, str]:
    """The query parameters of a route: only those it accepts, each at most once and short."""
    if len(pairs) > _MAX_QUERY_FIELDS:
        raise bad_request("InvalidParameter", "too many query parameters")
    query: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in pairs:
        if name not in allowed:
            accepted = ", ".join(allowed) or "none"
            raise bad_request(
                "InvalidParameter", f"unknown query parameter {name!r} (accepted: {accepted})"
            )
        if name in seen:
            raise bad_request(
                "InvalidParameter", f"query parameter {name!r} is given more than once"
            )
        seen.add(name)
        if len(value) > MAX_PARAM:
            raise bad_request("InvalidParameter", f"query parameter {name!r} is too long")
        if value:  # a blank value (``?status=``) means "not given", as in HTML forms
            query[name] = value
    return query


def failure(exc: BaseException) -> tuple[int, str, str, tuple[tuple[str, str], ...]]:
    """Status, problem kind, message and extra headers for an exception a handler raised.

    Arcoflow's own errors take their status from the SDK's one mapping
    (:data:`arcoflow.sdk.ERROR_KINDS`, shared with the CLI's exit codes); a server error
    keeps its details in the server log."""
    if isinstance(exc, RequestError):
        return exc.status, exc.type, exc.message, exc.headers
    kind = error_kind(exc)
    if kind is None or kind.http_status >= 500:
        return 500, "InternalError", "internal error; the server log has the details", ()
    return kind.http_status, type(exc).__name__, str(exc), ()


def problem(status: int, type_: str, message: str) -> Problem:
    """The RFC 9457 body of an error."""
    return Problem(PROBLEM_TYPE + type_, type_, status, message)
