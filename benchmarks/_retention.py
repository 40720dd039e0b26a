"""The retention workloads (issue 16), shared by ``test_retention.py`` and ``report.py``.

* :func:`fed_sensor`: a push sensor fed for simulated days under ``history = "7d"`` (and a
  7-day dedupe horizon), each run completed, the daemon's prune pass every simulated hour; the
  LMDB store's used bytes are read after day 7 and at the end.
* :func:`prune_pass`: one prune pass that drops the same amount from stores keeping 10x
  different amounts: its time must follow what it prunes, not what it keeps.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from arcoflow.kernel import (
    Kernel,
    LmdbStore,
    Pending,
    RetentionPolicy,
    RunTemplate,
    SensorDefinition,
)
from arcoflow.kernel.events import RunCompleted
from arcoflow.kernel.rows import Table
from arcoflow.kernel.runs import run_id

__all__ = ["Sizes", "fed_sensor", "filled_store", "prune_pass", "used_bytes"]

T0 = 1_735_689_600  # 2025-01-01T00:00:00Z
HOUR = 3600
DAY = 86400
PAYLOAD = {"order": "x" * 120, "lines": [1, 2, 3]}  # a modest message


class Sizes(NamedTuple):
    """Used bytes of the store after the first week and at the end, with and without the log
    (log compaction is issue 16 item 4, ``arcoflow compact``); the state after two weeks (the
    first week pruned: the steady state); the file size at the end."""

    week: int
    end: int
    week_state: int
    fortnight_state: int
    end_state: int
    file: int


def used_bytes(store: LmdbStore, *, log: bool = True) -> int:
    """Bytes in the pages LMDB uses now (branch, leaf and overflow pages of every table): not
    the file size, which keeps its high-water mark while freed pages are reused."""
    env = store._env.env
    total = 0
    with env.begin() as txn:
        for table, db in store._env.dbs.items():
            if table is Table.LOG and not log:
                continue
            stat = txn.stat(db)
            total += stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]
        main = txn.stat()
        total += main["branch_pages"] + main["leaf_pages"] + main["overflow_pages"]
    return total * int(env.stat()["psize"])


def _feed(kernel: Kernel, store: LmdbStore, hour: int, per_hour: int) -> None:
    """One simulated hour: ``per_hour`` messages in one transaction, their runs completed in
    another, then the daemon's prune pass."""
    now = T0 + hour * HOUR
    items = [(f"m-{hour}-{i}", PAYLOAD) for i in range(per_hour)]
    kernel.ingest_many("orders", items, now=now)
    done = [
        Pending(f"complete/{rid}", RunCompleted(rid, "SUCCEEDED"))
        for rid in (run_id(f"sensor:orders:{m}") for m, _ in items)
    ]
    store.append(done, now)
    kernel.prune(now, limit=100_000)


def fed_sensor(path: str, days: int, per_hour: int) -> Sizes:
    """Feed the sensor for ``days`` simulated days; sizes after day 7 and at the end."""
    with LmdbStore(path, durable=False, map_size=4 << 30) as store:
        kernel = Kernel(store)
        kernel.set_retention(RetentionPolicy(history="7d", dedupe_horizon="7d"), now=T0)
        kernel.define_sensor(SensorDefinition("orders", "push", RunTemplate("ship")), now=T0)
        week = week_state = fortnight = 0
        for hour in range(days * 24):
            _feed(kernel, store, hour, per_hour)
            if hour == 7 * 24 - 1:
                week, week_state = used_bytes(store), used_bytes(store, log=False)
            if hour == 14 * 24 - 1:
                fortnight = used_bytes(store, log=False)
        assert len(kernel.evaluations("orders", limit=1000)) <= 1000
        end, end_state = used_bytes(store), used_bytes(store, log=False)
    file = os.path.getsize(os.path.join(path, "data.mdb"))
    return Sizes(week, end, week_state, fortnight, end_state, file)


def filled_store(path: str, old: int, kept: int) -> tuple[LmdbStore, Kernel, int]:
    """A store holding ``old`` finished messages a day old and ``kept`` fresh ones: a prune at
    the returned instant (history one hour) drops exactly the old ones. Written 1,000 messages
    per transaction."""
    store = LmdbStore(path, durable=False, map_size=4 << 30)
    kernel = Kernel(store)
    kernel.define_sensor(SensorDefinition("orders", "push", RunTemplate("ship")), now=T0)
    for start, count, at in ((0, old, T0), (old, kept, T0 + DAY)):
        for lo in range(start, start + count, 1000):
            items = [(f"m-{i}", PAYLOAD) for i in range(lo, min(start + count, lo + 1000))]
            kernel.ingest_many("orders", items, now=at)
            store.append(
                [
                    Pending(f"complete/{rid}", RunCompleted(rid, "SUCCEEDED"))
                    for rid in (run_id(f"sensor:orders:{m}") for m, _ in items)
                ],
                at,
            )
    kernel.set_retention(RetentionPolicy(history="1h"), now=T0 + DAY)
    return store, kernel, T0 + DAY + 1


def prune_pass(kernel: Kernel, now: int, expected: int) -> None:
    """One prune pass; it must drop ``expected`` rows (evaluations and runs)."""
    done = kernel.prune(now, limit=1_000_000, chunk=200)
    if done.rows != expected:
        raise AssertionError(f"pruned {done.rows} rows, expected {expected}")
