"""The broker restarted while a source runs: the source reconnects (with backoff) and nothing is
lost or doubled. The test runs its own ``nats-server`` (JetStream, file storage in a temporary
directory) on a free port, so it can stop and start it; the issue allows it only "where the
machine allows it", so without the binary it is skipped, saying so."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from arcoflow.kernel import Kernel, MemoryStore, RunTemplate, SensorDefinition, SourceDefinition
from arcoflow.plugins.nats_source import NatsSource
from arcoflow.sdk.sources import SourceRunner

from .brokers import Jet, message_ids

BINARY = shutil.which("nats-server") or (
    "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, store: Path) -> None:
        self.port = _free_port()
        self.store = store
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert BINARY is not None
        self.proc = subprocess.Popen(
            [BINARY, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert time.monotonic() < deadline, "the private nats-server did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    if BINARY is None:
        pytest.skip("no nats-server binary on this machine: cannot restart a broker here")
    running = Server(tmp_path / "jetstream")
    running.start()
    yield running
    running.stop()


def test_the_source_reconnects_after_a_broker_restart_and_loses_nothing(server: Server) -> None:
    jet = Jet(server.url)
    kernel = Kernel(MemoryStore())
    kernel.define_sensor(SensorDefinition("orders", "push", RunTemplate("ship")))
    definition = SourceDefinition("orders", "nats", "orders", jet.config(ack_wait=2))
    runner = SourceRunner(kernel, [(definition, NatsSource(definition))])
    first = [(f"a{i}", {"i": i}) for i in range(500)]
    second = [(f"b{i}", {"i": i}) for i in range(500)]
    jet.publish(first)
    runner.start()
    try:
        deadline = time.monotonic() + 30
        while runner.states()[0].ingested == 0:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        server.stop()  # mid-stream, most likely
        at_stop = runner.states()[0].ingested
        _wait(lambda: not runner.states()[0].connected)
        time.sleep(1.0)
        server.start()
        jet.publish(second)
        _wait(lambda: runner.states()[0].pending == 0 and _count(kernel) >= 1000, 60)
        state = runner.states()[0]
        assert state.restarts >= 1 and state.last_error is not None
    finally:
        runner.stop()
    ids = message_ids(kernel)
    assert sorted(ids) == sorted(m for m, _ in first + second), "each message exactly once"
    assert jet.pending() == 0
    assert kernel.verify().ok
    print(f"\nbroker restart: stopped after {at_stop} of 500 ingested; 1000 ingested once each")


def _wait(done: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _count(kernel: Kernel) -> int:
    return len(message_ids(kernel))
