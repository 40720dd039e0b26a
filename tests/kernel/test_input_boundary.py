"""Issue 9: one validation boundary. Each input the issue names is refused with a typed error
naming its field and writes nothing, or works; the value rules themselves
(:mod:`arcoflow.kernel.values`) are tested at the end."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import attrs
import msgspec
import pytest
from arcoflow.kernel import (
    Backoff,
    Codec,
    InputError,
    InvalidCron,
    InvalidDefinition,
    Kernel,
    PollContext,
    PollResult,
    RunRequest,
    RunTemplate,
    ScheduleDefinition,
    SensorDefinition,
    TickResult,
    parse_definitions,
)
from arcoflow.kernel.decide import backoff_delay
from arcoflow.kernel.definitions import MAX_CATCHUP_TICKS
from arcoflow.kernel.rows import ScheduleRow, Table, key
from arcoflow.kernel.values import (
    INT64_MAX,
    MAX_TIME,
    MIN_TIME,
    check_bool,
    check_float,
    check_int,
    check_json,
    check_time,
)

from .helpers import dump, poll_sensor, raw_put, schedule

T0 = 1_700_000_000


def _toml_schedule(**fields: Any) -> dict[str, Any]:
    return {"schedule": [{"id": "a", "cron": "0 * * * *", "run": {"target": "x"}, **fields}]}


def _toml_sensor(**fields: Any) -> dict[str, Any]:
    return {"sensor": [{"id": "s", "type": "push", "run": {"target": "x"}, **fields}]}


# -- booleans ----------------------------------------------------------------------------------


@pytest.mark.parametrize("enabled", [True, False])
def test_toml_enabled_true_and_false_work_for_schedules_and_sensors(
    kernel: Kernel, enabled: bool
) -> None:
    defs = parse_definitions({**_toml_schedule(enabled=enabled), **_toml_sensor(enabled=enabled)})
    kernel.apply(defs, now=T0)
    assert kernel.schedule("a").enabled is enabled
    assert kernel.sensor("s").running is enabled
    assert kernel.verify().ok


@pytest.mark.parametrize("value", [0, 1, "yes", "true", 1.0, None])
@pytest.mark.parametrize("table", [_toml_schedule, _toml_sensor])
def test_toml_enabled_that_is_not_a_boolean_is_refused(table: Any, value: Any) -> None:
    with pytest.raises(InvalidDefinition, match="enabled: expected true or false"):
        parse_definitions(table(enabled=value))


@pytest.mark.parametrize(
    "build",
    [
        lambda: schedule(enabled=1),
        lambda: schedule(max_catchup_ticks=1.5),
        lambda: schedule(max_catchup_ticks=True),
        lambda: poll_sensor(max_payload_bytes=1.5),
        lambda: poll_sensor(enabled=0),
    ],
    ids=["enabled-1", "budget-1.5", "budget-true", "payload-1.5", "sensor-enabled-0"],
)
def test_python_api_wrong_types_are_refused_before_anything_is_written(build: Any) -> None:
    with pytest.raises(InvalidDefinition):
        build()


def test_set_schedule_enabled_takes_a_boolean_only(kernel: Kernel) -> None:
    kernel.define_schedule(schedule(), now=T0)
    before = dump(kernel.store)
    for value in ("yes", 1, 0, None):
        with pytest.raises(InputError, match="enabled"):
            kernel.set_schedule_enabled("hourly", value, now=T0 + 1)  # type: ignore[arg-type]
    kernel.define_sensor(poll_sensor(), now=T0)
    before = dump(kernel.store)
    with pytest.raises(InputError, match="running"):
        kernel.set_sensor_running("files", "no", now=T0 + 1)  # type: ignore[arg-type]
    assert dump(kernel.store) == before


# -- integers, budgets -------------------------------------------------------------------------


def test_max_catchup_ticks_has_an_upper_bound() -> None:
    assert schedule(max_catchup_ticks=MAX_CATCHUP_TICKS).max_catchup_ticks == MAX_CATCHUP_TICKS
    with pytest.raises(InvalidDefinition, match="max_catchup_ticks: 1001 is over the limit"):
        schedule(max_catchup_ticks=MAX_CATCHUP_TICKS + 1)
    with pytest.raises(InvalidDefinition, match="max_catchup_ticks"):
        parse_definitions(_toml_schedule(max_catchup_ticks=523_926))


@pytest.mark.parametrize("big", [2**64, 2**63, -(2**63) - 1])
def test_toml_integers_beyond_64_bits_are_refused(big: int) -> None:
    with pytest.raises(InvalidDefinition, match="max_tick_retries"):
        parse_definitions(_toml_schedule(max_tick_retries=big))
    with pytest.raises(InvalidDefinition, match="does not fit 64 bits"):
        parse_definitions(_toml_schedule(run={"target": "x", "config": {"n": big}}))


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: schedule(catchup_order="sideways"), "catchup_order"),
        (lambda: schedule(max_tick_retries=-1), "max_tick_retries"),
        (lambda: SensorDefinition("s", "pull", RunTemplate("t")), "type"),  # type: ignore[arg-type]
        (lambda: poll_sensor(max_payload_bytes=2**21), "max_payload_bytes"),
        (lambda: Backoff(jitter=1.5), "jitter"),
        (lambda: Backoff(jitter=-0.1), "jitter"),
        (lambda: Backoff(jitter=math.nan), "jitter"),
        (lambda: Backoff(jitter="0.5"), "jitter"),  # type: ignore[arg-type]
        (lambda: schedule(timezone=5), "timezone"),
        (lambda: schedule(cron=5), "cron"),
        (lambda: ScheduleDefinition("a", "0 * * * *", "etl"), "run"),  # type: ignore[arg-type]
        (lambda: SensorDefinition("s", "push", RunTemplate("t"), backoff={}), "backoff"),  # type: ignore[arg-type]
        (lambda: RunTemplate(5), "target"),  # type: ignore[arg-type]
        (lambda: RunTemplate("t", launcher=5), "launcher"),  # type: ignore[arg-type]
        (lambda: RunTemplate("t", config=[1, 2]), "config"),  # type: ignore[arg-type]
        (lambda: RunTemplate("t", tags={"a": 1}), "tags"),  # type: ignore[dict-item]
        (lambda: schedule(evaluator=["x"]), "evaluator"),
    ],
)
def test_every_bad_definition_value_is_an_input_error_naming_its_field(
    build: Any, field: str
) -> None:
    """Never a plain ValueError, TypeError or AttributeError: InvalidDefinition (or a more
    specific InputError such as UnknownTimezone or InvalidCron)."""
    with pytest.raises(InputError) as info:
        build()
    assert field in str(info.value)


# -- cron --------------------------------------------------------------------------------------


@pytest.mark.parametrize("cron", ["R R * * *", "0 R * * *", "r(0-5) * * * *", "R/5 * * * *"])
def test_random_cron_fields_are_refused(cron: str) -> None:
    """croniter's R draws a different tick in each process."""
    with pytest.raises(InputError, match="random"):
        schedule(cron=cron)


