"""The real brokers the source tests use (NATS JetStream, RabbitMQ). They run on every machine
of this project and in CI: one that cannot be reached FAILS the test, naming the service."""

from __future__ import annotations

import os
import socket

import pytest

NATS_URL = os.environ.get("ARCOFLOW_TEST_NATS", "nats://127.0.0.1:4222")
AMQP_URL = os.environ.get("ARCOFLOW_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")


def require(service: str, url: str) -> None:
    """Fail (never skip) when ``service`` at ``url`` does not accept a connection."""
    hostport = url.split("://", 1)[1].rsplit("@", 1)[-1].split("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as exc:
        pytest.fail(f"{service} is not reachable at {host}:{port} ({exc}); start it", False)


@pytest.fixture
def nats_url() -> str:
    require("NATS JetStream", NATS_URL)
    return NATS_URL


@pytest.fixture
def amqp_url() -> str:
    require("RabbitMQ", AMQP_URL)
    return AMQP_URL
