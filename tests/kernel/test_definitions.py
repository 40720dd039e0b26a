"""Definitions: every bad field is a typed InputError whose message names the field, nothing is
written, and a definitions file reports all of its problems at once."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from arcoflow.kernel import (
    Backoff,
    InputError,
    InvalidCron,
    InvalidDefinition,
    InvalidId,
    Kernel,
    PollResult,
    RunRequest,
    RunTemplate,
    ScheduleDefinition,
    SensorDefinition,
    Store,
    UnknownTimezone,
    load_definitions,
    parse_definitions,
    parse_duration,
)
from arcoflow.kernel.definitions import MAX_BLOB
from hypothesis import given
from hypothesis import strategies as st

from .helpers import dump

T = RunTemplate("t")


def sched(**kw: Any) -> ScheduleDefinition:
    fields: dict[str, Any] = {"id": "nightly", "cron": "30 1 * * *", "run": T} | kw
    return ScheduleDefinition(**fields)


@pytest.mark.parametrize(
    "bad", ["", "Upper", "-lead", ".lead", "a b", "a:b", "a/b", "é", "a" * 129, "x\x00"]
)
def test_bad_ids_are_invalid_id_naming_the_field(bad: str) -> None:
    with pytest.raises(InvalidId) as info:
        sched(id=bad)
    assert str(info.value).startswith("id ")
    assert repr(bad) in str(info.value)
    with pytest.raises(InvalidId, match=r"^id "):
        SensorDefinition(bad, "push", T)


@given(st.from_regex(r"[a-z0-9][a-z0-9._-]{0,127}", fullmatch=True))
def test_every_id_of_the_documented_form_is_accepted(good: str) -> None:
    assert sched(id=good).id == good


@pytest.mark.parametrize(
    ("cron", "words"),
    [
        ("* * * * * *", "6 fields"),
        ("* * * *", "4 fields"),
        ("", "0 fields"),
        ("61 * * * *", "does not parse"),
        ("0 25 * * *", "does not parse"),
        ("0 0 0 * *", "does not parse"),
        ("0 0 * 13 *", "does not parse"),
        ("x * * * *", "does not parse"),
        ("0 0 31 2 *", "never fires"),
        ("0 0 30 2 *", "never fires"),
        ("0 0 31 4,6,9,11 *", "never fires"),
    ],
)
def test_bad_cron_is_invalid_cron_naming_the_field(cron: str, words: str) -> None:
    with pytest.raises(InvalidCron) as info:
        sched(cron=cron)
    message = str(info.value)
    assert message.startswith("cron ")
    assert words in message
    assert isinstance(info.value, InputError)


@pytest.mark.parametrize("cron", ["@hourly", "@daily", "*/5 * * * *", "0 9 * * 1-5", "0 0 29 2 *"])
def test_good_cron_is_accepted(cron: str) -> None:
    assert sched(cron=cron).cron == cron


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", "/etc/passwd", "../UTC", "utc+5"])
def test_unknown_time_zone_names_the_field(zone: str) -> None:
    with pytest.raises(UnknownTimezone) as info:
        sched(timezone=zone)
    assert str(info.value).startswith("timezone: unknown zone")
    assert repr(zone) in str(info.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("catchup_window", "5x"),
        ("catchup_window", "-5"),
        ("catchup_window", -5),
        ("catchup_window", 0),
        ("catchup_window", "367d"),
        ("catchup_window", True),
        ("catchup_window", 1.5),
    ],
)
def test_bad_schedule_durations_name_the_field(field: str, value: Any) -> None:
    with pytest.raises(InvalidDefinition) as info:
        sched(**{field: value})
    assert str(info.value).startswith(field)


@pytest.mark.parametrize(
    ("field", "value"), [("minimum_interval", "3q"), ("timeout", 0), ("timeout", "")]
)
def test_bad_sensor_durations_name_the_field(field: str, value: Any) -> None:
    with pytest.raises(InvalidDefinition) as info:
        SensorDefinition("s", "push", T, **{field: value})
    assert str(info.value).startswith(field)


@pytest.mark.parametrize(("field", "value"), [("base", "1y"), ("cap", 0), ("base", -1)])
def test_bad_backoff_durations_name_the_field(field: str, value: Any) -> None:
    with pytest.raises(InvalidDefinition) as info:
        Backoff(**{field: value})
    assert str(info.value).startswith(field)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("15m", 900), ("6h", 21600), ("7d", 604800), ("2w", 1209600)],
)
def test_durations_parse(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration(seconds) == seconds
    assert sched(catchup_window=text).catchup_window == seconds


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"max_catchup_ticks": 0}, "max_catchup_ticks"),
        ({"catchup_order": "sideways"}, "catchup_order"),
        ({"dst_gap": "nope"}, "dst_gap"),
        ({"dst_fold": "third"}, "dst_fold"),
    ],
)
def test_other_bad_schedule_fields_name_the_field(kw: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        sched(**kw)


def test_sensor_fields() -> None:
    with pytest.raises(InvalidDefinition, match="connector"):
        SensorDefinition("s", "poll", T)
    with pytest.raises(ValueError, match="type"):
        SensorDefinition("s", "sometimes", T)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="max_payload_bytes"):
        SensorDefinition("s", "push", T, max_payload_bytes=0)
    with pytest.raises(ValueError, match="jitter"):
        Backoff(jitter=1.5)


def test_run_templates_and_requests_validate() -> None:
    with pytest.raises(InputError, match="config"):
        RunTemplate("t", config={"x": object()})
    with pytest.raises(InputError, match="tags"):
        RunTemplate("t", tags={"x": 1})  # type: ignore[dict-item]
    with pytest.raises(InputError, match="config"):
        RunTemplate("t", config={"x": "y" * MAX_BLOB})
    with pytest.raises(InputError, match="run_key"):
        RunRequest("")
    with pytest.raises(InputError, match="run_key"):
        RunRequest("a\x00b")


@pytest.mark.parametrize(
    "make",
    [
        lambda: RunRequest("\ud800"),
        lambda: RunRequest("k", target="\ud800"),
        lambda: RunTemplate("\ud800"),
        lambda: RunTemplate(""),
        lambda: RunTemplate("t", config={"k": "\udfff"}),
        lambda: RunTemplate("t", tags={"k": "\ud800"}),
        lambda: PollResult(cursor="\ud800"),
    ],
)
def test_text_that_cannot_be_stored_is_an_input_error(make: Any) -> None:
    """Lone surrogates (JSON can carry them) are refused up front, not in the store."""
    with pytest.raises(InputError):
        make()


def test_a_requester_that_cannot_be_stored_is_an_input_error(kernel: Kernel, store: Store) -> None:
    before = dump(store)
    with pytest.raises(InputError, match="requested_by"):
        kernel.request_run("k", T, now=1, requested_by="\ud800")
    assert dump(store) == before


# -- definitions files -----------------------------------------------------------------------


def test_parse_definitions_collects_every_problem_in_one_message() -> None:
    document = {
        "schedule": [
            {"id": "six", "cron": "* * * * * *", "run": {"target": "t"}},
            {"id": "mars", "cron": "@daily", "timezone": "Mars/Olympus", "run": {"target": "t"}},
            {"id": "late", "cron": "@daily", "catchup_window": "5x", "run": {"target": "t"}},
            {"id": "extra", "cron": "@daily", "colour": "blue", "run": {"target": "t"}},
            {"id": "BAD", "cron": "@daily", "run": {"target": "t"}},
            {"id": "ok", "cron": "@daily", "run": {"target": "t"}},
            {"id": "ok", "cron": "@hourly", "run": {"target": "t"}},
        ],
        "sensor": [
            {"id": "files", "type": "poll", "run": {"target": "t"}},
            {"id": "slow", "type": "push", "timeout": "3q", "run": {"target": "t"}},
            {"id": "norun", "type": "push"},
        ],
        "triggers": [],
    }
    with pytest.raises(InvalidDefinition) as info:
        parse_definitions(document, "defs.toml")
    # One message; each problem starts with what it is about.
    problems = re.split(r"; (?=schedule '|sensor '|defs\.toml)", str(info.value))
    expected = [
        ("schedule 'six'", "cron", "6 fields"),
        ("schedule 'mars'", "timezone", "Mars/Olympus"),
        ("schedule 'late'", "catchup_window", "5x"),
        ("schedule 'extra'", "unknown field", "colour"),
        ("schedule 'BAD'", "id", "not valid"),
        ("schedule 'ok'", "declared more than once", ""),
        ("sensor 'files'", "connector", ""),
        ("sensor 'slow'", "timeout", "3q"),
        ("sensor 'norun'", "run", "required"),
        ("defs.toml", "unknown table", "triggers"),
    ]
    for who, field, detail in expected:
        assert any(who in p and field in p and detail in p for p in problems), (who, problems)
    assert len(problems) == len(expected)


def test_nothing_is_written_when_a_definitions_file_is_bad(
    kernel: Kernel, store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "defs.toml"
    path.write_text(
        '[[schedule]]\nid = "ok"\ncron = "@daily"\nrun = { target = "t" }\n'
        '[[schedule]]\nid = "bad"\ncron = "0 0 31 2 *"\nrun = { target = "t" }\n'
    )
    before = dump(store)
    with pytest.raises(InvalidDefinition, match="never fires"):
        kernel.apply(load_definitions(str(path)), now=0)
    assert dump(store) == before
    assert kernel.schedules() == []


def test_load_definitions_reports_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidDefinition, match="cannot read"):
        load_definitions(str(tmp_path / "missing.toml"))
    broken = tmp_path / "broken.toml"
    broken.write_text("[[schedule]\nid = ")
    with pytest.raises(InvalidDefinition, match="not valid TOML"):
        load_definitions(str(broken))


def test_a_good_file_round_trips_into_the_store(kernel: Kernel, tmp_path: Path) -> None:
    path = tmp_path / "defs.toml"
    path.write_text(
        '[[schedule]]\nid = "nightly-etl"\ncron = "30 1 * * *"\ntimezone = "America/New_York"\n'
        'catchup_window = "6h"\nrun = { target = "etl", config = { region = "us" } }\n'
        '[[sensor]]\nid = "incoming"\ntype = "poll"\nconnector = "filesystem"\n'
        'minimum_interval = "30s"\nbackoff = { base = "1m", cap = "1h" }\n'
        'run = { target = "ingest" }\n'
    )
    definitions = load_definitions(str(path))
    changes = kernel.apply(definitions, now=0)
    assert [(c.kind, c.id, c.action) for c in changes] == [
        ("schedule", "nightly-etl", "created"),
        ("sensor", "incoming", "created"),
    ]
    assert kernel.schedule("nightly-etl").definition.catchup_window == 6 * 3600
    assert kernel.sensor("incoming").definition.backoff == Backoff(base=60, cap=3600)
    assert [c.action for c in kernel.apply(definitions, now=10)] == ["unchanged", "unchanged"]


_SCHEDULE = {"id": "s", "cron": "0 * * * *", "run": {"target": "t"}}
_PUSH = {"id": "p", "type": "push", "run": {"target": "t"}}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"schedule": [_SCHEDULE | {"run": "t"}]}, "schedule 's': run: expected a table"),
        ({"schedule": [_SCHEDULE | {"run": ["t"]}]}, "schedule 's': run: expected a table"),
        ({"schedule": [_SCHEDULE | {"run": 5}]}, "schedule 's': run: expected a table"),
        ({"sensor": [_PUSH | {"backoff": "x"}]}, "sensor 'p': backoff: expected a table"),
        ({"sensor": [_PUSH | {"config": "x"}]}, "sensor 'p': config: expected a table"),
        (
            {"sensor": [_PUSH | {"run": {"target": "t", "config": [1]}}]},
            "sensor 'p': run.config: expected a table",
        ),
        ({"schedule": [1]}, "schedule #1: expected a table, got 1"),
        (
            {"schedule": [_SCHEDULE | {"catchup_order": "random"}]},
            "schedule 's': catchup_order: 'random' is not one of 'newest', 'oldest'",
        ),
        (
            {"sensor": [_PUSH | {"type": "pull"}]},
            "sensor 'p': type: 'pull' is not one of 'poll', 'push'",
        ),
    ],
)
def test_a_value_of_the_wrong_shape_is_named_in_the_users_words(
    data: dict[str, Any], message: str
) -> None:
    """Before: Python's own words leaked into the one-line error (``run: 'str' object has no
    attribute 'keys'``, ``random not in literal typing.Literal['newest', 'oldest']``)."""
    with pytest.raises(InvalidDefinition) as refused:
        parse_definitions(data)
    assert str(refused.value) == message
