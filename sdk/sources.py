"""Broker sources: long-running consumers that feed push sensors, exactly once in effect.

A source plugin implements :func:`~arcoflow.sdk.hookspecs.arcoflow_source` and returns a
:class:`Source`: an object whose ``run(sink)`` coroutine consumes from its broker and hands each
message to the :class:`Sink` as a :class:`Delivery` (id, payload, and how to ack or reject it).
The sink does the rest, the same way for every broker:

* it ingests up to ``batch_size`` messages in **one** store transaction
  (:meth:`~arcoflow.kernel.Kernel.ingest_many`), and only **after** that commit acks each one;
  a crash between commit and ack means a redelivery, which the kernel's message-id dedupe turns
  into a duplicate that writes nothing;
* a message without an id, or one the kernel refuses (bad payload, unknown or stopped sensor),
  is rejected through the broker's dead-letter path (``Delivery.reject(reason)``) and counted,
  with the reason kept in the source's recent rejections and logged: never redelivered forever.
  The refusal is also recorded in the sensor's history, in the batch's transaction (a
  ``REFUSED`` evaluation with the reason and a bounded summary, never the raw body), so the
  sensor's evaluations show it; an unknown sensor has no history, and there the source's
  rejections are the record;
* ``put`` waits while a batch is being committed, so what a source holds is bounded by its
  broker-side limit (max ack pending, prefetch) plus one batch.

:class:`SourceRunner` runs every source of a definitions file in one asyncio loop on a
background thread, restarts a source that fails with capped exponential backoff, and stops them
cleanly (the batch in flight is committed and acked first). Its state (:class:`SourceState`:
connected, broker pending count, ingested, duplicates, rejected, last error) is written every
second to a small JSON file beside the store (:func:`status_path`), which ``arcoflow sources``
and ``GET /sources`` read: cheap, and nothing in the store's log.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

import msgspec
from arcoflow.kernel import (
    ArcoflowError,
    Ingested,
    InputError,
    Kernel,
    NotFound,
    PushMessage,
    Refused,
    SourceDefinition,
    iso,
)
from arcoflow.kernel.store import daemon_status

from .types import Register, Subparsers

if TYPE_CHECKING:
    from .plugins import Plugins

__all__ = [
    "STATUS_FILE",
    "Delivery",
    "Rejection",
    "Sink",
    "Source",
    "SourceRunner",
    "SourceState",
    "add_source_commands",
    "config_value",
    "decode_body",
    "id_from_payload",
    "make_sources",
    "read_status",
    "running_sources",
    "status_path",
    "status_row",
    "store_status",
    "write_status",
]

log = logging.getLogger("arcoflow.sources")

#: The status file's name, in the store's directory.
STATUS_FILE: Final = "arcoflow-sources.json"
_RECENT: Final = 20  # rejections kept per source
_BACKOFF_BASE: Final = 0.5
_BACKOFF_CAP: Final = 30.0


class Delivery(msgspec.Struct, frozen=True):
    """One message a source consumed, and how to settle it with its broker.

    ``message_id``: the broker's id or the configured payload field (``None``: there is none,
    and the message is rejected). ``problem``: a reason the source already knows the message is
    unusable (e.g. its body is not JSON). ``ack`` and ``reject`` are the broker's calls; the
    sink calls exactly one of them, after the ingest committed.
    """

    message_id: str | None
    payload: Any
    ack: Callable[[], Awaitable[None]]
    reject: Callable[[str], Awaitable[None]]
    problem: str | None = None


class Rejection(msgspec.Struct, frozen=True):
    """A message a source dead-lettered, and why."""

    message_id: str | None
    reason: str
    at: float


class SourceState(msgspec.Struct):
    """What an operator sees of one source (``arcoflow sources``, ``GET /sources``)."""

    id: str
    plugin: str
    sensor: str
    connected: bool = False
    pending: int | None = None  # messages the broker holds for this consumer, if it says
    ingested: int = 0
    duplicates: int = 0
    rejected: int = 0
    restarts: int = 0
    last_error: str | None = None
    recent_rejections: list[Rejection] = msgspec.field(default_factory=list)
    updated_at: float = 0.0


class Source(Protocol):
    """A consumer returned by a source plugin."""

    async def run(self, sink: Sink) -> None:
        """Consume until cancelled, handing each message to ``sink.put`` (and calling
        ``sink.flush`` when the broker has nothing more for now). Report the broker's state with
        ``sink.connected(...)``. Raise on failure: the runner restarts the source with backoff.
        Close the connection in a ``finally``: cancellation is how a source is stopped."""
        ...


class Sink:
    """Where a source puts messages: batches them, ingests each batch in one transaction,
    then acks (or rejects) each message. One sink per source."""

    def __init__(
        self,
        kernel: Kernel,
        definition: SourceDefinition,
        state: SourceState,
        mapper: Callable[[str], Any] | None = None,
        linger: float = 0.05,
    ) -> None:
        self.kernel = kernel
        self.definition = definition
        self.state = state
        self.linger = linger
        self._mapper = mapper  # sensor id -> the kernel's connector callable (or None)
        self._batch: list[Delivery] = []
        self._lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._flusher: asyncio.Task[None] | None = None  # a reference keeps the task alive
        self.closed = False

    @property
    def batch_size(self) -> int:
        return self.definition.batch_size

    def connected(self, connected: bool, pending: int | None = None) -> None:
        """Report the broker connection (and its pending count, when it gives one)."""
        self.state.connected = connected
        if pending is not None or not connected:
            self.state.pending = pending
        self.state.updated_at = time.time()

    async def put(self, delivery: Delivery) -> None:
        """Add one message; a full batch is committed (and settled) before this returns."""
        self._batch.append(delivery)
        if len(self._batch) >= self.batch_size:
            await self.flush()
        elif self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.linger, self._flush_later)

    def _flush_later(self) -> None:
        self._timer = None
        self._flusher = asyncio.get_running_loop().create_task(self._timed_flush())

    async def _timed_flush(self) -> None:
        """The linger timer's flush: a failure here (the store) is the source's to report."""
        try:
            await self.flush()
        except Exception as exc:
            self.state.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("source %r: a batch failed: %s", self.definition.id, exc)

    async def flush(self) -> None:
        """Commit what is buffered in one transaction, then settle each message."""
        async with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            batch, self._batch = self._batch, []
            if not batch or self.closed:
                return  # closed: uncommitted and unacked, so the broker delivers it again
            # One transaction for the batch: what is ingested and, in the sensor's history,
            # why the rest is refused. Only then is each message acked or rejected.
            outcomes = await asyncio.to_thread(self._ingest, batch)
            for delivery, outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, Ingested):
                    await self._settle(delivery.ack(), delivery)
                    if outcome.duplicate:
                        self.state.duplicates += 1
                    else:
                        self.state.ingested += 1
                else:
                    await self._reject(delivery, str(outcome.error))
            self.state.updated_at = time.time()

    def discard(self) -> None:
        """Drop what is buffered, uncommitted (after the source failed: the broker redelivers
        it to the next connection)."""
        self._batch = []

    async def close(self, consumer: asyncio.Task[Any]) -> None:
        """Stop ``consumer`` (the task running the source) *between* batches: a batch being
        committed is committed and settled first; what is merely buffered is dropped,
        uncommitted, for the broker to deliver again."""
        async with self._lock:
            self.closed = True
            self._batch = []
            consumer.cancel()

    async def _settle(self, call: Awaitable[None], delivery: Delivery) -> None:
        try:
            await call
        except Exception as exc:  # the connection went: the broker redelivers, a duplicate
            log.info(
                "source %r: could not settle message %r (%s); it will be delivered again",
                self.definition.id,
                delivery.message_id,
                exc,
            )

    def _ingest(self, batch: Sequence[Delivery]) -> list[Ingested | Refused]:
        connector = self._mapper(self.definition.sensor) if self._mapper is not None else None
        return self.kernel.ingest_many(
            self.definition.sensor,
            [(d.message_id or "", d.payload, _problem(d)) for d in batch],
            connector=connector,
            record_refusals=True,
        )

    async def _reject(self, delivery: Delivery, reason: str) -> None:
        log.warning(
            "source %r: message %r rejected: %s", self.definition.id, delivery.message_id, reason
        )
        await self._settle(delivery.reject(reason), delivery)
        self.state.rejected += 1
        recent = self.state.recent_rejections
        recent.append(Rejection(delivery.message_id, reason, time.time()))
        del recent[:-_RECENT]


def _problem(delivery: Delivery) -> str | None:
    """Why ``delivery`` cannot be ingested before the kernel sees it, if its source knows."""
    if delivery.problem is not None:
        return delivery.problem
    return "the message has no id" if delivery.message_id is None else None


def backoff(failures: int) -> float:
    """Seconds to wait before restarting a source after ``failures`` failures in a row."""
    return float(min(_BACKOFF_CAP, _BACKOFF_BASE * 2 ** max(0, failures - 1)))


def status_path(store_path: str) -> str:
    """The status file of the store at ``store_path`` (a directory)."""
    return os.path.join(store_path, STATUS_FILE)


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(list[SourceState])


#: The kind of the sources' state among a PostgreSQL store's daemon status rows.
_STATUS_KIND: Final = "sources"


def store_status(store: Any) -> list[SourceState]:
    """The sources' state for ``store``: every daemon's, from a PostgreSQL store's schema
    (the daemons of a cluster share no directory), or the file in an LMDB store's directory;
    empty if no daemon ran sources on it."""
    board = daemon_status(store)
    if board is not None:
        states: list[SourceState] = []
        for daemon, data in board.statuses(_STATUS_KIND):
            try:
                states += _decoder.decode(data)
            except msgspec.DecodeError as exc:
                log.warning("cannot read the sources' state of daemon %s: %s", daemon, exc)
        return states
    path = getattr(store, "path", None)
    return read_status(path) if isinstance(path, str) else []


def read_status(store_path: str) -> list[SourceState]:
    """The sources' state the daemon last wrote (empty if no daemon ran sources here)."""
    try:
        with open(status_path(store_path), "rb") as fh:
            return _decoder.decode(fh.read())
    except FileNotFoundError:
        return []
    except (OSError, msgspec.DecodeError) as exc:
        log.warning("cannot read %s: %s", status_path(store_path), exc)
        return []


