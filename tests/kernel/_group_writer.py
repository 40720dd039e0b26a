"""A process of threads pushing messages through group commit, for the crash test:
``python _group_writer.py PATH TAG THREADS COUNT HOLD``.

Each of THREADS threads ingests the messages ``TAG-t-0`` ... ``TAG-t-(COUNT-1)`` into the push
sensor ``hook`` and prints ``ACK <message id>`` once ``ingest`` has returned (acknowledged:
durable). With HOLD > 0 every commit that holds several appends stops for HOLD seconds after
applying them and before committing, and prints ``INFLIGHT <appends> <queued>`` first (the
appends in the commit, the appends queued behind it), so that the test
can SIGKILL the process while a shared commit is in flight and other threads wait in the queue
(the leader's wait for company is off then, so that some appends stay outside the held commit).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

from arcoflow.kernel import Kernel, LmdbStore
from arcoflow.kernel.store import group as group_module
from arcoflow.kernel.store import lmdb as lmdb_store


def say(line: str) -> None:
    os.write(1, f"{line}\n".encode())  # one write: lines of threads never interleave


def hold_shared_commits(seconds: float) -> None:
    # A leader that waited for company would gather every thread's append into the commit it
    # holds; without the wait, the appends of the threads outside it queue behind it.
    group_module.MAX_DELAY = 0.0  # type: ignore[misc]
    commit = lmdb_store.LmdbStore._commit

    def held(self: LmdbStore, shared: Any, group: list[Any]) -> None:
        if len(group) > 1:
            last, apply = group[-1], group[-1].apply

            def applied_then_held(txn: Any) -> Any:
                value = apply(txn)
                say(f"INFLIGHT {len(group)} {shared.group.queued()}")
                time.sleep(seconds)
                return value

            last.apply = applied_then_held
        commit(self, shared, group)

    lmdb_store.LmdbStore._commit = held  # type: ignore[method-assign]


def main(path: str, tag: str, threads: int, count: int, hold: float) -> None:
    if hold > 0:
        hold_shared_commits(hold)
    store = LmdbStore(path)
    kernel = Kernel(store)

    def push(t: int) -> None:
        for i in range(count):
            message_id = f"{tag}-{t}-{i}"
            kernel.ingest("hook", message_id, {"t": t, "i": i}, now=1_000 + i)
            say(f"ACK {message_id}")

    workers = [threading.Thread(target=push, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    say("DONE")
    store.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
