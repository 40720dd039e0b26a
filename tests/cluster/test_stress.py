"""Many processes on one PostgreSQL schema, with faults injected, for a fixed time (issue 11).

Four daemon processes (``Kernel(PostgresStore(...))`` driven by ``run_daemon``, the loop of
``arcoflow run``) evaluate three minutely schedules, poll two sensors and launch the runs, on a
shared fast clock (a simulated minute per second), while two pusher processes ingest messages
into two push sensors, writing down each message they got an acknowledgement for. Meanwhile,
at random moments, a daemon is SIGKILLed (and started again, as a supervisor would) or some of
the test's server connections are terminated with ``pg_terminate_backend``. A daemon that
stops (one that cannot open the store while the server restarts) is started again too.

Afterwards the spec's invariants hold: one tick per tick id, one run per run key, each poll
sensor's ``state_version`` equals its accepted evaluations and its cursor is the one the last
of them wrote (no cursor stomped), every acknowledged push is recorded exactly once (and no
message twice), every state invariant of ``arcoflow.spec.invariants``, and ``verify`` replays
the log to the same state. ``pytest -s`` prints the counts; the last line is a summary.

Runs 30 s; ``ARCOFLOW_STRESS_SECONDS`` sets another duration. Restarting the PostgreSQL
service under load stops every other user of the server, so that is a separate test, run only
with ``ARCOFLOW_STRESS_RESTART=1`` on a machine where this process may run ``pg_ctlcluster``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import postgres_support
import psycopg
import pytest
from arcoflow.kernel import Kernel, RunTemplate, ScheduleDefinition, SensorDefinition
from arcoflow.kernel.events import RunRequested, SensorEvaluated, TickRecorded
from arcoflow.plugins.memory_launcher import MemoryLauncher
from arcoflow.sdk import Plugins, PollResult, RunRequest, Runtime, hookimpl
from arcoflow.spec.invariants import check_state
from arcoflow.spec.observe import observe_kernel
from psycopg.conninfo import make_conninfo

pytestmark = pytest.mark.slow

T0 = 1_893_456_000  # 2030-01-01T00:00:00Z
SPEED = 60  # simulated seconds per second: a minutely schedule fires every second
DAEMONS = 4
PUSHERS = 2
SCHEDULES = ("a", "b", "c")
POLLED = ("p1", "p2")
PUSHED = ("h1", "h2")

# Shared by both scripts: the fast clock every process reads.
_CLOCK = """
import sys, time
dsn, schema, epoch = sys.argv[1], sys.argv[2], float(sys.argv[3])
def clock():
    return T0 + int((time.time() - epoch) * SPEED)
""".replace("T0", str(T0)).replace("SPEED", str(SPEED))

DAEMON = _CLOCK + textwrap.dedent(
    """
    from arcoflow.kernel import Kernel, StoreError
    from arcoflow.kernel.store.postgres import PostgresStore
    from arcoflow.plugins.memory_launcher import MemoryLauncher
    from arcoflow.sdk import Plugins, PollResult, RunRequest, hookimpl
    from arcoflow.sdk.daemon import run_daemon

    class CountingSource:
        @hookimpl
        def arcoflow_poll(self, context):
            n = int(context.cursor or "0") + 1
            return PollResult([RunRequest(f"n{n}")], cursor=str(n))

    try:
        store = PostgresStore(dsn, schema=schema, pool_size=2, connect_timeout=5)
    except StoreError as exc:  # the server is restarting: the supervisor tries again
        sys.exit(f"cannot open the store: {exc}")
    plugins = Plugins()
    plugins.register(MemoryLauncher(), "memory")
    plugins.register(CountingSource(), "counter")
    sys.exit(run_daemon(Kernel(store), plugins, None, 0.05, False, clock=clock))
    """
)

PUSHER = _CLOCK + textwrap.dedent(
    """
    import json, os
    from arcoflow.kernel import Kernel, StoreError
    from arcoflow.kernel.store.postgres import PostgresStore

    name, sensor, acks_path, until = sys.argv[4], sys.argv[5], sys.argv[6], float(sys.argv[7])
    store = None
    acked = failed = 0
    with open(acks_path, "w") as acks:
        i = 0
        while time.time() < until:
            message_id = f"{name}-{i}"
            try:
                if store is None:
                    store = PostgresStore(dsn, schema=schema, pool_size=1, connect_timeout=5)
                Kernel(store).ingest(sensor, message_id, {"i": i}, now=clock())
            except StoreError:
                failed += 1  # not acknowledged: maybe recorded, maybe not; send it again
                time.sleep(0.05)
                continue
            acks.write(message_id + "\\n")  # acknowledged: it must be in the log, once
            acks.flush()
            acked += 1
            i += 1
    print(json.dumps({"acked": acked, "failed": failed}))
    """
)


def seconds() -> float:
    return float(os.environ.get("ARCOFLOW_STRESS_SECONDS", "30"))


@dataclass
class Cluster:
    """The processes of one stress run and what was done to them."""

    dsn: str  # with this run's application name, which the faults select connections by
    app: str
    schema: str
    logs: Path
    epoch: float = field(default_factory=time.time)
    daemons: list[subprocess.Popen[str]] = field(default_factory=list)
    started: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    files: list[IO[str]] = field(default_factory=list)

    def start_daemon(self) -> subprocess.Popen[str]:
        self.started += 1
        log = (self.logs / f"daemon-{self.started}.log").open("w")
        self.files.append(log)
        args = [self.dsn, self.schema, str(self.epoch)]
        return subprocess.Popen(
            [sys.executable, "-c", DAEMON, *args], stdout=log, stderr=log, text=True
        )

    def start_pusher(self, n: int, sensor: str, until: float) -> subprocess.Popen[str]:
        args = [self.dsn, self.schema, str(self.epoch), f"m{n}", sensor, str(self.acks(n))]
        return subprocess.Popen(
            [sys.executable, "-c", PUSHER, *args, str(until)],
            stdout=subprocess.PIPE,
            stderr=(self.logs / f"pusher-{n}.log").open("w"),
            text=True,
        )

    def acks(self, n: int) -> Path:
        return self.logs / f"acks-{n}.txt"

    def supervise(self) -> None:
        """Start again every daemon that stopped (its store failed, or it was killed)."""
        for i, proc in enumerate(self.daemons):
            code = proc.poll()
            if code is not None:
                self.counts["daemon exits (failed)" if code else "daemon exits (0)"] += 1
                self.daemons[i] = self.start_daemon()

    def kill_a_daemon(self, rng: random.Random) -> None:
        i = rng.randrange(len(self.daemons))
        self.daemons[i].send_signal(signal.SIGKILL)
        self.daemons[i].wait(30)
        self.counts["daemons SIGKILLed"] += 1
        self.daemons[i] = self.start_daemon()

    def terminate_connections(self, rng: random.Random) -> None:
        """``pg_terminate_backend`` on one to three of this run's server connections."""
        with psycopg.connect(postgres_support.dsn(), autocommit=True) as admin:
            pids = [
                pid
                for (pid,) in admin.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (self.app,)
                )
            ]
            chosen = rng.sample(pids, min(len(pids), rng.randint(1, 3)))
            for pid in chosen:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        self.counts["connections terminated"] += len(chosen)

    def stop(self) -> None:
        for proc in self.daemons:
            proc.send_signal(signal.SIGTERM)
        for proc in self.daemons:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self.files:
            log.close()


