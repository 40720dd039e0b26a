"""The real brokers the source tests use (NATS JetStream, RabbitMQ). They run on every machine
of this project and in CI, which sets ``ARCOFLOW_TEST_NATS`` / ``ARCOFLOW_TEST_AMQP``: a
configured broker that cannot be reached FAILS the test, naming the service. Unconfigured and
absent (a bare machine running the README's test command), the test is skipped with that
reason in the summary."""

from __future__ import annotations

import os
import socket

import pytest

NATS_URL = os.environ.get("ARCOFLOW_TEST_NATS", "nats://127.0.0.1:4222")
AMQP_URL = os.environ.get("ARCOFLOW_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
_CONFIGURED = {
    "NATS JetStream": "ARCOFLOW_TEST_NATS" in os.environ,
    "RabbitMQ": "ARCOFLOW_TEST_AMQP" in os.environ,
}


def require(service: str, url: str) -> None:
    """Fail when the configured ``service`` at ``url`` does not accept a connection; skip,
    saying why, when it was not configured and is not there."""
    hostport = url.split("://", 1)[1].rsplit("@", 1)[-1].split("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as exc:
        if not _CONFIGURED[service]:
            pytest.skip(f"{service}: nothing at the default {host}:{port} and it is not configured")
        pytest.fail(f"{service} is not reachable at {host}:{port} ({exc}); start it", False)


@pytest.fixture
def nats_url() -> str:
    require("NATS JetStream", NATS_URL)
    return NATS_URL


@pytest.fixture
def amqp_url() -> str:
    require("RabbitMQ", AMQP_URL)
    return AMQP_URL
