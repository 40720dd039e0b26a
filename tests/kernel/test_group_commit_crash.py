"""Group commit survives SIGKILL (issue 13, "Must show").

Writer processes of several threads each push messages through group commit and print each
acknowledgement; the test kills them with SIGKILL while a shared commit is in flight (applied,
not committed, with other appends queued behind it) and at arbitrary moments, then resends
everything, as a producer resends what was never acknowledged. After every kill: each
acknowledged message is present exactly once, nothing is half-applied (``verify`` replays the
log into exactly the stored state, and every evaluation has its run), and the appends of the
commit that was in flight left nothing at all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from arcoflow.kernel import Kernel, LmdbStore

from .helpers import push_sensor

WRITER = str(Path(__file__).with_name("_group_writer.py"))
THREADS, COUNT = 6, 30

pytestmark = pytest.mark.slow


class Writer:
    """One writer process and what it printed."""

    def __init__(self, path: str, tag: str, hold: float) -> None:
        args = [path, tag, str(THREADS), str(COUNT), str(hold)]
        self.proc = subprocess.Popen(
            [sys.executable, WRITER, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.acked: list[str] = []
        self.inflight: list[tuple[int, int]] = []  # (appends in the commit, queued behind)
        self.done = False
        self.reader = threading.Thread(target=self._read)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            word, _, rest = raw.decode().strip().partition(" ")
            if word == "ACK":
                self.acked.append(rest)
            elif word == "INFLIGHT":
                size, queued = rest.split()
                self.inflight.append((int(size), int(queued)))
            elif word == "DONE":
                self.done = True

    def wait_for(self, condition: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise AssertionError(f"writer exited with {self.proc.returncode}: {err}")
            assert time.monotonic() < deadline, "the writer made no progress"
            time.sleep(0.002)

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.finish()

    def finish(self) -> None:
        self.proc.wait(60)
        self.reader.join(60)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


def present(path: str) -> Counter[str]:
    """Evaluations per message id; also checks that nothing is half-applied."""
    with LmdbStore(path) as store:
        kernel = Kernel(store)
        verdict = kernel.verify()
        assert verdict.ok, verdict
        evaluations = kernel.evaluations("hook", limit=1000)
        runs = {run.run_key for run in kernel.runs(limit=1000)}
        for row in evaluations:
            assert row.evaluation.run_keys == (f"sensor:hook:{row.evaluation.message_id}",)
            assert set(row.evaluation.run_keys) <= runs  # each evaluation with its run
        assert len(runs) == len(evaluations)
        return Counter(row.evaluation.message_id for row in evaluations)


def test_sigkilled_writers_lose_no_acknowledged_message_and_half_apply_none(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "store")
    with LmdbStore(path) as store:
        Kernel(store).define_sensor(push_sensor("hook"), now=0)
    acked: set[str] = set()

    # 1. Killed while a shared commit is in flight and appends are queued behind it.
    for _ in range(2):
        writers = [Writer(path, tag, hold=0.5) for tag in ("a", "b")]
        for writer in writers:
            writer.wait_for(  # the last commit printed is in flight now, held
                lambda w=writer: (
                    bool(w.inflight) and min(w.inflight[-1]) > 0 and w.inflight[-1][0] > 1
                )
            )
            # The threads of the commit before the held one print their acknowledgements as
            # the held one starts: give them a moment (well inside the 0.5 s hold) to be read.
            time.sleep(0.15)
            writer.kill()
            acked.update(writer.acked)
        counts = present(path)
        assert all(counts[m] == 1 for m in acked), "an acknowledged message is missing"
        assert max(counts.values(), default=1) == 1
        # The commits in flight were killed before committing: only acknowledged messages.
        assert set(counts) == acked

    # 2. Killed at arbitrary moments (in a commit's flushes, between commits...).
    for delay in (0.05, 0.2, 0.5):
        writers = [Writer(path, tag, hold=0) for tag in ("a", "b")]
        writers[0].wait_for(lambda w=writers[0]: len(w.acked) > 0)
        time.sleep(delay)
        for writer in writers:
            writer.kill()
            acked.update(writer.acked)
        counts = present(path)
        assert all(counts[m] == 1 for m in acked)
        assert max(counts.values(), default=1) == 1

    # 3. Everything resent, to the end: each message exactly once.
    writers = [Writer(path, tag, hold=0) for tag in ("a", "b")]
    for writer in writers:
        writer.finish()
        assert writer.done and writer.proc.returncode == 0
        acked.update(writer.acked)
    counts = present(path)
    everything = {f"{tag}-{t}-{i}" for tag in "ab" for t in range(THREADS) for i in range(COUNT)}
    assert acked == everything
    assert counts == Counter(everything)
