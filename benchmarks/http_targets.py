"""The HTTP targets of issue 13 (``http-1``, ``http-16``), as ``measure`` functions for
:data:`benchmarks.report.TARGETS`.

The server is ``arcoflow serve`` in a process of its own (as it runs in production: the
clients here do not share its interpreter lock) over a durable LMDB store; the baseline is
``Kernel.ingest`` in this process over another durable LMDB store with the same settings and
the same push sensor. Clients keep their connection alive (``http.client``), and each request
is acknowledged only once its append is durable.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import re
import socket
import subprocess
import sys
import threading
import time

from arcoflow.kernel import Kernel, LmdbStore, RunTemplate, SensorDefinition

from benchmarks.append_targets import T0, _directory, _Pusher
from benchmarks.pairs import Pair, Sampler, timed

__all__ = ["http_one", "http_sixteen"]

_SERVE = "from arcoflow.sdk.cli import main; raise SystemExit(main())"


def _server(stack: contextlib.ExitStack) -> int:
    """``arcoflow serve`` over a fresh durable store with the push sensor ``hook``: its port."""
    path = _directory(stack)
    with LmdbStore(path) as store:
        definition = SensorDefinition("hook", "push", RunTemplate("etl.ingest"))
        Kernel(store).define_sensor(definition, now=T0)
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVE, "--store", path, "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )

    def stop() -> None:
        proc.terminate()
        proc.wait(30)

    stack.callback(stop)
    assert proc.stdout is not None
    found = re.search(r"http://127\.0\.0\.1:(\d+)", proc.stdout.readline())
    if found is None:
        raise AssertionError("arcoflow serve printed no URL")
    return int(found.group(1))


class _Client:
    """One keep-alive connection pushing distinct messages to ``hook``."""

    ids = itertools.count()
    lock = threading.Lock()

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.conn.connect()
        # As curl, urllib3 (requests) and httpx do: http.client sends the headers and the
        # body in two writes, and Nagle would hold the second until the server's delayed ACK.
        assert self.conn.sock is not None
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def push(self, count: int) -> None:
        for _ in range(count):
            with self.lock:
                i = next(self.ids)
            body = json.dumps({"file": f"f{i}.csv", "size": i}).encode()
            headers = {"Content-Type": "application/json", "Idempotency-Key": f"http-{i}"}
            self.conn.request("POST", "/sensors/hook/messages", body, headers)
            answer = self.conn.getresponse()
            answer.read()
            if answer.status != 201:
                raise AssertionError(f"push answered {answer.status}")


def _baseline(stack: contextlib.ExitStack, count: int) -> Sampler:
    pusher = _Pusher(stack)
    pusher.ingest(count)  # warm, as the server's store is by its first round
    return lambda: timed(lambda: pusher.ingest(count))


def http_one(quick: bool, stack: contextlib.ExitStack) -> Pair:
    count = 40 if quick else 100
    client = _Client(_server(stack))
    client.push(count)  # warm: the connection, the server's first requests
    return Pair(
        lambda: timed(lambda: client.push(count)),
        _baseline(stack, count),
        f"{count} messages a round over one connection, server in its own process",
    )


def http_sixteen(quick: bool, stack: contextlib.ExitStack) -> Pair:
    count, width = (160 if quick else 320), 16
    port = _server(stack)
    clients = [_Client(port) for _ in range(width)]
    for client in clients:
        client.push(2)

    def concurrent() -> float:
        workers = [
            threading.Thread(target=client.push, args=(count // width,)) for client in clients
        ]
        start = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return time.perf_counter() - start

    detail = f"{count} messages a round over 16 connections; baseline one at a time"
    return Pair(concurrent, _baseline(stack, count), detail)