def test_hashed_cron_fields_are_refused() -> None:
    with pytest.raises(InvalidCron):
        schedule(cron="H * * * *")


# -- times -------------------------------------------------------------------------------------


def _due_poll_sensor(kernel: Kernel) -> None:
    kernel.define_sensor(poll_sensor(), now=T0)


@pytest.mark.parametrize(
    "now",
    [
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, tzinfo=UTC),
        2**70,
        -60,
        MAX_TIME + 1,
    ],
)
def test_a_time_outside_the_range_is_refused_and_writes_nothing(kernel: Kernel, now: Any) -> None:
    """Before: evaluating a due poll sensor at 9999-12-31T23:59:59Z wrote an evaluation whose
    next_eval_at could not be formatted; ``evals`` and the HTTP route failed for good."""
    _due_poll_sensor(kernel)
    before = dump(kernel.store)
    with pytest.raises(InputError, match="outside the supported range"):
        kernel.poll("files", lambda ctx: PollResult(), now=now)
    with pytest.raises(InputError, match="outside the supported range"):
        kernel.evaluate_schedules(now=now)
    assert dump(kernel.store) == before


def test_the_last_supported_instant_works_and_reads_back(kernel: Kernel) -> None:
    _due_poll_sensor(kernel)
    kernel.define_schedule(schedule("yearly", "0 0 1 1 *"), now=T0)
    row = kernel.poll("files", lambda ctx: PollResult(cursor="c"), now=MAX_TIME)
    assert row.evaluation.status == "NO_DATA"
    assert kernel.evaluations("files")[0].evaluation.eval_id == row.evaluation.eval_id
    assert kernel.preview("yearly", count=5, start=MAX_TIME - 10) == []  # 9000 is past the end
    assert kernel.verify().ok


# -- JSON values -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        {"when": datetime(2026, 1, 1, tzinfo=UTC)},
        {"n": math.nan},
        {"n": math.inf},
        {"n": 2**70},
        {"deep": [{"a": [1]}] * 2, 1: "int key"},
        {"s": {1, 2}},
    ],
    ids=["datetime", "nan", "inf", "2**70", "int-key", "set"],
)
def test_run_config_must_be_json(config: dict[Any, Any]) -> None:
    with pytest.raises(InvalidDefinition, match="config must hold JSON values only"):
        RunTemplate("t", config=config)
    with pytest.raises(InputError, match="config must hold JSON values only"):
        RunRequest("k", config=config)


