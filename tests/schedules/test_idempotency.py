"""Tick identity and idempotency: the same ``now`` twice, overlapping windows, random replays,
two threads racing, and two real processes evaluating one LMDB store at once.

Every test ends with :func:`assert_exactly_once`, which reads the log (not the rows, which are
keyed by identity and so could not show a duplicate) and replays it with ``Kernel.verify``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

from arcoflow.kernel import Kernel, LmdbStore, MemoryStore, TickRow
from arcoflow.kernel.decide import tick_id
from hypothesis import given, note
from hypothesis import strategies as st

from .helpers import HOUR, all_ticks, assert_exactly_once, ep, schedule

T0 = ep(2025, 3, 1)


def _seq(kernel: Kernel) -> int:
    return max((e.seq for e in kernel.log()), default=0)


def test_tick_id_is_the_schedule_and_the_utc_instant(kernel: Kernel) -> None:
    kernel.define_schedule(schedule(), now=T0 - 1)
    (tick,) = kernel.evaluate_schedules(T0 + 5)
    assert tick.tick_id == tick_id("hourly", T0) == "hourly:2025-03-01T00:00:00Z"
    (run,) = kernel.tick(tick.tick_id).runs
    assert tick.run_keys == ("schedule:hourly:2025-03-01T00:00:00Z",)
    assert run.run_key == tick.run_keys[0] and run.origin == "schedule:hourly"


def test_the_same_now_twice_records_nothing_more(kernel: Kernel) -> None:
    kernel.define_schedule(schedule(max_catchup_ticks=3, catchup_window="1d"), now=T0 - 1)
    first = kernel.evaluate_schedules(T0 + 3 * HOUR)
    seq = _seq(kernel)
    assert kernel.evaluate_schedules(T0 + 3 * HOUR) == []
    assert kernel.evaluate_schedule("hourly", T0 + 3 * HOUR) == []
    assert _seq(kernel) == seq
    assert [t.scheduled_for for t in first] == [T0 + h * HOUR for h in (1, 2, 3)]
    assert_exactly_once(kernel)


def test_overlapping_windows_never_repeat_a_tick(kernel: Kernel) -> None:
    kernel.define_schedule(schedule(max_catchup_ticks=6, catchup_window="6h"), now=T0 - 1)
    seen: list[int] = []
    for h in (5, 8, 8, 7, 12, 12, 13):
        seen += [t.scheduled_for for t in kernel.evaluate_schedules(T0 + h * HOUR + 60)]
    assert seen == sorted(set(seen))
    assert seen == [T0 + h * HOUR for h in range(14)]
    assert_exactly_once(kernel)


steps = st.lists(
    st.one_of(
        st.tuples(st.just("evaluate"), st.integers(0, 72 * HOUR)),
        st.tuples(st.just("toggle"), st.integers(0, 72 * HOUR)),
        st.tuples(st.just("redefine"), st.integers(1, 4)),
    ),
    max_size=25,
)


@given(steps, st.sampled_from(["newest", "oldest"]), st.integers(1, 4))
def test_random_evaluation_sequences_keep_ticks_unique_and_progress_monotone(
    plan: list[tuple[str, int]], order: str, budget: int
) -> None:
    """Evaluations at arbitrary, repeated and backward instants, interleaved with toggles and
    definition updates: one tick per id, one run per key, ``last_scheduled_for`` never moves
    back, every tick records the version current when it was evaluated."""
    kernel = Kernel(MemoryStore())
    crons = {1: "0 * * * *", 2: "*/20 * * * *", 3: "0 */3 * * *", 4: "15 1 * * *"}
    options: dict[str, Any] = {
        "catchup_window": "5h",
        "max_catchup_ticks": budget,
        "catchup_order": order,
    }
    kernel.define_schedule(schedule("s", timezone="Europe/London", **options), now=T0)
    clock, enabled = T0, True
    last: int | None = None
    for action, value in plan:
        note(f"{action} {value}")
        if action == "evaluate":
            version = kernel.schedule("s").definition_version
            ticks = kernel.evaluate_schedules(T0 + value)
            assert all(t.definition_version == version for t in ticks)
        elif action == "toggle":
            clock = max(clock, T0 + value)
            enabled = not enabled
            kernel.set_schedule_enabled("s", enabled, now=clock)
        else:
            definition = schedule("s", crons[value], timezone="Europe/London", **options)
            kernel.define_schedule(definition, now=clock)
        row = kernel.schedule("s")
        if last is not None:
            assert row.last_scheduled_for is not None and row.last_scheduled_for >= last
        last = row.last_scheduled_for
    assert_exactly_once(kernel)


def _three_schedules(kernel: Kernel) -> None:
    kernel.define_schedule(schedule("a", "*/10 * * * *", max_catchup_ticks=4), now=T0)
    kernel.define_schedule(
        schedule("b", "0 * * * *", max_catchup_ticks=3, catchup_order="oldest"), now=T0
    )
    kernel.define_schedule(schedule("c", "*/5 * * * *", catchup_window="15m"), now=T0)


NOWS = [T0 + i * 1234 for i in range(1, 60)] + [T0 + 30 * 1234, T0 + 59 * 1234]


def _race(kernels: list[Kernel]) -> list[set[str]]:
    barrier = threading.Barrier(len(kernels))
    seen: list[set[str]] = [set() for _ in kernels]
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            for now in NOWS:
                seen[i] |= {t.tick_id for t in kernels[i].evaluate_schedules(now)}
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(kernels))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return seen


def _all_tick_ids(kernel: Kernel) -> set[str]:
    return {t.tick_id for sid in "abc" for t in all_ticks(kernel, sid)}


def test_two_threads_racing_on_one_lmdb_store(tmp_path: Path) -> None:
    path = str(tmp_path / "store")
    stores = [LmdbStore(path, durable=False), LmdbStore(path, durable=False)]
    try:
        kernels = [Kernel(s) for s in stores]
        _three_schedules(kernels[0])
        seen = _race(kernels)
        assert seen[0] | seen[1] == _all_tick_ids(kernels[0])
        assert_exactly_once(kernels[0])
    finally:
        for s in stores:
            s.close()


def test_two_threads_racing_on_one_memory_store() -> None:
    kernel = Kernel(MemoryStore())
    _three_schedules(kernel)
    seen = _race([kernel, kernel])
    assert seen[0] | seen[1] == _all_tick_ids(kernel)
    assert_exactly_once(kernel)


_WORKER = textwrap.dedent(
    """
    import json, os, sys, time
    from arcoflow.kernel import Kernel, LmdbStore

    path, go, ready, nows = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    store = LmdbStore(path)
    kernel = Kernel(store)
    open(ready, "w").close()
    while not os.path.exists(go):
        time.sleep(0.001)
    seen = []
    for now in nows:
        seen += [t.tick_id for t in kernel.evaluate_schedules(now)]
    store.close()
    print(json.dumps(seen))
    """
)


def test_two_processes_evaluating_one_lmdb_store_at_once(tmp_path: Path) -> None:
    path, go = str(tmp_path / "store"), tmp_path / "go"
    with LmdbStore(path) as store:
        _three_schedules(Kernel(store))
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    nows = json.dumps(NOWS)
    workers = [
        subprocess.Popen(
            [sys.executable, str(script), path, str(go), str(tmp_path / f"ready{i}"), nows],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready{i}").exists() for i in range(2)):
        assert time.monotonic() < deadline, "workers did not start"
        time.sleep(0.01)
    go.write_text("go")  # both have opened the store: start them together
    outputs = [w.communicate(timeout=120) for w in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err
    seen = [set(json.loads(out)) for out, _ in outputs]
    with LmdbStore(path) as store:
        kernel = Kernel(store)
        ticks: list[TickRow] = [t for sid in "abc" for t in all_ticks(kernel, sid)]
        assert seen[0] | seen[1] == {t.tick_id for t in ticks}
        assert len(ticks) > 100
        print(f"ticks returned by both processes: {len(seen[0] & seen[1])} of {len(ticks)}")
        assert_exactly_once(kernel)
