"""Bytes in and out of the store: versioned envelopes, upcasting, typed decode errors.

A stored envelope is a msgpack array
``[schema_version, seq, key, at, batch, event]``. The event stays
raw until its version is known: the current version decodes straight into the typed union
(the fast path); an older one is decoded generically, lifted by the registered upcasters one
version at a time (``v1 -> v2 -> v3``) and then converted; a newer one is
:class:`~arcoflow.kernel.errors.FutureSchemaVersion`. Bytes that do not decode are
:class:`~arcoflow.kernel.errors.CorruptRecord`. Nothing is ever skipped silently.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeVar

import attrs
import msgspec

from .errors import CorruptRecord, FutureSchemaVersion
from .events import Event
from .values import lenient

__all__ = ["SCHEMA_VERSION", "Codec", "Envelope", "Upcaster"]

#: The schema version this arcoflow writes.
SCHEMA_VERSION: Final = 1

#: Lifts one event (as plain msgpack data, with its "type" tag) from version N to N+1.
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

_R = TypeVar("_R")


class Envelope(msgspec.Struct, frozen=True, array_like=True):
    """One log record: the store assigns ``seq``; ``key`` is the idempotency key; ``batch`` is
    the ``seq`` of the first record of the append that wrote it (one append, one batch)."""

    schema_version: int
    seq: int
    key: str
    at: int
    batch: int
    event: Event


class _Stored(msgspec.Struct, frozen=True, array_like=True):
    schema_version: int
    seq: int
    key: str
    at: int
    batch: int
    event: msgspec.Raw


class Codec:
    """Encodes envelopes and rows; decodes them with upcasting and typed errors.

    ``upcasters[n]`` lifts an event from version ``n`` to ``n + 1``. The default codec has none:
    version 1 is the first. Tests and future versions pass their own.
    """

    def __init__(
        self, version: int = SCHEMA_VERSION, upcasters: dict[int, Upcaster] | None = None
    ) -> None:
        self.version = version
        self.upcasters = dict(upcasters or {})
        missing = [v for v in range(1, version) if v not in self.upcasters]
        if upcasters is not None and missing:
            raise ValueError(f"no upcaster from schema version(s) {missing}")
        self._encoder = msgspec.msgpack.Encoder()
        self._head = msgspec.msgpack.Decoder(_Stored)
        self._whole = msgspec.msgpack.Decoder(Envelope)
        self._event = msgspec.msgpack.Decoder(Event)
        self._any = msgspec.msgpack.Decoder()
        self._rows: dict[type[Any], tuple[msgspec.msgpack.Decoder[Any], list[Any]]] = {}
        self._values: dict[type[Any], msgspec.msgpack.Decoder[Any]] = {}
        self._definitions: dict[tuple[type, bytes], Any] = {}  # recent embedded values

    def encode(self, envelope: Envelope) -> bytes:
        return self._encoder.encode(envelope)

    def encode_row(self, row: msgspec.Struct) -> bytes:
        return self._encoder.encode(row)

    def decode(self, data: bytes, where: str) -> Envelope:
        """Decode one log record; ``where`` names it in errors (e.g. ``"seq 42"``)."""
        try:
            head = self._head.decode(data)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # bad UTF-8 is not a DecodeError
            raise CorruptRecord(where, str(exc)) from None
        where = f"seq {head.seq}"
        if head.schema_version > self.version:
            raise FutureSchemaVersion(where, head.schema_version, self.version)
        try:
            if head.schema_version == self.version:
                event = _read(self._event.decode, head.event)
            else:
                event = self._upcast(head.schema_version, self._any.decode(head.event))
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError, TypeError) as exc:
            raise CorruptRecord(where, str(exc)) from None
        return Envelope(self.version, head.seq, head.key, head.at, head.batch, event)

    def decode_current(self, data: bytes) -> Envelope | None:
        """A log record of the current schema version, decoded in one step; None for anything
        else (an older or newer version, bytes that do not decode, a value only a lenient read
        accepts): :meth:`decode` then reads it or names the error. For reading a whole log."""
        try:
            envelope = self._whole.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
            return None
        return envelope if envelope.schema_version == self.version else None

    def _upcast(self, version: int, data: Any) -> Event:
        if version < 1 or not isinstance(data, dict):
            raise ValueError(f"schema version {version} or event shape is not readable")
        for step in range(version, self.version):
            data = self.upcasters[step](data)
        return _read(_to_event, data)

    def check_row(self, data: bytes, row_type: type[Any], where: str) -> None:
        """Raise :class:`CorruptRecord` unless ``data`` decodes as ``row_type``, exactly as
        :meth:`decode_row` would (it is the same decode)."""
        self.decode_row(data, row_type, where)

    def decode_row(self, data: bytes, row_type: type[_R], where: str) -> _R:
        """Decode one state row; ``where`` names it in errors.

        A row that embeds a definition (an attrs value, whose validators are the slow part of
        decoding) is decoded with the definition left as bytes, and the definition is decoded
        once per distinct encoding: definitions are frozen and rarely change, while their rows
        are read on every append that touches them."""
        plan = self._rows.get(row_type)
        if plan is None:
            plan = self._rows[row_type] = _plan(row_type)
        decoder, embedded = plan
        try:
            row = _read(decoder.decode, data)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
            raise CorruptRecord(where, str(exc)) from None
        if not embedded:
            return row  # type: ignore[no-any-return]
        values = list(msgspec.structs.astuple(row))
        for index, name, kind in embedded:
            values[index] = self._embedded(kind, bytes(values[index]), f"{where} {name}")
        return row_type(*values)

    def _embedded(self, kind: type[Any], raw: bytes, where: str) -> Any:
        """The decoded value of an embedded definition, from the cache of recent ones."""
        slot = (kind, raw)
        value = self._definitions.get(slot)
        if value is None:
            decoder = self._values.get(kind)
            if decoder is None:
                decoder = self._values[kind] = msgspec.msgpack.Decoder(kind)
            try:
                value = _read(decoder.decode, raw)
            except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
                raise CorruptRecord(where, str(exc)) from None
            if len(self._definitions) >= 1024:
                self._definitions.clear()
            self._definitions[slot] = value
        return value


def _plan(row_type: type[Any]) -> tuple[msgspec.msgpack.Decoder[Any], list[tuple[int, str, type]]]:
    """How to decode a ``row_type``: a decoder of its fields with any embedded attrs value
    (a definition) left as raw bytes, and those fields (position, name, type)."""
    embedded: list[tuple[int, str, type]] = []
    fields: list[tuple[str, Any, Any]] = []
    for index, field in enumerate(msgspec.structs.fields(row_type)):
        kind = field.type
        if attrs.has(kind):
            embedded.append((index, field.name, kind))
            kind = msgspec.Raw
        fields.append((field.name, kind, field.default))
    if not embedded:
        return msgspec.msgpack.Decoder(row_type), []
    shadow = msgspec.defstruct(f"{row_type.__name__}Bytes", fields, frozen=True)
    return msgspec.msgpack.Decoder(shadow), embedded


def _to_event(data: Any) -> Event:
    event: Event = msgspec.convert(data, Event)
    return event


def _read(decode: Callable[[Any], _R], data: Any) -> _R:
    """Decode under today's rules; a record that fails only a policy limit introduced since
    it was written (see :func:`arcoflow.kernel.values.policy`) is read as it was written."""
    try:
        return decode(data)
    except msgspec.ValidationError:
        with lenient():
            return decode(data)
