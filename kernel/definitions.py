"""What users declare: schedules, sensors and run templates, and what plugins hand back.

These are attrs classes because they sit at the user-facing boundary: their validators give
precise, typed errors (:class:`~arcoflow.kernel.errors.InputError` subclasses), and cattrs
structures TOML/JSON into them with every error collected (see :func:`load_definitions`).
msgspec encodes and decodes attrs classes natively, so the same classes travel inside events;
there is no second, parallel schema to keep in step.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal, TypeVar

import attrs
import cattrs
import msgspec

from .cron import DstFold, DstGap, parse_cron, zone
from .errors import InputError, InvalidDefinition, InvalidId

__all__ = [
    "Backoff",
    "Definitions",
    "PollContext",
    "PollResult",
    "PushMessage",
    "RunRequest",
    "RunTemplate",
    "ScheduleDefinition",
    "SensorDefinition",
    "SourceDefinition",
    "TickContext",
    "TickResult",
    "load_definitions",
    "parse_definitions",
    "parse_duration",
    "validate_id",
]

_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")
_DURATION = re.compile(r"\s*(\d+)\s*(s|m|h|d|w)?\s*")
_UNITS = {None: 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_MAX_DURATION = 366 * 86400
#: Largest run config, tags, cursor or push payload accepted, in encoded bytes.
MAX_BLOB = 1024 * 1024


def validate_id(value: str, what: str = "id") -> str:
    """Return ``value`` if it is a valid id (``[a-z0-9][a-z0-9._-]{0,127}``), else raise."""
    if not isinstance(value, str) or _ID.fullmatch(value) is None:
        raise InvalidId(
            f"{what} {value!r} is not valid: use 1-128 characters of a-z, 0-9, '.', '_', '-', "
            "starting with a letter or digit"
        )
    return value


def parse_duration(value: int | str) -> int:
    """Seconds from ``90``, ``"90s"``, ``"15m"``, ``"6h"``, ``"7d"`` or ``"2w"``.

    >>> parse_duration("15m")
    900
    """
    if isinstance(value, bool):
        raise InputError(f"duration {value!r} is not a number of seconds or a string like '15m'")
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, str) and (m := _DURATION.fullmatch(value.lower())):
        seconds = int(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise InputError(f"duration {value!r} is not a number of seconds or a string like '15m'")
    if not 0 <= seconds <= _MAX_DURATION:
        raise InputError(f"duration {value!r} is out of range (0 to 366 days)")
    return seconds


def _duration(value: int | str, field: str) -> int:
    """A duration field's converter names the field: "catchup_window: duration '5x' is ..."."""
    try:
        return parse_duration(value)
    except InputError as exc:
        raise InvalidDefinition(f"{field}: {exc}") from None


def _base(value: int | str) -> int:
    return _duration(value, "base")


def _cap(value: int | str) -> int:
    return _duration(value, "cap")


def _catchup_window(value: int | str) -> int:
    return _duration(value, "catchup_window")


def _minimum_interval(value: int | str) -> int:
    return _duration(value, "minimum_interval")


def _timeout(value: int | str) -> int:
    return _duration(value, "timeout")


