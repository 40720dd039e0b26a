"""Publishing to and cleaning up the real brokers, for the source tests (each test uses its own
stream or queue, named with a random suffix, and deletes it afterwards)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

import aio_pika
import msgspec
import nats
from arcoflow.kernel import Kernel
from nats.js.errors import NotFoundError


def suffix() -> str:
    return uuid.uuid4().hex[:10]


class Jet:
    """A JetStream stream of this test's own: ``ARCO_<suffix>`` on ``arco.<suffix>.>``."""

    def __init__(self, url: str) -> None:
        tag = suffix()
        self.url = url
        self.stream = f"ARCO_{tag}"
        self.subject = f"arco.{tag}.>"
        self.publish_subject = f"arco.{tag}.msg"
        asyncio.run(self._create())

    async def _create(self) -> None:
        nc = await nats.connect(self.url)
        try:
            await nc.jetstream().add_stream(name=self.stream, subjects=[self.subject])
        finally:
            await nc.close()

    def config(self, durable: str = "arcoflow", **extra: Any) -> dict[str, Any]:
        return {
            "servers": [self.url],
            "stream": self.stream,
            "subject": self.subject,
            "durable": durable,
            **extra,
        }

    def publish(self, messages: Sequence[tuple[str | None, Any]]) -> None:
        asyncio.run(self._publish(messages))

    async def _publish(self, messages: Sequence[tuple[str | None, Any]]) -> None:
        nc = await nats.connect(self.url)
        try:
            js = nc.jetstream()
            acks = [
                js.publish(
                    self.publish_subject,
                    body if isinstance(body, bytes) else msgspec.json.encode(body),
                    headers=None if message_id is None else {"Nats-Msg-Id": message_id},
                )
                for message_id, body in messages
            ]
            for chunk in range(0, len(acks), 500):
                await asyncio.gather(*acks[chunk : chunk + 500])
        finally:
            await nc.close()

    def pending(self, durable: str = "arcoflow") -> int:
        """Messages the consumer has not acked (not yet delivered, or delivered and unacked)."""

        async def ask() -> int:
            nc = await nats.connect(self.url)
            try:
                js = nc.jetstream()
                try:
                    info = await js.consumer_info(self.stream, durable)
                except NotFoundError:  # no consumer yet: everything is pending
                    return (await js.stream_info(self.stream)).state.messages
                return (info.num_pending or 0) + (info.num_ack_pending or 0)
            finally:
                await nc.close()

        return asyncio.run(ask())

    def delete(self) -> None:
        async def drop() -> None:
            nc = await nats.connect(self.url)
            try:
                await nc.jetstream().delete_stream(self.stream)
            except NotFoundError:
                pass
            finally:
                await nc.close()

        asyncio.run(drop())


class Rabbit:
    """A RabbitMQ queue of this test's own, with a dead-letter exchange and queue."""

    def __init__(self, url: str) -> None:
        tag = suffix()
        self.url = url
        self.queue = f"arco-{tag}"
        self.dlx = f"arco-{tag}.dlx"
        self.dead = f"arco-{tag}.dead"
        asyncio.run(self._create())

    async def _create(self) -> None:
        connection = await aio_pika.connect(self.url)
        try:
            channel = await connection.channel()
            dlx = await channel.declare_exchange(self.dlx, aio_pika.ExchangeType.FANOUT)
            dead = await channel.declare_queue(self.dead, durable=True)
            await dead.bind(dlx)
        finally:
            await connection.close()

    @staticmethod
    def ping(url: str) -> None:
        """Raise OSError unless a RabbitMQ at ``url`` accepts an AMQP connection."""

        async def connect() -> None:
            connection = await aio_pika.connect(url, timeout=2)
            await connection.close()

        try:
            asyncio.run(connect())
        except Exception as exc:  # aio-pika's own errors, when it is still starting
            raise OSError(f"RabbitMQ at {url}: {exc}") from exc

    def config(self, **extra: Any) -> dict[str, Any]:
        return {"url": self.url, "queue": self.queue, "dead_letter_exchange": self.dlx, **extra}

    def publish(self, messages: Sequence[tuple[str | None, Any]], persistent: bool = False) -> None:
        """Publish with publisher confirms; ``persistent``: written to disk by the broker, so
        they survive its restart."""
        mode = aio_pika.DeliveryMode.PERSISTENT if persistent else None

        async def send() -> None:
            connection = await aio_pika.connect(self.url)
            try:
                channel = await connection.channel()
                await channel.declare_queue(
                    self.queue, durable=True, arguments={"x-dead-letter-exchange": self.dlx}
                )
                for message_id, body in messages:
                    data = body if isinstance(body, bytes) else msgspec.json.encode(body)
                    await channel.default_exchange.publish(
                        aio_pika.Message(data, message_id=message_id, delivery_mode=mode),
                        routing_key=self.queue,
                    )
            finally:
                await connection.close()

        asyncio.run(send())

    def depth(self, queue: str | None = None) -> int:
        async def ask() -> int:
            connection = await aio_pika.connect(self.url)
            try:
                channel = await connection.channel()
                declared = await channel.declare_queue(queue or self.queue, passive=True)
                return declared.declaration_result.message_count or 0
            finally:
                await connection.close()

        return asyncio.run(ask())

    def delete(self) -> None:
        async def drop() -> None:
            connection = await aio_pika.connect(self.url)
            try:
                channel = await connection.channel()
                for queue in (self.queue, self.dead):
                    await channel.queue_delete(queue)
                await channel.exchange_delete(self.dlx)
            finally:
                await connection.close()

        asyncio.run(drop())


def message_ids(kernel: Kernel, sensor_id: str = "orders") -> list[str]:
    """The message id of every evaluation of ``sensor_id``, newest first, page by page."""
    out: list[str] = []
    before = None
    while True:
        page = kernel.evaluations(sensor_id, limit=1000, before=before)
        out += [e.evaluation.message_id or "" for e in page]
        if len(page) < 1000:
            return out
        before = page[-1].evaluation.eval_id
