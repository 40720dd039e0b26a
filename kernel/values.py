"""The value rules of arcoflow's input boundary, written once.

Every value that enters arcoflow (the :class:`~arcoflow.kernel.Kernel` API and the definition
classes, TOML files, CLI arguments, HTTP bodies, plugin results, ``now``) is checked by these
functions against a declared type and range, and refused with
:class:`~arcoflow.kernel.errors.InputError` naming the field. Nothing else in arcoflow repeats
these rules; the definition classes' validators, the kernel's argument checks, the CLI's
parsers and the plugin-result checks all call them.

* booleans are ``bool`` (never ``0``/``1`` or ``"yes"``);
* integers are ``int`` (never ``bool`` or ``float``) within 64 bits (signed);
* times are epoch seconds (or aware datetimes) in :data:`MIN_TIME` .. :data:`MAX_TIME`;
* JSON values (run config, tags, payloads) are ``None``, ``bool``, 64-bit ``int``, finite
  ``float``, Unicode ``str``, ``list``/``tuple`` and ``dict`` with ``str`` keys, nested at most
  :data:`MAX_DEPTH` deep: no NaN, no datetimes, nothing JSON cannot say.

*Policy* limits that a newer arcoflow introduced (see :func:`policy`) apply to new input only:
a record an older arcoflow wrote is still read back (see :func:`lenient`).

>>> check_int(3, "max_catchup_ticks", 1, 1000)
3
>>> check_bool(1, "enabled")
Traceback (most recent call last):
...
arcoflow.kernel.errors.InputError: enabled: expected true or false, got 1
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

from .errors import InputError, InvalidId

__all__ = [
    "DEFAULT_PAGE",
    "INT64_MAX",
    "INT64_MIN",
    "MAX_DEPTH",
    "MAX_PAGE",
    "MAX_TIME",
    "MIN_TIME",
    "check_batch",
    "check_bool",
    "check_choice",
    "check_float",
    "check_id",
    "check_int",
    "check_json",
    "check_limit",
    "check_lookup",
    "check_text",
    "check_time",
    "json_problem",
    "lenient",
    "parse_duration_upto",
    "policy",
]

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
#: Earliest instant accepted: 1970-01-01T00:00:00Z (store keys are unsigned epoch seconds).
MIN_TIME: Final = 0
#: Latest instant accepted: 8999-12-31T23:59:59Z. Python's datetimes end with year 9999; the
#: thousand years between leave room for every time derived from an accepted one (the next
#: tick of the sparsest cron, a backoff, a catch-up window: each at most a few decades), so
#: each of them can be stored, formatted and read back.
MAX_TIME: Final = int(datetime(9000, 1, 1, tzinfo=UTC).timestamp()) - 1
#: Deepest nesting of a JSON value (decoders recurse; a deeper value could not be read back).
MAX_DEPTH: Final = 64

_ID: Final = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")
_T = TypeVar("_T")

_lenient: ContextVar[bool] = ContextVar("arcoflow_lenient", default=False)


@contextmanager
def lenient() -> Iterator[None]:
    """Within this block :func:`policy` limits are not enforced: the codec reads a stored
    record this way when it fails the current limits, because an older arcoflow accepted it."""
    token = _lenient.set(True)
    try:
        yield
    finally:
        _lenient.reset(token)


def policy(problem: str | None) -> None:
    """Refuse ``problem`` (a message) unless reading records an older arcoflow wrote."""
    if problem is not None and not _lenient.get():
        raise InputError(problem)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def check_bool(value: object, field: str) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{field}: expected true or false, got {_show(value)}")
    return value


def check_int(value: object, field: str, lo: int = INT64_MIN, hi: int = INT64_MAX) -> int:
    """``value`` if it is an ``int`` (not a ``bool``) in ``lo .. hi`` (within 64 bits)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{field}: expected an integer, got {_show(value)}")
    if not (lo <= value <= hi and INT64_MIN <= value <= INT64_MAX):
        raise InputError(f"{field}: {value} is out of range ({lo} to {hi})")
    return value


#: The most rows one page of a query holds (the Python API, the CLI and the HTTP API).
MAX_PAGE: Final = 1000
#: The rows a page holds when the caller does not say (the CLI and the HTTP API).
DEFAULT_PAGE: Final = 50


def check_limit(value: object, field: str = "limit") -> int:
    """A page size: an ``int`` in ``1 .. MAX_PAGE``.

    >>> check_limit(1001)
    Traceback (most recent call last):
    ...
    arcoflow.kernel.errors.InputError: limit: 1001 is out of range (1 to 1000)
    """
    return check_int(value, field, 1, MAX_PAGE)


def check_batch(value: object, field: str = "limit") -> int:
    """A batch size: an ``int`` in ``1 .. 2**31`` (a runtime's batch may be larger than a
    page)."""
    return check_int(value, field, 1, 2**31)


def check_lookup(value: object, field: str) -> str:
    """A run, evaluation or tick id to look up (ids are short; a store key is at most 511
    bytes)."""
    return check_text(value, field, 256)


