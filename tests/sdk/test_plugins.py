"""The Plugins facade: registration, discovery, blocking, description and targeted calls."""

from __future__ import annotations

import argparse
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from arcoflow.kernel import (
    PollContext,
    RunTemplate,
    ScheduleDefinition,
    SensorDefinition,
    TickContext,
)
from arcoflow.sdk import (
    Failed,
    FailureKind,
    Launch,
    Launched,
    PluginLoadError,
    Plugins,
    PollResult,
    RunRequest,
    hookimpl,
)
from arcoflow.sdk.plugins import DISABLE_ENV, HOOKS

from .helpers import T0, Counter

BUILT_INS = {"filesystem", "subprocess", "memory", "http"}


def _context(connector: str) -> PollContext:
    sensor = SensorDefinition("s", "poll", RunTemplate("t"), connector=connector)
    return PollContext(sensor, None, None, 0, datetime(2030, 1, 1, tzinfo=UTC))


def _launch(run_id: str = "r1") -> Launch:
    return Launch(run_id, "manual:k", "t", {}, {}, "manual", 1, {})


class Tagged:
    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.calls = 0

    @hookimpl
    def arcoflow_poll(self, context: PollContext) -> PollResult:
        self.calls += 1
        return PollResult([RunRequest(self.tag)], cursor=self.tag)

    @hookimpl
    def arcoflow_launch(self, launch: Launch) -> Launched:
        self.calls += 1
        return Launched(self.tag)


def test_a_call_goes_only_to_the_named_plugin() -> None:
    plugins = Plugins()
    a, b = Tagged("a"), Tagged("b")
    plugins.register(a, "a")
    plugins.register(b, "b")
    result = plugins.poll("b", _context("b"), timeout=5)
    assert isinstance(result, PollResult) and result.cursor == "b"
    assert (a.calls, b.calls) == (0, 1)
    launched = plugins.launch("a", _launch(), timeout=5)
    assert launched == Launched("a") and (a.calls, b.calls) == (1, 1)


def test_missing_plugins_and_hooks_are_clear_reasons() -> None:
    plugins = Plugins()
    plugins.register(Tagged("a"), "a")
    assert plugins.poll("nope", _context("nope"), 5) == Failed(
        "no connector plugin 'nope' installed", FailureKind.RAISED
    )
    assert plugins.launch("nope", _launch(), 5) == Failed("no launcher plugin 'nope' installed")
    assert plugins.run_state("a", _launch(), None, 5) == Failed(
        "plugin 'a' is not a launcher: it does not implement arcoflow_run_state"
    )
    evaluate = plugins.evaluator(5)
    schedule = ScheduleDefinition("s", "0 * * * *", RunTemplate("t"), evaluator="x")
    at = datetime.fromtimestamp(T0, UTC)
    assert evaluate(TickContext(schedule, "s:2030-01-01T00:00:00Z", at, at, 1, None)) == Failed(
        "PluginMissing: no evaluator plugin 'x' installed"
    )


def test_register_refuses_duplicates_typos_and_wrong_signatures() -> None:
    plugins = Plugins()
    plugins.register(Tagged("a"), "a")
    with pytest.raises(PluginLoadError, match="already registered"):
        plugins.register(Tagged("again"), "a")

    class Typo:
        @hookimpl
        def arcoflow_pol(self, context: PollContext) -> PollResult:
            return PollResult()

    with pytest.raises(PluginLoadError, match="arcoflow_pol"):
        plugins.register(Typo(), "typo")
    assert "typo" not in plugins.names()

    class WrongArgs:
        @hookimpl
        def arcoflow_poll(self, sensor: object) -> PollResult:
            return PollResult()

    with pytest.raises(PluginLoadError, match="sensor"):
        plugins.register(WrongArgs(), "wrong")
    assert plugins.names() == ["a"]
    # A refused plugin leaves no trace: the next registration validates on its own.
    plugins.register(Counter(), "counter")
    assert plugins.names() == ["a", "counter"]


