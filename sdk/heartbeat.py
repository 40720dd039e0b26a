"""The daemon's heartbeat: a small file next to the store, rewritten after every cycle.

``GET /healthz`` (and the store's metrics) read it to report when a daemon on this store last
completed a cycle, from any process: the HTTP API usually runs apart from the daemon. It is a
file rather than a row so that a cycle with nothing to do still writes nothing to the store's
log; one small atomic rename per cycle is the whole cost. With several daemons on one store
the last one to finish a cycle wins, which is what a health check asks: is *someone* cycling?
"""

from __future__ import annotations

import json
import os
import socket
from typing import Final, NamedTuple

__all__ = ["HEARTBEAT_FILE", "Heartbeat", "read_heartbeat", "write_heartbeat"]

#: The file's name inside the store directory.
HEARTBEAT_FILE: Final = "daemon-heartbeat.json"


class Heartbeat(NamedTuple):
    """The last completed cycle: when it ended (Unix seconds), by which daemon, how many
    cycles that daemon has run, and its interval (seconds between cycles)."""

    finished_at: float
    host: str
    pid: int
    cycles: int
    interval: float


def write_heartbeat(store_dir: str, cycles: int, interval: float, finished_at: float) -> None:
    """Record a completed cycle (write then rename: a reader never sees half a file)."""
    beat = Heartbeat(finished_at, socket.gethostname(), os.getpid(), cycles, interval)
    path = os.path.join(store_dir, HEARTBEAT_FILE)
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="utf-8") as f:
        json.dump(beat._asdict(), f)
    os.replace(temporary, path)


def read_heartbeat(store_dir: str) -> Heartbeat | None:
    """The last heartbeat in ``store_dir``; ``None`` if no daemon wrote one (or it is
    unreadable: a health check reports, it does not fail on a damaged side file)."""
    try:
        with open(os.path.join(store_dir, HEARTBEAT_FILE), encoding="utf-8") as f:
            data = json.load(f)
        return Heartbeat(
            float(data["finished_at"]),
            str(data["host"]),
            int(data["pid"]),
            int(data["cycles"]),
            float(data["interval"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
