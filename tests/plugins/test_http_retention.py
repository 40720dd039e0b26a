"""Retention through the HTTP API (issue 16): a pruned item is a 404 whose message names where
the history was cut off, never a silent gap."""

from __future__ import annotations

from arcoflow.kernel import Kernel, MemoryStore, RetentionPolicy, RunTemplate, ScheduleDefinition

try:  # tests/plugins may become a package
    from .http_support import Client, served
except ImportError:
    from http_support import Client, served


def test_http_answers_a_pruned_tick_or_run_with_a_404_naming_the_cut() -> None:
    kernel = Kernel(MemoryStore())
    kernel.set_retention(RetentionPolicy(history="1h"), now=0)
    definition = ScheduleDefinition("h", "0 * * * *", RunTemplate("t"))
    kernel.define_schedule(definition, now=0)
    kernel.evaluate_schedules(now=3600)
    run = kernel.runs()[0]
    kernel.complete_run(run.run_id, True, now=3600)
    kernel.prune(now=10 * 3600)
    with served(kernel) as server:
        client = Client(server)
        tick = client.get("/ticks/h:1970-01-01T01:00:00Z")
        gone = client.get(f"/runs/{run.run_id}")
    assert tick.status == 404 and gone.status == 404
    assert tick.json["title"] == gone.json["title"] == "Pruned"  # problem+json (RFC 9457)
    assert "pruned" in tick.json["detail"]
    assert "before 1970-01-01T01:00:01Z" in tick.json["detail"]
    assert "pruned" in gone.json["detail"]
