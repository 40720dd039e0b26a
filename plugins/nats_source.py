"""The ``nats`` source: a NATS JetStream durable pull consumer feeding a push sensor.

Install with ``pip install 'arcoflow[nats]'`` (nats-py). Declare it in the definitions file::

    [[source]]
    id = "orders"
    plugin = "nats"
    sensor = "orders"
    config = { servers = ["nats://127.0.0.1:4222"], stream = "ORDERS", subject = "orders.>",
               durable = "arcoflow" }

Config: ``servers`` (default ``["nats://127.0.0.1:4222"]``), ``stream`` (created with
``subject`` if it does not exist), ``subject``, ``durable`` (the consumer's name; its position
survives restarts), ``max_ack_pending`` (default 1000: the most messages delivered and not yet
acked, so a flood cannot exhaust memory), ``ack_wait`` (seconds before an unacked message is
redelivered, default 30) and ``message_id``: ``"header"`` (default: the ``Nats-Msg-Id``
header), ``"sequence"`` (the stream sequence number) or ``"payload.FIELD"``. A durable
consumer that already exists keeps its own settings (JetStream's rule): delete it to change them.

Acks are explicit and sent only after the batch's ingest committed. A message without an id,
whose body is not JSON, or that the kernel refuses is terminated (``term()``: JetStream never
redelivers it and publishes a ``MSG_TERMINATED`` advisory, the dead-letter path); the reason is
in the source's recent rejections (``arcoflow sources --json``) and the daemon's log.
"""

from __future__ import annotations

import importlib.util
import time
from typing import TYPE_CHECKING, Final

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
    from nats.aio.msg import Msg

__all__ = ["NatsSource", "arcoflow_source"]

_PENDING_EVERY: Final = 1.0  # seconds between consumer-info requests for the pending count


class NatsSource:
    """One JetStream durable pull consumer (see the module doc for the config)."""

    def __init__(self, definition: SourceDefinition) -> None:
        # Imported when used, so the plugin lists (and says what is missing) without the extra.
        if importlib.util.find_spec("nats") is None:
            raise InputError(
                f"source {definition.id!r}: the nats plugin needs nats-py: "
                "pip install 'arcoflow[nats]'"
            )
        self.definition = definition
        self.servers: list[str] = config_value(
            definition, "servers", list, ["nats://127.0.0.1:4222"]
        )
        if not self.servers or not all(isinstance(s, str) for s in self.servers):
            raise InputError(f"source {definition.id!r}: config.servers must be a list of URLs")
        self.stream: str = config_value(definition, "stream", str)
        self.subject: str = config_value(definition, "subject", str)
        self.durable: str = config_value(definition, "durable", str)
        self.max_ack_pending: int = config_value(definition, "max_ack_pending", int, 1000)
        self.ack_wait: float = config_value(definition, "ack_wait", float, 30.0)
        self.fetch_timeout: float = config_value(definition, "fetch_timeout", float, 1.0)
        rule: str = config_value(definition, "message_id", str, "header")
        if rule not in ("header", "sequence") and not rule.startswith("payload."):
            raise InputError(
                f"source {definition.id!r}: config.message_id must be 'header', 'sequence' or "
                f"'payload.FIELD', got {rule!r}"
            )
        if self.max_ack_pending < 1:
            raise InputError(f"source {definition.id!r}: config.max_ack_pending must be >= 1")
        self.rule = rule

    async def run(self, sink: Sink) -> None:
        # The extra is needed only when a source runs (see __init__).
        import nats  # noqa: PLC0415
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy  # noqa: PLC0415
        from nats.js.errors import NotFoundError  # noqa: PLC0415

        seen: list[str] = []

        async def remember(exc: Exception) -> None:  # nats-py would print them
            seen.append(str(exc))

        try:
            nc = await nats.connect(
                servers=self.servers,
                connect_timeout=2,
                # Give up at once: the runner reconnects, with backoff, and reports it.
                allow_reconnect=False,
                max_reconnect_attempts=1,
                reconnect_time_wait=0.2,
                error_cb=remember,
            )
        except Exception as exc:
            where = ", ".join(self.servers)
            raise ConnectionError(
                f"cannot reach NATS at {where}: {seen[-1] if seen else exc}"
            ) from exc
        try:
            js = nc.jetstream()
            try:
                await js.stream_info(self.stream)
            except NotFoundError:
                await js.add_stream(name=self.stream, subjects=[self.subject])
            sub = await js.pull_subscribe(
                self.subject,
                durable=self.durable,
                stream=self.stream,
                config=ConsumerConfig(
                    durable_name=self.durable,
                    ack_policy=AckPolicy.EXPLICIT,
                    deliver_policy=DeliverPolicy.ALL,
                    max_ack_pending=self.max_ack_pending,
                    ack_wait=self.ack_wait,
                ),
            )
            # Never ask for more than the broker lets be unacked, nor more than one batch.
            batch = min(sink.batch_size, self.max_ack_pending)
            asked = 0.0
            while True:
                if time.monotonic() - asked >= _PENDING_EVERY:
                    info = await sub.consumer_info()
                    pending = (info.num_pending or 0) + (info.num_ack_pending or 0)
                    sink.connected(True, pending)
                    asked = time.monotonic()
                try:
                    # an idle wait ends in time for the next pending-count refresh
                    wait = min(self.fetch_timeout, _PENDING_EVERY)
                    messages = await sub.fetch(batch, timeout=wait)
                except TimeoutError:  # nothing yet. nats-py raises its own TimeoutError, or
                    continue  # the builtin one when its no-wait probe used up the deadline
                for msg in messages:
                    await sink.put(self._delivery(msg))
                await sink.flush()
                if len(messages) < batch:  # the backlog drained: ask the broker's count now
                    asked = 0.0  # (acks in flight may still count; the next refresh follows)
        finally:
            sink.connected(False)
            await nc.close()

    def _delivery(self, msg: Msg) -> Delivery:
        payload, problem = decode_body(msg.data)
        message_id: str | None
        if self.rule == "header":
            message_id = (msg.headers or {}).get("Nats-Msg-Id") or None
            missing = "no Nats-Msg-Id header"
        elif self.rule == "sequence":
            message_id = str(msg.metadata.sequence.stream)
            missing = ""
        else:
            field = self.rule.removeprefix("payload.")
            message_id = None if problem else id_from_payload(payload, field)
            missing = f"no id in payload field {field!r}"

        async def reject(reason: str) -> None:
            await msg.term()

        if message_id is None and problem is None:
            problem = f"the message has no id ({missing})"
        return Delivery(message_id, payload, msg.ack, reject, problem)


@hookimpl
def arcoflow_source(source: SourceDefinition) -> NatsSource:
    """The ``nats`` source plugin: a :class:`NatsSource` for ``source``."""
    return NatsSource(source)
