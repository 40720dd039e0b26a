"""Bit flips in copies of a real store, in a process of its own: ``python _damage_worker.py DIR
COPIES BITS [anywhere]``.

Builds a store in ``DIR/base`` through the CLI, then makes ``COPIES`` copies, each with ``BITS``
bits flipped (``random.Random(copy)``: the same flips on every run) in the bytes of stored
records (keys and values) and in the two meta pages, and runs every read-only CLI command and
the HTTP GET routes against each. Prints one JSON document: the outcomes that were neither a
success nor a clean error (exit 1, or 2 for an item a damaged key hides, with one
``arcoflow: error:`` line; HTTP 404 or 500 with a JSON error).

``anywhere``: bits flipped anywhere in the file, and each copy opened with ``check_pages=True``
and verified (:func:`run_anywhere`).

A separate process because a store that LMDB cannot survive would end it with a signal, and the
test must see that as a failure rather than die with it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
import struct
import sys
import traceback
import urllib.error
import urllib.request
from typing import Any

from arcoflow.kernel import ArcoflowError, Kernel, LmdbStore
from arcoflow.plugins.http.serve import make_server
from arcoflow.sdk.cli import main

PAGE = 4096
DEFINITIONS = """
[[schedule]]
id = "heartbeat"
cron = "*/5 * * * *"
catchup_window = "1h"
max_catchup_ticks = 3
run = {{ target = "ops.heartbeat", launcher = "memory", tags = {{ team = "ops" }} }}

[[schedule]]
id = "nightly"
cron = "30 1 * * *"
timezone = "America/New_York"
catchup_window = "6h"
run = {{ target = "etl.nightly", launcher = "memory", config = {{ region = "us" }} }}

[[sensor]]
id = "files"
type = "poll"
connector = "filesystem"
minimum_interval = "15s"
config = {{ path = "{incoming}", pattern = "*.csv" }}
run = {{ target = "etl.ingest", launcher = "memory" }}

