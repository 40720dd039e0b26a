"""Push messages as :meth:`~arcoflow.kernel.Kernel.ingest_many` takes them: the items, their
bound and the idempotency key each message is recorded under."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

import msgspec

from . import decide
from .definitions import PushMessage, RunRequest
from .errors import InputError
from .outcomes import Failed, guarded, run_requests
from .rows import SensorRow
from .store.base import Pending
from .values import check_json, check_text

__all__ = ["MAX_PUSH_BATCH", "MapMessage", "PushItem", "push_events", "push_idem", "push_items"]

#: A push connector: maps a message to run requests (``None``: the default, one run).
MapMessage = Callable[[PushMessage], "Sequence[RunRequest] | Failed | None"]

#: The most messages one :meth:`Kernel.ingest_many` call records (one transaction holds them).
MAX_PUSH_BATCH: Final = 100_000


class PushItem(NamedTuple):
    """One message for :meth:`Kernel.ingest_many`: its id and its JSON payload. ``problem``:
    why the message's source already knows it is unusable (e.g. its body is not JSON); the
    message is then refused with that reason, never ingested."""

    message_id: str
    payload: Any = None
    problem: str | None = None


def push_idem(sensor_id: str, message_id: str) -> str:
    """The idempotency key of a push message (its evaluation id is this key's uuid5)."""
    return f"push/{sensor_id}/{check_text(message_id, 'message id')}"


def push_events(
    row: SensorRow, message_id: str, payload: Any, at: int, connector: MapMessage | None
) -> list[Pending]:
    """The events that record a push message not delivered before: its payload checked and
    sized, the connector (if any) asked outside every transaction, its failure the message's
    evaluation rather than the kernel's error."""
    size = len(msgspec.json.encode(check_json(payload, "payload")))
    if size > row.definition.max_payload_bytes:
        decide.ingest(row, message_id, payload, size, [])  # raises PayloadTooLarge
    requests: Sequence[RunRequest] | Failed | None = None
    if connector is not None:
        message = PushMessage(row.definition, message_id, payload, datetime.fromtimestamp(at, UTC))
        mapped = guarded(lambda: connector(message), object, "connector")
        requests = None if mapped is None else run_requests(mapped, "connector")
    return decide.ingest(row, message_id, payload, size, requests)


def push_items(messages: object) -> list[PushItem]:
    """The ``(message_id, payload[, problem])`` items of an :meth:`Kernel.ingest_many` call,
    checked for shape (each message's content is judged by the kernel, one by one)."""
    if isinstance(messages, (str, bytes, dict)) or not isinstance(messages, Iterable):
        raise InputError(
            "messages: expected (message_id, payload) pairs, got " + type(messages).__name__
        )
    items: list[PushItem] = []
    for n, message in enumerate(messages):
        if not isinstance(message, (tuple, list)) or len(message) not in (1, 2, 3):
            raise InputError(f"messages[{n}]: expected (message_id, payload), got {message!r:.80}")
        item = PushItem(*message)
        if item.problem is not None and not isinstance(item.problem, str):
            raise InputError(
                f"messages[{n}]: problem must be text or None, got {item.problem!r:.80}"
            )
        items.append(item)
        if len(items) > MAX_PUSH_BATCH:
            raise InputError(f"messages: more than {MAX_PUSH_BATCH:,} in one call")
    return items
