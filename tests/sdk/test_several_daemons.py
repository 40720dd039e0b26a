"""Several runtimes on one LMDB store: four real processes run cycles in lockstep on the same
clock; history holds exactly one tick per tick id, one evaluation per poll epoch, one run per
run key and one recorded launch per run, and each run is handed to a launcher exactly once
(launch claims: no daemon was killed, so at-least-once never has to repeat a hand-over)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from arcoflow.kernel import (
    Kernel,
    LmdbStore,
    RunTemplate,
    ScheduleDefinition,
    SensorDefinition,
)
from arcoflow.kernel.events import (
    RunLaunched,
    RunRequested,
    SensorEvaluated,
    TickRecorded,
)

from .helpers import T0

CYCLES = 25
DAEMONS = 4

WORKER = textwrap.dedent(
    """
    import json, os, sys, time
    from arcoflow.kernel import Kernel, LmdbStore
    from arcoflow.plugins.memory_launcher import MemoryLauncher
    from arcoflow.sdk import PollResult, Plugins, RunRequest, Runtime, TickResult, hookimpl

    class Source:
        @hookimpl
        def arcoflow_poll(self, context):
            n = int(context.cursor or "0") + 1
            return PollResult([RunRequest(f"n{n}")], cursor=str(n))

        @hookimpl
        def arcoflow_evaluate_tick(self, context):
            return TickResult([RunRequest(config={"part": p}) for p in ("a", "b")])

    path, barrier, t0, cycles, peers = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
    me = str(os.getpid())
    store = LmdbStore(path)
    plugins = Plugins()
    memory = MemoryLauncher()
    plugins.register(memory, "memory")
    plugins.register(Source(), "source")
    runtime = Runtime(Kernel(store), plugins)

    def wait_for_peer(step):
        open(os.path.join(barrier, f"{step}.{me}"), "w").close()
        deadline = time.monotonic() + 60
        while len([f for f in os.listdir(barrier) if f.startswith(f"{step}.")]) < peers:
            if time.monotonic() > deadline:
                raise SystemExit(f"peer never reached step {step}")
            time.sleep(0.001)

    conflicts = 0
    for i in range(cycles):
        wait_for_peer(i)  # every process starts each cycle together, at the same clock time
        conflicts += len(runtime.cycle(t0 + 60 * i).conflicts)
    store.close()
    handed = [launch.run_id for launch in memory.calls]
    print(json.dumps({"handed": handed, "conflicts": conflicts}))
    """
)


@pytest.mark.slow
def test_four_daemon_processes_on_one_store_never_duplicate_work(
    store_dir: str, tmp_path: Path
) -> None:
    store = LmdbStore(store_dir)
    kernel = Kernel(store)
    kernel.define_schedule(
        ScheduleDefinition(
            "evaluated", "* * * * *", RunTemplate("t", launcher="memory"), evaluator="source"
        ),
        now=T0 - 30,
    )
    kernel.define_schedule(
        ScheduleDefinition("plain", "* * * * *", RunTemplate("t", launcher="memory")),
        now=T0 - 30,
    )
    for sensor in ("s1", "s2"):
        kernel.define_sensor(
            SensorDefinition(
                sensor,
                "poll",
                RunTemplate("t", launcher="memory"),
                connector="source",
                minimum_interval=60,
            ),
            now=T0 - 30,
        )
    store.close()
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                store_dir,
                str(barrier),
                str(T0),
                str(CYCLES),
                str(DAEMONS),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(DAEMONS)
    ]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        outputs.append(json.loads(out))

    store = LmdbStore(store_dir)
    try:
        kernel = Kernel(store)
        events = [e.event for e in kernel.log()]
        ticks = Counter(e.tick_id for e in events if isinstance(e, TickRecorded))
        assert len(ticks) == 2 * CYCLES and set(ticks.values()) == {1}
        polls = Counter(
            (e.sensor_id, e.expected_state_version)
            for e in events
            if isinstance(e, SensorEvaluated)
        )
        assert len(polls) == 2 * CYCLES and set(polls.values()) == {1}
        requested = Counter(e.run_key for e in events if isinstance(e, RunRequested))
        expected_runs = CYCLES * 2 + CYCLES + CYCLES * 2  # evaluated (a, b), plain, 2 sensors
        assert len(requested) == expected_runs and set(requested.values()) == {1}
        launched = Counter(e.run_id for e in events if isinstance(e, RunLaunched))
        assert len(launched) == expected_runs and set(launched.values()) == {1}
        runs = kernel.runs(limit=1000)
        assert len(runs) == expected_runs and {r.status for r in runs} == {"LAUNCHED"}
        assert kernel.conflicts() == []
        for sensor in ("s1", "s2"):
            row = kernel.sensor(sensor)
            assert row.cursor is not None and row.cursor.native() == str(CYCLES)
        # Every run reached a launcher exactly once: the claims kept the daemons apart.
        handed = Counter(run_id for out in outputs for run_id in out["handed"])
        duplicates = {run_id: n for run_id, n in handed.items() if n > 1}
        assert set(handed) == {r.run_id for r in runs}
        assert duplicates == {}, f"{len(duplicates)} of {len(handed)} runs handed over twice"
        assert kernel.verify().ok
    finally:
        store.close()
