"""Processes for the compaction crash test: ``python _compact_worker.py ROLE PATH [START]``.

``writer``: ingests push messages ``w{START}``, ``w{START+1}``... into sensor ``hook``, printing
each index only after its ingest returned (acknowledged: durable). ``compactor``: compacts the
log over and over (``Kernel.compact``) and, between compactions, tries to shrink the file
(``reclaim``: refused while the writer has the store open). ``reclaimer``: only shrinks the
file, over and over. Each opens the LMDB store in its own process, and runs until killed.
"""

from __future__ import annotations

import contextlib
import sys
import time

from arcoflow.kernel import Kernel, LmdbStore, StoreBusy
from arcoflow.kernel.store.reclaim import reclaim

T0 = 1_700_000_000


def writer(path: str, start: int) -> None:
    with LmdbStore(path) as store:
        kernel = Kernel(store)
        i = start
        while True:
            kernel.ingest("hook", f"w{i}", {"i": i}, now=T0 + i)
            print(i, flush=True)
            i += 1


def compactor(path: str) -> None:
    while True:
        with LmdbStore(path) as store:
            result = Kernel(store).compact(before=int(time.time()) + 10**6)
            if not result.verification.ok:
                raise SystemExit(f"compaction refused: {result.verification.differences}")
        with contextlib.suppress(StoreBusy):  # the writer has the store open
            reclaim(path)
        print("compacted", flush=True)


def reclaimer(path: str) -> None:
    while True:
        reclaim(path)
        print("reclaimed", flush=True)


if __name__ == "__main__":
    role, where = sys.argv[1], sys.argv[2]
    if role == "writer":
        writer(where, int(sys.argv[3]))
    elif role == "compactor":
        compactor(where)
    else:
        reclaimer(where)
