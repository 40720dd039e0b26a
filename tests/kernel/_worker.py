"""A second (third...) process for the multi-process tests: ``python _worker.py COMMAND ...``.

Each command opens the LMDB store named on its command line in *this* process (never an
environment inherited across ``fork``), waits for the ``GO`` file when one is named (so that
the workers of one test start together), does its work and prints one JSON document.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from typing import Any

from arcoflow.kernel import (
    Conflict,
    Kernel,
    LmdbStore,
    Pending,
    PollResult,
    RunTemplate,
)
from arcoflow.kernel.events import RunRequested
from arcoflow.kernel.runs import fingerprint, run_id

KIB = 1024


def _wait(go: str) -> None:
    """Say we are ready (store open), then wait for the starting signal."""
    if go == "-":
        return
    with open(f"{go}.ready.{os.getpid()}", "w"):
        pass
    deadline = time.monotonic() + 30
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            raise SystemExit("GO file never appeared")
        time.sleep(0.001)


def _event(name: str) -> RunRequested:
    key = f"manual:{name}"
    fp = fingerprint("t", {}, {})
    return RunRequested(run_id(key), key, fp, "manual", "w", "t", None, {}, {})


def appends(path: str, go: str, tag: str, count: int, shared: int) -> dict[str, Any]:
    """``count`` appends under keys of our own and ``shared`` under keys every worker uses."""
    names = [f"{tag}-{i}" for i in range(count)] + [f"shared-{i}" for i in range(shared)]
    random.Random(tag).shuffle(names)
    out: dict[str, Any] = {"new": {}, "duplicate": {}}
    with LmdbStore(path) as store:
        _wait(go)
        for name in names:
            result = store.append([Pending(name, _event(name))], at=0)
            out["duplicate" if result.duplicate else "new"][name] = result.records[0].seq
    return out


def ingest(path: str, go: str, sensor: str, count: int, seed: str) -> dict[str, Any]:
    ids = [f"m{i}" for i in range(count)]
    random.Random(seed).shuffle(ids)
    out: dict[str, Any] = {}
    with LmdbStore(path) as store:
        kernel = Kernel(store)
        _wait(go)
        for message_id in ids:
            got = kernel.ingest(sensor, message_id, {"n": message_id}, now=100)
            out[message_id] = [got.evaluation.evaluation.eval_id, got.duplicate]
    return out


def poll(path: str, go: str, sensor: str, count: int, tag: str) -> dict[str, Any]:
    """``count`` polls through ``poll_ticket``/``record_poll``, each offering the cursor
    ``TAG-i``; a lost race is a Conflict."""
    accepted: list[list[Any]] = []
    conflicts = 0
    with LmdbStore(path) as store:
        kernel = Kernel(store)
        _wait(go)
        for i in range(count):
            ticket = kernel.poll_ticket(sensor)  # read the version and cursor...
            time.sleep(random.random() / 500)  # ...ask the source (others may record meanwhile)
            try:
                row = kernel.record_poll(ticket, PollResult(cursor=f"{tag}-{i}"), now=1000 + i)
            except Conflict:
                conflicts += 1
                continue
            after = row.evaluation.cursor_after
            accepted.append(
                [row.evaluation.eval_id, None if after is None else after.native(), row.seq]
            )
    return {"accepted": accepted, "conflicts": conflicts}


def grow(path: str, go: str, target: int) -> dict[str, Any]:
    """Append padded runs until the map is at least ``target`` bytes."""
    padded = RunTemplate("t", config={"pad": "x" * 4000})
    with LmdbStore(path, map_size=64 * KIB, max_map_size=1024 * 1024 * KIB) as store:
        kernel = Kernel(store)
        _wait(go)
        i = 0
        while store.map_size() < target:
            kernel.request_run(f"grow-{i}", padded, now=i)
            i += 1
        return {"appended": i, "map_size": store.map_size()}


def main(argv: list[str]) -> None:
    command, path, go, *rest = argv
    if command == "appends":
        result = appends(path, go, rest[0], int(rest[1]), int(rest[2]))
    elif command == "ingest":
        result = ingest(path, go, rest[0], int(rest[1]), rest[2])
    elif command == "poll":
        result = poll(path, go, rest[0], int(rest[1]), rest[2])
    elif command == "grow":
        result = grow(path, go, int(rest[0]))
    else:
        raise SystemExit(f"unknown command {command!r}")
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1:])
