"""Broker sources end to end: the runner, its supervision and status, the built-in sources
against the real NATS JetStream and RabbitMQ servers, definitions, the CLI view."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import nats
import pytest
from arcoflow.kernel import (
    InputError,
    InvalidDefinition,
    Kernel,
    LmdbStore,
    MemoryStore,
    RunTemplate,
    SensorDefinition,
    SourceDefinition,
    parse_definitions,
)
from arcoflow.plugins.amqp_source import AmqpSource
from arcoflow.plugins.nats_source import NatsSource
from arcoflow.sdk import PluginMissing, Plugins, hookimpl
from arcoflow.sdk.cli import main
from arcoflow.sdk.daemon import run_daemon
from arcoflow.sdk.sources import (
    Sink,
    Source,
    SourceRunner,
    SourceState,
    backoff,
    read_status,
    status_path,
)
from arcoflow.sdk.testing import MemoryBroker, MemorySource

from .brokers import Jet, Rabbit, message_ids


def _kernel(store: Any = None, max_payload_bytes: int = 1024) -> Kernel:
    kernel = Kernel(store or MemoryStore())
    kernel.define_sensor(
        SensorDefinition(
            "orders", "push", RunTemplate("ship"), max_payload_bytes=max_payload_bytes
        ),
        now=0,
    )
    return kernel


@pytest.fixture
def runner_of() -> Iterator[Callable[..., SourceRunner]]:
    """Start a runner over some sources; every runner is stopped after the test."""
    runners: list[SourceRunner] = []

    def start(kernel: Kernel, *sources: tuple[SourceDefinition, Source], **kw: Any) -> SourceRunner:
        runner = SourceRunner(kernel, sources, **kw)
        runners.append(runner)
        runner.start()
        return runner

    yield start
    for runner in runners:
        runner.stop()


def _until(runner: SourceRunner, done: Callable[[SourceState], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not done(runner.states()[0]):
        assert time.monotonic() < deadline, f"gave up: {runner.states()[0]}"
        time.sleep(0.05)


# -- the runner: supervision and status --------------------------------------------------------


class Flaky:
    """Fails ``failures`` times (as a lost connection would), then consumes the broker."""

    def __init__(self, broker: MemoryBroker, failures: int) -> None:
        self.inner = MemorySource(broker)
        self.failures = failures

    async def run(self, sink: Sink) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("broker unreachable")
        await self.inner.run(sink)


def test_a_failing_source_is_restarted_with_backoff(runner_of: Any) -> None:
    kernel = _kernel()
    broker = MemoryBroker()
    for i in range(20):
        broker.publish(f"m{i}", {"i": i})
    definition = SourceDefinition("orders", "memory", "orders")
    runner = runner_of(kernel, (definition, Flaky(broker, 2)))
    _until(runner, lambda s: s.ingested == 20)
    state = runner.states()[0]
    assert state.restarts == 2
    assert state.last_error == "ConnectionError: broker unreachable"
    assert broker.pending == 0 and len(broker.acked) == 20


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert backoff(50) == 30.0


def test_stop_commits_the_batch_in_flight_and_writes_the_status(
    runner_of: Any, tmp_path: Path
) -> None:
    store = LmdbStore(str(tmp_path))
    try:
        kernel = _kernel(store)
        broker = MemoryBroker()
        for i in range(250):
            broker.publish(f"m{i}", {"i": i})
        definition = SourceDefinition("orders", "memory", "orders", batch_size=50)
        runner = runner_of(
            kernel, (definition, MemorySource(broker)), status_file=status_path(str(tmp_path))
        )
        _until(runner, lambda s: s.ingested >= 50)
        runner.stop()
        # Whatever was committed was acked, and whatever was acked was committed.
        assert sorted(broker.acked) == sorted(message_ids(kernel))
        assert broker.pending == 250 - len(broker.acked)
        (state,) = read_status(str(tmp_path))
        assert state.ingested == len(broker.acked) and not state.connected
    finally:
        store.close()


def test_a_refused_message_is_rejected_with_its_reason_not_redelivered(runner_of: Any) -> None:
    kernel = _kernel(max_payload_bytes=16)
    broker = MemoryBroker()
    broker.publish("ok", 1)
    broker.publish(None, 2)
    broker.publish("big", "x" * 64)
    definition = SourceDefinition("orders", "memory", "orders")
    runner = runner_of(kernel, (definition, MemorySource(broker)))
    _until(runner, lambda s: s.ingested + s.rejected == 3)
    state = runner.states()[0]
    assert (state.ingested, state.rejected) == (1, 2)
    assert [(r.message_id, r.reason[:25]) for r in state.recent_rejections] == [
        (None, "the message has no id"),
        ("big", "payload is 66 bytes; sens"),
    ]
    assert [m for m, _, _ in broker.dead_letters] == [None, "big"]
    assert broker.pending == 0
    # Only "ok" was taken; the refusals are in the sensor's history, committed with the batch.
    assert _history(kernel) == [("ok", "REQUESTED"), (None, "REFUSED"), ("big", "REFUSED")]


def test_a_stopped_sensor_rejects_what_arrives(runner_of: Any) -> None:
    kernel = _kernel()
    kernel.set_sensor_running("orders", False, now=1)
    broker = MemoryBroker()
    broker.publish("a", 1)
    runner = runner_of(kernel, (SourceDefinition("s", "memory", "orders"), MemorySource(broker)))
    _until(runner, lambda s: s.rejected == 1)
    assert "stopped" in broker.dead_letters[0][2]
    assert _history(kernel) == [("a", "REFUSED")]
    assert kernel.runs() == []


def _history(kernel: Kernel) -> list[tuple[str | None, str]]:
    """``(message_id, status)`` of each evaluation of ``orders``, oldest first."""
    return [(e.evaluation.message_id, e.evaluation.status) for e in kernel.evaluations("orders")][
        ::-1
    ]


# -- definitions and plugins ---------------------------------------------------------------------


def test_the_documented_source_declaration_parses() -> None:
    definitions = parse_definitions(
        {
            "source": [
                {
                    "id": "orders",
                    "plugin": "nats",
                    "sensor": "orders",
                    "config": {
                        "servers": ["nats://127.0.0.1:4222"],
                        "stream": "ORDERS",
                        "subject": "orders.>",
                        "durable": "arcoflow",
                    },
                }
            ]
        }
    )
    (source,) = definitions.sources
    assert (source.id, source.plugin, source.sensor, source.batch_size) == (
        "orders",
        "nats",
        "orders",
        100,
    )


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"id": "o", "plugin": "nats"}, "sensor: required field missing"),
        ({"id": "O!", "plugin": "nats", "sensor": "s"}, "id 'O!' is not valid"),
        ({"id": "o", "plugin": "", "sensor": "s"}, "plugin: must name a plugin"),
        (
            {"id": "o", "plugin": "nats", "sensor": "s", "batch_size": 0},
            "batch_size: 0 is out of range",
        ),
        ({"id": "o", "plugin": "nats", "sensor": "s", "queue": "q"}, "unknown field(s) queue"),
    ],
)
def test_a_bad_source_declaration_is_refused(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidDefinition, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_definitions({"source": [entry]})


def test_a_source_cannot_feed_a_poll_sensor_of_the_same_file() -> None:
    poll = {"id": "files", "type": "poll", "connector": "filesystem", "run": {"target": "t"}}
    source = {"id": "o", "plugin": "nats", "sensor": "files"}
    with pytest.raises(InvalidDefinition, match="sensor 'files' is a poll sensor"):
        parse_definitions({"sensor": [poll], "source": [source]})


def test_the_plugins_make_sources_and_refuse_bad_config() -> None:
    plugins = Plugins.discover()
    good = SourceDefinition("o", "nats", "orders", {"stream": "S", "subject": "s", "durable": "d"})
    assert isinstance(plugins.source(good), NatsSource)
    with pytest.raises(InputError, match=r"source 'o': config.stream is required"):
        plugins.source(SourceDefinition("o", "nats", "orders", {"subject": "s", "durable": "d"}))
    with pytest.raises(InputError, match=r"config.prefetch must be a int, got 'many'"):
        plugins.source(SourceDefinition("o", "amqp", "orders", {"queue": "q", "prefetch": "many"}))
    with pytest.raises(PluginMissing, match="no source plugin 'kafka' installed"):
        plugins.source(SourceDefinition("o", "kafka", "orders"))


def test_arcoflow_sources_shows_the_status_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(tmp_path / "store")
    assert main(["--store", store, "sources"]) == 2  # a mistyped store is an error, not "(none)"
    assert "no store at" in capsys.readouterr().err
    LmdbStore(store).close()
    assert main(["--store", store, "sources"]) == 0
    assert "(none)" in capsys.readouterr().out
    runner = SourceRunner(Kernel(MemoryStore()), [], status_file=status_path(store))
    runner._states["orders"] = SourceState("orders", "nats", "orders", True, 7, 3, 1, 0, 0)
    runner._write_status()
    assert main(["--store", store, "sources"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["ID", "PLUGIN", "SENSOR", "CONNECTED"]
    assert table[1].split()[:6] == ["orders", "nats", "orders", "True", "7", "3"]
    assert main(["--store", store, "--json", "sources"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["pending"], row["ingested"], row["duplicates"]) == (7, 3, 1)


# -- against the real brokers --------------------------------------------------------------------


def test_nats_redelivery_storm_is_one_evaluation_each(nats_url: str, runner_of: Any) -> None:
    """1,000 messages published twice (ids in the payload, so JetStream keeps both copies),
    and a first consumer that naks every one of them: still one evaluation each."""
    jet = Jet(nats_url)
    try:
        ids = [f"o{i}" for i in range(1000)]
        config = jet.config(message_id="payload.order", max_ack_pending=2000, ack_wait=5)
        jet.publish([(None, {"order": m}) for m in ids] * 2)

        async def nak_all() -> int:
            nc = await nats.connect(nats_url)
            try:
                sub = await nc.jetstream().pull_subscribe(
                    jet.subject, durable="arcoflow", stream=jet.stream
                )
                naked = 0
                while naked < 2000:
                    for msg in await sub.fetch(500, timeout=5):
                        await msg.nak()
                        naked += 1
                return naked
            finally:
                await nc.close()

        assert asyncio.run(nak_all()) == 2000
        kernel = _kernel()
        definition = SourceDefinition("orders", "nats", "orders", config)
        runner = runner_of(kernel, (definition, NatsSource(definition)))
        _until(runner, lambda s: s.ingested + s.duplicates >= 2000 and s.pending == 0)
        state = runner.states()[0]
        evaluations = message_ids(kernel)
        assert sorted(evaluations) == sorted(ids)
        assert (state.ingested, state.duplicates, state.rejected) == (1000, 1000, 0)
        assert jet.pending() == 0
        assert kernel.verify().ok
    finally:
        jet.delete()


def test_an_idle_nats_source_is_not_restarted_by_a_fetch_timeout(
    nats_url: str, runner_of: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nats-py's ``fetch`` of several messages ends an empty wait with either its own
    ``nats.errors.TimeoutError`` or a plain ``TimeoutError`` (when its first, no-wait request
    used up the deadline, as it does on a loaded machine). Both mean "nothing yet". Before:
    the plain one failed the source, which was restarted with backoff every few seconds while
    idle (``restarts`` rising, ``last_error`` "TimeoutError")."""
    from nats.js.client import JetStreamContext  # noqa: PLC0415

    real_fetch = JetStreamContext.PullSubscription.fetch
    calls = [0]

    async def fetch(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] % 2:  # what _fetch_n raises when the no-wait probe ate the deadline
            raise TimeoutError
        return await real_fetch(self, *args, **kwargs)

    monkeypatch.setattr(JetStreamContext.PullSubscription, "fetch", fetch)
    jet = Jet(nats_url)
    try:
        kernel = _kernel()
        config = jet.config(fetch_timeout=0.2)
        definition = SourceDefinition("orders", "nats", "orders", config)
        runner = runner_of(kernel, (definition, NatsSource(definition)))
        _until(runner, lambda s: calls[0] >= 6)
        jet.publish([(f"m{i}", {"i": i}) for i in range(3)])
        _until(runner, lambda s: s.ingested == 3)
        state = runner.states()[0]
        assert (state.restarts, state.last_error, state.connected) == (0, None, True)
    finally:
        jet.delete()


