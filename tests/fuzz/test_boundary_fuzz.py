"""Issue 9, item 3: one property over every entry point.

Whatever goes in (the Python API, the definition classes, definitions files, CLI arguments,
plugin results, HTTP bodies), it is either

* **refused** with a typed error (:class:`InputError`, :class:`NotFound`, :class:`Conflict`;
  exit 2 for the CLI, 4xx for HTTP, a ``FAILED`` evaluation or tick for a plugin result) and
  the store is byte for byte what it was, or
* **accepted**, and afterwards every query works, every answer serialises as strict JSON (no
  NaN, no datetimes) and ``verify`` passes.

Generated inputs mix valid values with wrong types and out-of-range values for every field
and argument; the corpus at the end holds every input issue 9 names. The number of inputs
tried is printed at the end of the run (``boundary fuzz: N inputs tried``).
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import math
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import attrs
import pytest
from arcoflow.kernel import (
    Backoff,
    Conflict,
    Definitions,
    InputError,
    Kernel,
    LmdbStore,
    MemoryStore,
    NotFound,
    PollResult,
    RetentionPolicy,
    RunRequest,
    RunTemplate,
    ScheduleDefinition,
    SensorDefinition,
    Store,
    TickResult,
    load_definitions,
    parse_definitions,
)
from arcoflow.kernel import views as v
from arcoflow.kernel.rows import RunRow, Table
from arcoflow.sdk.cli import main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .tally import TALLY

try:  # tests/plugins is not a package
    from ..plugins.http_support import Client, served
except ImportError:  # pragma: no cover - depends on how pytest imports tests/plugins
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))
    from http_support import Client, served  # type: ignore[no-redef]

T0 = 1_700_000_000
HOUR = 3600
REFUSED = (InputError, NotFound, Conflict)


def examples(fraction: float) -> int:
    """A share of the selected profile's example count (``ci`` is modest, ``thorough`` big)."""
    return max(10, int(settings.default.max_examples * fraction))


# -- the property ------------------------------------------------------------------------------


def dump(store: Store) -> dict[Table, tuple[tuple[bytes, bytes], ...]]:
    """Every key and value of every table."""
    with store.read() as txn:
        return {table: tuple(txn.scan(table)) for table in Table}


def check_queries(kernel: Kernel) -> None:
    """Every query answers, every answer is strict JSON, and the log replays to the state."""
    docs: list[Any] = []
    for s in kernel.schedules(include_deleted=True):
        docs.append(v.schedule_json(s))
        docs += [v.tick_json(t) for t in kernel.ticks(s.schedule_id, limit=1000)]
        docs += [v.missed_json(m) for m in kernel.missed(s.schedule_id)]
        docs += [v.preview_json(p) for p in kernel.preview(s.schedule_id, 3, start=T0)]
    for s in kernel.sensors(include_deleted=True):
        docs.append(v.sensor_json(s))
        docs += [v.eval_json(e) for e in kernel.evaluations(s.sensor_id, limit=1000)]
    docs += [v.run_json(r) for r in kernel.runs(limit=1000)]
    docs += [v.conflict_json(c) for c in kernel.conflicts()]
    docs += [e.seq for e in kernel.log()]
    json.dumps(docs, allow_nan=False)
    verification = kernel.verify()
    assert verification.ok, verification.differences


def attempt(kernel: Kernel, action: Callable[[], object]) -> bool:
    """Run ``action`` and check the property; True when the input was accepted."""
    before = dump(kernel.store)
    try:
        result = action()
        if inspect.isgenerator(result):
            list(result)
    except REFUSED:
        assert dump(kernel.store) == before, "a refused input changed the store"
        TALLY["refused"] += 1
        return False
    TALLY["accepted"] += 1
    check_queries(kernel)
    return True


# -- values ------------------------------------------------------------------------------------

