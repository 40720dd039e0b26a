"""What users declare: schedules, sensors and run templates, and what plugins hand back.

These are attrs classes because they sit at the user-facing boundary: their validators give
precise, typed errors (:class:`~arcoflow.kernel.errors.InputError` subclasses), and cattrs
structures TOML/JSON into them with every error collected (see :func:`load_definitions`).
msgspec encodes and decodes attrs classes natively, so the same classes travel inside events;
there is no second, parallel schema to keep in step.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, TypeVar, get_origin

import attrs
import cattrs
import msgspec

from .cron import DstFold, DstGap, parse_cron, zone
from .errors import InputError, InvalidDefinition
from .retention import RetentionPolicy
from .values import (
    check_bool,
    check_choice,
    check_float,
    check_id,
    check_int,
    check_text,
    json_problem,
    parse_duration_upto,
    policy,
)

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
    "checked",
    "load_definitions",
    "parse_definitions",
    "parse_duration",
    "parse_duration_upto",
    "refused",
    "revalidate",
    "validate_id",
]

_MAX_DURATION = 366 * 86400
#: Largest run config, tags, cursor or push payload accepted, in encoded bytes.
MAX_BLOB = 1024 * 1024
#: Most ticks one evaluation of one schedule may run (work per evaluation stays bounded).
MAX_CATCHUP_TICKS = 1000
#: Most retries of a failed tick.
MAX_TICK_RETRIES = 1000
#: Longest skip reason a plugin may give, in characters.
MAX_REASON = 4096
#: Largest definitions file read, in bytes.
MAX_FILE = 16 * 1024 * 1024

#: The id rule (also :func:`arcoflow.kernel.values.check_id`).
validate_id = check_id


def parse_duration(value: int | str) -> int:
    """Seconds from ``90``, ``"90s"``, ``"15m"``, ``"6h"``, ``"7d"`` or ``"2w"``.

    >>> parse_duration("15m")
    900
    """
    return parse_duration_upto(value, _MAX_DURATION)


_Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def _rule(check: Callable[..., object], *args: Any) -> _Validator:
    """An attrs validator from a rule of :mod:`.values`, given the field's name. On a
    definition class a plain :class:`InputError` becomes :class:`InvalidDefinition`."""

    def validate(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        try:
            check(value, attribute.name, *args)
        except InputError as exc:
            if type(exc) is InputError and isinstance(instance, _DEFINITION_CLASSES):
                raise InvalidDefinition(str(exc)) from None
            raise

    return validate


def _optional(check: Callable[..., object], *args: Any) -> _Validator:
    return attrs.validators.optional(_rule(check, *args))


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


def _jitter(value: float) -> float:
    try:
        return check_float(value, "jitter", 0.0, 1.0)
    except InputError as exc:
        raise InvalidDefinition(str(exc)) from None


def _target(value: object, field: str) -> None:
    if not check_text(value, field):
        raise InputError(f"{field} must not be empty")


def _json_blob(value: object, field: str) -> None:
    if not isinstance(value, dict):
        raise InputError(f"{field} must be a table of JSON values, got {type(value).__name__}")
    if not value:
        return
    # JSON-ness became a rule after arcoflow had stored values without it: see values.policy.
    policy(json_problem(value, field))
    try:
        size = len(msgspec.json.encode(value))
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
        raise InputError(f"{field} must hold JSON values only: {exc}") from None
    if size > MAX_BLOB:
        raise InputError(f"{field} is {size} bytes; the limit is {MAX_BLOB}")


def _str_map(value: object, field: str) -> None:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InputError(f"{field} must map strings to strings")
    _json_blob(value, field)


def _cron(value: object, field: str) -> None:
    text = parse_cron(check_text(value, field)).expr
    # croniter's R draws a random value in each process, so two evaluators (or a replay)
    # would disagree about the tick; H is refused by croniter itself (no hash id).
    random = [f for f in text.split() if f.lower().startswith("r")]
    policy(f"cron {value!r}: random fields ({', '.join(random)}) are refused" if random else None)


def _zone(value: object, field: str) -> None:
    text = check_text(value, field)
    try:
        zone(text)
    except InputError as exc:
        raise type(exc)(f"{field}: {exc}") from None


def _budget(value: object, field: str, least: int, limit: int) -> None:
    """An integer from ``least`` up; ``limit`` is a policy (see :func:`.values.policy`)."""
    number = check_int(value, field, least)
    policy(f"{field}: {number} is over the limit of {limit}" if number > limit else None)


def _instance(value: object, field: str, cls: type) -> None:
    # Not validated again here: an instance was validated when it was built (or decoded).
    # What may have changed since (a mutable config dict) is checked by revalidate().
    if not isinstance(value, cls):
        raise InputError(f"{field}: expected a {cls.__name__}, got {_kind(value)}")


def _items(value: object, field: str, cls: type) -> None:
    if not isinstance(value, (list, tuple)):
        raise InputError(f"{field}: expected a list of {cls.__name__}, got {_kind(value)}")
    for item in value:
        _instance(item, field, cls)


def _requests(value: object, field: str) -> None:
    _items(value, field, RunRequest)


def _cursor(value: object, field: str) -> None:
    if not isinstance(value, (str, bytes)):
        raise InputError(f"{field}: expected str, bytes or None, got {_kind(value)}")
    if len(value) > MAX_BLOB:
        raise InputError(f"{field} is {len(value)} long; the limit is {MAX_BLOB}")
    if isinstance(value, str):
        check_text(value, field)


def _run_key(value: object, field: str) -> None:
    text = check_text(value, field)
    if not text or len(text) > 512 or "\x00" in text:
        raise InputError(f"{field} {text!r} must be 1-512 characters of text without NUL")


def _plugin_name(value: object, field: str) -> None:
    if not check_text(value, field, 256).strip():
        raise InputError(f"{field}: must name a plugin, got {value!r}")


def _kind(value: object) -> str:
    return type(value).__name__


def _gap(value: Any) -> DstGap:
    return _choice(DstGap, value, "dst_gap")


def _fold(value: Any) -> DstFold:
    return _choice(DstFold, value, "dst_fold")


_E = TypeVar("_E", DstGap, DstFold)
_A = TypeVar("_A", bound=attrs.AttrsInstance)


def _choice(cls: type[_E], value: Any, name: str) -> _E:
    if isinstance(value, str):  # a member is a str too
        try:
            return cls(value)
        except ValueError:
            pass
    choices = ", ".join(repr(m.value) for m in cls)
    raise InvalidDefinition(f"{name}: {value!r} is not one of {choices}")


def _dict() -> dict[str, Any]:
    return {}


@attrs.frozen
class RunTemplate:
    """What a run does: a ``target`` its launcher understands, plus config and tags.

    ``launcher`` names the launcher plugin; ``None`` leaves runs ``REQUESTED`` for an external
    system to pick up through the history API.
    """

    target: str = attrs.field(validator=_rule(_target))
    launcher: str | None = attrs.field(default=None, validator=_optional(check_text))
    config: dict[str, Any] = attrs.field(factory=_dict, validator=_rule(_json_blob))
    tags: dict[str, str] = attrs.field(factory=_dict, validator=_rule(_str_map))


_POSITIVE = _rule(check_int, 1)


@attrs.frozen
class Backoff:
    """Capped exponential backoff for failing poll sensors: ``base * 2**(n-1)`` up to ``cap``,
    plus a deterministic jitter of up to ``jitter`` (0 to 1) of that delay."""

    base: int = attrs.field(default=30, converter=_base, validator=_POSITIVE)
    cap: int = attrs.field(default=3600, converter=_cap, validator=_POSITIVE)
    jitter: float = attrs.field(default=0.1, converter=_jitter)


@attrs.frozen
class ScheduleDefinition:
    """A cron schedule. Times are seconds; the TOML form also takes ``"6h"``-style strings.

    >>> ScheduleDefinition("nightly", "30 1 * * *", RunTemplate("etl.nightly"),
    ...                    timezone="America/New_York").catchup_window
    3600
    """

    id: str = attrs.field(validator=_rule(check_id))
    cron: str = attrs.field(validator=_rule(_cron))
    run: RunTemplate = attrs.field(validator=_rule(_instance, RunTemplate))
    timezone: str = attrs.field(default="UTC", validator=_rule(_zone))
    catchup_window: int = attrs.field(default=3600, converter=_catchup_window, validator=_POSITIVE)
    max_catchup_ticks: int = attrs.field(default=1, validator=_rule(_budget, 1, MAX_CATCHUP_TICKS))
    catchup_order: Literal["newest", "oldest"] = attrs.field(
        default="newest", validator=_rule(check_choice, ("newest", "oldest"))
    )
    dst_gap: DstGap = attrs.field(default=DstGap.TRANSITION, converter=_gap)
    dst_fold: DstFold = attrs.field(default=DstFold.FIRST, converter=_fold)
    max_tick_retries: int = attrs.field(default=0, validator=_rule(_budget, 0, MAX_TICK_RETRIES))
    evaluator: str | None = attrs.field(default=None, validator=_optional(check_text))
    enabled: bool = attrs.field(default=True, validator=_rule(check_bool))
    retention: RetentionPolicy | None = attrs.field(
        default=None, validator=_optional(_instance, RetentionPolicy)
    )

    def content(self) -> bytes:
        """Canonical bytes of what the schedule does (``enabled`` is state, not content)."""
        return _content(attrs.evolve(self, enabled=True))


@attrs.frozen
class SensorDefinition:
    """A push or poll sensor bound to a connector plugin."""

    id: str = attrs.field(validator=_rule(check_id))
    type: Literal["poll", "push"] = attrs.field(validator=_rule(check_choice, ("poll", "push")))
    run: RunTemplate = attrs.field(validator=_rule(_instance, RunTemplate))
    connector: str | None = attrs.field(default=None, validator=_optional(check_text))
    config: dict[str, Any] = attrs.field(factory=_dict, validator=_rule(_json_blob))
    minimum_interval: int = attrs.field(
        default=30, converter=_minimum_interval, validator=_POSITIVE
    )
    timeout: int = attrs.field(default=30, converter=_timeout, validator=_POSITIVE)
    backoff: Backoff = attrs.field(factory=Backoff, validator=_rule(_instance, Backoff))
    max_payload_bytes: int = attrs.field(default=64 * 1024, validator=_rule(check_int, 1, MAX_BLOB))
    enabled: bool = attrs.field(default=True, validator=_rule(check_bool))
    retention: RetentionPolicy | None = attrs.field(
        default=None, validator=_optional(_instance, RetentionPolicy)
    )

    def __attrs_post_init__(self) -> None:
        if self.type == "poll" and self.connector is None:
            raise InvalidDefinition("connector: a poll sensor needs a connector")

    def content(self) -> bytes:
        """Canonical bytes of what the sensor does (``enabled`` is state, not content)."""
        return _content(attrs.evolve(self, enabled=True))


def _content(definition: Any) -> bytes:
    """Sorted msgpack of a definition. Without a retention override it leaves the field out,
    so a definition stored before retention existed keeps its content (and its version)."""
    fields = msgspec.to_builtins(definition, order="sorted")
    if fields.get("retention") is None:
        fields.pop("retention", None)
    return msgspec.msgpack.encode(fields, order="sorted")


@attrs.frozen
class SourceDefinition:
    """A broker source: the daemon runs the source ``plugin`` and ingests what it consumes into
    the push sensor ``sensor``, ``batch_size`` messages per transaction at most. ``config`` is
    the plugin's own (servers, stream or queue, ...); the plugin checks it.

    >>> SourceDefinition("orders", "nats", "orders", {"stream": "ORDERS"}).batch_size
    100
    """

    id: str = attrs.field(validator=_rule(check_id))
    plugin: str = attrs.field(validator=_rule(_plugin_name))
    sensor: str = attrs.field(validator=_rule(check_id))
    config: dict[str, Any] = attrs.field(factory=_dict, validator=_rule(_json_blob))
    batch_size: int = attrs.field(default=100, validator=_rule(check_int, 1, 10_000))


_DEFINITION_CLASSES = (RunTemplate, Backoff, ScheduleDefinition, SensorDefinition, SourceDefinition)


@attrs.frozen
class RunRequest:
    """One run a sensor, connector or schedule evaluator asks for.

    ``run_key`` names the logical run inside the requester's namespace (the kernel prefixes it
    with ``schedule:<id>:`` or ``sensor:<id>:``, so keys of different origins never collide).
    ``None`` means the default key: the tick, or the push message id. ``config`` and ``tags``
    are merged over the run template; ``target`` replaces it when given.
    """

    run_key: str | None = attrs.field(default=None, validator=_optional(_run_key))
    config: dict[str, Any] = attrs.field(factory=_dict, validator=_rule(_json_blob))
    tags: dict[str, str] = attrs.field(factory=_dict, validator=_rule(_str_map))
    target: str | None = attrs.field(default=None, validator=_optional(check_text))


@attrs.frozen
class PollResult:
    """What a poll connector returns: run requests and the next cursor, or a skip reason.

    ``cursor=None`` keeps the current cursor (it never clears it). ``cursor_version`` is the
    connector's cursor format, so a later connector version can migrate old cursors.
    """

    run_requests: list[RunRequest] = attrs.field(factory=list, validator=_rule(_requests))
    cursor: str | bytes | None = attrs.field(default=None, validator=_optional(_cursor))
    cursor_version: int = attrs.field(default=1, validator=_rule(check_int, 0))
    skip_reason: str | None = attrs.field(default=None, validator=_optional(check_text, MAX_REASON))


@attrs.frozen
class TickResult:
    """What a schedule evaluator returns for a tick.

    ``run_requests=None`` means the default single run of the schedule's template; an empty
    list or a ``skip_reason`` records the tick as ``SKIPPED``.
    """

    run_requests: list[RunRequest] | None = attrs.field(
        default=None, validator=_optional(_requests)
    )
    skip_reason: str | None = attrs.field(default=None, validator=_optional(check_text, MAX_REASON))


def checked(value: object, cls: type[_A], field: str) -> _A:
    """A definition (or value class) argument, its validators run again: a caller may have
    changed a mutable part (a config dict) since it was built."""
    if not isinstance(value, cls):
        raise InputError(f"{field}: expected a {cls.__name__}, got {type(value).__name__}")
    revalidate(value)
    return value


def revalidate(value: Any) -> None:
    """Run every validator of ``value`` (an instance of a class here) and of the instances it
    holds, again. A caller may have changed one after building it (config dicts are mutable)
    or built it around its validators; the kernel checks what it is about to record."""
    if isinstance(value, (list, tuple)):
        for item in value:
            revalidate(item)
    elif attrs.has(type(value)):
        attrs.validate(value)
        for field in attrs.fields(type(value)):
            revalidate(getattr(value, field.name))


def refused(result: PollResult | TickResult | Sequence[RunRequest]) -> str | None:
    """Why a plugin's result is refused (every rule is checked again, see :func:`revalidate`),
    or ``None``. The kernel records a refused result as the plugin's failure."""
    try:
        if not isinstance(result, (PollResult, TickResult)):
            _requests(result, "run_requests")
        revalidate(result)
    except (InputError, AttributeError, TypeError) as exc:  # AttributeError: built around attrs
        return f"result refused: {exc}"
    return None


