"""The ``amqp`` source: a RabbitMQ (AMQP 0-9-1) queue consumer feeding a push sensor.

Install with ``pip install 'arcoflow[amqp]'`` (aio-pika: asyncio, like nats-py, so every source
of a daemon shares one event loop). Declare it in the definitions file::

    [[source]]
    id = "orders"
    plugin = "amqp"
    sensor = "orders"
    config = { url = "amqp://guest:guest@127.0.0.1:5672/", queue = "orders",
               dead_letter_exchange = "orders.dlx" }

Config: ``url`` (default ``amqp://guest:guest@127.0.0.1:5672/``), ``queue`` (declared durable
if missing, unless ``declare = false``), ``dead_letter_exchange`` (set as the queue's
``x-dead-letter-exchange`` when it is declared), ``prefetch`` (``basic.qos``, default 1000: the
most unacked messages the broker hands over, so a flood cannot exhaust memory) and
``message_id``: ``"property"`` (default: the AMQP ``message_id``) or ``"payload.FIELD"``.

Acks are manual and sent only after the batch's ingest committed. A message without an id,
whose body is not JSON, or that the kernel refuses is rejected without requeue
(``basic.reject``), which RabbitMQ routes to the queue's dead-letter exchange if it has one
(with an ``x-death`` header) and drops otherwise; the reason is in the source's recent
rejections (``arcoflow sources --json``) and the daemon's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
from typing import TYPE_CHECKING, Any, Final

from arcoflow.sdk import (
    Delivery,
    InputError,
    Sink,
    SourceDefinition,
    config_value,
    decode_body,
    hookimpl,
    id_from_payload,
)

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

__all__ = ["AmqpSource", "arcoflow_source"]

_PENDING_EVERY: Final = 1.0  # seconds between passive declares for the queue's depth


class AmqpSource:
    """One queue consumer with manual acks and a prefetch bound (see the module doc)."""

    def __init__(self, definition: SourceDefinition) -> None:
        if importlib.util.find_spec("aio_pika") is None:
            raise InputError(
                f"source {definition.id!r}: the amqp plugin needs aio-pika: "
                "pip install 'arcoflow[amqp]'"
            )
        self.definition = definition
        self.url: str = config_value(definition, "url", str, "amqp://guest:guest@127.0.0.1:5672/")
        self.queue: str = config_value(definition, "queue", str)
        self.declare: bool = config_value(definition, "declare", bool, True)
        self.dead_letter_exchange: str | None = config_value(
            definition, "dead_letter_exchange", str, None
        )
        self.prefetch: int = config_value(definition, "prefetch", int, 1000)
        if not 1 <= self.prefetch <= 65535:
            raise InputError(f"source {definition.id!r}: config.prefetch must be 1-65535")
        rule: str = config_value(definition, "message_id", str, "property")
        if rule != "property" and not rule.startswith("payload."):
            raise InputError(
                f"source {definition.id!r}: config.message_id must be 'property' or "
                f"'payload.FIELD', got {rule!r}"
            )
        self.rule = rule

    async def run(self, sink: Sink) -> None:
        import aio_pika  # noqa: PLC0415 (the extra is needed only when a source runs)

        connection = await aio_pika.connect(self.url, timeout=5)
        try:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=self.prefetch)
            arguments: dict[str, Any] = {}
            if self.dead_letter_exchange is not None:
                arguments["x-dead-letter-exchange"] = self.dead_letter_exchange
            queue = await channel.declare_queue(
                self.queue, durable=True, passive=not self.declare, arguments=arguments or None
            )
            watch = asyncio.create_task(self._watch_depth(channel, sink))
            try:
                async with queue.iterator() as messages:
                    async for message in messages:
                        await sink.put(self._delivery(message))
            finally:
                watch.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watch
        finally:
            sink.connected(False)
            await connection.close()

    async def _watch_depth(self, channel: AbstractChannel, sink: Sink) -> None:
        """Report the queue's ready-message count (what the broker still holds)."""
        while True:
            declared = await channel.declare_queue(self.queue, passive=True)
            result = declared.declaration_result
            sink.connected(True, result.message_count)
            await asyncio.sleep(_PENDING_EVERY)

    def _delivery(self, message: AbstractIncomingMessage) -> Delivery:
        payload, problem = decode_body(message.body)
        if self.rule == "property":
            message_id = message.message_id or None
            missing = "no message_id property"
        else:
            field = self.rule.removeprefix("payload.")
            message_id = None if problem else id_from_payload(payload, field)
            missing = f"no id in payload field {field!r}"

        async def ack() -> None:
            await message.ack()

        async def reject(reason: str) -> None:
            await message.reject(requeue=False)  # to the dead-letter exchange, if any

        if message_id is None and problem is None:
            problem = f"the message has no id ({missing})"
        return Delivery(message_id, payload, ack, reject, problem)


@hookimpl
def arcoflow_source(source: SourceDefinition) -> AmqpSource:
    """The ``amqp`` source plugin: an :class:`AmqpSource` for ``source``."""
    return AmqpSource(source)
