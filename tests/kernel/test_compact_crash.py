"""Processes SIGKILLed during log compaction and during the file swap (issue 16's crash test):
afterwards the store opens, every acknowledged message is present exactly once, nothing else
is doubled, and ``verify`` passes. The kills land at random instants (seeded) while a writer
appends, while compactions run, and while the data file is being replaced."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from arcoflow.kernel import Kernel, LmdbStore, RunTemplate, SensorDefinition
from arcoflow.kernel.rows import ROW_TYPES, Table
from arcoflow.kernel.snapshot import snapshot_seq

WORKER = str(Path(__file__).with_name("_compact_worker.py"))


class _Process:
    """A worker whose printed lines are collected as they come."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, WORKER, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def kill(self) -> str:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.reader.join(timeout=30)
        assert self.proc.stderr is not None
        return self.proc.stderr.read()


def _messages(path: str) -> Counter[str]:
    """How many evaluations each message id has."""
    with LmdbStore(path) as store, store.read() as txn:
        rows = [
            store.codec.decode_row(v, ROW_TYPES[Table.EVALS], "evals")
            for _, v in txn.scan(Table.EVALS)
        ]
    return Counter(r.evaluation.message_id for r in rows)


def _check(path: str, acknowledged: set[int]) -> Counter[str]:
    with LmdbStore(path) as store:
        result = Kernel(store).verify()
        assert result.ok, result.differences
    seen = _messages(path)
    assert all(n == 1 for n in seen.values()), [m for m, n in seen.items() if n > 1]
    missing = [i for i in acknowledged if seen[f"w{i}"] != 1]
    assert not missing, f"acknowledged but not present: {missing[:10]}"
    return seen


def test_kills_during_compaction_and_file_swaps_lose_and_double_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "store")
    with LmdbStore(path) as store:
        Kernel(store).define_sensor(SensorDefinition("hook", "push", RunTemplate("t")), now=0)
    rng = random.Random(16)
    acknowledged: set[int] = set()
    next_message, compactions, swaps = 0, 0, 0
    for _ in range(5):  # a writer and a compactor together, both killed
        writer = _Process("writer", path, str(next_message))
        compactor = _Process("compactor", path)
        time.sleep(rng.uniform(0.5, 2.0))
        errors = compactor.kill() if rng.random() < 0.5 else writer.kill()
        errors += writer.kill() + compactor.kill()
        assert "Traceback" not in errors, errors
        acknowledged |= {int(line) for line in writer.lines}
        compactions += len(compactor.lines)
        seen = _check(path, acknowledged)
        next_message = max((int(m[1:]) for m in seen), default=-1) + 1
    for _ in range(5):  # the file swap alone, killed at any point
        reclaimer = _Process("reclaimer", path)
        time.sleep(rng.uniform(0.05, 0.6))
        assert "Traceback" not in reclaimer.kill()
        swaps += len(reclaimer.lines)
        _check(path, acknowledged)
    with LmdbStore(path) as store, store.read() as txn:
        compacted = snapshot_seq(txn)
    print(f"{len(acknowledged)} acknowledged, {compactions} compactions, {swaps} swaps")
    assert acknowledged and compactions and swaps and compacted  # the kills hit real work