@attrs.frozen
class Definitions:
    """The contents of a definitions file."""

    schedules: list[ScheduleDefinition] = attrs.field(
        factory=list, validator=_rule(_items, ScheduleDefinition)
    )
    sensors: list[SensorDefinition] = attrs.field(
        factory=list, validator=_rule(_items, SensorDefinition)
    )
    launchers: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    sources: list[SourceDefinition] = attrs.field(factory=list)
    retention: RetentionPolicy | None = None  # [retention]: the store-wide policy


# Durations and jitter go through the attrs converters (prefer_attrib_converters), so "6h"
# works there and only there. Every other scalar must already have its type: TOML's true is not
# 1, 1 is not "1", and the definition classes' validators check ranges (arcoflow.kernel.values).
_converter = cattrs.Converter(forbid_extra_keys=True, prefer_attrib_converters=True)


def _exact(kind: type, name: str) -> Callable[[Any, type], Any]:
    def structure(value: Any, _: type) -> Any:
        if type(value) is not kind:
            raise InputError(f"expected {name}, got {value!r}")
        return value

    return structure


_converter.register_structure_hook(int, _exact(int, "an integer"))
_converter.register_structure_hook(bool, _exact(bool, "true or false"))
_converter.register_structure_hook(str, _exact(str, "text"))
_converter.register_structure_hook(float, _exact(float, "a number"))