def test_toml_datetimes_in_run_config_are_refused() -> None:
    """Before: accepted, then ``arcoflow --json runs`` crashed."""
    with pytest.raises(InvalidDefinition, match=r"run\.config|config must hold JSON"):
        parse_definitions(_toml_schedule(run={"target": "x", "config": {"at": datetime.now(UTC)}}))


@pytest.mark.parametrize("payload", [math.nan, {"x": math.inf}, 2**64, datetime.now(UTC)])
def test_push_payloads_must_be_json(kernel: Kernel, payload: Any) -> None:
    kernel.define_sensor(SensorDefinition("hook", "push", RunTemplate("t")), now=T0)
    before = dump(kernel.store)
    with pytest.raises(InputError, match="payload must hold JSON values only"):
        kernel.ingest("hook", "m1", payload, now=T0)
    assert dump(kernel.store) == before


# -- ids ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("run_key", [None, 5, "", "a\x00b", "\ud800"])
def test_request_run_needs_a_run_key(kernel: Kernel, run_key: Any) -> None:
    """Before: ``request_run(None, ...)`` created the run key ``manual:None``."""
    with pytest.raises(InputError, match="run_key"):
        kernel.request_run(run_key, RunTemplate("t"), now=T0)
    assert kernel.runs() == []


# -- plugin results ----------------------------------------------------------------------------


def _grown(result: Any, config: dict[Any, Any]) -> Any:
    """A result holding a run request whose config the plugin changed after building it (the
    dict is mutable: its validator saw it empty)."""
    request = result.run_requests[0]
    request.config.update(config)
    return result


@pytest.mark.parametrize(
    "config",
    [{"n": 2**70}, {"n": math.nan}, {"at": datetime(2026, 1, 1, tzinfo=UTC)}, {1: "x"}],
    ids=["2**70", "nan", "datetime", "int-key"],
)
def test_a_connector_result_the_kernel_refuses_is_a_failed_evaluation_with_backoff(
    kernel: Kernel, config: dict[Any, Any]
) -> None:
    """Before: a run request holding 2**70 recorded nothing (no evaluation, no backoff) and
    was polled again every cycle, a traceback each time."""
    kernel.define_sensor(poll_sensor(base=10, cap=600), now=T0)

    def connector(ctx: PollContext) -> PollResult:
        result: PollResult = _grown(PollResult([RunRequest("k")], cursor="next"), config)
        return result

    row = kernel.poll("files", connector, now=T0)
    assert row.evaluation.status == "FAILED"
    assert row.evaluation.reason is not None
    assert row.evaluation.reason.startswith("connector 'test': result refused: ")
    sensor = kernel.sensor("files")
    delay = backoff_delay(sensor.definition, 1)
    assert sensor.failures == 1 and sensor.next_eval_at == T0 + delay  # backoff
    assert sensor.cursor is None  # the refused result's cursor is not taken either
    assert kernel.evaluations("files")[0].evaluation.status == "FAILED"  # visible in history
    assert kernel.runs() == [] and kernel.verify().ok


def test_a_result_built_around_its_validators_is_refused_too(kernel: Kernel) -> None:
    kernel.define_sensor(poll_sensor(), now=T0)
    result = PollResult()
    object.__setattr__(result, "cursor_version", "1")
    row = kernel.poll("files", lambda ctx: result, now=T0)
    assert row.evaluation.status == "FAILED" and "cursor_version" in (row.evaluation.reason or "")


def test_an_evaluator_result_the_kernel_refuses_fails_its_tick(kernel: Kernel) -> None:
    kernel.define_schedule(schedule(evaluator="ev"), now=T0)
    result = _grown(TickResult([RunRequest("k")]), {"n": 2**70})
    [tick] = kernel.evaluate_schedules(now=T0 + 3600, evaluate=lambda ctx: result)
    assert tick.status == "FAILED" and "evaluator 'ev': result refused" in (tick.reason or "")
    assert kernel.runs() == [] and kernel.verify().ok


def test_a_push_connector_result_the_kernel_refuses_fails_its_evaluation(kernel: Kernel) -> None:
    kernel.define_sensor(SensorDefinition("hook", "push", RunTemplate("t"), connector="c"), now=T0)
    requests = [RunRequest("k")]
    requests[0].config["x"] = math.inf
    ingested = kernel.ingest("hook", "m", None, now=T0, connector=lambda m: requests)
    assert ingested.evaluation.evaluation.status == "FAILED"
    assert kernel.runs() == [] and kernel.verify().ok