def test_the_pending_count_of_a_nats_source_is_fresh_once_the_backlog_drains(
    nats_url: str, runner_of: Any
) -> None:
    """Before: ``pending`` (``arcoflow sources``) kept the backlog it was when the source last
    asked, until the next empty fetch had waited its whole ``fetch_timeout``: a drained source
    showed 30 pending for seconds (the daemon crash test read 222 after the stream drained)."""
    jet = Jet(nats_url)
    try:
        jet.publish([(f"m{i}", {"i": i}) for i in range(30)])
        kernel = _kernel()
        config = jet.config(fetch_timeout=20.0)  # a long idle wait must not hold it
        definition = SourceDefinition("orders", "nats", "orders", config)
        runner = runner_of(kernel, (definition, NatsSource(definition)))
        _until(runner, lambda s: s.ingested == 30)
        _until(runner, lambda s: s.pending == 0, timeout=5)
        assert jet.pending() == 0
    finally:
        jet.delete()


def test_nats_rejects_poison_messages_once(nats_url: str, runner_of: Any) -> None:
    jet = Jet(nats_url)
    try:
        jet.publish([("a", {"n": 1}), (None, {"n": 2}), ("bad", b"not json"), ("big", "x" * 99)])
        kernel = _kernel(max_payload_bytes=64)
        definition = SourceDefinition("orders", "nats", "orders", jet.config(ack_wait=1))
        runner = runner_of(kernel, (definition, NatsSource(definition)))
        _until(runner, lambda s: s.ingested + s.rejected == 4 and s.pending == 0)
        time.sleep(2.5)  # past ack_wait: a message merely left unacked would come back now
        state = runner.states()[0]
        assert (state.ingested, state.rejected, state.duplicates) == (1, 3, 0)
        reasons = {r.message_id: r.reason for r in state.recent_rejections}
        assert reasons[None] == "the message has no id (no Nats-Msg-Id header)"
        assert reasons["bad"].startswith("the body is not JSON")
        assert "max_payload_bytes" in reasons["big"]
        assert jet.pending() == 0
    finally:
        jet.delete()