class SourceRunner:
    """Runs sources in one asyncio loop on a background thread; supervises and stops them."""

    def __init__(
        self,
        kernel: Kernel,
        sources: Sequence[tuple[SourceDefinition, Source]],
        *,
        mapper: Callable[[str], Any] | None = None,
        status_file: str | None = None,
        status_interval: float = 1.0,
        publish: Callable[[Sequence[SourceState]], None] | None = None,
    ) -> None:
        self.kernel = kernel
        self.sources = list(sources)
        self.status_file = status_file
        self.publish = publish
        self.status_interval = status_interval
        self._mapper = mapper
        self._states = {d.id: SourceState(d.id, d.plugin, d.sensor) for d, _ in self.sources}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._started = threading.Event()

    def states(self) -> list[SourceState]:
        """A snapshot of every source's state, by id."""
        return [msgspec.structs.replace(s) for _, s in sorted(self._states.items())]

    def start(self) -> None:
        """Start every source (returns at once; they run on a background thread)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._main, name="arcoflow sources", daemon=True)
        self._thread.start()
        self._started.wait()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every source: the batch in flight is committed and settled, the connections
        closed, the status file written a last time."""
        if self._thread is None or self._loop is None or self._stopping is None:
            return
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout)
        self._thread = None

    def _main(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._run_all())
        finally:
            self._loop.close()

    async def _run_all(self) -> None:
        self._stopping = asyncio.Event()
        self._started.set()
        sinks = [Sink(self.kernel, d, self._states[d.id], self._mapper) for d, _ in self.sources]
        tasks = [
            asyncio.create_task(self._supervise(sink, source))
            for sink, (_, source) in zip(sinks, self.sources, strict=True)
        ]
        writer = asyncio.create_task(self._write_status_every())
        await self._stopping.wait()
        for sink, task in zip(sinks, tasks, strict=True):
            await sink.close(task)
        writer.cancel()
        await asyncio.gather(*tasks, writer, return_exceptions=True)
        for state in self._states.values():
            state.connected = False
        self._write_status()

    async def _supervise(self, sink: Sink, source: Source) -> None:
        """Run ``source``; when it fails (or returns), restart it after a capped backoff. A
        run that settled messages resets the backoff."""
        state, name = sink.state, sink.definition.id
        failures = 0
        while True:
            settled = state.ingested + state.duplicates + state.rejected
            try:
                await source.run(sink)
                problem = "the source stopped on its own"
            except Exception as exc:
                problem = f"{type(exc).__name__}: {exc}".rstrip(": ")
            sink.discard()
            if state.ingested + state.duplicates + state.rejected > settled:
                failures = 0
            failures += 1
            state.connected = False
            state.last_error = problem
            state.restarts += 1
            delay = backoff(failures)
            log.warning("source %r failed (%s); restarting in %.1fs", name, problem, delay)
            await asyncio.sleep(delay)

    async def _write_status_every(self) -> None:
        while True:
            self._write_status()
            await asyncio.sleep(self.status_interval)

    def _write_status(self) -> None:
        if self.status_file is not None:
            write_status(self.status_file, self.states())
        if self.publish is not None:
            try:
                self.publish(self.states())
            except ArcoflowError as exc:  # status reporting never stops the sources
                log.warning("cannot record the sources' state in the store: %s", exc)


