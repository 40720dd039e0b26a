"""Testing support for broker sources: an in-memory broker double and the conformance kit.

:class:`MemoryBroker` is an at-least-once broker in memory: a message handed out stays
*in flight* until acked or rejected, :meth:`MemoryBroker.redeliver` puts every unacked message
back (what a consumer crash or an ack timeout does), rejected messages go to
``dead_letters`` with their reason. :class:`MemorySource` consumes it as a real source would.

:class:`SourceKit` checks what any source must do, against its real broker. How to build it
(one way: subclass it under a ``Test`` name and fill in its hooks) is documented in one place:
``docs/plugins.md``, "Conformance kits".

The checks: every ack comes after the commit of its message; a message delivered again after a
crash between commit and ack is a duplicate that writes nothing (one evaluation each); at most
``bound`` messages are handed over and not yet settled at any moment; a message the kernel
refuses is rejected, with its reason in the sensor's history (a ``REFUSED`` evaluation).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar

from arcoflow.kernel import Kernel, MemoryStore, RunTemplate, SensorDefinition, SourceDefinition

from ..sources import Delivery, Sink, Source, SourceState

__all__ = ["MemoryBroker", "MemorySource", "SourceKit"]


class MemoryBroker:
    """An at-least-once broker in memory (see the module doc); ``bound``: the most messages in
    flight (delivered, not yet acked or rejected) at once, like ``max_ack_pending``."""

    def __init__(self, bound: int = 100) -> None:
        self.bound = bound
        self.ready: deque[tuple[str | None, Any]] = deque()
        self.in_flight: dict[int, tuple[str | None, Any]] = {}
        self.acked: list[str | None] = []
        self.dead_letters: list[tuple[str | None, Any, str]] = []
        self.most_in_flight = 0
        self._tags = itertools.count(1)

    def publish(self, message_id: str | None, payload: Any = None) -> None:
        self.ready.append((message_id, payload))

    @property
    def pending(self) -> int:
        """Messages not yet acked or rejected (ready and in flight)."""
        return len(self.ready) + len(self.in_flight)

    def redeliver(self) -> None:
        """Put every unacked message back (a consumer crash, an ack timeout)."""
        self.ready.extendleft(reversed(list(self.in_flight.values())))
        self.in_flight.clear()

    def take(self) -> tuple[int, str | None, Any] | None:
        """Deliver the next message, if the in-flight bound allows."""
        if not self.ready or len(self.in_flight) >= self.bound:
            return None
        tag = next(self._tags)
        message = self.in_flight[tag] = self.ready.popleft()
        self.most_in_flight = max(self.most_in_flight, len(self.in_flight))
        return tag, message[0], message[1]

    def ack(self, tag: int) -> None:
        message = self.in_flight.pop(tag, None)  # a stale tag (redelivered since) is ignored
        if message is not None:
            self.acked.append(message[0])

    def reject(self, tag: int, reason: str) -> None:
        message = self.in_flight.pop(tag, None)
        if message is not None:
            self.dead_letters.append((message[0], message[1], reason))


class MemorySource:
    """A :class:`~arcoflow.sdk.sources.Source` over a :class:`MemoryBroker`."""

    def __init__(self, broker: MemoryBroker, poll: float = 0.01) -> None:
        self.broker = broker
        self.poll = poll

    async def run(self, sink: Sink) -> None:
        broker = self.broker
        try:
            while True:
                sink.connected(True, broker.pending)
                taken = broker.take()
                if taken is None:
                    await sink.flush()
                    await asyncio.sleep(self.poll)
                    continue
                tag, message_id, payload = taken
                ack, reject = _call(broker.ack, tag), _reason(broker.reject, tag)
                await sink.put(Delivery(message_id, payload, ack, reject))
        finally:
            broker.redeliver()  # like a closed connection: what was not acked goes back


def _call(fn: Callable[[int], None], tag: int) -> Callable[[], Awaitable[None]]:
    async def call() -> None:
        fn(tag)

    return call


def _reason(fn: Callable[[int, str], None], tag: int) -> Callable[[str], Awaitable[None]]:
    async def call(reason: str) -> None:
        fn(tag, reason)

    return call


# -- the conformance kit -------------------------------------------------------------------------


class _Watched(Sink):
    """A sink that checks each settlement: an ack only for a message whose ingest committed,
    and counts what was handed over and not yet settled. ``crash``: ``"before-commit"`` drops
    each batch unwritten and unsettled; ``"before-ack"`` commits it but settles nothing."""

    def __init__(self, kernel: Kernel, definition: SourceDefinition, crash: str | None) -> None:
        super().__init__(kernel, definition, SourceState(definition.id, definition.plugin, ""))
        self.crash = crash
        self.drop_acks = crash is not None
        self.unsettled = 0
        self.most_unsettled = 0
        self.early_acks: list[str | None] = []
        self.delivered: list[str | None] = []

    def committed(self, message_id: str | None) -> bool:
        return message_id is not None and any(
            e.evaluation.message_id == message_id
            for e in self.kernel.evaluations(self.definition.sensor, limit=1000)
        )

    async def put(self, delivery: Delivery) -> None:
        self.unsettled += 1
        self.most_unsettled = max(self.most_unsettled, self.unsettled)
        self.delivered.append(delivery.message_id)

        async def ack() -> None:
            self.unsettled -= 1
            if not self.committed(delivery.message_id):
                self.early_acks.append(delivery.message_id)
            if not self.drop_acks:
                await delivery.ack()

        async def reject(reason: str) -> None:
            self.unsettled -= 1
            if not self.drop_acks:
                await delivery.reject(reason)

        await super().put(
            Delivery(delivery.message_id, delivery.payload, ack, reject, delivery.problem)
        )

    async def flush(self) -> None:
        if self.crash != "before-commit":
            await super().flush()
            return
        async with self._lock:
            self._batch = []


class SourceKit:
    """Conformance checks for a source plugin against its broker (see the module doc).

    Subclass it under a ``Test`` name; implement :meth:`make_source`, :meth:`config` and
    :meth:`publish`. Not collected by pytest itself (its name has no ``Test`` prefix).
    """

    plugin: ClassVar[str] = "source"
    #: How long a check waits for the broker (redelivery after a consumer crash included).
    patience: ClassVar[float] = 30.0
    messages: ClassVar[int] = 40

    def make_source(self, definition: SourceDefinition) -> Source:
        raise NotImplementedError

    def config(self, bound: int) -> dict[str, Any]:
        """The source's config: a fresh subject/queue for this test, at most ``bound``
        messages in flight, and redelivery of unacked messages within :attr:`patience`."""
        raise NotImplementedError

    def publish(self, messages: Sequence[tuple[str, Any]]) -> None:
        """Publish ``(message_id, payload)`` pairs to what :meth:`config` consumes."""
        raise NotImplementedError

    # -- the checks ------------------------------------------------------------------------------

    def _kernel(self, max_payload_bytes: int = 1024 * 1024) -> Kernel:
        kernel = Kernel(MemoryStore())
        kernel.define_sensor(
            SensorDefinition("kit", "push", RunTemplate("t"), max_payload_bytes=max_payload_bytes)
        )
        return kernel

    def _consume(
        self,
        kernel: Kernel,
        bound: int,
        until: Callable[[_Watched], bool],
        *,
        crash: str | None = None,
        batch_size: int = 10,
    ) -> _Watched:
        definition = SourceDefinition(
            "kit", self.plugin, "kit", self.config(bound), batch_size=batch_size
        )
        source = self.make_source(definition)
        sink = _Watched(kernel, definition, crash)

        async def scenario() -> None:
            task = asyncio.create_task(source.run(sink))
            deadline = time.monotonic() + self.patience
            try:
                while not until(sink):
                    if task.done():
                        task.result()  # the source's failure, if it failed
                        raise AssertionError("the source stopped on its own")
                    if time.monotonic() > deadline:
                        raise AssertionError(
                            f"gave up after {self.patience}s: {len(sink.delivered)} delivered, "
                            f"state {sink.state}"
                        )
                    await asyncio.sleep(0.02)
            finally:
                await sink.close(task)  # as the runner stops: the batch in flight is settled
                await asyncio.gather(task, return_exceptions=True)

        asyncio.run(scenario())
        return sink

    def _ids(self, kernel: Kernel) -> list[str]:
        """The message id of each evaluation that took a message (not the REFUSED ones)."""
        return [
            e.evaluation.message_id or ""
            for e in kernel.evaluations("kit", limit=1000)
            if e.evaluation.status != "REFUSED"
        ]

    def test_acks_come_after_the_commit(self) -> None:
        kernel = self._kernel()
        n, bound = self.messages, 10
        self.publish([(f"m{i}", {"i": i}) for i in range(n)])
        # A crash before the first commit: whatever was handed over must come back.
        self._consume(kernel, bound, lambda s: len(s.delivered) >= bound, crash="before-commit")
        try:
            sink = self._consume(kernel, bound, lambda s: s.state.ingested >= n)
        except AssertionError as exc:
            raise AssertionError(
                f"acked before the ingest committed? messages lost after a crash: {exc}"
            ) from None
        assert sink.early_acks == [], f"acked before the ingest committed: {sink.early_acks}"
        assert sorted(self._ids(kernel)) == sorted(f"m{i}" for i in range(n))

    def test_a_redelivery_after_a_crash_between_commit_and_ack_is_a_duplicate(self) -> None:
        kernel = self._kernel()
        n, bound = self.messages, 10
        self.publish([(f"m{i}", {"i": i}) for i in range(n)] * 2)  # published twice, too
        # Commit what the bound lets through, ack nothing, stop: a crash before the acks.
        self._consume(kernel, bound, lambda s: len(self._ids(kernel)) >= bound, crash="before-ack")
        crashed = len(self._ids(kernel))
        again = self._consume(
            kernel,
            bound,
            lambda s: len(self._ids(kernel)) >= n and s.state.duplicates >= crashed,
        )
        assert sorted(self._ids(kernel)) == sorted(f"m{i}" for i in range(n)), (
            "one evaluation per message id"
        )
        assert again.state.ingested == n - crashed, (
            f"a redelivered message was ingested again: {again.state.ingested} new in the "
            f"second run, {crashed} committed before the crash, {n} messages"
        )
        assert again.early_acks == []

    def test_what_is_in_flight_is_bounded(self) -> None:
        kernel = self._kernel()
        n, bound = self.messages, 4
        self.publish([(f"m{i}", {"i": i}) for i in range(n)])
        sink = self._consume(kernel, bound, lambda s: s.state.ingested >= n, batch_size=100)
        assert sink.most_unsettled <= bound, (
            f"{sink.most_unsettled} messages handed over unsettled; the bound is {bound}"
        )

    def test_a_refused_message_is_rejected_once_and_in_the_sensor_history(self) -> None:
        kernel = self._kernel(max_payload_bytes=64)
        self.publish([("m0", {"i": 0}), ("big", {"x": "x" * 200}), ("m1", {"i": 1})])
        sink = self._consume(kernel, 10, lambda s: s.state.ingested + s.state.rejected >= 3)
        history = {e.evaluation.message_id: e for e in kernel.evaluations("kit")}
        assert "big" in history, (
            f"a refused message is not in the sensor's history: {sorted(map(str, history))}"
        )
        refused = history["big"]
        assert refused.evaluation.status == "REFUSED"
        assert "max_payload_bytes" in (refused.reason or ""), refused.reason
        assert (sink.state.ingested, sink.state.rejected) == (2, 1)
        assert sink.early_acks == []
