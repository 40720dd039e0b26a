"""Issue 12 item 5: each word of arcoflow's vocabulary has one home. The time text, the page
size and the status lists are defined once in the kernel; every entry point (Python API, CLI,
HTTP) takes them from there, so they cannot disagree."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from arcoflow.kernel import (
    EVAL_STATUSES,
    MAX_PAGE,
    RUN_STATUSES,
    TICK_STATUSES,
    InputError,
    Kernel,
    MemoryStore,
    check_limit,
    iso,
    parse_iso,
)
from arcoflow.kernel.values import MAX_TIME, MIN_TIME
from hypothesis import given
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
#: The model re-states the rules on purpose (it must not import kernel logic).
INDEPENDENT = {"spec/model.py"}


@given(st.integers(MIN_TIME, MAX_TIME))
def test_iso_and_parse_iso_round_trip(at: int) -> None:
    assert parse_iso(iso(at)) == at
    assert iso(at).endswith("Z")


def test_parse_iso_reads_offsets_and_naive_text_as_utc() -> None:
    assert parse_iso("2030-01-01T01:00:00+01:00") == parse_iso("2030-01-01T00:00:00Z")
    assert parse_iso("2030-01-01T00:00:00") == int(datetime(2030, 1, 1, tzinfo=UTC).timestamp())
    east = datetime(2030, 1, 1, 5, 30, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    assert parse_iso(east.isoformat()) == parse_iso("2030-01-01T00:00:00Z")


@pytest.mark.parametrize(
    ("text", "naive_is_utc", "says"),
    [
        ("yesterday", True, "--from: 'yesterday' is not an ISO-8601 time"),
        ("2030-01-01T00:00:00", False, "--from: '2030-01-01T00:00:00' needs an offset"),
        ("9999-12-31T23:59:59Z", True, "--from: 9999-12-31T23:59:59+00:00 is outside"),
        ("", True, "--from: '' is not an ISO-8601 time"),
    ],
)
def test_parse_iso_refuses_with_a_typed_error_naming_the_field(
    text: str, naive_is_utc: bool, says: str
) -> None:
    with pytest.raises(InputError) as caught:
        parse_iso(text, "--from", naive_is_utc=naive_is_utc)
    assert str(caught.value).startswith(says)


def test_one_page_size_rule_for_every_query() -> None:
    kernel = Kernel(MemoryStore())
    assert check_limit(MAX_PAGE) == MAX_PAGE
    for bad in (0, MAX_PAGE + 1, True, 1.0):
        with pytest.raises(InputError, match="limit"):
            check_limit(bad)
        with pytest.raises(InputError, match="limit"):
            kernel.runs(limit=bad)  # type: ignore[arg-type]


def test_the_status_tuples_are_the_status_types() -> None:
    assert TICK_STATUSES == ("TRIGGERED", "SKIPPED", "FAILED")
    assert RUN_STATUSES == ("REQUESTED", "LAUNCHED", "SUCCEEDED", "FAILED", "GAVE_UP")
    assert EVAL_STATUSES == ("REQUESTED", "NO_DATA", "SKIPPED", "FAILED", "REFUSED")


def _sources() -> list[Path]:
    return [
        path
        for package in ("kernel", "sdk", "plugins", "spec")
        for path in sorted((ROOT / package).rglob("*.py"))
        if str(path.relative_to(ROOT)) not in INDEPENDENT
    ]


def _status_copies(path: Path) -> list[str]:
    """Tuples, lists and ``Literal[...]`` subscripts spelling out a whole status list."""
    lists = {frozenset(s) for s in (TICK_STATUSES, RUN_STATUSES, EVAL_STATUSES)}
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        elements = None
        if isinstance(node, ast.Tuple | ast.List):
            elements = node.elts
        if elements and all(isinstance(e, ast.Constant) for e in elements):
            values = frozenset(e.value for e in elements if isinstance(e, ast.Constant))
            if values in lists:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_each_status_list_is_written_once() -> None:
    """The ``Literal`` types in ``kernel/events.py`` and ``kernel/rows.py`` are the only
    spelling of a status list; the CLI's choices, the HTTP filters and the kernel's argument
    checks use the tuples derived from them."""
    copies = sorted(c for path in _sources() for c in _status_copies(path))
    homes = [c for c in copies if c.startswith(("kernel/events.py", "kernel/rows.py"))]
    assert len(homes) == 3, copies
    assert copies == homes


#: Names whose second definition would be a second home for a word (issue 12).
WORDS = ("iso", "parse_iso", "parse_time", "JSON", "Handler", "CommandHandler", "check_limit")


def test_each_word_is_defined_once() -> None:
    homes: dict[str, list[str]] = {}
    for path in _sources():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef):
                names = [node.name]
            elif isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names = [node.target.id]
            else:
                continue
            for name in set(names) & set(WORDS):
                homes.setdefault(name, []).append(str(path.relative_to(ROOT)))
    twice = {name: where for name, where in homes.items() if len(where) > 1}
    assert not twice, twice
    assert homes["iso"] == ["kernel/times.py"]
