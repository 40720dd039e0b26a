"""The performance targets of issue 13, measured in one process: ``python -m benchmarks.report``.

Every target is a **ratio against a baseline measured in the same run**: the workload and its
baseline are sampled in alternating rounds (so a noisy neighbour slows both alike) and the
median of the per-round ratios is compared with the target. For an ``>=`` target the ratio is
``baseline time / workload time`` (how many times the baseline's rate the workload reaches);
for a ``<=`` target it is ``workload time / baseline time`` (how many times the baseline's
cost the workload takes).

One line per target: name, measured ratio, target, ``met`` / ``NOT MET`` / ``not measured yet``.
The exit status is 0 only if every selected target is met; a target not measured yet counts as
not met, so the full report fails until all of them are implemented. ``--only NAME[,NAME...]``
selects targets (e.g. ``--only cron-daily,catchup``); ``--quick`` uses smaller workloads and
fewer rounds (for a smoke run; the figures in ``RESULTS.md`` are from the full run).

A new target is one row of :data:`TARGETS`: a name, the workload and baseline described for the
reader, the target ratio and direction, and a ``measure`` function that builds both sides and
returns a :class:`Pair` of samplers (or ``None`` while it is not measured yet).

The ``pg-*`` targets (issue 11) run on the PostgreSQL server named by ``ARCOFLOW_TEST_POSTGRES``
(each in a schema of its own, dropped afterwards). Without it they print ``skipped`` with the
reason and count as not met; a configured server that does not answer is an error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import NamedTuple

import msgspec
from arcoflow.kernel import (
    Kernel,
    LmdbStore,
    MemoryStore,
    RunTemplate,
    ScheduleDefinition,
    Store,
)
from arcoflow.kernel.codec import Envelope
from arcoflow.kernel.cron import next_tick, parse_cron, zone
from arcoflow.kernel.rows import Table
from croniter import croniter

from benchmarks import _retention, append_targets, http_targets, postgres_targets
from benchmarks.fill import T0, define_all, record_minutely_ticks
from benchmarks.pairs import Pair, Sampler, Unavailable, timed

__all__ = [
    "PG_APPENDS",
    "TARGETS",
    "Direction",
    "Pair",
    "Result",
    "Target",
    "Unavailable",
    "main",
    "measure",
    "postgres",
]

PG_APPENDS = postgres_targets.PG_APPENDS
postgres = postgres_targets.postgres

HOUR = 3600
DAY = 86400


class Direction(Enum):
    AT_LEAST = ">="  # ratio = baseline time / workload time
    AT_MOST = "<="  # ratio = workload time / baseline time


class Target(NamedTuple):
    name: str
    workload: str
    baseline: str
    target: float
    direction: Direction
    #: Builds both sides (``quick``: smaller workloads) inside an ExitStack that owns their
    #: resources; None while the target is not measured yet.
    measure: Callable[[bool, contextlib.ExitStack], Pair] | None = None
    rounds: int = 7  # in a full run; --quick runs 3


class Result(NamedTuple):
    target: Target
    ratio: float | None  # None: not measured yet, or skipped
    detail: str
    skipped: str = ""  # why it could not run here

    @property
    def met(self) -> bool:
        if self.ratio is None:
            return False
        if self.target.direction is Direction.AT_LEAST:
            return self.ratio >= self.target.target
        return self.ratio <= self.target.target


def interleave(pair: Pair, direction: Direction, rounds: int) -> tuple[float, str]:
    """The median per-round ratio, sampling workload and baseline in alternating order."""
    ratios: list[float] = []
    work: list[float] = []
    base: list[float] = []
    for i in range(rounds):
        if i % 2:
            b, w = pair.baseline(), pair.workload()
        else:
            w, b = pair.workload(), pair.baseline()
        work.append(w)
        base.append(b)
        ratios.append(b / w if direction is Direction.AT_LEAST else w / b)
    show = pair.show or _show
    times = f"{show(statistics.median(work))} vs {show(statistics.median(base))}"
    return statistics.median(ratios), times


def _show_bytes(size: float) -> str:
    return f"{size / 2**20:.2f} MiB"


def _show(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1e3:.2f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.1f} us"


# -- cron: next_tick against croniter with a reused iterator --------------------------------

NEW_YORK = "America/New_York"
CRON_START = 1_748_750_400  # 2025-06-01T04:00:00Z, midnight in New York; DST ends 2 November


def _cron(expr: str, count: int) -> Callable[[bool, contextlib.ExitStack], Pair]:
    """``count`` consecutive ticks of ``expr`` in New York from 1 June 2025 (``count`` is
    chosen so the walk ends before the November transition, where croniter's answers are not
    the policy's), by chained ``next_tick`` and by one reused croniter iterator."""

    def build(quick: bool, _: contextlib.ExitStack) -> Pair:
        n = max(10, count // 4) if quick else count
        cron, tz = parse_cron(expr), zone(NEW_YORK)
        start = datetime.fromtimestamp(CRON_START, tz)
        it = croniter(expr, start)

        def ours() -> list[int]:
            out, at = [], CRON_START
            for _ in range(n):
                at = next_tick(cron, tz, at).at
                out.append(at)
            return out

        def theirs() -> list[int]:
            it.set_current(start, force=True)
            return [int(it.get_next(float)) for _ in range(n)]

        mine, reference = ours(), theirs()
        if mine != reference:
            raise AssertionError(f"{expr}: next_tick and croniter disagree")
        last = datetime.fromtimestamp(mine[-1], tz).date()
        return Pair(lambda: timed(ours), lambda: timed(theirs), f"{n} ticks to {last}, same")

    return build


# -- catch-up: a year down against one missed tick ------------------------------------------


def _catchup(quick: bool, _: contextlib.ExitStack) -> Pair:
    def evaluation(now: int) -> Sampler:
        def sample() -> float:
            kernel = Kernel(MemoryStore())
            definition = ScheduleDefinition("minutely", "* * * * *", RunTemplate("etl"))
            kernel.define_schedule(definition, now=T0)
            return timed(lambda: kernel.evaluate_schedules(now))

        return sample

    # At T0 + 90 the tick of T0 was missed and the one of T0 + 60 is due.
    return Pair(evaluation(T0 + 365 * DAY + 30), evaluation(T0 + 90), "memory store")


# -- replay: verify against a raw scan and decode of the log --------------------------------


def _replay(quick: bool, stack: contextlib.ExitStack) -> Pair:
    events = 20_000 if quick else 1_000_000
    path = stack.enter_context(tempfile.TemporaryDirectory(prefix="arcoflow-report-"))
    store = stack.enter_context(LmdbStore(path, durable=False))
    kernel = Kernel(store)
    kernel.define_schedule(ScheduleDefinition("minutely", "* * * * *", RunTemplate("etl")), T0)
    record_minutely_ticks(store, events - 1, prefix="report")
    shared = store._env  # the raw environment: the baseline reads the LOG table directly
    log_db = shared.dbs[Table.LOG]
    decoder = msgspec.msgpack.Decoder(Envelope)

    def raw() -> float:
        def scan() -> int:
            count = 0
            with shared.env.begin(db=log_db) as txn, txn.cursor() as cursor:
                for _, value in cursor:
                    decoder.decode(value)
                    count += 1
            return count

        return timed(scan)

    def verify() -> float:
        start = time.perf_counter()
        verdict = kernel.verify()
        seconds = time.perf_counter() - start
        if not verdict.ok or verdict.events != events:
            raise AssertionError(f"verify failed: {verdict}")
        return seconds

    return Pair(verify, raw, f"{events:,} events (LMDB, one write per 1,000)")


# -- rss: a daemon's own memory after many ticks against after few -------------------------

ROOT = Path(__file__).resolve().parents[1]


def _rss(quick: bool, _: contextlib.ExitStack) -> Pair:
    """Each sample is a fresh process recording ticks through the Kernel
    (:mod:`benchmarks._record_ticks`); the figure is its peak anonymous resident memory,
    i.e. the daemon's own heap, not the pages of the LMDB file it has mapped."""
    many, few = (100_000 if quick else 1_000_000), 10_000

    def sample(ticks: int) -> Sampler:
        def run() -> float:
            command = [sys.executable, "-m", "benchmarks._record_ticks", str(ticks)]
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise AssertionError(f"recording {ticks:,} ticks failed: {done.stderr}")
            figures = json.loads(done.stdout)
            if figures["ticks"] < ticks:
                raise AssertionError(f"recorded {figures['ticks']:,} of {ticks:,} ticks")
            return float(figures["PeakAnon"])

        return run

    detail = f"{many:,} vs {few:,} ticks, peak anonymous RSS (LMDB, 100 ticks an evaluation)"
    return Pair(sample(many), sample(few), detail, _kib)


def _kib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


# -- due work: 100 due of many defined ------------------------------------------------------


def _define(store: Store, kernel: Kernel, idle: int, due: int) -> None:
    """``idle`` daily-at-midnight schedules (defined 1,000 per transaction) and ``due`` hourly
    ones, so that each evaluation between 01:00 and 23:00 has exactly ``due`` ticks."""
    define_all(
        store,
        (
            ScheduleDefinition(
                f"s-{i:06d}", "0 * * * *" if i < due else "0 0 * * *", RunTemplate("etl")
            )
            for i in range(idle + due)
        ),
        T0 + 1,
    )
    assert kernel.due_schedules(T0 + HOUR + 5)[:1] == ["s-000000"]


def _due(quick: bool, stack: contextlib.ExitStack) -> Pair:
    def lmdb_store() -> Store:
        path = stack.enter_context(tempfile.TemporaryDirectory(prefix="arcoflow-report-"))
        return stack.enter_context(LmdbStore(path, durable=False))

    return _due_on(lmdb_store, quick, "LMDB")


def _pg_due(quick: bool, stack: contextlib.ExitStack) -> Pair:
    _, open_store = postgres_targets.postgres(stack)
    return _due_on(open_store, quick, "PostgreSQL")


def _due_on(open_store: Callable[[], Store], quick: bool, name: str) -> Pair:
    many, few, due = (20_000 if quick else 100_000), 1_000, 100
    samplers: list[Sampler] = []
    for defined in (many, few):
        store = open_store()
        kernel = Kernel(store)
        _define(store, kernel, defined - due, due)
        samplers.append(_cycle(kernel, due))
    return Pair(samplers[0], samplers[1], f"{many:,} vs {few:,} defined, {name}")


def _cycle(kernel: Kernel, due: int) -> Sampler:
    hours = iter(range(1, 10_000))

    def sample() -> float:
        hour = next(hours)
        now = T0 + (hour // 23) * DAY + (hour % 23 + 1) * HOUR + 5  # 01:00 to 23:00 each day
        start = time.perf_counter()
        found = kernel.evaluate_schedules(now)
        seconds = time.perf_counter() - start
        if len(found) != due:
            raise AssertionError(f"expected {due} due ticks, got {len(found)}")
        return seconds

    return sample


# -- retention: a bounded store, and a prune pass that costs what it prunes ---------------------


def _retention_size(quick: bool, stack: contextlib.ExitStack) -> Pair:
    """One 60-day run (sizes are exact: sampled once, every round reads them)."""
    path = stack.enter_context(tempfile.TemporaryDirectory(prefix="arcoflow-report-"))
    sizes = _retention.fed_sensor(path + "/s", days=60, per_hour=10 if quick else 60)
    detail = (
        f"state (every table but the log: log compaction is item 4); with the log "
        f"{sizes.end / 2**20:.2f} vs {sizes.week / 2**20:.2f} MiB; after 14 days "
        f"{sizes.fortnight_state / 2**20:.2f} MiB (steady state)"
    )
    return Pair(lambda: sizes.end_state, lambda: sizes.week_state, detail, _show_bytes)


def _prune_pass(quick: bool, stack: contextlib.ExitStack) -> Pair:
    pruned = 500 if quick else 2_000
    root = stack.enter_context(tempfile.TemporaryDirectory(prefix="arcoflow-report-"))
    templates = {}
    now = 0
    for kept in (pruned, 10 * pruned):
        templates[kept] = f"{root}/t{kept}"
        store, _, now = _retention.filled_store(templates[kept], pruned, kept)
        store.close()
    copies = iter(range(10_000))

    def sampler(kept: int) -> Sampler:
        def sample() -> float:
            target = f"{root}/r{next(copies)}"
            shutil.copytree(templates[kept], target)
            with LmdbStore(target, durable=False, map_size=4 << 30) as store:
                kernel = Kernel(store)
                return timed(lambda: _retention.prune_pass(kernel, now, 2 * pruned))

        return sample

    detail = f"{pruned:,} messages pruned; {10 * pruned:,} vs {pruned:,} kept, LMDB"
    return Pair(sampler(10 * pruned), sampler(pruned), detail)


TARGETS: tuple[Target, ...] = (
    Target(
        "ingest",
        "durable ingest of a new push message, one at a time",
        "raw durable LMDB put, one transaction each",
        0.7,
        Direction.AT_LEAST,
        append_targets.ingest,
    ),
    Target(
        "due-tick",
        "durable due tick (tick + run request + rows + indexes), one at a time",
        "raw durable LMDB put, one transaction each",
        0.7,
        Direction.AT_LEAST,
        append_targets.due_tick,
    ),
    Target(
        "threads-16",
        "16 threads ingesting distinct messages, each acknowledged when durable",
        "1 thread doing the same",
        6.0,
        Direction.AT_LEAST,
        append_targets.threads,
    ),
    Target(
        "http-1",
        "HTTP push, 1 keep-alive client",
        "Kernel.ingest in-process, same store settings",
        0.5,
        Direction.AT_LEAST,
        http_targets.http_one,
    ),
    Target(
        "http-16",
        "HTTP push, 16 concurrent keep-alive clients",
        "Kernel.ingest in-process, one at a time",
        3.0,
        Direction.AT_LEAST,
        http_targets.http_sixteen,
    ),
    Target(
        "ingest-many",
        "ingest_many of 1,000 new messages in one call",
        "raw LMDB puts of 1,000 records in one transaction",
        0.04,
        Direction.AT_LEAST,
        append_targets.ingest_many,
    ),
    Target(
        "duplicate",
        "duplicate push delivery",
        "new messages",
        10.0,
        Direction.AT_LEAST,
        append_targets.duplicate,
    ),
    *(
        Target(
            f"cron-{name}",
            f"next_tick '{expr}' in {NEW_YORK}",
            "croniter, one reused iterator",
            6.0,
            Direction.AT_LEAST,
            _cron(expr, count),
        )
        for name, expr, count in (
            ("hourly", "0 * * * *", 2000),
            ("daily", "30 2 * * *", 150),
            ("weekly", "0 9 * * 1", 21),
            ("weekdays", "30 9 * * 1-5", 100),
        )
    ),
    Target(
        "replay",
        "verify (replay into memory and compare) of 1,000,000 events",
        "raw cursor scan + msgspec decode of the same records",
        0.5,
        Direction.AT_LEAST,
        _replay,
        rounds=3,  # a verify of 1,000,000 events takes minutes
    ),
    Target(
        "due-100k",
        "one cycle, 100 schedules due of 100,000 defined",
        "the same with 1,000 defined",
        2.0,
        Direction.AT_MOST,
        _due,
    ),
    Target(
        "catchup",
        "a minutely schedule evaluated after a year down",
        "after one missed tick",
        3.0,
        Direction.AT_MOST,
        _catchup,
    ),
    Target(
        "retention-size",
        "used store pages after a push sensor fed 60 days under history = 7d",
        "the same store after 7 days",
        1.3,
        Direction.AT_MOST,
        _retention_size,
        rounds=1,
    ),
    Target(
        "prune-pass",
        "one prune pass of N messages' history, 10 N others kept",
        "the same pass with N others kept",
        2.0,
        Direction.AT_MOST,
        _prune_pass,
        rounds=5,
    ),
    Target(
        "rss",
        "daemon RSS after recording 1,000,000 ticks",
        "after 10,000 ticks",
        1.2,
        Direction.AT_MOST,
        _rss,
        rounds=1,  # each side records its ticks in a fresh process; a million take minutes
    ),
    Target(
        "pg-append",
        "durable append on PostgreSQL of a new push message (evaluation + run request)",
        "raw single-row INSERT + COMMIT with psycopg, same server",
        0.5,
        Direction.AT_LEAST,
        postgres_targets.pg_append,
    ),
    Target(
        "pg-writers-4",
        "4 concurrent writers on disjoint push sensors, PostgreSQL",
        "1 writer doing the same number of appends",
        1.5,
        Direction.AT_LEAST,
        postgres_targets.pg_writers,
    ),
    Target(
        "pg-due-100k",
        "one cycle on PostgreSQL, 100 schedules due of 100,000 defined",
        "the same with 1,000 defined",
        2.0,
        Direction.AT_MOST,
        _pg_due,
        rounds=5,
    ),
)


def measure(target: Target, quick: bool) -> Result:
    """Build the target's two sides and compare them in interleaved rounds."""
    if target.measure is None:
        return Result(target, None, "")
    with contextlib.ExitStack() as stack:
        try:
            pair = target.measure(quick, stack)
        except Unavailable as exc:
            return Result(target, None, "", str(exc))
        rounds = min(3, target.rounds) if quick else target.rounds
        ratio, times = interleave(pair, target.direction, rounds)
    detail = pair.describe()
    return Result(target, ratio, f"{times}; {detail}" if detail else times)


def _line(result: Result) -> str:
    t = result.target
    goal = f"{t.direction.value} {t.target:g}x"
    if result.skipped:
        return f"{t.name:14} {'-':>8}  {goal:8} skipped           {result.skipped}"
    if result.ratio is None:
        return f"{t.name:14} {'-':>8}  {goal:8} not measured yet  {t.workload} / {t.baseline}"
    verdict = "met" if result.met else "NOT MET"
    return f"{t.name:14} {result.ratio:7.2f}x  {goal:8} {verdict:16}  {result.detail}"


def _selected(parser: argparse.ArgumentParser, only: str | None) -> list[Target]:
    if not only:
        return list(TARGETS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in {t.name for t in TARGETS}]
    if unknown:  # argparse's usage error: exit status 2
        parser.error(f"unknown target(s) {', '.join(unknown)}; known: {_names()}")
    return [t for t in TARGETS if t.name in names]


def _names() -> str:
    return ", ".join(t.name for t in TARGETS)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.report",
        description="Measure issue 13's performance targets against same-run baselines.",
    )
    parser.add_argument("--quick", action="store_true", help="smaller workloads, fewer rounds")
    parser.add_argument("--only", metavar="NAMES", help=f"comma-separated, of: {_names()}")
    args = parser.parse_args(argv)
    results: list[Result] = []
    print(f"{'target':14} {'ratio':>8}  {'goal':8} {'verdict':16}  detail (workload vs baseline)")
    for target in _selected(parser, args.only):
        result = measure(target, args.quick)
        results.append(result)
        print(_line(result), flush=True)
    met = sum(r.met for r in results)
    print(f"{met} of {len(results)} targets met" + (" (--quick)" if args.quick else ""))
    return 0 if met == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
