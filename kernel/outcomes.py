"""What a plugin call gives back: its result, or a :class:`Failed` value saying why not.

One vocabulary for every plugin call (poll, push mapping, tick evaluation, launch, run state),
so the kernel and the runtime receive plain, typed values instead of ``X | str``:

>>> failed = Failed("connector 'x' did not answer within 30s", FailureKind.TIMED_OUT)
>>> failed.kind.value, str(failed)
('timed out', "connector 'x' did not answer within 30s")

:func:`guarded` is the one place where a plugin callable's exception or wrong answer becomes a
:class:`Failed`. The SDK's :class:`~arcoflow.sdk.Plugins` runs each call in a worker thread
under a timeout (``TIMED_OUT``, ``BUSY``) and hands the call itself to :func:`guarded`; the
kernel's own conveniences that take a callable (``Kernel.poll``, ``ingest(connector=...)``,
``evaluate_schedules(evaluate=...)``) use it too, and pass a :class:`Failed` the callable
returned through unchanged.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import TypeVar

import msgspec

from .definitions import RunRequest

__all__ = ["Failed", "FailureKind", "describe", "failed_from", "guarded", "run_requests"]

_T = TypeVar("_T")


class FailureKind(enum.Enum):
    """Why a plugin call gave no usable answer."""

    RAISED = "raised"  # the plugin raised (or arcoflow could not call it: not installed)
    TIMED_OUT = "timed out"  # no answer within its timeout; the call was abandoned
    WRONG_TYPE = "wrong type"  # it answered with something other than the documented type
    BUSY = "busy"  # an earlier abandoned call for the same item is still running


class Failed(msgspec.Struct, frozen=True):
    """A plugin call that failed: ``reason`` is what history records (one sentence, naming the
    plugin), ``kind`` what happened."""

    reason: str
    kind: FailureKind = FailureKind.RAISED

    def __str__(self) -> str:
        return self.reason


def describe(exc: BaseException) -> str:
    """``TypeName: message``: the reason recorded for an exception a plugin raised."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def failed_from(result: _T | Failed | str) -> _T | Failed:
    """``result`` with a bare reason (a ``str``, as older callers pass one) read as
    ``Failed(reason)``."""
    return Failed(result) if isinstance(result, str) else result


def guarded(
    call: Callable[[], object],
    expect: type[_T],
    what: str,
    describe_error: Callable[[BaseException], str] = describe,
) -> _T | Failed:
    """``call()`` if it returns an ``expect``; else a :class:`Failed`: ``RAISED`` for an
    ``Exception`` (never a ``BaseException`` such as ``KeyboardInterrupt``), ``WRONG_TYPE``
    for another answer (``what`` names the plugin: ``"connector 'files'"``). A ``Failed``
    the call returned (the SDK's timeout, say) is passed on as it is.

    >>> guarded(lambda: 1 / 0, int, "evaluator 'e'")
    Failed(reason='ZeroDivisionError: division by zero', kind=<FailureKind.RAISED: 'raised'>)
    >>> guarded(lambda: "x", int, "evaluator 'e'").reason
    "evaluator 'e' returned str, not int"
    """
    try:
        answer = call()
    except Exception as exc:  # a plugin's failure is its item's, never the caller's
        return Failed(describe_error(exc), FailureKind.RAISED)
    if isinstance(answer, (expect, Failed)):
        return answer
    return Failed(
        f"{what} returned {type(answer).__name__}, not {expect.__name__}", FailureKind.WRONG_TYPE
    )


def run_requests(answer: object, what: str) -> list[RunRequest] | Failed:
    """A push connector's answer as run requests: ``WRONG_TYPE`` unless a list or tuple of
    :class:`RunRequest` (a :class:`Failed` answer is passed on)."""
    if isinstance(answer, Failed):
        return answer
    items: Sequence[object] = answer if isinstance(answer, (list, tuple)) else ()
    if items is answer and all(isinstance(r, RunRequest) for r in items):
        return [r for r in items if isinstance(r, RunRequest)]
    return Failed(
        f"{what} returned {type(answer).__name__}, not a list of RunRequest",
        FailureKind.WRONG_TYPE,
    )
