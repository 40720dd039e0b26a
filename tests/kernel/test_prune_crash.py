"""Processes SIGKILLed while they prune (issue 16): afterwards the store opens, every
acknowledged message still within retention is present exactly once, a redelivery of it is a
duplicate, and ``verify`` passes (the prune events replay to the same state)."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from arcoflow.kernel import Kernel, LmdbStore, RetentionPolicy, RunTemplate, SensorDefinition
from arcoflow.kernel.rows import Table, run_id_of_slot
from arcoflow.kernel.runs import run_id

from ._prune_worker import STEP, T0

WORKER = str(Path(__file__).with_name("_prune_worker.py"))
HISTORY = 30 * STEP  # 30 messages' worth
ROUNDS = 6


def _spawn(path: Path, acks: Path, marks: Path, mode: str, start: int) -> subprocess.Popen[bytes]:
    args = [sys.executable, WORKER, str(path), str(acks), str(marks), mode, str(start)]
    return subprocess.Popen(args, stderr=subprocess.PIPE)


def _kill_after(proc: subprocess.Popen[bytes], seconds: float) -> bool:
    """SIGKILL ``proc`` after ``seconds`` unless it ended first; whether it was killed."""
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True
    assert proc.returncode == 0, proc.stderr.read().decode() if proc.stderr else ""
    return False


def _kill_inside_a_pass(proc: subprocess.Popen[bytes], marks: Path) -> bool:
    """SIGKILL ``proc`` as soon as it has started a prune pass, unless it ends first; whether
    it was killed (a pass can end between the look and the kill: ``_inside_prune`` tells)."""
    seen = len(marks.read_text().split()) if marks.exists() else 0
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        lines = marks.read_text().split() if marks.exists() else []
        if len(lines) > seen and lines[-1] == "start":
            break
        time.sleep(0.001)
    return _kill_after(proc, 0)


def _inside_prune(marks: Path) -> bool:
    lines = marks.read_text().split() if marks.exists() else []
    return bool(lines) and lines[-1] == "start"


def _acked(acks: Path) -> list[int]:
    return [int(line.split()[0]) for line in acks.read_text().splitlines()] if acks.exists() else []


def test_processes_killed_while_pruning_lose_nothing_within_retention(tmp_path: Path) -> None:
    path, acks, marks = tmp_path / "store", tmp_path / "acks", tmp_path / "marks"
    with LmdbStore(str(path)) as store:
        kernel = Kernel(store)
        kernel.set_retention(RetentionPolicy(history=HISTORY, dedupe_horizon=2 * HISTORY), now=T0)
        kernel.define_sensor(SensorDefinition("orders", "push", RunTemplate("ship")), now=T0)
    rng = random.Random(16)
    mid_prune = 0
    # 1. Ingest with small prunes, killed at random moments.
    for _ in range(ROUNDS):
        done = _acked(acks)
        proc = _spawn(path, acks, marks, "ingest", (done[-1] + 1) if done else 0)
        if _kill_after(proc, rng.uniform(0.5, 1.5)):
            mid_prune += _inside_prune(marks)
    acked = _acked(acks)
    assert len(acked) > 30, "too few messages acknowledged to reach the retention horizon"
    _check_within_retention(path, acked)
    # A kill between an ingest and its completion leaves that run REQUESTED, and an unfinished
    # run is never pruned: finish it, as its launcher would, before the backlog is pruned.
    with LmdbStore(str(path)) as store:
        kernel = Kernel(store)
        for run in kernel.runs(status="REQUESTED", limit=1000):
            kernel.complete_run(run.run_id, True, now=T0 + STEP * acked[-1])
    # 2. A backlog pruned one item per transaction: first killed as soon as a pass has started
    # (until a kill lands inside one), then a pruner let finish.
    end = acked[-1] + 200  # far enough on that everything acknowledged is out of retention
    for _ in range(30):
        proc = _spawn(path, acks, marks, "prune", end)
        if mid_prune == 0:
            killed = _kill_inside_a_pass(proc, marks)
            mid_prune += killed and _inside_prune(marks)
        else:
            killed = _kill_after(proc, 120)
        if not killed:
            break
    else:
        raise AssertionError("the pruner never finished")
    assert mid_prune >= 1, "no SIGKILL landed inside a prune pass"
    with LmdbStore(str(path)) as store:
        kernel = Kernel(store)
        verification = kernel.verify()
        assert verification.ok, verification.differences
        assert kernel.evaluations("orders", limit=1000) == []
        assert kernel.runs(limit=1000) == []
        with store.read() as txn:  # every pruned run's key stays taken
            taken = {run_id_of_slot(k) for k, _ in txn.scan(Table.RUN_KEYS)}
        assert {run_id(f"sensor:orders:m-{i}") for i in acked} <= taken


def _check_within_retention(path: Path, acked: list[int]) -> None:
    """At the last acknowledged instant: each acknowledged message within retention has
    exactly one evaluation and one run, and a redelivery of it is a duplicate; none has two."""
    now = T0 + STEP * acked[-1]
    with LmdbStore(str(path)) as store:
        kernel = Kernel(store)
        verification = kernel.verify()
        assert verification.ok, verification.differences
        evals = kernel.evaluations("orders", limit=1000)
        seen = Counter(e.evaluation.message_id for e in evals)
        assert max(seen.values()) == 1
        runs = Counter(r.run_key for r in kernel.runs(limit=1000))
        assert max(runs.values()) == 1
        kept = [i for i in acked if T0 + STEP * i >= now - HISTORY]
        assert len(kept) >= 25
        for i in kept:
            assert seen[f"m-{i}"] == 1, f"m-{i} within retention has {seen[f'm-{i}']} evaluations"
            assert runs[f"sensor:orders:m-{i}"] == 1
            assert kernel.ingest("orders", f"m-{i}", {"i": i}, now=now).duplicate
