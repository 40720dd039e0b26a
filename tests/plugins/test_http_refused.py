"""A refused broker message in the sensor's history over HTTP (issue 14): the evaluations
route shows the ``REFUSED`` evaluation with its reason and summary, valid against the served
OpenAPI document (every answer read through :class:`Client` is checked against it)."""

from __future__ import annotations

from arcoflow.kernel import Kernel, MemoryStore, RunTemplate, SensorDefinition

try:  # tests/plugins may become a package
    from .http_support import Client, served
except ImportError:
    from http_support import Client, served


def test_a_refused_message_is_shown_by_the_evaluations_route() -> None:
    kernel = Kernel(MemoryStore())
    kernel.define_sensor(
        SensorDefinition("orders", "push", RunTemplate("ship"), max_payload_bytes=16), now=0
    )
    kernel.ingest_many(
        "orders", [("ok", 1), ("big", "x" * 40), ("raw", None, "the body is not JSON")],
        now=5, record_refusals=True,
    )  # fmt: skip
    with served(kernel) as server:
        reply = Client(server).get("/sensors/orders/evaluations")
    assert reply.status == 200, reply.text
    shown = {e["message_id"]: e for e in reply.json["items"]}
    assert [shown[m]["status"] for m in ("ok", "big", "raw")] == ["REQUESTED", "REFUSED", "REFUSED"]
    assert "max_payload_bytes" in shown["big"]["reason"]
    assert shown["big"]["summary"] == 'payload 42 bytes of JSON: "' + "x" * 40 + '"'
    assert (shown["raw"]["reason"], shown["raw"]["summary"]) == ("the body is not JSON", None)
    assert shown["ok"]["summary"] is None
