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
        self._rows: dict[type[Any], msgspec.msgpack.Decoder[Any]] = {}
        self._checks: dict[type[Any], tuple[msgspec.msgpack.Decoder[Any], dict[str, type]]] = {}
        self._good: dict[tuple[type, bytes], None] = {}  # embedded values that read back

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
        """Raise :class:`CorruptRecord` unless ``data`` decodes as ``row_type``, as
        :meth:`decode_row` would. The same, faster: an embedded definition (whose validators
        are the slow part of decoding a row, and which rarely changes) is decoded once per
        distinct encoding."""
        check = self._checks.get(row_type)
        if check is None:
            shadow, embedded = _shadow(row_type)
            check = self._checks[row_type] = (msgspec.msgpack.Decoder(shadow), embedded)
        decoder, embedded = check
        if not embedded:
            self.decode_row(data, row_type, where)
            return
        try:
            row = decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
            raise CorruptRecord(where, str(exc)) from None
        for name, kind in embedded.items():
            raw = bytes(getattr(row, name))
            if (kind, raw) not in self._good:
                self.decode_row(raw, kind, f"{where} {name}")
                if len(self._good) >= 1024:
                    self._good.clear()
                self._good[(kind, raw)] = None

    def decode_row(self, data: bytes, row_type: type[_R], where: str) -> _R:
        decoder = self._rows.get(row_type)
        if decoder is None:
            decoder = self._rows[row_type] = msgspec.msgpack.Decoder(row_type)
        try:
            return _read(decoder.decode, data)  # type: ignore[no-any-return]
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
            raise CorruptRecord(where, str(exc)) from None


def _shadow(row_type: type[Any]) -> tuple[type[Any], dict[str, type]]:
    """A struct with ``row_type``'s fields, but an embedded attrs value (a definition) left as
    raw bytes, and those fields with their types."""
    embedded: dict[str, type] = {}
    fields: list[tuple[str, Any, Any]] = []
    for field in msgspec.structs.fields(row_type):
        if attrs.has(field.type):
            embedded[field.name] = field.type
        kind = msgspec.Raw if field.name in embedded else field.type
        fields.append((field.name, kind, field.default))
    shadow = msgspec.defstruct(f"{row_type.__name__}Bytes", fields, frozen=True)
    return shadow, embedded


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
