"""The HTTP API's default limits, in one place: the application (:mod:`.app`), the server
(:mod:`.serve`) and the ``arcoflow serve`` options all take them from here. No third-party
import, so the plugin loads (and its command parses) without ``arcoflow[http]``."""

from __future__ import annotations

from typing import Final

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_REQUEST_SECONDS",
    "DRAIN_SECONDS",
    "IDLE_SECONDS",
]

#: The largest request body (413 above it).
DEFAULT_MAX_BODY_BYTES: Final = 1024 * 1024
#: Requests handled at once; more are answered 503 at once (overload is refused, not queued).
DEFAULT_MAX_IN_FLIGHT: Final = 64
#: Open connections under ``arcoflow serve``; one more is answered 503 and closed.
DEFAULT_MAX_CONNECTIONS: Final = 64
#: The longest a client may take to send one whole request body (and, under ``arcoflow
#: serve``, its request line and headers).
DEFAULT_REQUEST_SECONDS: Final = 10
#: How long the requests in flight may take to finish after SIGTERM.
DRAIN_SECONDS: Final = 10
#: How long a keep-alive connection may stay idle between requests.
IDLE_SECONDS: Final = 30
