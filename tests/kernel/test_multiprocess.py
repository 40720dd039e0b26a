"""Several real processes on one LMDB directory: no lost or doubled appends, no stomped cursor,
duplicate pushes deduplicated across processes, a map grown elsewhere adopted here."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from arcoflow.kernel import Kernel, LmdbStore, RunTemplate
from arcoflow.kernel.events import Cursor, RunRequested, SensorEvaluated

from .helpers import log_seqs, poll_sensor, push_sensor

WORKER = str(Path(__file__).with_name("_worker.py"))
KIB = 1024

pytestmark = pytest.mark.slow


def run_workers(go: str, commands: Sequence[Sequence[str]], timeout: float = 120) -> list[Any]:
    """Start one process per command, release them together, return their JSON outputs."""
    procs = [
        subprocess.Popen(
            [sys.executable, WORKER, *command],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for command in commands
    ]
    try:
        deadline = time.monotonic() + timeout
        while go != "-" and len(glob.glob(f"{go}.ready.*")) < len(procs):
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                break
            time.sleep(0.005)
        if go != "-":  # "-": the workers start at once, nothing to release
            Path(go).touch()
        outputs = []
        for proc in procs:
            out, err = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, err
            outputs.append(json.loads(out))
        return outputs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_concurrent_appends_lose_nothing_and_number_densely(tmp_path: Path) -> None:
    path, go = str(tmp_path / "s"), str(tmp_path / "go")
    LmdbStore(path).close()
    count, shared = 60, 30
    a, b = run_workers(
        go,
        [
            ["appends", path, go, "a", str(count), str(shared)],
            ["appends", path, go, "b", str(count), str(shared)],
        ],
    )
    with LmdbStore(path) as store:
        seqs = log_seqs(store)
        total = 2 * count + shared
        assert seqs == list(range(1, total + 1))  # dense and unique
        new = {**a["new"], **b["new"]}
        assert len(new) == total  # every key appended exactly once, by one of the two
        assert not set(a["new"]) & set(b["new"])
        assert sorted(new.values()) == seqs
        # A duplicate reports the original record's sequence number.
        for name, seq in {**a["duplicate"], **b["duplicate"]}.items():
            assert name.startswith("shared-")
            assert new[name] == seq
        assert len(a["duplicate"]) + len(b["duplicate"]) == shared
        assert Kernel(store).verify().ok


def test_concurrent_duplicate_pushes_are_one_durable_effect(tmp_path: Path) -> None:
    path, go = str(tmp_path / "s"), str(tmp_path / "go")
    with LmdbStore(path) as store:
        Kernel(store).define_sensor(push_sensor("hook"), now=0)
    count = 40
    outputs = run_workers(
        go, [["ingest", path, go, "hook", str(count), seed] for seed in ("x", "y", "z")]
    )
    with LmdbStore(path) as store:
        kernel = Kernel(store)
        evaluations = kernel.evaluations("hook", limit=1000)
        assert len(evaluations) == count
        by_message = {e.evaluation.message_id: e.evaluation.eval_id for e in evaluations}
        for message_id, original in by_message.items():
            answers = [out[message_id] for out in outputs]
            # Every process got the same, original evaluation; exactly one created it.
            assert {eval_id for eval_id, _ in answers} == {original}
            assert sorted(dup for _, dup in answers) == [False, True, True]
        runs = kernel.runs(limit=1000)
        assert len(runs) == count
        assert {r.run_key for r in runs} == {f"sensor:hook:m{i}" for i in range(count)}
        logged = [e.event for e in kernel.log()]
        assert sum(isinstance(e, SensorEvaluated) for e in logged) == count
        assert sum(isinstance(e, RunRequested) for e in logged) == count
        assert kernel.verify().ok


def test_racing_pollers_in_processes_never_stomp_a_cursor(tmp_path: Path) -> None:
    path, go = str(tmp_path / "s"), str(tmp_path / "go")
    with LmdbStore(path) as store:
        Kernel(store).define_sensor(poll_sensor("files", minimum_interval=1), now=0)
    count = 25
    outputs = run_workers(go, [["poll", path, go, "files", str(count), tag] for tag in ("p", "q")])
    accepted = [a for out in outputs for a in out["accepted"]]
    conflicts = sum(out["conflicts"] for out in outputs)
    print(f"racing pollers: {len(accepted)} accepted, {conflicts} conflicts")
    assert len(accepted) + conflicts == 2 * count
    for out, tag in zip(outputs, ("p", "q"), strict=True):
        # A caller is only ever told that *its* result was recorded.
        assert all(cursor.startswith(f"{tag}-") for _, cursor, _ in out["accepted"])
    with LmdbStore(path) as store:
        kernel = Kernel(store)
        chain = sorted(kernel.evaluations("files", limit=1000), key=lambda r: r.seq)
        assert len(chain) == len(accepted)
        assert {e.evaluation.eval_id for e in chain} == {eval_id for eval_id, _, _ in accepted}
        previous = None
        for version, row in enumerate(chain):
            assert row.evaluation.expected_state_version == version
            assert row.evaluation.cursor_before == previous  # each poll saw the last cursor
            previous = row.evaluation.cursor_after
        sensor = kernel.sensor("files")
        assert sensor.state_version == len(chain)
        assert sensor.cursor == previous
        assert kernel.verify().ok


def test_a_map_grown_by_another_process_is_adopted(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    with LmdbStore(path, map_size=64 * KIB, max_map_size=64 * KIB) as store:
        kernel = Kernel(store)
        kernel.request_run("before", RunTemplate("t"), now=0)
        assert store.map_size() == 64 * KIB
        # Another process grows the map far beyond what this one has mapped...
        [grown] = run_workers("-", [["grow", path, "-", str(1024 * KIB)]])
        assert grown["map_size"] >= 1024 * KIB
        # ...and this process (whose own maximum would not allow growing) reads and appends.
        assert len(kernel.runs(limit=1000)) == grown["appended"] + 1
        kernel.request_run("after", RunTemplate("t"), now=1)
        assert store.map_size() >= 1024 * KIB
        assert kernel.run_by_key("manual:after").status == "REQUESTED"
        assert log_seqs(store) == list(range(1, grown["appended"] + 3))
        assert kernel.verify().ok


def test_a_map_grown_elsewhere_is_adopted_by_a_writer_first(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    with LmdbStore(path, map_size=64 * KIB, max_map_size=64 * KIB) as store:
        kernel = Kernel(store)
        kernel.request_run("before", RunTemplate("t"), now=0)
        [grown] = run_workers("-", [["grow", path, "-", str(512 * KIB)]])
        kernel.request_run("after", RunTemplate("t"), now=1)  # the write adopts the new size
        assert log_seqs(store)[-1] == grown["appended"] + 2
        assert kernel.verify().ok


def test_cursor_and_state_survive_another_process(tmp_path: Path) -> None:
    """A sensor polled in one process continues from the same cursor in the next."""
    path = str(tmp_path / "s")
    with LmdbStore(path) as store:
        Kernel(store).define_sensor(poll_sensor("files", minimum_interval=1), now=0)
    for tag in ("first", "second"):
        [out] = run_workers("-", [["poll", path, "-", "files", "3", tag]])
        assert out["conflicts"] == 0
    with LmdbStore(path) as store:
        sensor = Kernel(store).sensor("files")
        assert sensor.state_version == 6
        assert sensor.cursor == Cursor.of("second-2")
    assert os.path.isdir(path)


def test_a_map_grown_elsewhere_while_this_process_is_reading(tmp_path: Path) -> None:
    """A reader that finds the map resized while another thread still reads waits for it,
    adopts the new size and reads; nothing leaks, and the map can still grow here later."""
    path = str(tmp_path / "s")
    with LmdbStore(path, map_size=64 * KIB, max_map_size=64 * 1024 * KIB) as store:
        kernel = Kernel(store)
        kernel.request_run("before", RunTemplate("t"), now=0)
        long_read = store.read()
        long_read.__enter__()  # e.g. an HTTP handler paging through history
        [grown] = run_workers("-", [["grow", path, "-", str(1024 * KIB)]])
        results: list[Any] = []

        def reader() -> None:
            try:
                results.append(len(Kernel(store).runs(limit=1000)))
            except Exception as exc:
                results.append(exc)

        thread = threading.Thread(target=reader)
        thread.start()
        time.sleep(0.2)
        long_read.__exit__(None, None, None)
        thread.join(timeout=20)
        assert not thread.is_alive()
        assert results == [grown["appended"] + 1]
        assert store._env.readers == 0

        def fill() -> None:  # grows the map in this process: must not wait for a lost reader
            size = store.map_size()
            i = 0
            while store.map_size() == size:
                kernel.request_run(f"fill-{i}", RunTemplate("t", config={"x": "y" * 4000}), now=i)
                i += 1

        filler = threading.Thread(target=fill)
        filler.start()
        filler.join(timeout=60)
        assert not filler.is_alive()
        assert kernel.verify().ok
