"""One mapping of error kinds to outcomes, shared by the CLI and the HTTP API.

Each kind of :class:`~arcoflow.kernel.ArcoflowError` has one exit code and one HTTP status, so
``arcoflow ticks nope`` and ``GET /schedules/nope/ticks`` fail the same way:

================================  =========  ===========
error                             exit code  HTTP status
================================  =========  ===========
PayloadTooLarge                   2          413
InputError (bad input, bad id)    2          400
NotFound (unknown id)             2          404
Conflict (a lost compare-and-set) 1          409
any other ArcoflowError           1          500
================================  =========  ===========

The first matching row wins, so the more specific kinds come first.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from arcoflow.kernel import ArcoflowError, Conflict, InputError, NotFound, PayloadTooLarge

__all__ = ["ERROR_KINDS", "ErrorKind", "error_kind"]


class ErrorKind(NamedTuple):
    """How one kind of error is reported: the CLI's exit code and the HTTP status."""

    error: type[ArcoflowError]
    exit_code: int
    http_status: int


#: Most specific first; :func:`error_kind` takes the first row the error is an instance of.
ERROR_KINDS: Final[tuple[ErrorKind, ...]] = (
    ErrorKind(PayloadTooLarge, 2, 413),
    ErrorKind(InputError, 2, 400),
    ErrorKind(NotFound, 2, 404),
    ErrorKind(Conflict, 1, 409),
    ErrorKind(ArcoflowError, 1, 500),
)


def error_kind(exc: BaseException) -> ErrorKind | None:
    """The row of :data:`ERROR_KINDS` for ``exc``; ``None`` for an error arcoflow did not
    raise on purpose (a bug: the CLI lets it propagate, the HTTP API answers 500)."""
    return next((k for k in ERROR_KINDS if isinstance(exc, k.error)), None)
