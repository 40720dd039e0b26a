"""``plugins/openapi.json`` against the server: the same routes, methods and parameters, and
real answers that match the documented schemas (field for field: row schemas forbid fields
they do not list, and require every field they list)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from arcoflow.kernel import Kernel, LmdbStore, RunTemplate
from arcoflow.plugins.http import ROUTES, openapi_document
from arcoflow.sdk.sources import Rejection, SourceState, status_path, write_status

try:  # tests/plugins may become a package
    from .http_support import Client, resolve, schema_errors, seed, served
except ImportError:
    from http_support import Client, resolve, schema_errors, seed, served

DOCUMENT = Path(__file__).resolve().parents[2] / "plugins" / "openapi.json"
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _subschemas(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield schema
    for sub in schema.get("properties", {}).values():
        yield from _subschemas(sub)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from _subschemas(schema[key])


def _parameters(operation: dict[str, Any], where: str) -> set[str]:
    doc = openapi_document()
    declared = [resolve(doc, p) for p in operation.get("parameters", ())]
    return {p["name"] for p in declared if p["in"] == where}


def test_the_packaged_document_is_the_source_file() -> None:
    assert openapi_document() == json.loads(DOCUMENT.read_text())
    assert openapi_document()["openapi"] == "3.1.0"


def test_routes_and_document_have_the_same_paths_and_methods() -> None:
    served_ops = {(r.path, r.method.lower()) for r in ROUTES}
    documented = {
        (path, method)
        for path, item in openapi_document()["paths"].items()
        for method in item
        if method in METHODS
    }
    assert served_ops - documented == set(), "routes missing from openapi.json"
    assert documented - served_ops == set(), "documented operations the server does not serve"
    assert len(served_ops) == len(ROUTES), "a route is listed twice"


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_each_route_documents_its_parameters(route: Any) -> None:
    operation = openapi_document()["paths"][route.path][route.method.lower()]
    assert _parameters(operation, "path") == set(re.findall(r"\{(\w+)\}", route.path))
    assert _parameters(operation, "query") == set(route.query)
    assert operation.get("operationId"), "every operation needs an operationId"
    success = [code for code in operation["responses"] if code.startswith("2")]
    assert success, "every operation documents its success"
    if route.method == "POST" and route.path.endswith("/messages"):
        assert _parameters(operation, "header") == {"Idempotency-Key", "X-Message-Id"}
        assert "application/json" in operation["requestBody"]["content"]
        assert set(operation["responses"]) >= {"200", "201", "400", "404", "413", "415"}


def test_every_reference_resolves_and_every_schema_is_checkable() -> None:
    doc = openapi_document()
    for node in _walk(doc):
        if isinstance(node, dict) and "$ref" in node:
            resolve(doc, node)  # raises on a dangling reference
    for name, schema in doc["components"]["schemas"].items():
        # The checker refuses keywords it does not implement: run it on every subschema.
        for sub in _subschemas(schema):
            schema_errors(None, sub, doc, name)


def test_the_checker_catches_what_it_claims_to() -> None:
    doc = openapi_document()
    run = {"$ref": "#/components/schemas/Run"}
    good = {
        "run_id": "6f1c1f0e-7a4b-5c1e-9d2a-a1c0f10a0001",
        "run_key": "manual:x",
        "status": "REQUESTED",
        "origin": "manual",
        "requested_by": "api",
        "target": "t",
        "launcher": None,
        "config": {},
        "tags": {"a": "b"},
        "fingerprint": "f",
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        "attempts": 0,
        "next_attempt_at": None,
        "external_id": None,
        "last_error": None,
        "detail": None,
        "claimed_by": None,
        "retries": 0,
    }
    assert schema_errors(good, run, doc) == []
    broken = [
        {k: v for k, v in good.items() if k != "run_key"},  # missing field
        good | {"surprise": 1},  # undocumented field
        good | {"attempts": "0"},  # wrong type
        good | {"attempts": True},  # a bool is not an integer
        good | {"status": "DONE"},  # not in the enum
        good | {"created_at": "2026-01-01 00:00"},  # not ISO-8601 UTC
        good | {"tags": {"a": 1}},  # additionalProperties schema
    ]
    for value in broken:
        assert schema_errors(value, run, doc), value
    with pytest.raises(AssertionError, match="does not implement"):
        schema_errors(1, {"type": "integer", "multipleOf": 2}, doc)


def test_real_answers_of_every_route_match_the_document(store_dir: str) -> None:
    store = LmdbStore(store_dir)
    try:
        kernel = Kernel(store)
        seed(kernel)
        kernel.request_run("c", RunTemplate("one"), now=10)
        kernel.request_run("c", RunTemplate("two"), now=11)  # a run-key conflict
        run = kernel.request_run("done", RunTemplate("t"), now=12)
        kernel.complete_run(run.run_id, True, "ok", now=13)
        stuck = kernel.request_run("stuck", RunTemplate("t", launcher="x"), now=14)
        kernel.record_launch(stuck.run_id, error="down", now=15, max_attempts=1)
        rejected = Rejection(None, "the message has no id", 14.5)
        write_status(
            status_path(store_dir),
            [SourceState("o", "nats", "orders", True, 3, 1, 1, 1, 0, None, [rejected], 15.0)],
        )
        with served(kernel) as server:
            client = Client(server)  # checks each answer against the document
            assert client.post("/sensors/orders/messages", {"a": 1}, key="m").status == 201
            assert client.post("/sensors/orders/messages", {"a": 1}, key="m").status == 200
            # The operator verbs, each answered in the documented shape.
            body = {"cursor": "a.csv", "expected_version": 0}
            assert client.post("/sensors/files/cursor", body).status == 200
            assert client.post("/sensors/files/cursor", body | {"cursor": "b"}).status == 409
            window = {"from": "1970-01-01T04:00:00Z", "to": "1970-01-01T06:00:00Z"}
            assert (
                client.post("/schedules/hourly/backfill", window | {"dry_run": True}).status == 200
            )
            assert client.post("/schedules/hourly/backfill", window).status == 201
            assert client.post("/schedules/hourly/backfill", window).status == 200
            assert client.post(f"/runs/{stuck.run_id}/retry", raw=b"").status == 200
            assert client.post(f"/runs/{stuck.run_id}/retry", raw=b"").status == 400
            tick = kernel.ticks("hourly", limit=1)[0].tick_id
            for path in (
                "/schedules",
                "/schedules?limit=1",
                "/schedules/hourly",
                "/schedules/hourly/ticks?limit=2",
                f"/ticks/{tick}",
                "/sensors",
                "/sensors/orders",
                "/sensors/files",
                "/sensors/orders/evaluations",
                "/schedules/hourly/history",
                "/sensors/files/history",
                "/runs",
                f"/runs/{run.run_id}",
                "/conflicts",
                "/healthz",
                "/metrics",
                "/sources",
                "/openapi.json",
            ):
                reply = client.get(path)
                assert reply.status == 200, (path, reply.text)
            # Errors of the documented kinds, checked the same way.
            assert client.get("/runs?limit=0").status == 400
            assert client.get("/schedules/nope").status == 404
            assert client.post("/sensors/orders/messages", raw=b"{").status == 400
        answered = {
            (r.method, r.path)
            for r in ROUTES
            for method, path, reply in client.replies
            if method == r.method
            and reply.status < 300
            and r.match(path.split("?")[0].split("/")[1:]) is not None
        }
        assert answered == {(r.method, r.path) for r in ROUTES}, "a route was not exercised"
        lists = [
            reply.json["items"]
            for _, path, reply in client.replies
            if reply.status == 200
            and reply.headers.get("Content-Type") == "application/json"
            and isinstance(reply.json, dict)
            and "items" in reply.json
        ]
        assert all(lists), "every listing must hold rows, or its row schema went unchecked"
    finally:
        store.close()