[[sensor]]
id = "hooks"
type = "push"
run = {{ target = "etl.webhook", launcher = "memory" }}
"""
TICK = "heartbeat:2030-01-01T05:00:00Z"
COMMANDS = [
    ["schedules", "--all"],
    ["schedule", "show", "heartbeat"],
    ["ticks", "heartbeat"],
    ["tick", TICK],
    ["missed", "heartbeat"],
    ["sensors", "--all"],
    ["sensor", "show", "files"],
    ["evals", "files"],
    ["evals", "hooks"],
    ["runs"],
    ["runs", "--status", "REQUESTED"],
    ["conflicts"],
    ["preview", "nightly"],
    ["verify"],
]
ROUTES = [
    "/schedules",
    "/schedules/heartbeat",
    "/schedules/heartbeat/ticks",
    f"/ticks/{TICK}",
    "/sensors",
    "/sensors/hooks/evaluations",
    "/sensors/files/evaluations",
    "/runs",
    "/conflicts",
]


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def build(root: str) -> str:
    """A store with schedules, ticks, a poll and a push sensor, evaluations, runs, a conflict."""
    base, incoming = os.path.join(root, "base"), os.path.join(root, "incoming")
    os.makedirs(incoming)
    definitions = os.path.join(root, "arcoflow.toml")
    with open(definitions, "w") as f:
        f.write(DEFINITIONS.format(incoming=incoming))
    steps = [["apply", definitions]]
    for hour in range(6):
        steps.append(["evaluate", "--now", f"2030-01-01T0{hour}:00:00Z"])
    for i in range(20):
        steps.append(["push", "hooks", "--message-id", f"m{i}", "--payload", f'{{"n": {i}}}'])
    for i in range(5):
        steps.append(["request", f"key{i}", "--target", "t.x", "--config", '{"a": 1}'])
    steps.append(["request", "key0", "--target", "t.y"])  # a conflict
    for n, step in enumerate(steps):
        with open(os.path.join(incoming, f"{n}.csv"), "w") as f:
            f.write("x\n")
        cli("--store", base, *step)
    code, _, err = cli("--store", base, "verify")
    assert code == 0, err
    return base


def record_offsets(data: bytes) -> list[int]:
    """Offsets of the bytes of stored keys and values: leaf nodes and overflow pages, walked by
    the page layout of lmdb's ``mdb.c``. Page headers, node headers and page numbers are left
    out: LMDB follows those in place, in the memory map, and a flipped one can take it past
    the end of the file (see the README's Durability section)."""
    (page_size,) = struct.unpack_from("<I", data, 40)  # md_pad of the first meta page's MDB_db
    assert page_size == PAGE, page_size
    spans: list[tuple[int, int]] = []
    for page in range(2, len(data) // PAGE):
        start = page * PAGE
        flags, lower = struct.unpack_from("<HH", data, start + 10)
        if flags & 0x02 and not flags & 0x20:  # P_LEAF, not P_LEAF2
            for k in range((lower - 16) // 2):
                (ptr,) = struct.unpack_from("<H", data, start + 16 + 2 * k)
                lo, hi, node_flags, key_size = struct.unpack_from("<HHHH", data, start + ptr)
                spans.append((start + ptr + 8, key_size))
                if not node_flags & 0x03:  # the value is here: not F_BIGDATA, not F_SUBDATA
                    spans.append((start + ptr + 8 + key_size, lo | hi << 16))
        elif flags & 0x04:  # P_OVERFLOW: one value over mp_pages pages
            (pages,) = struct.unpack_from("<I", data, start + 12)
            spans.append((start + 16, pages * PAGE - 16))
    return [o for begin, size in spans for o in range(begin, begin + size)]


META_FIELDS = [o + m for m in (0, PAGE) for o in range(16, 152)]  # both meta pages


def damage(base: str, target: str, seed: int, bits: int, offsets: list[int]) -> None:
    rng = random.Random(seed)
    shutil.copytree(base, target)
    path = os.path.join(target, "data.mdb")
    with open(path, "rb") as f:
        data = bytearray(f.read())
    for _ in range(bits):
        where = rng.choice(META_FIELDS if rng.random() < 0.1 else offsets)
        data[where] ^= 1 << rng.randrange(8)
    with open(path, "wb") as f:
        f.write(data)


def check_cli(store: str, argv: list[str], problems: list[str]) -> int:
    """Run one command; note any outcome other than a success or a clean error. Its exit."""
    try:
        code, out, err = cli("--store", store, "--json", *argv)
    except BaseException as exc:  # a traceback is what this hunts
        problems.append(f"{argv}: {traceback.format_exception_only(exc)[-1].strip()}")
        return -1
    if code == 0:
        json.loads(out)  # one JSON document
    elif argv == ["verify"] and code == 1 and out:
        json.loads(out)  # a mismatch report
    # 2: a damaged key can make an item look absent ("no schedule 'heartbeat'"): a message too
    elif code not in (1, 2) or not err.startswith("arcoflow: error: ") or "Traceback" in err:
        problems.append(f"{argv}: exit {code}: {err[:300]!r}")
    return code


def check_http(store: str, problems: list[str]) -> None:
    try:
        handle = LmdbStore(store)
    except ArcoflowError:
        return  # refused at open with a message: the CLI checks cover that outcome
    server = make_server(Kernel(handle))
    thread = server.serve_in_thread()
    try:
        for route in ROUTES:
            try:
                with urllib.request.urlopen(server.url + route, timeout=60) as reply:
                    status, body = reply.status, reply.read()
            except urllib.error.HTTPError as exc:
                status, body = exc.code, exc.read()
            except OSError as exc:  # no answer at all
                problems.append(f"GET {route}: {exc!r}")
                continue
            try:
                document: Any = json.loads(body)
            except ValueError:
                problems.append(f"GET {route}: {status} without a JSON body")
                continue
            if status >= 400 and status not in (404, 500):
                problems.append(f"GET {route}: {status} {document}")
            elif status >= 400 and {"type", "title", "status", "detail"} - set(document):
                problems.append(f"GET {route}: {status} without a problem object")
    finally:
        server.stop()
        thread.join(15)
        handle.close()


def run_anywhere(root: str, copies: int, bits: int) -> dict[str, Any]:
    """Bits flipped anywhere in the file, page headers and pointers too; each copy opened with
    ``check_pages=True`` and verified. An outcome is a refusal or a verdict, never a signal."""
    base = build(root)
    outcomes = {"refused": 0, "mismatch": 0, "ok": 0}
    problems: list[str] = []
    for seed in range(copies):
        rng = random.Random(seed)
        copy = os.path.join(root, f"anywhere{seed}")
        shutil.copytree(base, copy)
        path = os.path.join(copy, "data.mdb")
        with open(path, "rb") as f:
            data = bytearray(f.read())
        for _ in range(bits):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        with open(path, "wb") as f:
            f.write(data)
        try:
            with LmdbStore(copy, check_pages=True) as store:
                result = Kernel(store).verify()
            outcomes["ok" if result.ok else "mismatch"] += 1
        except ArcoflowError:
            outcomes["refused"] += 1
        except BaseException as exc:
            problems.append(f"copy {seed}: {traceback.format_exception_only(exc)[-1].strip()}")
        shutil.rmtree(copy)
    return {"copies": copies, **outcomes, "problems": problems}


def run(root: str, copies: int, bits: int) -> dict[str, Any]:
    base = build(root)
    with open(os.path.join(base, "data.mdb"), "rb") as f:
        offsets = record_offsets(f.read())
    problems: list[str] = []
    refused = 0
    for seed in range(copies):
        copy = os.path.join(root, f"copy{seed}")
        damage(base, copy, seed, bits, offsets)
        found: list[str] = []
        codes = {tuple(argv): check_cli(copy, argv, found) for argv in COMMANDS}
        refused += codes["verify",] != 0
        check_http(copy, found)
        problems += [f"copy {seed}: {p}" for p in found]
        shutil.rmtree(copy)
    return {
        "copies": copies,
        "commands": copies * (len(COMMANDS) + len(ROUTES)),
        "verify_refused": refused,
        "problems": problems,
    }


if __name__ == "__main__":
    mode = run_anywhere if sys.argv[4:] == ["anywhere"] else run
    print(json.dumps(mode(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))
