"""Deterministic doubles: stand-ins whose every answer is a function of what they are asked, so
a failing example replays exactly.

* plugin behaviours for the kernel machine: :func:`evaluator`, :func:`connector`,
  :func:`mapper` (one per mode: answer, skip, raise, answer nonsense...);
* the plugin kit's reference plugins: :class:`CountingConnector`, :class:`SucceedingLauncher`,
  :class:`PollPlugin` (a plain callable as a plugin object) and :class:`Flaky` (sabotage);
* the store proxy :class:`Interposer`: another process appending between a read and an append,
  and :class:`SimulatedCrash` inside a write transaction.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Final

from arcoflow.kernel import (
    Codec,
    Envelope,
    PollContext,
    PollResult,
    PushMessage,
    RunRequest,
    Store,
    TickContext,
    TickResult,
)
from arcoflow.kernel.store.base import Appended, Pending, ReadTxn
from arcoflow.sdk import Launched, hookimpl

__all__ = [
    "CONNECTOR_MODES",
    "EVALUATOR_MODES",
    "MAPPER_MODES",
    "CountingConnector",
    "Flaky",
    "Interposer",
    "PluginDown",
    "PollPlugin",
    "SimulatedCrash",
    "SucceedingLauncher",
    "bucket",
    "connector",
    "evaluator",
    "mapper",
]


# -- a store proxy: other processes and crashes ------------------------------------------------


class SimulatedCrash(BaseException):
    """The process died inside a write transaction (a BaseException: nothing catches it)."""


class Interposer:
    """A store proxy that simulates the world around one process.

    ``before_append``: run this (another process's whole command) just before the next
    append, i.e. between this process's read and its append: a race on a stale read.
    ``crash_at``: die at the n-th log record encoded inside the next append's write
    transaction, after some writes and before the commit. Any :class:`Store` can be wrapped.
    """

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.codec: Codec = inner.codec
        self.before_append: Callable[[], None] | None = None
        self.crash_at: int | None = None

    def append(self, batch: Sequence[Pending], at: int) -> Appended:
        hook, self.before_append = self.before_append, None
        if hook is not None:
            hook()
        crash_at, self.crash_at = self.crash_at, None
        if crash_at is None:
            return self.inner.append(batch, at)
        codec = self.inner.codec
        encode = codec.encode
        calls = 0

        def dying(envelope: Envelope) -> bytes:
            nonlocal calls
            calls += 1
            if calls >= crash_at:
                raise SimulatedCrash(f"crash at record {calls} of the append")
            return encode(envelope)

        codec.encode = dying  # type: ignore[method-assign]
        try:
            return self.inner.append(batch, at)
        finally:
            del codec.encode  # back to the class's method

    def append_many(self, batches: Sequence[Sequence[Pending]], at: int) -> list[Appended]:
        return self.inner.append_many(batches, at)

    def disarm(self) -> bool:
        """Drop a ``before_append`` hook that did not run; True if there was one."""
        armed, self.before_append = self.before_append is not None, None
        return armed

    def replay(self, envelopes: Sequence[Envelope]) -> None:
        self.inner.replay(envelopes)

    def read(self) -> AbstractContextManager[ReadTxn]:
        return self.inner.read()

    def close(self) -> None:
        self.inner.close()


# -- plugin behaviours: deterministic functions of what they are asked -------------------------

EVALUATOR_MODES: Final = (
    "default",
    "skip",
    "empty",
    "two",
    "keyed",
    "raise",
    "flaky",
    "wrong",
    "mixed",
    "absent",
    "dup",
)


class PluginDown(RuntimeError):
    """What the machine's misbehaving plugins raise."""


def bucket(text: str, n: int) -> int:
    return zlib.crc32(text.encode()) % n


def evaluator(mode: str) -> Callable[[TickContext], Any] | None:
    """A schedule evaluator plugin behaving as ``mode`` (``absent``: none is installed)."""
    if mode == "absent":
        return None

    def answer(ctx: TickContext, how: str) -> Any:
        if how == "skip":
            return TickResult(skip_reason="not a business day")
        if how == "empty":
            return TickResult(run_requests=[])
        if how == "two":
            return TickResult(run_requests=[RunRequest(), RunRequest(config={"part": 2})])
        if how == "keyed":  # one key for every tick: later ticks link or conflict
            return TickResult(run_requests=[RunRequest("shared", config={"tick": ctx.tick_id})])
        if how == "raise":
            raise PluginDown("evaluator down")
        if how == "flaky":
            if ctx.attempt == 1:
                raise PluginDown("first attempt fails")
            return TickResult()
        if how == "wrong":
            return "not a TickResult"
        if how == "dup":  # one tick asks twice for one key, with other content
            return TickResult(
                run_requests=[
                    RunRequest("same", config={"a": 1}),
                    RunRequest("same", config={"a": 2}),
                ]
            )
        return TickResult()

    def evaluate(ctx: TickContext) -> Any:
        how = mode
        if mode == "mixed":
            how = ("default", "skip", "raise", "two", "flaky")[bucket(ctx.tick_id, 5)]
        return answer(ctx, how)

    return evaluate


CONNECTOR_MODES: Final = (
    "advance",
    "advance",
    "bytes",
    "same",
    "skip",
    "raise",
    "many",
    "keyed",
    "wrong",
    "empty",
    "dup",
)


def connector(mode: str) -> Callable[[PollContext], Any]:
    """A poll connector behaving as ``mode``; its cursor counts polls that saw new data."""

    def poll(ctx: PollContext) -> Any:
        raw = ctx.cursor.decode() if isinstance(ctx.cursor, bytes) else ctx.cursor
        n = int(raw) if raw else 0
        if mode == "advance":
            return PollResult([RunRequest()], cursor=str(n + 1))
        if mode == "bytes":  # a connector that upgraded its cursor format to bytes, version 2
            return PollResult(
                [RunRequest(f"item-{n + 1}")], cursor=b"%d" % (n + 1), cursor_version=2
            )
        if mode == "same":
            return PollResult()  # no new data, no new cursor: the cursor stays
        if mode == "empty":
            return PollResult([], cursor=str(n))
        if mode == "skip":
            return PollResult(skip_reason="source paused")
        if mode == "raise":
            raise PluginDown("source unreachable")
        if mode == "many":
            return PollResult([RunRequest(), RunRequest(config={"part": 2})], cursor=str(n + 2))
        if mode == "keyed":  # the same key with content that changes: conflicts
            return PollResult([RunRequest("latest", config={"n": n})], cursor=str(n + 1))
        if mode == "dup":  # one poll asks twice for one key, with other content
            return PollResult(
                [RunRequest("twice", config={"a": 1}), RunRequest("twice", config={"a": 2})],
                cursor=str(n + 1),
            )
        return None  # "wrong": not a PollResult

    return poll


MAPPER_MODES: Final = (None, None, "two", "none", "raise", "wrong", "keyed", "dup")


def mapper(mode: str | None) -> Callable[[PushMessage], Any] | None:
    """A push connector behaving as ``mode`` (``None``: the default, one run per message)."""
    if mode is None:
        return None

    def map_message(message: PushMessage) -> Any:
        if mode == "two":
            return [RunRequest(), RunRequest(config={"copy": True})]
        if mode == "none":
            return []
        if mode == "raise":
            raise PluginDown("cannot parse message")
        if mode == "keyed":
            return [RunRequest("latest", config={"message": message.message_id})]
        if mode == "dup":
            return [RunRequest("twice", config={"a": 1}), RunRequest("twice", config={"a": 2})]
        return {"not": "a list"}

    return map_message


# -- the plugin kit's reference plugins ------------------------------------------------------


class CountingConnector:
    """The reference connector: one run per item of new data, the cursor counts them.
    ``steady``: one new item at every poll (the control sensor)."""

    def __init__(self, steady: bool = False) -> None:
        self.pending = 0
        self.steady = steady

    def __call__(self, context: PollContext) -> PollResult:
        n = int(context.cursor or 0)
        self.pending += self.steady
        if self.pending == 0:
            return PollResult()
        new, self.pending = self.pending, 0
        return PollResult([RunRequest(f"item-{n + i + 1}") for i in range(new)], str(n + new))


class SucceedingLauncher:
    """The reference launcher: every launch succeeds, with the run id as external id."""

    def arcoflow_launch(self, launch: Any) -> Any:
        return Launched(f"ref-{launch.run_id[:8]}")


class PollPlugin:
    """A plain callable connector as a plugin object."""

    def __init__(self, fn: Callable[[PollContext], Any]) -> None:
        self.fn = fn

        @hookimpl
        def arcoflow_poll(context: PollContext) -> Any:
            return self.fn(context)

        self.arcoflow_poll = arcoflow_poll


class Flaky:
    """Wraps a plugin object: while ``broken``, every hook call raises."""

    def __init__(self, target: Any, hook: str) -> None:
        self.broken = False

        def call(**kwargs: Any) -> Any:
            if self.broken:
                raise RuntimeError("plugin sabotaged by the kit")
            return getattr(target, hook)(**kwargs)

        setattr(self, hook, hookimpl(specname=hook)(_named(call, hook)))
        if hook == "arcoflow_launch" and hasattr(target, "arcoflow_run_state"):
            self.arcoflow_run_state = target.arcoflow_run_state
        if hasattr(target, "arcoflow_check_config"):  # checking a config is never sabotaged
            self.arcoflow_check_config = target.arcoflow_check_config


def _named(fn: Callable[..., Any], hook: str) -> Callable[..., Any]:
    # pluggy reads the argument names of an implementation; give it the hook's own.
    if hook == "arcoflow_poll":

        def poll(context: PollContext) -> Any:
            return fn(context=context)

        return poll

    def launch(launch: Any) -> Any:
        return fn(launch=launch)

    return launch
