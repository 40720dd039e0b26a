"""Ids never depend on the host's time zone.

Tick ids and run keys are built from UTC instants, run ids from run keys and evaluation ids from
idempotency keys: two daemons on hosts in different zones must write the same log for the same
inputs, byte for byte. Every test machine runs in UTC, so this is pinned here by changing the
zone of the process (``time.tzset``) and of child processes (``TZ``), across the fall-back night
of a New York schedule, where an id formatted in local time would merge the two 01:30s.

Run as a script, this module prints the scenario's ids and log (the child of the subprocess test).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from arcoflow.kernel import (
    Kernel,
    MemoryStore,
    PollContext,
    PollResult,
    RunRequest,
    RunTemplate,
    ScheduleDefinition,
    SensorDefinition,
)

#: UTC, two DST-observing zones on either side of it, and one with a :45 offset and no DST.
ZONES = ("UTC", "America/New_York", "Australia/Adelaide", "Asia/Kathmandu")


def _at(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def _poll(ctx: PollContext) -> PollResult:
    return PollResult([RunRequest("batch-1")], cursor="c1")


def scenario() -> dict[str, Any]:
    """A New York daily 01:30 (both 01:30s of the fall-back night fire) and a UTC hourly
    schedule, evaluated every half hour across 2026-11-01, plus a push and a poll sensor."""
    kernel = Kernel(MemoryStore())
    start = _at("2026-10-31T12:00:00")
    kernel.define_schedule(
        ScheduleDefinition(
            "nightly",
            "30 1 * * *",
            RunTemplate("etl"),
            timezone="America/New_York",
            dst_fold="both",
        ),
        now=start,
    )
    kernel.define_schedule(ScheduleDefinition("hourly", "0 * * * *", RunTemplate("etl")), now=start)
    kernel.define_sensor(SensorDefinition("orders", "push", RunTemplate("ingest")), now=start)
    kernel.define_sensor(
        SensorDefinition("files", "poll", RunTemplate("ingest"), connector="c"), now=start
    )
    for now in range(start, _at("2026-11-02T12:00:00") + 1, 1800):
        kernel.evaluate_schedules(now=now)
    pushed = kernel.ingest("orders", "m-1", {"n": 1}, now=start + 60)
    polled = kernel.poll("files", _poll, now=start + 120)
    ticks = [t for sid in ("nightly", "hourly") for t in kernel.ticks(sid, limit=1000)]
    runs = kernel.runs(limit=1000)
    log = msgspec.json.encode(list(kernel.log()))
    return {
        "nightly": sorted(t.tick_id for t in ticks if t.schedule_id == "nightly"),
        "ticks": sorted(t.tick_id for t in ticks),
        "runs": sorted((r.run_key, r.run_id) for r in runs),
        "evaluations": [pushed.evaluation.evaluation.eval_id, polled.evaluation.eval_id],
        "log_sha256": hashlib.sha256(log).hexdigest(),
    }


@contextmanager
def host_zone(name: str) -> Iterator[None]:
    """The process's local time zone is ``name`` for a while (``TZ`` and ``time.tzset``)."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = name
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


def test_host_zone_really_changes_local_time() -> None:
    """The harness works: in New York the fall-back night's two instants read 01:30 locally."""
    with host_zone("America/New_York"):
        early = datetime.fromtimestamp(_at("2026-11-01T05:30:00")).strftime("%H:%M")
        late = datetime.fromtimestamp(_at("2026-11-01T06:30:00")).strftime("%H:%M")
    assert early == late == "01:30"


def test_ids_do_not_depend_on_the_host_zone() -> None:
    results = {}
    for name in ZONES:
        with host_zone(name):
            results[name] = scenario()
    utc = results["UTC"]
    # Three ticks over the fall-back night and the next: 01:30 EDT, 01:30 EST, 01:30 EST.
    assert utc["nightly"] == [
        "nightly:2026-11-01T05:30:00Z",
        "nightly:2026-11-01T06:30:00Z",
        "nightly:2026-11-02T06:30:00Z",
    ]
    assert "schedule:nightly:2026-11-01T06:30:00Z" in {key for key, _ in utc["runs"]}
    assert len(utc["ticks"]) == 3 + 49 and len(utc["runs"]) == 3 + 49 + 2  # hourly: 12:00 to 12:00
    for name, result in results.items():
        assert result == utc, f"host zone {name} changed the ids or the log"


@pytest.mark.slow
def test_daemons_in_different_zones_write_the_same_log() -> None:
    """The same scenario in child processes whose ``TZ`` differs: identical output, byte for
    byte (nothing in the kernel reads the host's zone at import or at run time)."""
    outputs = {}
    for name in ZONES:
        child = subprocess.run(
            [sys.executable, __file__],
            env={**os.environ, "TZ": name},
            capture_output=True,
            check=True,
            timeout=120,
        )
        outputs[name] = child.stdout
    assert json.loads(outputs["UTC"])["nightly"][1] == "nightly:2026-11-01T06:30:00Z"
    assert len(set(outputs.values())) == 1, {name: out[:200] for name, out in outputs.items()}


if __name__ == "__main__":
    print(json.dumps(scenario(), sort_keys=True))