def _utf8(text: str) -> bool:
    """False for text that cannot be stored (lone surrogates, e.g. from a JSON ``"\\ud800"``)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _text(_: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not _utf8(value):
        raise InputError(f"{attribute.name} {value!r} must be valid Unicode text")


def _target(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not value:
        raise InputError(f"{attribute.name} must not be empty")
    _text(_, attribute, value)


def _id(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    validate_id(value, attribute.name)


def _positive(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value <= 0:
        raise InvalidDefinition(f"{attribute.name} must be positive, got {value}")


def _json_blob(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    try:
        size = len(msgspec.json.encode(value))
    except (TypeError, msgspec.EncodeError, UnicodeEncodeError) as exc:
        raise InputError(f"{attribute.name} must hold JSON values only: {exc}") from exc
    if size > MAX_BLOB:
        raise InputError(f"{attribute.name} is {size} bytes; the limit is {MAX_BLOB}")


def _str_map(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InputError(f"{attribute.name} must map strings to strings")
    _json_blob(_, attribute, value)


def _cron(_: object, __: attrs.Attribute[str], value: str) -> None:
    parse_cron(value)


def _zone(_: object, __: attrs.Attribute[str], value: str) -> None:
    try:
        zone(value)
    except InputError as exc:
        raise type(exc)(f"timezone: {exc}") from None


def _gap(value: Any) -> DstGap:
    return _choice(DstGap, value, "dst_gap")


def _fold(value: Any) -> DstFold:
    return _choice(DstFold, value, "dst_fold")


_E = TypeVar("_E", DstGap, DstFold)


def _choice(cls: type[_E], value: Any, name: str) -> _E:
    try:
        return cls(value)
    except ValueError:
        choices = ", ".join(repr(m.value) for m in cls)
        raise InputError(f"{name}: {value!r} is not one of {choices}") from None


def _dict() -> dict[str, Any]:
    return {}


@attrs.frozen
class RunTemplate:
    """What a run does: a ``target`` its launcher understands, plus config and tags.

    ``launcher`` names the launcher plugin; ``None`` leaves runs ``REQUESTED`` for an external
    system to pick up through the history API.
    """

    target: str = attrs.field(validator=_target)
    launcher: str | None = None
    config: dict[str, Any] = attrs.field(factory=_dict, validator=_json_blob)
    tags: dict[str, str] = attrs.field(factory=_dict, validator=_str_map)


@attrs.frozen
class Backoff:
    """Capped exponential backoff for failing poll sensors: ``base * 2**(n-1)`` up to ``cap``,
    plus a deterministic jitter of up to ``jitter`` of that delay."""

    base: int = attrs.field(default=30, converter=_base, validator=_positive)
    cap: int = attrs.field(default=3600, converter=_cap, validator=_positive)
    jitter: float = attrs.field(
        default=0.1, validator=[attrs.validators.ge(0.0), attrs.validators.le(1.0)]
    )


@attrs.frozen
class ScheduleDefinition:
    """A cron schedule. Times are seconds; the TOML form also takes ``"6h"``-style strings.

    >>> ScheduleDefinition("nightly", "30 1 * * *", RunTemplate("etl.nightly"),
    ...                    timezone="America/New_York").catchup_window
    3600
    """

    id: str = attrs.field(validator=_id)
    cron: str = attrs.field(validator=_cron)
    run: RunTemplate
    timezone: str = attrs.field(default="UTC", validator=_zone)
    catchup_window: int = attrs.field(default=3600, converter=_catchup_window, validator=_positive)
    max_catchup_ticks: int = attrs.field(default=1, validator=_positive)
    catchup_order: Literal["newest", "oldest"] = attrs.field(
        default="newest", validator=attrs.validators.in_(("newest", "oldest"))
    )
    dst_gap: DstGap = attrs.field(default=DstGap.TRANSITION, converter=_gap)
    dst_fold: DstFold = attrs.field(default=DstFold.FIRST, converter=_fold)
    max_tick_retries: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    evaluator: str | None = None
    enabled: bool = True

    def content(self) -> bytes:
        """Canonical bytes of what the schedule does (``enabled`` is state, not content)."""
        return msgspec.msgpack.encode(attrs.evolve(self, enabled=True), order="sorted")


@attrs.frozen
class SensorDefinition:
    """A push or poll sensor bound to a connector plugin."""

    id: str = attrs.field(validator=_id)
    type: Literal["poll", "push"] = attrs.field(validator=attrs.validators.in_(("poll", "push")))
    run: RunTemplate
    connector: str | None = None
    config: dict[str, Any] = attrs.field(factory=_dict, validator=_json_blob)
    minimum_interval: int = attrs.field(
        default=30, converter=_minimum_interval, validator=_positive
    )
    timeout: int = attrs.field(default=30, converter=_timeout, validator=_positive)
    backoff: Backoff = attrs.field(factory=Backoff)
    max_payload_bytes: int = attrs.field(
        default=64 * 1024, validator=[_positive, attrs.validators.le(MAX_BLOB)]
    )
    enabled: bool = True

    def __attrs_post_init__(self) -> None:
        if self.type == "poll" and self.connector is None:
            raise InvalidDefinition("connector: a poll sensor needs a connector")

    def content(self) -> bytes:
        """Canonical bytes of what the sensor does (``enabled`` is state, not content)."""
        return msgspec.msgpack.encode(attrs.evolve(self, enabled=True), order="sorted")


def _plugin_name(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{attribute.name} must name a plugin, got {value!r}")


@attrs.frozen
class SourceDefinition:
    """A broker source: the daemon runs the source ``plugin`` and ingests what it consumes into
    the push sensor ``sensor``, ``batch_size`` messages per transaction at most. ``config`` is
    the plugin's own (servers, stream or queue, ...); the plugin checks it.

    >>> SourceDefinition("orders", "nats", "orders", {"stream": "ORDERS"}).batch_size
    100
    """

    id: str = attrs.field(validator=_id)
    plugin: str = attrs.field(validator=_plugin_name)
    sensor: str = attrs.field(validator=_id)
    config: dict[str, Any] = attrs.field(factory=_dict, validator=_json_blob)
    batch_size: int = attrs.field(default=100, validator=[_positive, attrs.validators.le(10_000)])


@attrs.frozen
class RunRequest:
    """One run a sensor, connector or schedule evaluator asks for.

    ``run_key`` names the logical run inside the requester's namespace (the kernel prefixes it
    with ``schedule:<id>:`` or ``sensor:<id>:``, so keys of different origins never collide).
    ``None`` means the default key: the tick, or the push message id. ``config`` and ``tags``
    are merged over the run template; ``target`` replaces it when given.
    """

    run_key: str | None = attrs.field(default=None)
    config: dict[str, Any] = attrs.field(factory=_dict, validator=_json_blob)
    tags: dict[str, str] = attrs.field(factory=_dict, validator=_str_map)
    target: str | None = attrs.field(default=None, validator=attrs.validators.optional(_text))

    @run_key.validator
    def _key(self, _: attrs.Attribute[str | None], value: str | None) -> None:
        if value is not None and (
            not value or len(value) > 512 or "\x00" in value or not _utf8(value)
        ):
            raise InputError(f"run_key {value!r} must be 1-512 characters of text without NUL")


@attrs.frozen
class PollResult:
    """What a poll connector returns: run requests and the next cursor, or a skip reason.

    ``cursor=None`` keeps the current cursor (it never clears it). ``cursor_version`` is the
    connector's cursor format, so a later connector version can migrate old cursors.
    """

    run_requests: list[RunRequest] = attrs.field(factory=list)
    cursor: str | bytes | None = attrs.field(default=None)
    cursor_version: int = 1
    skip_reason: str | None = None

    @cursor.validator
    def _cursor(self, _: attrs.Attribute[Any], value: str | bytes | None) -> None:
        if value is not None and len(value) > MAX_BLOB:
            raise InputError(f"cursor is {len(value)} long; the limit is {MAX_BLOB}")
        if isinstance(value, str) and not _utf8(value):
            raise InputError("cursor must be valid Unicode text (or bytes)")


@attrs.frozen
class TickResult:
    """What a schedule evaluator returns for a tick.

    ``run_requests=None`` means the default single run of the schedule's template; an empty
    list or a ``skip_reason`` records the tick as ``SKIPPED``.
    """

    run_requests: list[RunRequest] | None = None
    skip_reason: str | None = None


@attrs.frozen
class Definitions:
    """The contents of a definitions file."""

    schedules: list[ScheduleDefinition] = attrs.field(factory=list)
    sensors: list[SensorDefinition] = attrs.field(factory=list)
    launchers: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    sources: list[SourceDefinition] = attrs.field(factory=list)


# Durations go through the attrs converters (prefer_attrib_converters), so "6h" works there and
# only there; every other int must be a real integer (TOML's true is not 1).
_converter = cattrs.Converter(forbid_extra_keys=True, prefer_attrib_converters=True)


def _int(value: Any, _: type) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"expected an integer, got {value!r}")
    return value


_converter.register_structure_hook(int, _int)


def _messages(exc: BaseException) -> list[str]:
    return cattrs.transform_error(exc, format_exception=_format)


def _format(exc: BaseException, _: Any) -> str:
    if isinstance(exc, KeyError):
        return "required field missing"
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        return f"unknown field(s) {', '.join(sorted(exc.extra_fields))}"
    return str(exc)


def parse_definitions(data: Mapping[str, Any], source: str = "definitions") -> Definitions:
    """Structure a parsed TOML/JSON document into :class:`Definitions`, collecting every error.

    Raises :class:`InvalidDefinition` whose message lists each problem with its path, e.g.
    ``schedule 'nightly': timezone: unknown zone 'Mars/Olympus'``.
    """
    unknown = set(data) - {"schedule", "sensor", "launchers", "source"}
    problems = [f"{source}: unknown table(s) {', '.join(sorted(unknown))}"] if unknown else []
    schedules: list[ScheduleDefinition] = []
    sensors: list[SensorDefinition] = []
    sources: list[SourceDefinition] = []
    for table, cls, out in (
        ("schedule", ScheduleDefinition, schedules),
        ("sensor", SensorDefinition, sensors),
        ("source", SourceDefinition, sources),
    ):
        items = data.get(table, [])
        if not isinstance(items, list):
            problems.append(f"{source}: [[{table}]] must be an array of tables")
            continue
        for index, item in enumerate(items):
            name = item.get("id", f"#{index + 1}") if isinstance(item, dict) else f"#{index + 1}"
            try:
                out.append(_converter.structure(item, cls))  # type: ignore[arg-type]
            except (cattrs.BaseValidationError, InputError, ValueError, TypeError) as exc:
                details = (
                    _messages(exc) if isinstance(exc, cattrs.BaseValidationError) else [str(exc)]
                )
                problems += [f"{table} {name!r}: {_tidy(d)}" for d in details]
    for table, out_ids in (
        ("schedule", [s.id for s in schedules]),
        ("sensor", [s.id for s in sensors]),
        ("source", [s.id for s in sources]),
    ):
        dupes = sorted({i for i in out_ids if out_ids.count(i) > 1})
        problems += [f"{table} {i!r}: declared more than once" for i in dupes]
    polled = {s.id for s in sensors if s.type == "poll"}
    problems += [
        f"source {s.id!r}: sensor {s.sensor!r} is a poll sensor; a source feeds a push sensor"
        for s in sources
        if s.sensor in polled
    ]
    launchers = data.get("launchers", {})
    if not isinstance(launchers, dict) or not all(isinstance(v, dict) for v in launchers.values()):
        problems.append(f"{source}: [launchers.NAME] entries must be tables")
        launchers = {}
    if problems:
        raise InvalidDefinition("; ".join(problems))
    return Definitions(schedules, sensors, launchers, sources)


def _tidy(detail: str) -> str:
    # cattrs reports "message @ $.timezone"; users read "timezone: message".
    message, _, path = detail.rpartition(" @ ")
    if not message:
        return detail
    path = path.removeprefix("$").lstrip(".")
    return f"{path}: {message}" if path else message


def load_definitions(path: str) -> Definitions:
    """Read a TOML definitions file; see :func:`parse_definitions`."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise InvalidDefinition(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InvalidDefinition(f"{path}: not valid TOML: {exc}") from exc
    return parse_definitions(data, path)


@attrs.frozen
class TickContext:
    """What a schedule evaluator receives for one tick."""

    schedule: ScheduleDefinition
    tick_id: str
    scheduled_for: datetime  # aware, UTC
    local_time: datetime  # aware, in the schedule's zone
    attempt: int  # 1, then 2, 3... when a failed tick is retried
    dst: str | None  # how DST moved, repeated or skipped this wall time, if it did


@attrs.frozen
class PollContext:
    """What a poll connector receives: its sensor, the cursor and when it is."""

    sensor: SensorDefinition
    cursor: str | bytes | None
    cursor_version: int | None  # the format version the cursor was written with
    state_version: int
    now: datetime  # aware, UTC


@attrs.frozen
class PushMessage:
    """What a push connector receives for one delivered message."""

    sensor: SensorDefinition
    message_id: str
    payload: Any
    received_at: datetime  # aware, UTC
