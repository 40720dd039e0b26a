"""Helpers shared by the HTTP plugin tests.

* :func:`served` runs ``make_server`` on port 0 in a thread for the length of a ``with``.
* :class:`Client` is a ``urllib.request`` client that checks *every* answer: JSON content type,
  no traceback, and the body valid against the schema ``plugins/openapi.json`` documents for
  that route and status.
* :func:`schema_errors` is the small JSON-schema checker behind it. It refuses any keyword it
  does not implement, so the document cannot use a rule that nothing checks.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from arcoflow.kernel import Kernel, RunTemplate, ScheduleDefinition, SensorDefinition
from arcoflow.plugins.http import ROUTES, ApiServer, make_server, openapi_document
from arcoflow.plugins.http.routes import split_target

__all__ = [
    "Client",
    "Reply",
    "assert_well_formed",
    "resolve",
    "response_schema",
    "schema_errors",
    "seed",
    "served",
]

_KEYWORDS = {
    "$ref",
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "format",
    "minimum",
    "maximum",
    "maxLength",
    "pattern",
    "default",
    "description",
}
_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}
_DATE_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def resolve(doc: Mapping[str, Any], node: Mapping[str, Any]) -> Mapping[str, Any]:
    """Follow ``$ref`` (local references only) until a node without one."""
    seen = 0
    while "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), f"non-local reference {ref}"
        target: Any = doc
        for part in ref[2:].split("/"):
            target = target[part]
        node = target
        seen += 1
        assert seen < 20, f"reference loop at {ref}"
    return node


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[name])


def schema_errors(
    value: Any, schema: Mapping[str, Any], doc: Mapping[str, Any], where: str = "$"
) -> list[str]:
    """Every way ``value`` breaks ``schema`` (empty: it conforms)."""
    schema = resolve(doc, schema)
    unknown = set(schema) - _KEYWORDS
    assert not unknown, f"{where}: the checker does not implement {sorted(unknown)}"
    errors: list[str] = []
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(value, n) for n in names):
            return [f"{where}: {value!r} is not of type {names}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, str):
        if schema.get("format") == "date-time" and not _DATE_TIME.fullmatch(value):
            errors.append(f"{where}: {value!r} is not an ISO-8601 UTC time ending in Z")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{where}: {value!r} does not match {schema['pattern']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{where}: longer than {schema['maxLength']}")
    if _is_type(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{where}: {value} < {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{where}: {value} > {schema['maximum']}")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                errors.append(f"{where}: required field {name!r} is missing")
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in properties:
                errors += schema_errors(item, properties[name], doc, f"{where}.{name}")
            elif extra is False:
                errors.append(f"{where}: field {name!r} is not documented")
            elif isinstance(extra, dict):
                errors += schema_errors(item, extra, doc, f"{where}.{name}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += schema_errors(item, schema["items"], doc, f"{where}[{i}]")
    return errors


def response_schema(method: str, path: str, status: int) -> Mapping[str, Any]:
    """The schema the document gives for ``status`` of ``method path`` (a route's ``default``
    for unlisted errors; the Error schema for paths that match no route)."""
    doc = openapi_document()
    segments = [unquote(s) for s in split_target(path)[0].split("/")[1:]]
    routes = [r for r in ROUTES if r.match(segments) is not None]
    route = next((r for r in routes if r.method == method), None)
    if route is None:  # unknown route or method, or a path that is not UTF-8: an error
        assert status in (400, 404, 405), f"{method} {path} answered {status}"
        return {"$ref": "#/components/schemas/Error"}
    responses = doc["paths"][route.path][method.lower()]["responses"]
    entry = responses.get(str(status))
    if entry is None and status >= 400:
        entry = responses.get("default")
    assert entry is not None, f"{method} {route.path} answered {status}, not in the document"
    return dict(response_content(method, path, status)["application/json"]["schema"])


def response_content(method: str, path: str, status: int) -> Mapping[str, Any]:
    """The documented content types (and schemas) of ``status`` of ``method path``."""
    doc = openapi_document()
    segments = [unquote(s) for s in split_target(path)[0].split("/")[1:]]
    route = next((r for r in ROUTES if r.match(segments) is not None and r.method == method), None)
    if route is None:
        return {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    responses = doc["paths"][route.path][method.lower()]["responses"]
    entry = responses.get(str(status)) or responses["default"]
    return dict(resolve(doc, entry)["content"])


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    text: str

    @property
    def json(self) -> Any:
        return json.loads(self.text)


class Client:
    """A ``urllib.request`` client for one server; ``check`` validates every answer."""

    def __init__(self, server: ApiServer, check: bool = True) -> None:
        self.base = server.url
        self.check = check
        self.replies: list[tuple[str, str, Reply]] = []

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        req = urllib.request.Request(
            self.base + path, data=body, method=method, headers=dict(headers or {})
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as answer:
                reply = Reply(answer.status, dict(answer.headers), answer.read().decode())
        except urllib.error.HTTPError as exc:
            reply = Reply(exc.code, dict(exc.headers), exc.read().decode())
        self.replies.append((method, path, reply))
        if self.check:
            assert_well_formed(method, path, reply)
        return reply

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(
        self,
        path: str,
        payload: Any = None,
        *,
        key: str | None = None,
        raw: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """POST JSON (``payload``) or ``raw`` bytes; ``key`` goes in ``Idempotency-Key``."""
        sent = {"Content-Type": "application/json"}
        if key is not None:
            sent["Idempotency-Key"] = key
        sent.update(headers or {})
        body = raw if raw is not None else json.dumps(payload).encode()
        return self.request("POST", path, body, sent)

    def walk(self, path: str, limit: int) -> list[list[dict[str, Any]]]:
        """Every page of a listing, following next_cursor until it is null."""
        pages: list[list[dict[str, Any]]] = []
        sep = "&" if "?" in path else "?"
        cursor: str | None = None
        while True:
            url = f"{path}{sep}limit={limit}" + (f"&cursor={cursor}" if cursor else "")
            reply = self.get(url)
            assert reply.status == 200, reply.text
            pages.append(reply.json["items"])
            cursor = reply.json["next_cursor"]
            if cursor is None:
                return pages
            assert len(pages) < 10_000, "pagination does not end"


def assert_well_formed(method: str, path: str, reply: Reply) -> None:
    """JSON, no traceback, the documented shape; errors in the one error shape. A route
    documented as plain text (``/metrics``) answers plain text."""
    if reply.status < 400 and "text/plain" in response_content(method, path, reply.status):
        assert reply.headers.get("Content-Type", "").startswith("text/plain"), reply.headers
        return
    assert reply.headers.get("Content-Type") == "application/json", reply.headers
    assert "Traceback" not in reply.text and 'File "' not in reply.text, reply.text
    body = reply.json
    if reply.status >= 400:
        assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}, body
        assert body["error"]["type"] and body["error"]["message"], body
    doc = openapi_document()
    errors = schema_errors(body, response_schema(method, path, reply.status), doc)
    assert not errors, f"{method} {path} -> {reply.status}: " + "; ".join(errors[:10])


@contextmanager
def served(kernel: Kernel, **options: Any) -> Iterator[ApiServer]:
    """``make_server`` on a free loopback port, served by a thread while the block runs."""
    server = make_server(kernel, "127.0.0.1", 0, **options)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def seed(kernel: Kernel) -> None:
    """A push sensor ``orders`` (running) and ``paused`` (stopped), a poll sensor ``files``,
    and a schedule ``hourly`` with three triggered ticks."""
    template = RunTemplate("etl.load", tags={"team": "data"})
    kernel.define_sensor(SensorDefinition("orders", "push", template), now=0)
    kernel.define_sensor(SensorDefinition("paused", "push", template), now=0)
    kernel.set_sensor_running("paused", False, now=0)
    kernel.define_sensor(SensorDefinition("files", "poll", template, connector="filesystem"), now=0)
    kernel.define_schedule(ScheduleDefinition("hourly", "0 * * * *", template), now=0)
    for hour in (1, 2, 3):
        kernel.evaluate_schedule("hourly", now=hour * 3600)