def check_float(value: object, field: str, lo: float, hi: float) -> float:
    """A finite number (``int`` or ``float``, not ``bool``) in ``lo .. hi``, as a ``float``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{field}: expected a number, got {_show(value)}")
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        raise InputError(f"{field}: {_show(value)} is out of range ({lo} to {hi})")
    number = float(value)
    if not (math.isfinite(number) and lo <= number <= hi):
        raise InputError(f"{field}: {_show(value)} is out of range ({lo} to {hi})")
    return number


def check_text(value: object, field: str, max_length: int | None = None) -> str:
    """A ``str`` that can be stored as UTF-8 (no lone surrogates), at most ``max_length``."""
    if not isinstance(value, str):
        raise InputError(f"{field}: expected text, got {_show(value)}")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise InputError(f"{field}: {_show(value)} must be valid Unicode text") from None
    if max_length is not None and len(value) > max_length:
        raise InputError(f"{field}: {len(value)} characters; the limit is {max_length}")
    return value


def check_id(value: object, field: str = "id") -> str:
    """``value`` if it is a valid id (``[a-z0-9][a-z0-9._-]{0,127}``), else :class:`InvalidId`."""
    if not isinstance(value, str) or _ID.fullmatch(value) is None:
        raise InvalidId(
            f"{field} {_show(value)} is not valid: use 1-128 characters of a-z, 0-9, '.', '_', "
            "'-', starting with a letter or digit"
        )
    return value


def check_choice(value: object, field: str, choices: Sequence[_T]) -> _T:
    """``value`` if it is one of ``choices``."""
    for choice in choices:
        if type(value) is type(choice) and value == choice:
            return choice
    shown = ", ".join(repr(c) for c in choices)
    raise InputError(f"{field}: {_show(value)} is not one of {shown}")


def check_time(value: object, field: str = "time") -> int:
    """Epoch seconds from an ``int`` or an aware ``datetime``, in ``MIN_TIME .. MAX_TIME``."""
    seconds: int | None
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise InputError(f"{field}: {value.isoformat()} has no time zone; use an aware time")
        shown = value.isoformat()
        try:
            seconds = math.floor(value.timestamp())
        except (OverflowError, ValueError):  # year 1 with a positive offset, and the like
            seconds = None
    elif isinstance(value, bool) or not isinstance(value, int):
        raise InputError(
            f"{field}: {_show(value)} must be epoch seconds (an integer) or an aware datetime"
        )
    else:
        shown, seconds = str(value), value
    if seconds is None or not MIN_TIME <= seconds <= MAX_TIME:
        raise InputError(
            f"{field}: {shown} is outside the supported range "
            "1970-01-01T00:00:00Z .. 8999-12-31T23:59:59Z"
        )
    return seconds


def check_json(value: object, field: str) -> Any:
    """``value`` if it is JSON data that every reader can take back (see the module doc)."""
    problem = json_problem(value, field)
    if problem is not None:
        raise InputError(problem)
    return value


def json_problem(value: object, field: str) -> str | None:
    """Why ``value`` is not JSON data (naming ``field``), or ``None``."""
    problem = _json_problem(value, 0)
    return None if problem is None else f"{field} must hold JSON values only: {problem}"


def _json_problem(value: object, depth: int) -> str | None:
    if value is None or isinstance(value, (bool, str)):
        if isinstance(value, str):
            try:
                value.encode()
            except UnicodeEncodeError:
                return f"{_show(value)} is not valid Unicode text"
        return None
    if isinstance(value, int):
        return None if INT64_MIN <= value <= INT64_MAX else f"{_show(value)} does not fit 64 bits"
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value!r} is not a finite number"
    if depth >= MAX_DEPTH:
        return f"nested deeper than {MAX_DEPTH} levels"
    if isinstance(value, (list, tuple)):
        for item in value:
            if (problem := _json_problem(item, depth + 1)) is not None:
                return problem
        return None
    if isinstance(value, dict):
        for k, item in value.items():
            if not isinstance(k, str):
                return f"key {_show(k)} is not a string"
            problem = _json_problem(k, depth + 1) or _json_problem(item, depth + 1)
            if problem is not None:
                return problem
        return None
    return f"{type(value).__name__} {_show(value)} is not a JSON value"


_DURATION = re.compile(r"\s*(\d{1,12})\s*(s|m|h|d|w)?\s*")
_UNITS = {None: 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration_upto(value: int | str, limit: int) -> int:
    """:func:`parse_duration` with another upper bound (retention spans years)."""
    if isinstance(value, bool):
        raise InputError(f"duration {value!r} is not a number of seconds or a string like '15m'")
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, str) and (m := _DURATION.fullmatch(value.lower())):
        seconds = int(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise InputError(f"duration {value!r} is not a number of seconds or a string like '15m'")
    if not 0 <= seconds <= limit:
        raise InputError(f"duration {value!r} is out of range (0 to {limit // 86400} days)")
    return seconds