surrogates = st.integers(0xD800, 0xDFFF).map(chr)
texts = st.text(st.one_of(st.characters(), surrogates), max_size=12)
times = st.datetimes(
    min_value=datetime(1, 1, 2), timezones=st.sampled_from([UTC, timezone(timedelta(hours=14))])
)
big_ints = st.one_of(
    st.integers(2**63 - 2, 2**70), st.integers(-(2**70), -(2**63) + 1), st.just(2**64)
)
#: Anything a caller might pass where a value is expected.
anything: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    big_ints,
    st.floats(),
    texts,
    st.binary(max_size=4),
    times,
    st.datetimes(max_value=datetime(2100, 1, 1)),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.builds(object),
)
#: JSON-looking data that is not always JSON (NaN, 2**70, datetimes, int keys, tuples).
json_like: st.SearchStrategy[Any] = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), big_ints, st.floats(), texts, times),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=2).map(tuple),
        st.dictionaries(st.one_of(texts, st.integers(0, 3)), inner, max_size=3),
    ),
    max_leaves=6,
)


def maybe(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a valid value, sometimes anything at all."""
    return st.one_of(valid, valid, anything)


templates = st.builds(
    RunTemplate,
    target=st.sampled_from(["etl", "load"]),
    config=st.dictionaries(st.text(max_size=4), st.integers(0, 9), max_size=2),
)
SCHEDULE_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "id": st.sampled_from(["hourly", "new", "Bad Id", ""]),
    "cron": st.sampled_from(["0 * * * *", "*/30 * * * *", "R R * * *", "H * * * *", "61 * * * *"]),
    "run": templates,
    "timezone": st.sampled_from(["UTC", "Europe/London", "Mars/Olympus", "../etc"]),
    "catchup_window": st.one_of(st.integers(-1, 8000), st.sampled_from(["6h", "1d", "5x", "0"])),
    "max_catchup_ticks": st.integers(-1, 1001),
    "catchup_order": st.sampled_from(["newest", "oldest", "sideways"]),
    "dst_gap": st.sampled_from(["transition", "shift", "skip", "never"]),
    "dst_fold": st.sampled_from(["first", "second", "both", "third"]),
    "max_tick_retries": st.integers(-1, 1001),
    "evaluator": st.sampled_from([None, "ev"]),
    "enabled": st.booleans(),
}
SENSOR_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "id": st.sampled_from(["hook", "files", "new", "Bad Id"]),
    "type": st.sampled_from(["push", "poll", "pull"]),
    "run": templates,
    "connector": st.sampled_from([None, "c"]),
    "config": st.dictionaries(st.text(max_size=4), json_like, max_size=2),
    "minimum_interval": st.one_of(st.integers(-1, 100), st.sampled_from(["30s", "2w", "1y"])),
    "timeout": st.integers(-1, 100),
    "backoff": st.builds(Backoff, base=st.integers(1, 99), jitter=st.floats(0, 1)),
    "max_payload_bytes": st.integers(-1, 2**21),
    "enabled": st.booleans(),
}


# -- a store with something in it --------------------------------------------------------------


def seeded(store: Store | None = None) -> tuple[Kernel, RunRow]:
    """A schedule ``hourly`` with ticks, a poll sensor ``files``, a push sensor ``hook`` with a
    message, and a run ``k`` for launcher ``l``."""
    kernel = Kernel(store or MemoryStore())
    template = RunTemplate("etl", config={"n": 1})
    kernel.define_schedule(ScheduleDefinition("hourly", "0 * * * *", template), now=T0)
    kernel.define_sensor(SensorDefinition("files", "poll", template, connector="c"), now=T0)
    kernel.define_sensor(SensorDefinition("hook", "push", template), now=T0)
    kernel.evaluate_schedules(now=T0 + 2 * HOUR)
    kernel.ingest("hook", "m0", {"x": 1}, now=T0)
    run = kernel.request_run("k", RunTemplate("t", launcher="l"), now=T0)
    return kernel, run


# -- 1. the Python API: every public Kernel method, every argument ------------------------------


def _good(kernel: Kernel, run: RunRow, method: str) -> dict[str, Any]:
    """A valid value for each argument name of the Kernel API."""
    sensor = "hook" if method in ("ingest", "ingest_many", "set_sensor_running") else "files"
    definition: Any = ScheduleDefinition("hourly", "*/30 * * * *", RunTemplate("etl"))
    if method == "define_sensor":
        definition = SensorDefinition("hook", "push", RunTemplate("etl2"))
    return {
        "schedule_id": "hourly",
        "sensor_id": sensor,
        "definition": definition,
        "definitions": Definitions([definition] if method == "apply" else []),
        "enabled": False,
        "running": False,
        "now": T0 + 3 * HOUR,
        "limit": 5,
        "evaluate": lambda ctx: TickResult(),
        "connector": (lambda ctx: PollResult()) if method == "poll" else None,
        "schedule": "hourly",
        "count": 3,
        "start": T0,
        "status": None,
        "before": None,
        "tick_id": "hourly:2023-11-14T23:00:00Z",
        "message_id": "m1",
        "payload": {"a": [1, 2.5, None]},
        "ticket": kernel.poll_ticket("files"),
        "result": "connector timed out",
        "eval_id": "nope",
        "run_key": "k2",
        "template": RunTemplate("t"),
        "origin": "manual",
        "requested_by": "api",
        "run_id": run.run_id,
        "after": None,
        "launcher": "l",
        "external_id": "x-1",
        "error": None,
        "max_attempts": 5,
        "succeeded": True,
        "detail": None,
        "chunk": 10,
        "scratch": None,
        "progress": None,
        "include_deleted": False,
        "record_refusals": True,
        # the operator verbs, launch claims and batched ingest
        "kind": "schedule",
        "item_id": "hourly",
        "end": T0 + 3 * HOUR,
        "dry_run": False,
        "max_runs": 10,
        "cursor": "c-1",
        "expected_version": kernel.sensor("files").state_version,
        "cursor_version": 1,
        "claimer": "daemon-1",
        "lease": 60,
        "expected_attempts": None,
        "messages": [("m2", {"b": 2}), ("m3", None)],
        # retention
        "policy": RetentionPolicy(history="1d", dedupe_horizon="2d"),
    }


METHODS = {
    name: [p for p in inspect.signature(fn).parameters if p != "self"]
    for name, fn in inspect.getmembers(Kernel, inspect.isfunction)
    if not name.startswith("_")
}


@settings(max_examples=examples(4), suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), method=st.sampled_from(sorted(METHODS)))
def test_every_kernel_method_takes_any_argument(data: st.DataObject, method: str) -> None:
    kernel, run = seeded()
    good = _good(kernel, run, method)
    args = {
        name: data.draw(st.one_of(st.just(good[name]), anything), label=name)
        for name in METHODS[method]
    }
    attempt(kernel, lambda: getattr(kernel, method)(**args))


def test_every_kernel_argument_refuses_every_wrong_type() -> None:
    """Exhaustively, each argument of each method given each kind of wrong value. Before
    issue 9, 47 (method, argument) pairs raised untyped exceptions (TypeError,
    AttributeError, OverflowError, struct.error, UnicodeEncodeError)."""
    wrong = [None, 1.5, "x", True, [1], {}, 2**70, -1, object(), "\ud800", "a" * 600]
    kernel, run = seeded()
    for method, params in METHODS.items():
        for name in params:
            for value in wrong:
                args = {**{p: _good(kernel, run, method)[p] for p in params}, name: value}
                if attempt(kernel, lambda k=kernel, a=args, m=method: getattr(k, m)(**a)):
                    kernel, run = seeded()  # a refusal left the store as it was: reuse it


# -- 2. definitions: the classes and definitions files ------------------------------------------


def _fields(table: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional={name: maybe(s) for name, s in table.items()})


@settings(max_examples=examples(2))
@given(fields=_fields(SCHEDULE_FIELDS), kind=st.sampled_from(["schedule", "sensor"]))
def test_definition_classes_take_any_field_value(fields: dict[str, Any], kind: str) -> None:
    kernel, _ = seeded()

    def action() -> None:
        if kind == "schedule":
            base = {"id": "new", "cron": "0 * * * *", "run": RunTemplate("etl")}
            kernel.define_schedule(ScheduleDefinition(**{**base, **fields}), now=T0 + HOUR)
        else:
            sensor = {k: v for k, v in fields.items() if k in SENSOR_FIELDS}
            base = {"id": "new", "type": "push", "run": RunTemplate("etl")}
            kernel.define_sensor(SensorDefinition(**{**base, **sensor}), now=T0 + HOUR)

    if attempt(kernel, action):  # each step is one input: refused, or accepted whole
        attempt(kernel, lambda: kernel.evaluate_schedules(now=T0 + 5 * HOUR))


@settings(max_examples=examples(2))
@given(fields=_fields(SENSOR_FIELDS))
def test_sensor_definitions_take_any_field_value(fields: dict[str, Any]) -> None:
    kernel, _ = seeded()

    def action() -> None:
        base = {"id": "new", "type": "push", "run": RunTemplate("etl")}
        kernel.define_sensor(SensorDefinition(**{**base, **fields}), now=T0 + HOUR)

    if attempt(kernel, action):
        attempt(kernel, lambda: kernel.poll("new", lambda ctx: PollResult(), now=T0 + 2 * HOUR))


toml_values: st.SearchStrategy[Any] = st.recursive(
    st.one_of(
        st.booleans(),
        st.integers(),
        big_ints,
        st.floats(),
        st.text(max_size=8),
        st.datetimes(timezones=st.just(UTC)),
        st.dates(),
        st.times(),
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=5,
)


def _toml_table(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """A TOML table (as tomllib returns it) with each field valid or any TOML value."""

    def plain(value: Any) -> Any:  # the classes' values as TOML has them
        if isinstance(value, RunTemplate | Backoff):
            return {k: val for k, val in attrs.asdict(value).items() if val is not None}
        return value

    return st.fixed_dictionaries(
        {},
        optional={
            **{k: st.one_of(s.map(plain), toml_values) for k, s in fields.items()},
            "unknown_field": toml_values,
        },
    )


@settings(max_examples=examples(2))
@given(schedule=_toml_table(SCHEDULE_FIELDS), sensor=_toml_table(SENSOR_FIELDS))
def test_definitions_files_take_any_toml_value(
    schedule: dict[str, Any], sensor: dict[str, Any]
) -> None:
    kernel, _ = seeded()
    document = {
        "schedule": [{"id": "a", "cron": "0 * * * *", "run": {"target": "x"}, **schedule}],
        "sensor": [{"id": "s", "type": "push", "run": {"target": "x"}, **sensor}],
    }

    if attempt(kernel, lambda: kernel.apply(parse_definitions(document), now=T0 + HOUR)):
        attempt(kernel, lambda: kernel.evaluate_schedules(now=T0 + 5 * HOUR))


# -- 3. plugin results -------------------------------------------------------------------------


def _unchecked(cls: type, fields: dict[str, Any]) -> Any:
    """A result built around its validators, as a careless plugin might."""
    value = cls()
    for name, item in fields.items():
        object.__setattr__(value, name, item)
    return value


def _request(config: Any) -> RunRequest:
    request = RunRequest("r")
    object.__setattr__(request, "config", config)
    return request


requests = st.lists(st.one_of(json_like.map(_request), st.builds(RunRequest), anything), max_size=2)
poll_results = st.fixed_dictionaries(
    {},
    optional={
        "run_requests": maybe(requests),
        "cursor": maybe(st.one_of(st.text(max_size=5), st.binary(max_size=5))),
        "cursor_version": maybe(st.integers(0, 3)),
        "skip_reason": maybe(st.none()),
    },
).map(lambda fields: _unchecked(PollResult, fields))
tick_results = st.fixed_dictionaries(
    {}, optional={"run_requests": maybe(requests), "skip_reason": maybe(st.none())}
).map(lambda fields: _unchecked(TickResult, fields))


def _tally_plugin(status: str, reason: str | None) -> None:
    TALLY["refused" if status == "FAILED" and "refused" in (reason or "") else "accepted"] += 1


@settings(max_examples=examples(2))
@given(result=st.one_of(poll_results, anything))
def test_poll_results_are_recorded_or_refused_as_failures(result: Any) -> None:
    kernel, _ = seeded()
    row = kernel.poll("files", lambda ctx: result, now=T0 + HOUR)  # never raises
    _tally_plugin(row.evaluation.status, row.evaluation.reason)
    if row.evaluation.status == "FAILED":
        assert kernel.sensor("files").failures == 1  # with backoff
    check_queries(kernel)


@settings(max_examples=examples(1))
@given(result=st.one_of(tick_results, anything), pushed=st.one_of(requests, anything))
def test_evaluator_and_push_connector_results_are_recorded_or_refused(
    result: Any, pushed: Any
) -> None:
    kernel, _ = seeded()
    kernel.define_schedule(
        ScheduleDefinition("ev", "0 * * * *", RunTemplate("t"), evaluator="ev"), now=T0
    )
    for tick in kernel.evaluate_schedules(now=T0 + 2 * HOUR, evaluate=lambda ctx: result):
        _tally_plugin(tick.status, tick.reason)
    ingested = kernel.ingest("hook", "m9", None, now=T0, connector=lambda message: pushed)
    _tally_plugin(ingested.evaluation.evaluation.status, ingested.evaluation.evaluation.reason)
    check_queries(kernel)


# -- 4. the CLI --------------------------------------------------------------------------------


def _time_text(moment: datetime) -> str:
    return moment.isoformat()


json_texts = st.one_of(json_like.map(lambda value: json.dumps(value, default=str)), texts)
time_texts = st.one_of(times.map(_time_text), st.sampled_from(["now", "2026-13-01"]))
ids = st.sampled_from(["hourly", "files", "hook", "nope", "Bad", "a" * 300])
numbers = st.one_of(st.integers(-2, 1002), big_ints).map(str)
cli_commands = st.one_of(
    st.tuples(st.just("evaluate"), st.just("--now"), time_texts),
    st.tuples(st.just("preview"), ids, st.just("--from"), time_texts, st.just("--count"), numbers),
    st.tuples(
        st.just("request"),
        texts.filter(lambda t: not t.startswith("-")),
        st.just("--target"),
        st.just("t"),
        st.just("--config"),
        json_texts,
        st.just("--tags"),
        json_texts,
    ),
    st.tuples(
        st.just("push"), ids, st.just("--message-id"), texts, st.just("--payload"), json_texts
    ),
    st.tuples(st.just("ticks"), ids, st.just("--limit"), numbers, st.just("--before"), texts),
    st.tuples(st.just("schedule"), st.sampled_from(["enable", "disable", "show"]), ids),
    st.tuples(st.just("sensor"), st.sampled_from(["start", "stop", "delete"]), ids),
    st.tuples(st.just("runs"), st.just("--limit"), numbers),
    st.tuples(st.just("tick"), texts),
    st.tuples(st.just("prune"), st.just("--now"), time_texts, st.just("--limit"), numbers),
    st.tuples(st.just("push"), ids, st.just("--message-id"), texts, st.just("--now"), time_texts),
)


def _cli(store: str, args: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--store", store, *args])
    return code, err.getvalue()


def _lmdb_dump(path: str) -> dict[Table, tuple[tuple[bytes, bytes], ...]]:
    store = LmdbStore(path)
    try:
        return dump(store)
    finally:
        store.close()


def _cli_attempt(store: str, args: list[str]) -> None:
    before = _lmdb_dump(store)
    code, err = _cli(store, args)
    assert "Traceback" not in err, err
    assert code in (0, 2), (args, code, err)
    if code == 2:
        assert "arcoflow: error: " in err, err
        assert _lmdb_dump(store) == before, "a refused command changed the store"
        TALLY["refused"] += 1
    else:
        TALLY["accepted"] += 1
    opened = LmdbStore(store)
    try:
        check_queries(Kernel(opened))
    finally:
        opened.close()


@contextlib.contextmanager
def cli_store() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "store")
        store = LmdbStore(path)
        try:
            seeded(store)
        finally:
            store.close()
        yield path


def test_cli_arguments() -> None:
    with cli_store() as store:

        @settings(max_examples=examples(2), suppress_health_check=[HealthCheck.too_slow])
        @given(command=cli_commands)
        def run(command: tuple[str, ...]) -> None:
            _cli_attempt(store, list(command))

        run()


# -- 5. HTTP bodies (a few; tests/plugins/test_http_fuzz.py fuzzes the server itself) -----------

HTTP_BODIES = [
    b'{"message_id": "h1", "payload": NaN}',
    b'{"message_id": "h2", "payload": 1e999}',
    b'{"message_id": "h3", "payload": {"n": 1180591620717411303424}}',
    b'{"message_id": "h4", "payload": "\\ud800"}',
    b'{"message_id": "h5", "payload": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"message_id": 5, "payload": 1}',
    b'{"message_id": "h6", "payload": {"ok": [1, 2.5, null]}}',
    b"\xff\xfe not json",
]


@pytest.mark.parametrize("body", HTTP_BODIES)
def test_http_bodies(body: bytes) -> None:
    kernel, _ = seeded()
    with served(kernel) as server:
        before = dump(kernel.store)
        reply = Client(server).request(
            "POST", "/sensors/hook/messages", body, {"Content-Type": "application/json"}
        )
    assert reply.status < 500, reply.text
    if reply.status >= 400:
        assert dump(kernel.store) == before
        TALLY["refused"] += 1
    else:
        TALLY["accepted"] += 1
        check_queries(kernel)


# -- the corpus: every input issue 9 names ------------------------------------------------------


def _mutated_request(value: Any) -> Callable[[Any], PollResult]:
    def connector(ctx: Any) -> PollResult:
        result = PollResult([RunRequest("r")], cursor="c")
        result.run_requests[0].config["n"] = value
        return result

    return connector


API_CORPUS: dict[str, Callable[[Kernel, RunRow], object]] = {
    "enabled=1": lambda k, r: k.define_schedule(_unchecked_definition(enabled=1), now=T0),
    "max_catchup_ticks=1.5": lambda k, r: k.define_schedule(
        _unchecked_definition(max_catchup_ticks=1.5), now=T0
    ),
    "max_catchup_ticks=523926": lambda k, r: ScheduleDefinition(
        "m", "* * * * *", RunTemplate("t"), max_catchup_ticks=523_926
    ),
    "max_payload_bytes=1.5": lambda k, r: SensorDefinition(
        "p",
        "push",
        RunTemplate("t"),
        max_payload_bytes=1.5,  # type: ignore[arg-type]
    ),
    "set_schedule_enabled(yes)": lambda k, r: k.set_schedule_enabled("hourly", "yes"),  # type: ignore[arg-type]
    "evaluate at 9999": lambda k, r: k.evaluate_schedules(
        now=datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    ),
    "poll at 9999": lambda k, r: k.poll(
        "files", lambda ctx: PollResult(), now=datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    ),
    "poll before 1970": lambda k, r: k.poll("files", lambda ctx: PollResult(), now=-60),
    "connector 2**70": lambda k, r: k.poll("files", _mutated_request(2**70), now=T0 + HOUR),
    "connector NaN": lambda k, r: k.poll("files", _mutated_request(math.nan), now=T0 + HOUR),
    "connector datetime": lambda k, r: k.poll(
        "files", _mutated_request(datetime.now(UTC)), now=T0 + HOUR
    ),
    "payload NaN": lambda k, r: k.ingest("hook", "n1", math.nan, now=T0),
    "cron R": lambda k, r: ScheduleDefinition("r", "R R * * *", RunTemplate("t")),
    "request_run(None)": lambda k, r: k.request_run(None, RunTemplate("t")),  # type: ignore[arg-type]
    "catchup_order": lambda k, r: ScheduleDefinition(
        "o",
        "* * * * *",
        RunTemplate("t"),
        catchup_order="x",  # type: ignore[arg-type]
    ),
    "max_tick_retries=-1": lambda k, r: ScheduleDefinition(
        "o", "* * * * *", RunTemplate("t"), max_tick_retries=-1
    ),
    "sensor type": lambda k, r: SensorDefinition("o", "pull", RunTemplate("t")),  # type: ignore[arg-type]
    "max_payload_bytes=2**21": lambda k, r: SensorDefinition(
        "o", "push", RunTemplate("t"), max_payload_bytes=2**21
    ),
    "jitter=2": lambda k, r: Backoff(jitter=2.0),
}


def _unchecked_definition(**fields: Any) -> ScheduleDefinition:
    definition = ScheduleDefinition("u", "0 * * * *", RunTemplate("t"))
    for name, value in fields.items():
        object.__setattr__(definition, name, value)
    return definition


@pytest.mark.parametrize("name", API_CORPUS)
def test_api_corpus(name: str) -> None:
    kernel, run = seeded()
    attempt(kernel, lambda: API_CORPUS[name](kernel, run))


TOML_CORPUS = {
    "enabled = true": "enabled = true",
    "enabled = false": "enabled = false",
    "enabled = 0": "enabled = 0",
    "enabled = 1": "enabled = 1",
    'enabled = "yes"': 'enabled = "yes"',
    "int >= 2**64": "max_tick_retries = 18446744073709551616",
    "datetime in run.config": 'run = { target = "x", config = { at = 2026-01-01T00:00:00Z } }',
    "nan in run.config": 'run = { target = "x", config = { n = nan } }',
    'cron = "R R * * *"': 'cron = "R R * * *"',
    "max_catchup_ticks = 523926": "max_catchup_ticks = 523926",
    'catchup_order = "x"': 'catchup_order = "x"',
}


@pytest.mark.parametrize("line", TOML_CORPUS.values(), ids=TOML_CORPUS.keys())
def test_toml_corpus(line: str, tmp_path: Path) -> None:
    table = {"id": 'id = "t"', "cron": 'cron = "0 * * * *"', "run": 'run = { target = "x" }'}
    key = line.split("=", maxsplit=1)[0].strip()
    lines = [text for name, text in table.items() if name != key] + [line]
    path = tmp_path / "defs.toml"
    path.write_text("[[schedule]]\n" + "\n".join(lines) + "\n")
    kernel, _ = seeded()
    attempt(kernel, lambda: kernel.apply(load_definitions(str(path)), now=T0))


CLI_CORPUS = [
    ["evaluate", "--now", "9999-12-31T23:59:59Z"],
    ["evaluate", "--now", "1969-12-31T23:59:00Z"],
    ["preview", "hourly", "--from", "9999-12-31T23:58:00Z"],
    ["request", "k9", "--target", "t", "--config", "[1,2]"],
    ["request", "k9", "--target", "t", "--config", '{"n":18446744073709551616}'],
    ["push", "hook", "--message-id", "n", "--payload", "NaN"],
    ["apply", "/bin/ls"],
    ["apply", "/dev/zero"],
]


def test_cli_corpus() -> None:
    with cli_store() as store:
        for args in CLI_CORPUS:
            _cli_attempt(store, args)
