"""Fail with a clear message when a service the tests use is configured but does not answer.

Reads the same variables the tests read (ARCOFLOW_TEST_POSTGRES, ARCOFLOW_TEST_NATS,
ARCOFLOW_TEST_AMQP) and opens a TCP connection to each host and port: the tests then talk to
the real servers, and a missing one is a failed CI run, never a silently skipped test.
"""

from __future__ import annotations

import os
import socket
import sys
from urllib.parse import urlsplit

SERVICES = {
    "PostgreSQL": ("ARCOFLOW_TEST_POSTGRES", 5432),
    "NATS": ("ARCOFLOW_TEST_NATS", 4222),
    "RabbitMQ": ("ARCOFLOW_TEST_AMQP", 5672),
}


def main() -> int:
    failed = []
    for name, (variable, default_port) in SERVICES.items():
        url = os.environ.get(variable)
        if not url:
            failed.append(f"{name}: {variable} is not set")
            continue
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or default_port
        try:
            socket.create_connection((host, port), timeout=5).close()
        except OSError as exc:
            failed.append(f"{name} at {host}:{port} ({variable}) does not answer: {exc}")
        else:
            print(f"{name}: {host}:{port} answers")
    for line in failed:
        print(f"ci: {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
