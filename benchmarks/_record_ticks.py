"""A daemon's memory after recording N ticks: ``python -m benchmarks._record_ticks N``.

Run in a fresh process by the ``rss`` target of :mod:`benchmarks.report`, so what it reports
is that process's own memory: a minutely schedule on an LMDB store (``durable=False``: the
flush mode does not change memory) is evaluated through :meth:`Kernel.evaluate_schedule` as
the daemon does, each evaluation draining 1,000 due ticks (catch-up, oldest first) so that a
million ticks take minutes, not two years. Prints one JSON object: the ticks recorded and, from
``/proc/self/status``: the peak anonymous resident memory (``PeakAnon``, sampled after each
evaluation: the process's own heap, the figure the target compares), the peak resident set
(``VmHWM``, which also counts pages of LMDB's memory map, i.e. the page cache of a file that
grows with the history) and the current ``RssAnon`` / ``RssFile``, in KiB.
"""

from __future__ import annotations

import json
import sys
import tempfile

from arcoflow.kernel import Kernel, LmdbStore, RunTemplate, ScheduleDefinition

T0 = 1_735_689_600  # 2025-01-01T00:00:00Z
BATCH = 100  # ticks per evaluation: a daemon that fell a little behind


def memory() -> dict[str, int]:
    """Resident memory figures of this process, in KiB."""
    out: dict[str, int] = {}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                out[name] = int(value.split()[0])
    return out


def record(ticks: int, path: str) -> tuple[int, int]:
    """Record ``ticks`` ticks (and their run requests) of one minutely schedule; the ticks
    recorded and the peak anonymous resident memory, sampled after every evaluation."""
    with LmdbStore(path, durable=False) as store:
        kernel = Kernel(store)
        definition = ScheduleDefinition(
            "minutely",
            "* * * * *",
            RunTemplate("etl"),
            catchup_window=2 * BATCH * 60,
            max_catchup_ticks=BATCH,
            catchup_order="oldest",
        )
        kernel.define_schedule(definition, now=T0)
        recorded, now, peak = 0, T0, 0
        while recorded < ticks:
            now += BATCH * 60
            recorded += len(kernel.evaluate_schedule("minutely", now))
            peak = max(peak, memory()["RssAnon"])
        return recorded, peak


def main(argv: list[str]) -> int:
    ticks = int(argv[0])
    with tempfile.TemporaryDirectory(prefix="arcoflow-rss-") as path:
        recorded, peak = record(ticks, path)
        print(json.dumps({"ticks": recorded, "PeakAnon": peak, **memory()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