def _is_literal(kind: object) -> bool:
    return bool(get_origin(kind) == Literal)


# A Literal field's attrs validator (check_choice) names the choices; cattrs' own check would
# say "x not in literal typing.Literal[...]" first.
_converter.register_structure_hook_func(_is_literal, lambda v, _: v)


def _messages(exc: BaseException) -> list[str]:
    return cattrs.transform_error(exc, format_exception=_format)


def _format(exc: BaseException, _: Any) -> str:
    if isinstance(exc, KeyError):
        return "required field missing"
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        return f"unknown field(s) {', '.join(sorted(exc.extra_fields))}"
    if isinstance(exc, (AttributeError, TypeError)):  # a scalar or a list where a table goes
        return "expected a table"
    return str(exc)


def parse_definitions(data: Mapping[str, Any], source: str = "definitions") -> Definitions:
    """Structure a parsed TOML/JSON document into :class:`Definitions`, collecting every error.

    Raises :class:`InvalidDefinition` whose message lists each problem with its path, e.g.
    ``schedule 'nightly': timezone: unknown zone 'Mars/Olympus'``.
    """
    if not isinstance(data, Mapping):
        raise InvalidDefinition(f"{source}: expected a table, got {type(data).__name__}")
    unknown = set(data) - {"schedule", "sensor", "launchers", "source", "retention"}
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
            if not isinstance(item, dict):
                problems.append(f"{table} #{index + 1}: expected a table, got {item!r}")
                continue
            name = item.get("id", f"#{index + 1}")
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
    retention = None
    if "retention" in data and not isinstance(data["retention"], Mapping):
        problems.append(f"{source}: [retention] must be a table")
    elif "retention" in data:
        try:
            retention = _converter.structure(data["retention"], RetentionPolicy)
        except (cattrs.BaseValidationError, InputError, ValueError, TypeError) as exc:
            details = _messages(exc) if isinstance(exc, cattrs.BaseValidationError) else [str(exc)]
            problems += [f"{source}: [retention]: {_tidy(d)}" for d in details]
    if problems:
        raise InvalidDefinition("; ".join(problems))
    return Definitions(schedules, sensors, launchers, sources, retention)


def _tidy(detail: str) -> str:
    # cattrs reports "message @ $.timezone"; users read "timezone: message".
    message, _, path = detail.rpartition(" @ ")
    if not message:
        return detail
    path = path.removeprefix("$").lstrip(".")
    return f"{path}: {message}" if path else message


def load_definitions(path: str | os.PathLike[str]) -> Definitions:
    """Read a TOML definitions file (UTF-8, at most :data:`MAX_FILE` bytes); see
    :func:`parse_definitions`."""
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidDefinition(f"definitions file: expected a path, got {path!r}")
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FILE + 1)  # bounded: the path may name /dev/zero
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        reason = getattr(exc, "strerror", None) or exc
        raise InvalidDefinition(f"{path}: cannot read: {reason}") from None
    if len(raw) > MAX_FILE:
        raise InvalidDefinition(f"{path}: larger than {MAX_FILE} bytes; is it a definitions file?")
    try:
        data = tomllib.loads(raw.decode())
    except UnicodeDecodeError:
        raise InvalidDefinition(f"{path}: not UTF-8 text; is it a TOML definitions file?") from None
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise InvalidDefinition(f"{path}: not valid TOML: {exc}") from None
    return parse_definitions(data, str(path))


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