def test_nats_refusals_are_in_the_sensor_history(
    nats_url: str, runner_of: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 14: a message the kernel refuses is dead-lettered with its reason recorded in the
    sensor's history (a REFUSED evaluation, committed with the batch), which the CLI's
    evaluation query shows; a stopped sensor's refusals too. Raw bodies are never stored."""
    jet = Jet(nats_url)
    try:
        body = b"\xff\xfenot json \x00"
        jet.publish([("a", {"n": 1}), (None, {"n": 2}), ("bad", body), ("big", "x" * 99)])
        store = str(tmp_path / "store")
        kernel = _kernel(LmdbStore(store), max_payload_bytes=64)
        definition = SourceDefinition("orders", "nats", "orders", jet.config(ack_wait=1))
        runner = runner_of(kernel, (definition, NatsSource(definition)))
        _until(runner, lambda s: s.ingested + s.rejected == 4 and s.pending == 0)
        kernel.set_sensor_running("orders", False)
        jet.publish([("late", {"n": 3})])
        _until(runner, lambda s: s.rejected == 4 and s.pending == 0)
        time.sleep(2.5)  # past ack_wait: a refusal redelivered would be counted again
        runner.stop()
        assert runner.states()[0].rejected == 4
        kernel.store.close()
        assert main(["--store", store, "--json", "evals", "orders"]) == 0
        shown = {e["message_id"]: e for e in json.loads(capsys.readouterr().out)}
        assert [shown[m]["status"] for m in ("a", "bad", "big", "late", None)] == [
            "REQUESTED",
            *["REFUSED"] * 4,
        ]
        assert shown[None]["reason"] == "the message has no id (no Nats-Msg-Id header)"
        assert shown["bad"]["reason"].startswith("the body is not JSON")
        assert "max_payload_bytes" in shown["big"]["reason"]
        assert shown["big"]["summary"] == 'payload 101 bytes of JSON: "' + "x" * 79 + "..."
        assert "stopped" in shown["late"]["reason"]
        assert jet.pending() == 0
    finally:
        jet.delete()


def test_amqp_redelivery_storm_is_one_evaluation_each(amqp_url: str, runner_of: Any) -> None:
    """1,000 messages published twice under the same message_id, and a first consumer that
    nacks (requeues) every one of them: still one evaluation each."""
    rabbit = Rabbit(amqp_url)
    try:
        ids = [f"o{i}" for i in range(1000)]
        rabbit.publish([(m, {"order": m}) for m in ids] * 2)

        async def nack_all() -> int:
            connection = await aio_pika.connect(amqp_url)
            try:
                channel = await connection.channel()
                await channel.set_qos(prefetch_count=2000)
                queue = await channel.declare_queue(rabbit.queue, passive=True)
                nacked = 0
                async with queue.iterator() as messages:
                    async for message in messages:
                        await message.nack(requeue=True)
                        nacked += 1
                        if nacked == 2000:
                            break
                return nacked
            finally:
                await connection.close()

        assert asyncio.run(nack_all()) == 2000
        kernel = _kernel()
        definition = SourceDefinition("orders", "amqp", "orders", rabbit.config())
        runner = runner_of(kernel, (definition, AmqpSource(definition)))
        _until(runner, lambda s: s.ingested + s.duplicates >= 2000)
        state = runner.states()[0]
        assert sorted(message_ids(kernel)) == sorted(ids)
        assert (state.ingested, state.duplicates, state.rejected) == (1000, 1000, 0)
        _until(runner, lambda s: s.pending == 0)
        assert kernel.verify().ok
    finally:
        rabbit.delete()


def test_amqp_dead_letters_poison_messages(amqp_url: str, runner_of: Any) -> None:
    rabbit = Rabbit(amqp_url)
    try:
        rabbit.publish([("a", {"n": 1}), ("bad", b"not json"), ("big", "x" * 99)])
        rabbit.publish([("c", {"n": 2})])
        kernel = _kernel(max_payload_bytes=64)
        config = rabbit.config(message_id="payload.order")
        definition = SourceDefinition("orders", "amqp", "orders", config)
        runner = runner_of(kernel, (definition, AmqpSource(definition)))
        _until(runner, lambda s: s.rejected == 4)  # no "order" field in any payload
        assert rabbit.depth(rabbit.dead) == 4, "rejected into the dead-letter queue"
        reasons = [r.reason for r in runner.states()[0].recent_rejections]
        assert reasons.count("the message has no id (no id in payload field 'order')") == 3
        assert any(r.startswith("the body is not JSON") for r in reasons)
        # Nothing taken; the four refusals are in the sensor's history, one row each.
        refused = [e.evaluation for e in kernel.evaluations("orders")]
        assert [(e.status, e.message_id) for e in refused] == [("REFUSED", None)] * 4
    finally:
        rabbit.delete()


def test_an_unreachable_broker_is_reported_and_retried(runner_of: Any) -> None:
    config = {"servers": ["nats://127.0.0.1:1"], "stream": "S", "subject": "s", "durable": "d"}
    definition = SourceDefinition("orders", "nats", "orders", config)
    runner = runner_of(_kernel(), (definition, NatsSource(definition)))
    _until(runner, lambda s: s.restarts >= 1, timeout=15)
    state = runner.states()[0]
    assert not state.connected
    assert state.last_error is not None
    assert state.last_error.startswith("ConnectionError: cannot reach NATS at nats://127.0.0.1:1")
    started = time.monotonic()
    runner.stop()
    assert time.monotonic() - started < 5, "stops promptly while backing off"


# -- in the daemon -------------------------------------------------------------------------------


class MemorySourcePlugin:
    """A source plugin over one in-memory broker, registered in code."""

    def __init__(self, broker: MemoryBroker) -> None:
        self.broker = broker

    @hookimpl
    def arcoflow_source(self, source: SourceDefinition) -> Source:
        return MemorySource(self.broker)


_DAEMON_TOML = """
[[sensor]]
id = "orders"
type = "push"
run = { target = "ship" }

[[source]]
id = "orders"
plugin = "%s"
sensor = "orders"
"""


def test_the_daemon_runs_its_sources_and_stops_them_cleanly(tmp_path: Path) -> None:
    broker = MemoryBroker()
    for i in range(30):
        broker.publish(f"m{i}", {"i": i})
    plugins = Plugins()
    plugins.register(MemorySourcePlugin(broker), "mem")
    config = tmp_path / "arcoflow.toml"
    config.write_text(_DAEMON_TOML % "mem")
    store = LmdbStore(str(tmp_path / "store"))
    try:
        kernel = Kernel(store)
        stop = threading.Event()

        def stop_when_drained() -> None:
            deadline = time.monotonic() + 20
            while broker.pending and time.monotonic() < deadline:
                time.sleep(0.02)
            stop.set()

        threading.Thread(target=stop_when_drained).start()
        assert run_daemon(kernel, plugins, str(config), 0.05, False, stop=stop) == 0
        assert sorted(broker.acked) == sorted(message_ids(kernel))
        assert len(broker.acked) == 30
        (state,) = read_status(str(tmp_path / "store"))
        assert (state.ingested, state.connected) == (30, False)
    finally:
        store.close()


@pytest.mark.parametrize(
    ("plugin", "error", "message"),
    [
        # bad input, like a connector that is not installed (was PluginMissing, exit 1)
        ("kafka", InvalidDefinition, "no source plugin 'kafka' is installed"),
        ("nats", InputError, "config.stream is required"),
    ],
)
def test_the_daemon_refuses_a_bad_source_before_writing_anything(
    tmp_path: Path, plugin: str, error: type[Exception], message: str
) -> None:
    config = tmp_path / "arcoflow.toml"
    config.write_text(_DAEMON_TOML % plugin)
    kernel = Kernel(MemoryStore())
    with pytest.raises(error, match=message):
        run_daemon(kernel, Plugins.discover(), str(config), 1.0, True)
    assert kernel.sensors() == []


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            'id = "o"\nplugin = "kafka"\nsensor = "orders"',
            "source 'o': no source plugin 'kafka' is installed (installed sources: amqp, nats",
        ),
        (
            'id = "o"\nplugin = "filesystem"\nsensor = "orders"',
            "source 'o': plugin 'filesystem' is not a source",
        ),
        (
            'id = "o"\nplugin = "nats"\nsensor = "orders"\nconfig = { subject = "s" }',
            "source 'o': config.stream is required",
        ),
    ],
)
@pytest.mark.parametrize("command", [["apply"], ["run", "--once", "--config"]])
def test_apply_and_run_refuse_a_source_its_plugin_cannot_serve(
    source: str,
    message: str,
    command: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Like a connector or a launcher, a source names a plugin that must be installed, be a
    source and accept its config: bad input (exit 2), nothing written. Before: `apply`
    accepted the file, and `run` failed with exit 1 once the store was written."""
    defs = tmp_path / "defs.toml"
    defs.write_text(
        '[[sensor]]\nid = "orders"\ntype = "push"\nrun = { target = "t" }\n'
        f"[[source]]\n{source}\n"
    )
    store = tmp_path / "store"
    assert main(["--store", str(store), *command, str(defs)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"arcoflow: error: {defs}: ") and message in err, err
    assert err.count("\n") == 1
    assert not store.exists()
