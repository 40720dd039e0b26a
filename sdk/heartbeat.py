"""The daemon's heartbeat, rewritten after every cycle.

``GET /healthz`` (and the store's metrics) read it to report when a daemon on this store last
completed a cycle, from any process: the HTTP API usually runs apart from the daemon. It is
kept outside the store's log, so that a cycle with nothing to do still writes nothing there:

* an LMDB store: a small file in the store's directory (one atomic rename per cycle). With
  several daemons on one store the last one to finish a cycle wins, which is what a health
  check asks: is *someone* cycling?
* a PostgreSQL store: a row per daemon in the store's schema (``<schema>.daemons``, one upsert
  per cycle), because the daemons of a cluster run on several hosts and share no directory:
  ``/healthz`` on any host then sees every daemon (:func:`store_heartbeats`), and reports the
  newest.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any, Final, NamedTuple

from arcoflow.kernel.store import daemon_status

__all__ = [
    "HEARTBEAT_FILE",
    "Heartbeat",
    "beat",
    "read_heartbeat",
    "store_heartbeat",
    "store_heartbeats",
    "write_heartbeat",
]

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
            return _decode(f.read())
    except OSError:
        return None


#: The kind of a heartbeat among a PostgreSQL store's daemon status rows.
_KIND: Final = "heartbeat"


def beat(store: Any, daemon: str, cycles: int, interval: float, finished_at: float) -> None:
    """Record a completed cycle of ``daemon`` for the store: in the store itself (PostgreSQL:
    :func:`~arcoflow.kernel.store.work.daemon_status`) or in its directory (LMDB: a ``path``);
    a store with neither (in memory) keeps none. Raises :class:`OSError` or the store's
    error: the caller decides."""
    board = daemon_status(store)
    if board is not None:
        record = Heartbeat(finished_at, socket.gethostname(), os.getpid(), cycles, interval)
        board.put_status(daemon, _KIND, json.dumps(record._asdict()).encode())
        return
    path = getattr(store, "path", None)
    if isinstance(path, str):
        write_heartbeat(path, cycles, interval, finished_at)


def store_heartbeats(store: Any) -> list[Heartbeat]:
    """Every daemon's last heartbeat on ``store``, newest first (a directory keeps one)."""
    board = daemon_status(store)
    if board is not None:
        beats = [_decode(data.decode("utf-8", "replace")) for _, data in board.statuses(_KIND)]
        return sorted((b for b in beats if b is not None), key=lambda b: -b.finished_at)
    path = getattr(store, "path", None)
    one = read_heartbeat(path) if isinstance(path, str) else None
    return [] if one is None else [one]


def store_heartbeat(store: Any) -> Heartbeat | None:
    """The newest heartbeat of any daemon on ``store`` (``None``: none has completed a
    cycle, or the store keeps none)."""
    beats = store_heartbeats(store)
    return beats[0] if beats else None


def _decode(text: str) -> Heartbeat | None:
    try:
        data = json.loads(text)
        return Heartbeat(
            float(data["finished_at"]),
            str(data["host"]),
            int(data["pid"]),
            int(data["cycles"]),
            float(data["interval"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
