"""The OpenAPI 3.1 document of the HTTP API, derived from the route table and the Structs.

Nothing here is written by hand per route: the paths, methods and parameters come from
:data:`.routes.ROUTES`, the schemas from the msgspec Structs each route answers with
(``msgspec.json.schema_components``), so a field added to a view is documented with no other
edit, and a test checks the served document against the routes and real answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any, Final

import msgspec
from arcoflow.sdk import DEFAULT_PAGE, JSON, MAX_PAGE

from .routes import MAX_PARAM, ROUTES, Route, Text
from .shapes import Problem

__all__ = ["openapi_document", "schema_of"]

_REF: Final = "#/components/schemas/{name}"
_PROBLEM: Final = {"application/problem+json": {"schema": {"$ref": _REF.format(name="Problem")}}}
_ERRORS: Final = {
    400: "Bad input: a malformed body, parameter, id or cursor",
    404: "No such route or item",
    405: "Wrong method (the Allow header lists the right ones)",
    408: "The body did not arrive within the request deadline",
    409: "A lost compare-and-set: re-read and retry",
    411: "No Content-Length",
    413: "Body or payload too large",
    415: "Not JSON",
    431: "Request line and headers over 64 KiB (under arcoflow serve)",
    500: "Internal error (details in the server log)",
    503: "Too many requests or connections; retry after the Retry-After seconds",
}


def _header(text: str) -> JSON:
    return {"description": text, "schema": {"type": "string"}}


#: The response headers the API sends beyond the usual ones, by status (and, for ``Link``, on
#: the pages of a listing): a client generated from the document can read them.
_LOCATION: Final = {"Location": _header("The URL of what was created, under the API's prefix")}
_LINK: Final = {"Link": _header('<URL of the next page>; rel="next" (absent on the last page)')}
_ERROR_HEADERS: Final = {
    405: {"Allow": _header("The methods the route accepts")},
    503: {"Retry-After": _header("Seconds to wait before retrying")},
}


def _query(route: Route, name: str) -> JSON:
    schema: JSON
    if name == "limit":
        schema = {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE}
        text = "items per page"
    elif name == "cursor":
        schema = {"type": "string", "maxLength": MAX_PARAM}
        text = "a next_cursor from the previous page, unchanged"
    else:
        schema = {"type": "string", "enum": list(route.statuses)}
        text = "only items with this status"
    return {"name": name, "in": "query", "required": False, "description": text, "schema": schema}


def _operation(route: Route, components: dict[type, JSON], head: bool = False) -> JSON:
    params = [
        {
            "name": part[1:-1],
            "in": "path",
            "required": True,
            "schema": {"type": "string", "maxLength": MAX_PARAM},
        }
        for part in route.path.split("/")
        if part.startswith("{")
    ]
    params += [_query(route, name) for name in route.query]
    params += [
        {"name": name, "in": "header", "required": False, "schema": {"type": "string"}}
        for name in route.headers
    ]
    responses: JSON = {}
    for status, shape in sorted(route.responses.items()):
        if shape is Text:
            content: JSON = {"text/plain": {"schema": {"type": "string"}}}
        else:
            content = {"application/json": {"schema": components[shape]}}
        response: JSON = {"description": "OK" if status == 200 else "Created"}
        if status == 201:
            response["headers"] = _LOCATION
        elif "cursor" in route.query:
            response["headers"] = _LINK
        if not head:
            response["content"] = content
        responses[str(status)] = response
    errors = dict(_ERRORS)
    if any(shape is Text for shape in route.responses.values()):  # /metrics
        errors[501] = "Needs an extra that is not installed (arcoflow[metrics])"
    for status, text in sorted(errors.items()):
        responses[str(status)] = {"description": text, "content": _PROBLEM}
        if status in _ERROR_HEADERS:
            responses[str(status)]["headers"] = _ERROR_HEADERS[status]
    operation: JSON = {
        "operationId": ("head" if head else route.method.lower())
        + route.path.replace("/", "_").replace("{", "").replace("}", ""),
        "summary": route.summary,
        "parameters": params,
        "responses": responses,
    }
    if route.body is not None and not head:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": components[route.body]}},
        }
    return operation


def schema_of(types: Sequence[Any]) -> tuple[list[JSON], JSON]:
    """The JSON Schema of each of ``types`` (references into the second value, the
    components they need)."""
    schemas, components = msgspec.json.schema_components(types, ref_template=_REF)
    return list(schemas), dict(components)


def openapi_document(routes: Sequence[Route] = ROUTES, server: str = "/") -> JSON:
    """The OpenAPI 3.1 document of ``routes`` (the API's own by default), served at
    ``server`` (the path the API is mounted at)."""
    if routes is ROUTES:
        return _own_document(server)
    return _document(routes, server)


@cache
def _own_document(server: str) -> JSON:
    return _document(ROUTES, server)


def _document(routes: Sequence[Route], server: str) -> JSON:
    shapes: list[Any] = [Problem]
    for route in routes:
        shapes += [s for s in route.responses.values() if s is not Text]
        if route.body is not None:
            shapes.append(route.body)
    unique = list(dict.fromkeys(shapes))
    refs, components = schema_of(unique)
    by_type = dict(zip(unique, refs, strict=True))
    paths: JSON = {}
    for route in routes:
        entry = paths.setdefault(route.path, {})
        entry[route.method.lower()] = _operation(route, by_type)
        if route.method == "GET":
            entry["head"] = _operation(route, by_type, head=True)
    paths["/openapi.json"] = {
        "get": {
            "operationId": "get_openapi",
            "summary": "This document",
            "responses": {
                "200": {
                    "description": "OK",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        },
        "head": {
            "operationId": "head_openapi",
            "summary": "This document's headers",
            "responses": {"200": {"description": "OK"}},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "arcoflow",
            "version": "1",
            "description": "Push messages in, history out. Errors are RFC 9457 problems.",
        },
        "servers": [{"url": server}],
        "paths": paths,
        "components": {"schemas": components},
    }