def write_status(path: str, states: Sequence[SourceState]) -> None:
    """Replace the status file at ``path`` atomically (a reader sees the old or the new)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as fh:
            fh.write(_encoder.encode(states))
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("cannot write %s: %s", path, exc)


def make_sources(
    plugins: Plugins, definitions: Sequence[SourceDefinition]
) -> list[tuple[SourceDefinition, Source]]:
    """Each declared source with the consumer its plugin makes for it. Raises before anything
    runs: :class:`~arcoflow.sdk.PluginMissing`, or :class:`InputError` for a config the plugin
    refuses."""
    return [(d, plugins.source(d)) for d in definitions]


@contextlib.contextmanager
def running_sources(
    kernel: Kernel,
    plugins: Plugins,
    made: Sequence[tuple[SourceDefinition, Source]],
    daemon: str | None = None,
) -> Iterator[SourceRunner | None]:
    """Run the sources :func:`make_sources` made for the ``with`` block; stop them cleanly when
    it ends. Nothing runs (``None``) when there are none. Their state is written where
    :func:`store_status` reads it: a file in an LMDB store's directory, or ``daemon``'s row in
    a PostgreSQL store's schema (default name: host and process id)."""
    if not made:
        yield None
        return

    def mapper(sensor_id: str) -> Callable[[PushMessage], Any] | None:
        try:
            return plugins.push_mapper(kernel.sensor(sensor_id).definition)
        except NotFound:
            return None  # the kernel refuses the messages: unknown sensor

    store_path = getattr(kernel.store, "path", None)
    status_file = status_path(store_path) if isinstance(store_path, str) else None
    board = daemon_status(kernel.store)
    publish = None
    if board is not None:
        name = daemon or f"{socket.gethostname()}:{os.getpid()}"
        keeper = board

        def publish(states: Sequence[SourceState]) -> None:
            keeper.put_status(name, _STATUS_KIND, _encoder.encode(states))

    runner = SourceRunner(kernel, made, mapper=mapper, status_file=status_file, publish=publish)
    runner.start()
    try:
        yield runner
    finally:
        runner.stop()


