"""One schema per shape: the OpenAPI document is derived from the route table and the views'
Structs, the served document matches the routes the application really mounts, and real
answers of every route decode (strictly) into the Struct the document names for them.

Before: a hand-written 2,259-line ``plugins/openapi.json`` beside the dicts of
``kernel/views.py`` and the CLI's hand-kept ``_COLUMNS``; a field added to one of the three
had to be added by hand to the others.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any, ClassVar

import msgspec
import pytest
from arcoflow.kernel import Kernel, LmdbStore, RunTemplate, views
from arcoflow.plugins.http.app import create_app
from arcoflow.plugins.http.openapi import openapi_document
from arcoflow.plugins.http.routes import ROUTES, Reply, Request, Route
from arcoflow.sdk.cli import Output
from arcoflow.sdk.sources import Rejection, SourceState, status_path, write_status
from starlette.routing import Route as StarletteRoute

try:  # tests/plugins may become a package
    from .http_support import Client, assert_well_formed, route_of, seed, served
    from .http_support import Reply as Answer
except ImportError:
    from http_support import Client, assert_well_formed, route_of, seed, served
    from http_support import Reply as Answer

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


# -- a field added to a view reaches the JSON, the CLI table and the document -------------------


class Widget(views.View, frozen=True):
    """A throwaway view (test only)."""

    hidden: ClassVar[frozenset[str]] = frozenset({"secret_size"})
    widget_id: str
    secret_size: int


class WidgetWithColour(Widget, frozen=True):
    """The same view with one field added, and nothing else edited."""

    colour: str = "red"


def _outputs(view: type[Widget], monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str, Any]:
    monkeypatch.setitem(views.VIEWS, "widget", view)
    row = view(widget_id="w1", secret_size=3)

    def handler(req: Request) -> Reply:
        return Reply(200, row)

    route = Route("GET", "/widgets/{widget_id}", handler, "One widget", {200: view})
    stream = io.StringIO()
    Output(False, stream)([views.to_json(row)], "widget")
    schema = openapi_document([route])["components"]["schemas"][view.__name__]
    return views.to_json(row), stream.getvalue(), schema


def test_a_field_added_to_a_view_reaches_json_table_and_document(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data, table, schema = _outputs(Widget, monkeypatch)
    assert data == {"widget_id": "w1", "secret_size": 3}
    assert table.splitlines()[0].split() == ["WIDGET_ID"]  # secret_size is hidden
    assert set(schema["properties"]) == {"widget_id", "secret_size"}
    data, table, schema = _outputs(WidgetWithColour, monkeypatch)
    assert data == {"widget_id": "w1", "secret_size": 3, "colour": "red"}
    assert table.splitlines()[0].split() == ["WIDGET_ID", "COLOUR"]
    assert table.splitlines()[1].split() == ["w1", "red"]
    assert schema["properties"]["colour"] == {"type": "string", "default": "red"}


# -- the document against the routes ------------------------------------------------------------


def test_routes_app_and_document_have_the_same_paths_and_methods(store_dir: str) -> None:
    store = LmdbStore(store_dir)
    try:
        app = create_app(Kernel(store))
    finally:
        store.close()
    mounted = {
        (r.path, m.lower())
        for r in app.routes
        if isinstance(r, StarletteRoute)
        for m in r.methods or ()
    }
    documented = {
        (path, method)
        for path, item in openapi_document()["paths"].items()
        for method in item
        if method in METHODS
    }
    assert mounted == documented
    declared = {(r.path, r.method.lower()) for r in ROUTES}
    heads = {(r.path, "head") for r in ROUTES if r.method == "GET"}
    openapi = {("/openapi.json", "get"), ("/openapi.json", "head")}
    assert documented == declared | heads | openapi


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_each_route_documents_its_parameters_and_shapes(route: Route) -> None:
    doc = openapi_document()
    operation = doc["paths"][route.path][route.method.lower()]
    path_params = {p[1:-1] for p in route.path.split("/") if p.startswith("{")}
    declared = operation["parameters"]
    assert {p["name"] for p in declared if p["in"] == "path"} == path_params
    assert [p["name"] for p in declared if p["in"] == "query"] == list(route.query)
    for status, shape in route.responses.items():
        content = operation["responses"][str(status)]["content"]
        if "text/plain" in content:
            continue
        ref = content["application/json"]["schema"]["$ref"]
        (own,), components = msgspec.json.schema_components(
            [shape], ref_template="#/components/schemas/{name}"
        )
        assert ref == own["$ref"]
        name = ref.rsplit("/", 1)[1]
        assert doc["components"]["schemas"][name] == components[name]
    errors = {s for s in operation["responses"] if int(s) >= 400}
    assert {"400", "404", "500", "503"} <= errors
    if route.body is not None:
        assert "requestBody" in operation


def test_every_reference_resolves() -> None:
    doc = openapi_document()
    refs = [n["$ref"] for n in _walk(doc) if isinstance(n, dict) and "$ref" in n]
    assert refs
    for ref in refs:
        assert _resolve(doc, ref) is not None


def test_a_mounted_document_names_its_server(store_dir: str) -> None:
    assert openapi_document(server="/arcoflow")["servers"] == [{"url": "/arcoflow"}]
    assert openapi_document()["servers"] == [{"url": "/"}]


# -- real answers against the Structs the document names ----------------------------------------


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
        outside = kernel.request_run("outside", RunTemplate("t", launcher="ext"), now=16)
        rejected = Rejection(None, "the message has no id", 14.5)
        write_status(
            status_path(store_dir),
            [SourceState("o", "nats", "orders", True, 3, 1, 1, 1, 0, None, [rejected], 15.0)],
        )
        with served(kernel) as server:
            client = Client(server)  # decodes each answer into its documented Struct
            pushed = client.post("/sensors/orders/messages", {"a": 1}, key="m")
            assert pushed.status == 201
            assert client.get(pushed.headers["Location"]).json == pushed.json["evaluation"]
            assert client.post("/sensors/orders/messages", {"a": 1}, key="m").status == 200
            # The operator verbs, each answered in the documented shape.
            body = {"cursor": "a.csv", "expected_version": 0}
            assert client.post("/sensors/files/cursor", body).status == 200
            assert client.post("/sensors/files/cursor", body | {"cursor": "b"}).status == 409
            reset = client.post("/sensors/files/cursor/reset", {"expected_version": 0})
            assert reset.status == 409
            reset = client.post("/sensors/files/cursor/reset", {"expected_version": 1})
            assert reset.status == 200 and reset.json["cursor"] is None
            window = {"from": "1970-01-01T04:00:00Z", "to": "1970-01-01T06:00:00Z"}
            assert (
                client.post("/schedules/hourly/backfill", window | {"dry_run": True}).status == 200
            )
            created = client.post("/schedules/hourly/backfill", window)
            assert created.status == 201
            assert client.get(created.headers["Location"]).json["origin"] == "backfill"
            assert client.post("/schedules/hourly/backfill", window).status == 200
            assert client.post(f"/runs/{stuck.run_id}/retry", raw=b"").status == 200
            assert client.post(f"/runs/{stuck.run_id}/retry", raw=b"").status == 400
            # An external launcher: claim, report the launch, report the completion.
            claimed = client.post("/launches/claim", {"claimer": "ext-1", "lease": 60})
            assert outside.run_id in [r["run_id"] for r in claimed.json["items"]]
            launch = client.post(
                f"/runs/{outside.run_id}/launch",
                {"external_id": "job-9", "claimer": "ext-1", "expected_attempts": 0},
            )
            assert launch.status == 200 and launch.json["status"] == "LAUNCHED"
            done = client.post(f"/runs/{outside.run_id}/complete", {"succeeded": True})
            assert done.status == 200 and done.json["status"] == "SUCCEEDED"
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
            served_doc = client.get("/openapi.json").json
            assert served_doc == json.loads(json.dumps(openapi_document()))
            # Errors of the documented kinds, checked the same way.
            assert client.get("/runs?limit=0").status == 400
            assert client.get("/schedules/nope").status == 404
            assert client.post("/sensors/orders/messages", raw=b"{").status == 400
            assert client.post("/launches/claim", {"claimer": "x", "lease": "60"}).status == 400
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
        assert all(lists), "every listing must hold rows, or its row shape went unchecked"
    finally:
        store.close()


def test_the_document_declares_the_headers_the_server_sends_and_reads(store_dir: str) -> None:
    """``Location`` on a 201 and ``Link`` on a page are in the document for the status that
    carries them, and the message route names the id headers it reads.

    Before: the document declared no header at all, so a client generated from it could not
    follow a ``Location`` or a ``Link`` nor send an ``Idempotency-Key``."""
    doc = openapi_document()
    message = doc["paths"]["/sensors/{sensor_id}/messages"]["post"]
    read = {p["name"] for p in message["parameters"] if p["in"] == "header"}
    assert read == {"Idempotency-Key", "X-Message-Id"}
    store = LmdbStore(store_dir)
    try:
        kernel = Kernel(store)
        seed(kernel)
        with served(kernel) as server:
            client = Client(server)
            assert client.post("/sensors/orders/messages", {"a": 1}, key="h").status == 201
            pushed = client.post(
                "/sensors/orders/messages", {"a": 2}, headers={"X-Message-Id": "x"}
            )
            assert pushed.status == 201 and pushed.json["evaluation"]["message_id"] == "x"
            window = {"from": "1970-01-01T04:00:00Z", "to": "1970-01-01T05:00:00Z"}
            assert client.post("/schedules/hourly/backfill", window).status == 201
            assert client.get("/schedules/hourly/ticks?limit=1").headers["Link"]
            assert client.get("/runs?limit=1").headers["Link"]
        sent = 0
        for method, path, reply in client.replies:
            template = (route_of("GET", path) or route_of(method, path) or ROUTES[0]).path
            operation = doc["paths"][template].get(method.lower(), {})
            declared = operation.get("responses", {}).get(str(reply.status), {}).get("headers", {})
            for name in ("Location", "Link", "Allow", "Retry-After"):
                if reply.headers.get(name) is not None:
                    sent += 1
                    assert name in declared, (method, path, reply.status, name)
        assert sent == 5
    finally:
        store.close()


def test_every_error_status_the_server_answers_is_documented(store_dir: str) -> None:
    """Before: a 431 (headers over 64 KiB) was answered but in no operation's responses, and
    neither was the 501 of /metrics without its extra."""
    doc = openapi_document()
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if path != "/openapi.json":
                assert "431" in operation["responses"], (method, path)
    assert "501" in doc["paths"]["/metrics"]["get"]["responses"]
    assert "501" not in doc["paths"]["/runs"]["get"]["responses"]
    store = LmdbStore(store_dir)
    try:
        with served(Kernel(store)) as server:
            reply = Client(server).request("GET", "/runs", headers={"X-Big": "a" * 70_000})
            assert reply.status == 431
            assert str(reply.status) in doc["paths"]["/runs"]["get"]["responses"]
    finally:
        store.close()


def test_the_check_refuses_an_undocumented_field() -> None:
    good = {"status": "ok", "daemon": None}
    assert_well_formed(
        "GET", "/healthz", Answer(200, {"Content-Type": "application/json"}, json.dumps(good))
    )
    for bad in (good | {"extra": 1}, {"status": "ok"}, {"status": 1, "daemon": None}):
        with pytest.raises(AssertionError):
            assert_well_formed(
                "GET",
                "/healthz",
                Answer(200, {"Content-Type": "application/json"}, json.dumps(bad)),
            )