def _define(kernel: Kernel) -> None:
    template = RunTemplate("stress", launcher="memory")
    for sid in SCHEDULES:
        kernel.define_schedule(ScheduleDefinition(sid, "* * * * *", template), now=T0 - 30)
    for sensor in POLLED:
        kernel.define_sensor(
            SensorDefinition(sensor, "poll", template, connector="counter", minimum_interval=60),
            now=T0 - 30,
        )
    for sensor in PUSHED:
        kernel.define_sensor(SensorDefinition(sensor, "push", template), now=T0 - 30)


def _restart_postgres() -> None:
    """Restart the server (``pg_ctlcluster``), and wait until it answers again."""
    cluster = subprocess.run(
        ["pg_lsclusters", "--no-header"], check=True, capture_output=True, text=True
    ).stdout.split()
    subprocess.run(["pg_ctlcluster", cluster[0], cluster[1], "restart"], check=True, timeout=120)
    deadline = time.monotonic() + 60
    while subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1"], check=False).returncode:
        assert time.monotonic() < deadline, "PostgreSQL did not come back within 60 s"
        time.sleep(0.2)
    postgres_support.admin().close()  # the restart ended it: the next use connects again


def _stress(tmp_path: Path, restart: bool) -> None:
    schema = postgres_support.fresh_schema()
    store = postgres_support.open_store(schema)
    try:
        _define(Kernel(store))
    finally:
        store.close()
    app = f"arcoflow-{schema}"
    cluster = Cluster(
        make_conninfo(postgres_support.dsn(), application_name=app), app, schema, tmp_path
    )
    duration = seconds()
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    until = time.time() + duration
    cluster.daemons = [cluster.start_daemon() for _ in range(DAEMONS)]
    pushers = [cluster.start_pusher(n, PUSHED[n % len(PUSHED)], until) for n in range(PUSHERS)]
    restart_at = time.time() + duration / 2 if restart else None
    try:
        while time.time() < until - 1:
            time.sleep(rng.uniform(0.3, 1.5))
            cluster.supervise()
            if restart_at is not None and time.time() >= restart_at:
                restart_at = None
                _restart_postgres()
                cluster.counts["PostgreSQL restarts"] += 1
            elif rng.random() < 0.4:
                cluster.kill_a_daemon(rng)
            else:
                cluster.terminate_connections(rng)
        pushed = []
        for proc in pushers:
            out, _ = proc.communicate(timeout=120)
            assert proc.returncode == 0, f"a pusher failed: see {tmp_path}"
            pushed.append(json.loads(out))
    finally:
        cluster.stop()
        for proc in pushers:
            if proc.poll() is None:
                proc.kill()
    with postgres_support.open_store(schema) as store:
        kernel = Kernel(store)
        now = T0 + int((time.time() - cluster.epoch) * SPEED) + 3600
        swept = _sweep(kernel, now)
        _check(kernel, cluster, pushed, seed, duration, now)
    print(f"  final sweep: {swept} cycles")
    postgres_support.drop_schema(schema)