# -- helpers for source plugins -----------------------------------------------------------------


def decode_body(body: bytes) -> tuple[Any, str | None]:
    """A message body as JSON data (an empty body is ``None``), or the reason it is not."""
    if not body:
        return None, None
    try:
        return msgspec.json.decode(body), None
    except msgspec.DecodeError as exc:
        return None, f"the body is not JSON: {exc}"


def id_from_payload(payload: Any, field: str) -> str | None:
    """The message id in the payload's ``field`` (a string or an integer), or ``None``."""
    value = payload.get(field) if isinstance(payload, dict) else None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    return str(value) or None


def config_value(
    definition: SourceDefinition, name: str, kind: type[Any], default: Any = ...
) -> Any:
    """``config[name]`` of a source, checked to be a ``kind`` (required without ``default``);
    raises :class:`InputError` naming the source and the key."""
    config = definition.config
    if name not in config:
        if default is ...:
            raise InputError(f"source {definition.id!r}: config.{name} is required")
        return default
    value = config[name]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, bool) is not (kind is bool) or not isinstance(value, kind):
        raise InputError(
            f"source {definition.id!r}: config.{name} must be a {kind.__name__}, got {value!r}"
        )
    return value


# -- the CLI command -----------------------------------------------------------------------------


def add_source_commands(
    subparsers: Subparsers,
    register: Register,
) -> None:
    """Add ``sources`` to the ``arcoflow`` CLI (it reads the store's status file, so the store
    must exist: a mistyped ``--store`` is an error, not an empty list)."""
    text = "broker sources the daemon runs: connection, pending, ingested, duplicates, rejections"
    subparsers.add_parser("sources", help=text, description=text)
    register("sources", cmd_sources, "read")


def cmd_sources(args: argparse.Namespace, ctx: Mapping[str, Any]) -> int:
    """``arcoflow sources``: the state the daemons last recorded (:func:`store_status`)."""
    states = store_status(ctx["kernel"].store)
    rows = [status_row(s, bool(ctx.get("json"))) for s in states]
    ctx["out"](rows, "source")
    return 0


def status_row(state: SourceState, full: bool = True) -> dict[str, Any]:
    """One source's state as JSON data (``full=False``: the columns of the table)."""
    row: dict[str, Any] = msgspec.to_builtins(state)
    row["updated_at"] = iso(int(state.updated_at))
    for rejection in row["recent_rejections"]:
        rejection["at"] = iso(int(rejection["at"]))
    if not full:
        del row["recent_rejections"], row["updated_at"]
    return row