def test_describe_lists_hooks_and_sources() -> None:
    plugins = Plugins()
    plugins.register(Counter(), "counter")
    [info] = plugins.describe()
    assert info.name == "counter"
    assert info.hooks == ("arcoflow_poll", "arcoflow_push", "arcoflow_evaluate_tick")
    assert info.source == f"registered in code ({Counter.__module__}.Counter)"
    assert set(info.hooks) <= set(HOOKS)
    plugins.unregister("counter")
    assert plugins.describe() == [] and plugins.get("counter") is None


def test_discover_finds_the_built_in_plugins_through_entry_points() -> None:
    plugins = Plugins.discover()
    assert set(plugins.names()) >= BUILT_INS
    described = {info.name: info for info in plugins.describe()}
    assert described["filesystem"].hooks == ("arcoflow_poll", "arcoflow_check_config")
    assert described["subprocess"].hooks == (
        "arcoflow_launch",
        "arcoflow_run_state",
        "arcoflow_check_config",
    )
    assert described["memory"].hooks == ("arcoflow_launch", "arcoflow_run_state")
    assert "arcoflow_add_commands" in described["http"].hooks
    assert described["filesystem"].source.startswith("arcoflow ")


def test_plugins_can_be_blocked_by_argument_and_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert "memory" not in Plugins.discover(block=["memory"]).names()
    monkeypatch.setenv(DISABLE_ENV, "subprocess, http")
    names = set(Plugins.discover().names())
    assert names >= {"filesystem", "memory"} and not names & {"subprocess", "http"}
    monkeypatch.setenv(DISABLE_ENV, "*")
    assert not set(Plugins.discover().names()) & BUILT_INS


def _fake_distribution(root: Path, name: str, entry_points: str, modules: dict[str, str]) -> None:
    """A distribution importlib.metadata finds on sys.path: a dist-info folder and modules."""
    info = root / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(entry_points)
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))


def test_a_broken_plugin_is_reported_and_the_others_still_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_distribution(
        tmp_path,
        "brokenplugins",
        "[arcoflow]\nbroken = af_broken_mod\ntypo = af_typo_mod\ngood = af_good_mod\n",
        {
            "af_broken_mod": "raise ImportError('a dependency is missing')\n",
            "af_typo_mod": """
                from arcoflow.sdk import hookimpl
                @hookimpl
                def arcoflow_launc(launch):
                    return None
            """,
            "af_good_mod": """
                from arcoflow.sdk import Launched, hookimpl
                @hookimpl
                def arcoflow_launch(launch):
                    return Launched("good")
            """,
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins = Plugins.discover()
    problems = {p.name: p for p in plugins.problems()}
    assert set(problems) == {"broken", "typo"}
    assert "ImportError: a dependency is missing" in problems["broken"].error
    assert "arcoflow_launc" in problems["typo"].error
    assert problems["broken"].source == "brokenplugins 1.0 (af_broken_mod)"
    assert "good" in plugins.names() and set(plugins.names()) >= BUILT_INS
    assert plugins.launch("good", _launch(), 5) == Launched("good")
    for module in ("af_broken_mod", "af_typo_mod", "af_good_mod"):
        sys.modules.pop(module, None)


class Commands:
    @hookimpl
    def arcoflow_add_commands(self, subparsers: Any, register: Any) -> None:
        subparsers.add_parser("hello", help="say hello")
        register("hello", lambda args, ctx: 7)


class BrokenCommands:
    @hookimpl
    def arcoflow_add_commands(self, subparsers: Any, register: Any) -> None:
        raise RuntimeError("cannot add commands")


def test_plugins_add_commands_and_a_failing_one_is_skipped() -> None:
    plugins = Plugins()
    plugins.register(Commands(), "commands")
    plugins.register(BrokenCommands(), "broken")
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    handlers: dict[str, Any] = {}
    problems = plugins.add_commands(sub, handlers.__setitem__)
    assert [(p.name, p.error) for p in problems] == [
        ("broken", "RuntimeError: cannot add commands")
    ]
    args = parser.parse_args(["hello"])
    assert handlers[args.command](args, {}) == 7