class CountingSource:
    """The polled sensors' connector (the daemons run the same one): each poll advances the
    cursor by one and requests one run, so the cursor counts the accepted polls."""

    @hookimpl
    def arcoflow_poll(self, context: Any) -> PollResult:
        n = int(context.cursor or "0") + 1
        return PollResult([RunRequest(f"n{n}")], cursor=str(n))


def _sweep(kernel: Kernel, now: int) -> int:
    """A last daemon's cycles at ``now`` (past every lease of a killed daemon's claims) until
    nothing is due: the work the faults interrupted is finished by whoever is left."""
    plugins = Plugins()
    plugins.register(MemoryLauncher(), "memory")
    plugins.register(CountingSource(), "counter")
    runtime = Runtime(kernel, plugins, batch=1000)
    for cycles in range(1, 50):
        runtime.cycle(now)
        if not kernel.due_launches(now, limit=1) and not kernel.due_schedules(now):
            return cycles
    raise AssertionError("work was still due after 50 cycles")


def _check(
    kernel: Kernel,
    cluster: Cluster,
    pushed: list[dict[str, int]],
    seed: int,
    duration: float,
    now: int,
) -> None:
    events = [e.event for e in kernel.log()]
    ticks = Counter(e.tick_id for e in events if isinstance(e, TickRecorded))
    assert ticks and max(ticks.values()) == 1, "a tick id was recorded twice"
    requested = Counter(e.run_key for e in events if isinstance(e, RunRequested))
    observed = observe_kernel(kernel, now)
    runs = observed.runs
    by_key = Counter(r.run_key for r in runs)
    assert max(by_key.values()) == 1, "a run key has two runs"
    assert set(by_key) == set(requested), "a requested run key has no run"
    assert {r.status for r in runs} == {"LAUNCHED"}, "a run was never launched"
    polls: Counter[str] = Counter()
    for sensor in POLLED:
        accepted = [e for e in events if isinstance(e, SensorEvaluated) and e.sensor_id == sensor]
        row = kernel.sensor(sensor)
        assert [e.expected_state_version for e in accepted] == list(range(len(accepted)))
        assert row.state_version == len(accepted), "state_version is not the accepted polls"
        assert row.cursor is not None and row.cursor.native() == str(len(accepted)), (
            "a cursor was stomped"
        )
        polls[sensor] = len(accepted)
    recorded = Counter(
        e.message_id for e in events if isinstance(e, SensorEvaluated) and e.kind == "push"
    )
    assert not recorded or max(recorded.values()) == 1, "a push message was recorded twice"
    acked = [line for n in range(PUSHERS) for line in cluster.acks(n).read_text().split()]
    missing = [m for m in acked if recorded[m] != 1]
    assert not missing, f"{len(missing)} acknowledged pushes are not in the log: {missing[:5]}"
    check_state(observed)
    verdict = kernel.verify()
    assert verdict.ok, verdict.differences[:5]
    counts = dict(cluster.counts)
    print(f"\nstress: {duration:.0f} s, seed {seed}, {DAEMONS} daemons ({cluster.started} started)")
    for what, n in sorted(counts.items()):
        print(f"  {what}: {n}")
    print(f"  events logged: {verdict.events}")
    print(f"  ticks: {len(ticks)} ({len(SCHEDULES)} schedules), runs: {len(runs)}")
    print(f"  polls accepted: {dict(polls)}")
    failed = sum(p["failed"] for p in pushed)
    print(
        f"  pushes acknowledged: {len(acked)}, recorded: {sum(recorded.values())}, "
        f"failed and sent again: {failed}"
    )
    print(
        f"stress summary: {verdict.events} events; {len(ticks)} ticks, {len(runs)} runs, "
        f"{sum(polls.values())} polls, {len(acked)} acked pushes, each once; "
        f"{counts.get('daemons SIGKILLed', 0)} SIGKILLs, "
        f"{counts.get('connections terminated', 0)} connections terminated, "
        f"{counts.get('PostgreSQL restarts', 0)} restarts; verify ok"
    )


def test_daemons_and_pushers_on_one_schema_survive_kills_and_terminated_connections(
    tmp_path: Path,
) -> None:
    postgres_support.require_server()
    _stress(tmp_path, restart=False)


def test_the_postgresql_service_restarted_under_load(tmp_path: Path) -> None:
    """Opt-in: it restarts the server every process on this machine shares."""
    if os.environ.get("ARCOFLOW_STRESS_RESTART") != "1":
        pytest.skip("restarts the shared PostgreSQL service: set ARCOFLOW_STRESS_RESTART=1")
    if os.geteuid() != 0 or not shutil.which("pg_ctlcluster"):
        pytest.skip("restarting PostgreSQL needs root and pg_ctlcluster on this machine")
    postgres_support.require_server()
    _stress(tmp_path, restart=True)
