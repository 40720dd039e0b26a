"""The source conformance kit (``arcoflow.sdk.testing.SourceKit``) on the in-memory double and
on both built-in sources against the real brokers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from arcoflow.kernel import SourceDefinition
from arcoflow.plugins.amqp_source import AmqpSource
from arcoflow.plugins.nats_source import NatsSource
from arcoflow.sdk.sources import Source
from arcoflow.sdk.testing import MemoryBroker, MemorySource, SourceKit

from .brokers import Jet, Rabbit


class TestMemorySource(SourceKit):
    plugin = "memory"
    patience = 10.0

    @pytest.fixture(autouse=True)
    def _broker(self) -> None:
        self.broker = MemoryBroker()

    def make_source(self, definition: SourceDefinition) -> Source:
        return MemorySource(self.broker)

    def config(self, bound: int) -> dict[str, Any]:
        self.broker.bound = bound
        return {}

    def publish(self, messages: Sequence[tuple[str, Any]]) -> None:
        for message_id, payload in messages:
            self.broker.publish(message_id, payload)


class TestNatsSource(SourceKit):
    plugin = "nats"

    @pytest.fixture(autouse=True)
    def _stream(self, nats_url: str) -> Iterator[None]:
        self.jet = Jet(nats_url)
        yield
        self.jet.delete()

    def make_source(self, definition: SourceDefinition) -> Source:
        return NatsSource(definition)

    def config(self, bound: int) -> dict[str, Any]:
        return self.jet.config(max_ack_pending=bound, ack_wait=1)

    def publish(self, messages: Sequence[tuple[str, Any]]) -> None:
        self.jet.publish(messages)


class TestAmqpSource(SourceKit):
    plugin = "amqp"

    @pytest.fixture(autouse=True)
    def _queue(self, amqp_url: str) -> Iterator[None]:
        self.rabbit = Rabbit(amqp_url)
        yield
        self.rabbit.delete()

    def make_source(self, definition: SourceDefinition) -> Source:
        return AmqpSource(definition)

    def config(self, bound: int) -> dict[str, Any]:
        return self.rabbit.config(prefetch=bound)

    def publish(self, messages: Sequence[tuple[str, Any]]) -> None:
        self.rabbit.publish(messages)


def test_the_kit_catches_a_source_that_acks_before_the_commit() -> None:
    class Eager(MemorySource):
        async def run(self, sink: Any) -> None:
            original = sink.put

            async def put(delivery: Any) -> None:
                await delivery.ack()  # acks at once: a crash now would lose the message
                await original(delivery)

            sink.put = put
            await super().run(sink)

    class Kit(TestMemorySource):
        patience = 2.0

        def make_source(self, definition: SourceDefinition) -> Source:
            return Eager(self.broker)

    kit = Kit()
    kit.broker = MemoryBroker()
    with pytest.raises(AssertionError, match="acked before the ingest committed"):
        kit.test_acks_come_after_the_commit()


def test_the_kit_catches_a_source_that_ignores_its_bound() -> None:
    class Greedy(MemorySource):
        async def run(self, sink: Any) -> None:
            self.broker.bound = 10_000  # takes everything, whatever it was told
            await super().run(sink)

    class Kit(TestMemorySource):
        patience = 2.0

        def make_source(self, definition: SourceDefinition) -> Source:
            return Greedy(self.broker)

    kit = Kit()
    kit.broker = MemoryBroker()
    with pytest.raises(AssertionError, match="the bound is 4"):
        kit.test_what_is_in_flight_is_bounded()
