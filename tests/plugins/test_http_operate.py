"""The HTTP API's history routes and operator verbs: the same rules as the kernel and the CLI,
refusals as 4xx JSON that write nothing. Every answer is checked against ``openapi.json``."""

from __future__ import annotations

from arcoflow.kernel import Kernel, RunTemplate

try:  # tests/plugins may become a package
    from .http_support import Client, served
except ImportError:
    from http_support import Client, served


def _log(kernel: Kernel) -> int:
    return sum(1 for _ in kernel.log())


def test_history_of_schedules_and_sensors(kernel: Kernel) -> None:
    kernel.set_schedule_enabled("hourly", False, now=10)
    with served(kernel) as server:
        client = Client(server)
        items = client.get("/schedules/hourly/history").json["items"]
        assert [i["change"] for i in items] == ["disabled", "created"]
        pages = client.walk("/sensors/paused/history", limit=1)
        assert [p[0]["change"] for p in pages] == ["stopped", "created"]
        assert client.get("/schedules/nope/history").status == 404
        assert client.get("/sensors/hourly/history").status == 404


def test_set_cursor_is_a_compare_and_set(kernel: Kernel) -> None:
    with served(kernel) as server:
        client = Client(server)
        reply = client.post("/sensors/files/cursor", {"cursor": "a", "expected_version": 0})
        assert (reply.status, reply.json["cursor"], reply.json["state_version"]) == (200, "a", 1)
        before = _log(kernel)
        stale = client.post("/sensors/files/cursor", {"cursor": None, "expected_version": 0})
        assert (stale.status, stale.json["title"]) == (409, "Conflict")
        for bad in (
            {"cursor": "a"},  # no expected_version
            {"cursor": 1, "expected_version": 1},
            {"cursor": "a", "expected_version": "1"},
            {"cursor": "a", "expected_version": 1, "extra": True},
            ["not", "an", "object"],
        ):
            assert client.post("/sensors/files/cursor", bad).status == 400, bad
        push = client.post("/sensors/orders/cursor", {"cursor": "a", "expected_version": 0})
        assert push.status == 400  # a push sensor has no cursor
        assert (
            client.post("/sensors/nope/cursor", {"cursor": "a", "expected_version": 0}).status
            == 404
        )
        assert _log(kernel) == before
        reset = client.post("/sensors/files/cursor", {"cursor": None, "expected_version": 1})
        assert (reset.status, reset.json["cursor"]) == (200, None)


def test_backfill_and_its_refusals(kernel: Kernel) -> None:
    window = {"from": "1970-01-02T00:00:00Z", "to": "1970-01-02T02:00:00+00:00"}
    with served(kernel) as server:
        client = Client(server)
        preview = client.post("/schedules/hourly/backfill", window | {"dry_run": True})
        assert preview.status == 200
        assert [i["existing"] for i in preview.json["items"]] == [False, False, False]
        assert client.post("/schedules/hourly/backfill", window).status == 201
        again = client.post("/schedules/hourly/backfill", window)
        assert again.status == 200
        assert all(i["existing"] for i in again.json["items"])
        before = _log(kernel)
        too_many = client.post(
            "/schedules/hourly/backfill", window | {"to": "1970-01-09T00:00:00Z", "max_runs": 10}
        )
        assert too_many.status == 400 and "holds 169 ticks" in too_many.json["detail"]
        for bad in (
            {"from": "1970-01-02T00:00:00"},  # no offset, and no "to"
            window | {"from": "1970-01-02T00:00:00"},
            window | {"from": 0},
            window | {"dry_run": "yes"},
            window | {"max_runs": 0},
        ):
            assert client.post("/schedules/hourly/backfill", bad).status == 400, bad
        assert client.post("/schedules/nope/backfill", window).status == 404
        assert _log(kernel) == before


def test_retry_only_a_run_that_gave_up(kernel: Kernel) -> None:
    rid = kernel.request_run("k", RunTemplate("t", launcher="mem"), now=0).run_id
    with served(kernel) as server:
        client = Client(server)
        assert client.post(f"/runs/{rid}/retry", raw=b"").status == 400  # REQUESTED
        kernel.record_launch(rid, error="down", now=1, max_attempts=1)
        reply = client.post(f"/runs/{rid}/retry", raw=b"")
        assert (reply.status, reply.json["status"], reply.json["retries"]) == (200, "REQUESTED", 1)
        assert client.post("/runs/not-a-run/retry", raw=b"").status == 400
        missing = "00000000-0000-5000-8000-000000000000"
        assert client.post(f"/runs/{missing}/retry", raw=b"").status == 404
