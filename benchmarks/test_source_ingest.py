"""Broker-source throughput: messages ingested per second from NATS JetStream into a push
sensor on a durable LMDB store, batched (``batch_size = 100``: one transaction, one flush per
100 messages) against one message per transaction (``batch_size = 1``). Claim: >= 5x.

Needs NATS with JetStream at 127.0.0.1:4222 (``ARCOFLOW_TEST_NATS``); uses its own stream.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import tempfile
import time
import uuid
from typing import Any

import msgspec
import nats
import pytest
from _bench import Ratios
from arcoflow.kernel import Kernel, LmdbStore, RunTemplate, SensorDefinition, SourceDefinition
from arcoflow.plugins.nats_source import NatsSource
from arcoflow.sdk.sources import SourceRunner

URL = os.environ.get("ARCOFLOW_TEST_NATS", "nats://127.0.0.1:4222")
N = 400  # messages per round
ROUNDS = 3


async def _publish(stream: str, subject: str, n: int) -> None:
    nc = await nats.connect(URL)
    try:
        js = nc.jetstream()
        await js.add_stream(name=stream, subjects=[f"{subject}.>"])
        await asyncio.gather(
            *(
                js.publish(
                    f"{subject}.m", msgspec.json.encode({"i": i}), headers={"Nats-Msg-Id": f"m{i}"}
                )
                for i in range(n)
            )
        )
    finally:
        await nc.close()


async def _delete(stream: str) -> None:
    nc = await nats.connect(URL)
    try:
        await nc.jetstream().delete_stream(stream)
    finally:
        await nc.close()


def _rate(stream: str, subject: str, batch_size: int, durable: str) -> float:
    """Messages per second for one consumer to ingest the whole stream (N messages)."""
    with tempfile.TemporaryDirectory() as path:
        store = LmdbStore(path)  # durable: one commit = the device flushes
        try:
            kernel = Kernel(store)
            kernel.define_sensor(SensorDefinition("orders", "push", RunTemplate("ship")))
            config = {
                "servers": [URL],
                "stream": stream,
                "subject": f"{subject}.>",
                "durable": durable,
            }
            definition = SourceDefinition("orders", "nats", "orders", config, batch_size=batch_size)
            runner = SourceRunner(kernel, [(definition, NatsSource(definition))])
            start = time.perf_counter()
            runner.start()
            try:
                while runner.states()[0].ingested < N:
                    time.sleep(0.005)
                return N / (time.perf_counter() - start)
            finally:
                runner.stop()
        finally:
            store.close()


def test_batched_ingest_from_jetstream(benchmark: Any, ratios: Ratios) -> None:
    tag = uuid.uuid4().hex[:8]
    stream, subject = f"BENCH_{tag}", f"bench.{tag}"
    try:
        asyncio.run(_publish(stream, subject, N))
    except OSError as exc:
        pytest.fail(f"NATS JetStream is not reachable at {URL}: {exc}")
    names = itertools.count()
    single: list[float] = []
    batched: list[float] = []

    def one_round() -> None:
        # The baseline runs in the same round (a fresh durable consumer each time), so a noisy
        # neighbour slows both alike.
        single.append(_rate(stream, subject, 1, f"single{next(names)}"))
        batched.append(_rate(stream, subject, 100, f"batched{next(names)}"))

    try:
        benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1)
    finally:
        asyncio.run(_delete(stream))
    best_batched, best_single = max(batched), max(single)
    ratios.record(
        "jetstream ingest: batched/one per txn",
        best_batched / best_single,
        f"{best_batched:,.0f} msg/s (batch 100) vs {best_single:,.0f} msg/s (batch 1), "
        "LMDB durable",
    )
    assert best_batched / best_single >= 5
