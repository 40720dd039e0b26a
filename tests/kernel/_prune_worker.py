"""A process for the prune crash test: ``python _prune_worker.py STORE ACKS MARKS MODE START``.

``ingest``: from message ``START`` on, ingest ``m-<i>`` at ``T0 + 60 i`` into the push sensor
``orders``, complete its run, then acknowledge ``i`` in ``ACKS`` (flushed and fsynced: the
parent SIGKILLs this process at random); every 10 messages, prune in small transactions.
``prune``: prune in transactions of one item until nothing is left. Prune passes are bracketed
in ``MARKS`` (``start``/``end`` lines), so the parent knows whether a kill landed inside one.
"""

from __future__ import annotations

import os
import sys

from arcoflow.kernel import Kernel, LmdbStore

T0 = 1_800_000_000
STEP = 60


def _line(path: str, text: str) -> None:
    with open(path, "a") as fh:
        fh.write(text + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _prune(kernel: Kernel, marks: str, now: int, limit: int, chunk: int) -> int:
    _line(marks, "start")
    done = kernel.prune(now, limit=limit, chunk=chunk)
    _line(marks, "end")
    return done.rows + done.keys


def main(path: str, acks: str, marks: str, mode: str, start: int) -> None:
    with LmdbStore(path) as store:
        kernel = Kernel(store)
        if mode == "prune":
            while _prune(kernel, marks, T0 + STEP * start, 10, 1):
                pass
            return
        i = start
        while True:
            at = T0 + STEP * i
            ingested = kernel.ingest("orders", f"m-{i}", {"i": i}, now=at)
            run = kernel.run_by_key(f"sensor:orders:m-{i}")
            if run.status == "REQUESTED":
                kernel.complete_run(run.run_id, True, now=at)
            _line(acks, f"{i} {int(ingested.duplicate)}")
            if i % 10 == 9:
                _prune(kernel, marks, at, 1000, 3)
            i += 1


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