def test_a_plugin_reason_with_a_lone_surrogate_is_recorded(kernel: Kernel) -> None:
    kernel.define_sensor(poll_sensor(), now=T0)

    def connector(ctx: PollContext) -> PollResult:
        raise RuntimeError("bad \ud800 text")

    row = kernel.poll("files", connector, now=T0)
    assert row.evaluation.reason == "RuntimeError: bad \\ud800 text"
    assert kernel.verify().ok


# -- the Python API: wrong types for every argument ---------------------------------------------


def test_a_definition_changed_after_validation_is_checked_again(kernel: Kernel) -> None:
    definition = schedule()
    definition.run.config["n"] = math.nan  # frozen class, mutable dict
    with pytest.raises(InvalidDefinition, match="config"):
        kernel.define_schedule(definition, now=T0)
    assert kernel.schedules() == []


# -- records an older arcoflow wrote -----------------------------------------------------------


def test_a_stored_definition_over_a_newer_limit_still_reads_and_is_bounded(kernel: Kernel) -> None:
    """A limit introduced later (the catch-up budget, JSON-only config) must not make an
    older store unreadable: such a record is read as it was written, and evaluating it still
    does bounded work."""
    kernel.define_schedule(schedule("minutely", "* * * * *", catchup_window="1d"), now=T0)
    row = kernel.schedule("minutely")
    old = attrs.evolve(row.definition, max_catchup_ticks=1)
    object.__setattr__(old, "max_catchup_ticks", 100_000)  # what an older arcoflow allowed
    old.run.config["n"] = math.nan
    codec = Codec()
    raw_put(
        kernel.store,
        Table.SCHEDULES,
        key("minutely"),
        codec.encode_row(msgspec.structs.replace(row, definition=old)),
    )
    stored: ScheduleRow = kernel.schedule("minutely")
    assert stored.definition.max_catchup_ticks == 100_000
    ticks = kernel.evaluate_schedules(now=T0 + 86_400)
    assert len(ticks) == MAX_CATCHUP_TICKS
    kernel.set_schedule_enabled("minutely", False, now=T0 + 86_401)  # rewrites the row
    assert not kernel.schedule("minutely").enabled


# -- the value rules ---------------------------------------------------------------------------


def test_check_bool() -> None:
    assert check_bool(False, "f") is False
    for bad in (0, 1, "true", None):
        with pytest.raises(InputError, match="f: expected true or false"):
            check_bool(bad, "f")


def test_check_int() -> None:
    assert check_int(INT64_MAX, "n") == INT64_MAX
    for bad in (True, 1.0, "1", None, 2**63, -(2**63) - 1):
        with pytest.raises(InputError, match=r"^n: "):
            check_int(bad, "n")
    with pytest.raises(InputError, match="out of range"):
        check_int(11, "n", 1, 10)


def test_check_float() -> None:
    assert check_float(1, "x", 0.0, 1.0) == 1.0
    for bad in (math.nan, math.inf, True, "0.5", 2.0, 2**80):
        with pytest.raises(InputError, match=r"^x: "):
            check_float(bad, "x", 0.0, 1.0)


def test_check_time() -> None:
    assert check_time(MIN_TIME) == MIN_TIME and check_time(MAX_TIME) == MAX_TIME
    assert datetime.fromtimestamp(MAX_TIME, UTC) == datetime(8999, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert check_time(datetime(2026, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))) == 1767225600
    for bad in (
        MIN_TIME - 1,
        MAX_TIME + 1,
        2**70,
        1.5,
        True,
        "2026",
        datetime(2026, 1, 1),
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
    ):
        with pytest.raises(InputError, match=r"^now: "):
            check_time(bad, "now")


def test_check_json() -> None:
    good = {"a": [1, 2.5, None, True, "x", {"b": -(2**63)}], "t": (1, 2)}
    assert check_json(good, "c") is good
    nested: Any = 1
    for _ in range(70):
        nested = [nested]
    for bad in (math.nan, [math.inf], {"a": 2**64}, {1: 2}, b"x", "\udc80", nested, object()):
        with pytest.raises(InputError, match=r"^c must hold JSON values only: "):
            check_json(bad, "c")


def test_apply_refuses_a_definitions_file_whole(kernel: Kernel) -> None:
    """A sensor whose type would change is refused before any definition is applied."""
    kernel.define_sensor(poll_sensor(), now=T0)
    before = dump(kernel.store)
    defs = parse_definitions(
        {**_toml_schedule(), "sensor": [{"id": "files", "type": "push", "run": {"target": "x"}}]}
    )
    with pytest.raises(InputError, match="type cannot change"):
        kernel.apply(defs, now=T0 + 1)
    assert dump(kernel.store) == before
