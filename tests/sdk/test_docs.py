"""The plugin docs are executable: the two example plugins of docs/plugins.md (and of the
README, once copied there) are registered as their entry-point tables say and driven through
real cycles; every other Python block runs; every hook is documented."""

from __future__ import annotations

import inspect
import os
import re
import sys
import time
import tomllib
import types
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import arcoflow.sdk
import pytest
from arcoflow import spec
from arcoflow.kernel import (
    RunRow,
    RunTemplate,
    ScheduleDefinition,
    TickContext,
    TickResult,
    parse_definitions,
)
from arcoflow.plugins.memory_launcher import MemoryLauncher
from arcoflow.sdk import CycleReport, Plugins, Runtime
from arcoflow.sdk.plugins import HOOKS
from arcoflow.sdk.testing import Clock, temporary_kernel
from hypothesis.stateful import run_state_machine_as_test

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "plugins.md"
CONNECTOR = "## Write a sensor connector"
LAUNCHER = "## Write a run launcher"
DOCUMENTS = [p for p in (DOCS, ROOT / "README.md") if p.exists() and CONNECTOR in p.read_text()]


def _section(text: str, heading: str) -> str:
    return text.split(heading, 1)[1].split("\n## ", 1)[0]


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


class Example:
    """One documented plugin: its code, entry point and definitions."""

    def __init__(self, document: Path, heading: str) -> None:
        section = _section(document.read_text(), heading)
        self.code = _blocks(section, "python")[0]
        entry_points, definitions = _blocks(section, "toml")[:2]
        [(self.name, self.module)] = tomllib.loads(entry_points)["project"]["entry-points"][
            "arcoflow"
        ].items()
        self.definitions = parse_definitions(tomllib.loads(definitions))
        self.where = f"{document.name}: {heading}"

    def load(self) -> types.ModuleType:
        module = types.ModuleType(self.module)
        exec(compile(self.code, self.where, "exec"), module.__dict__)
        return module


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
@pytest.mark.parametrize("heading", [CONNECTOR, LAUNCHER])
def test_examples_are_complete_plugins_under_40_lines(document: Path, heading: str) -> None:
    example = Example(document, heading)
    assert len(example.code.strip().splitlines()) < 40
    plugins = Plugins()
    plugins.register(example.load(), example.name)
    [info] = plugins.describe()
    expected = {CONNECTOR: {"arcoflow_poll"}, LAUNCHER: {"arcoflow_launch"}}[heading]
    assert expected <= set(info.hooks)


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_the_connector_example_turns_appended_lines_into_runs(
    document: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    example = Example(document, CONNECTOR)
    [sensor] = example.definitions.sensors
    monkeypatch.chdir(tmp_path)
    queue = Path(sensor.config["path"])
    plugins = Plugins()
    plugins.register(example.load(), example.name)
    memory = MemoryLauncher()
    assert sensor.run.launcher is not None
    plugins.register(memory, sensor.run.launcher)
    clock = Clock()
    with temporary_kernel() as kernel:
        kernel.apply(example.definitions, now=clock())
        runtime = Runtime(kernel, plugins)

        def lines_of_next_cycle() -> list[str]:
            report = runtime.cycle(clock.advance(sensor.minimum_interval))
            assert not report.failures, report.failures
            [evaluation] = report.evaluations
            keys = evaluation.evaluation.run_keys
            return [kernel.run_by_key(k).config["line"] for k in keys]

        skipped = runtime.cycle(clock())
        assert [e.evaluation.status for e in skipped.evaluations] == ["SKIPPED"]
        queue.write_text("order 1\norder 2\norder 3 (still being wri")
        assert lines_of_next_cycle() == ["order 1", "order 2"]
        with queue.open("a") as fh:
            fh.write("tten)\n\norder 4\n")
        assert lines_of_next_cycle() == ["order 3 (still being written)", "order 4"]
        assert lines_of_next_cycle() == []
        rotated = tmp_path / "new.queue"
        rotated.write_text("order 5\n")
        os.replace(rotated, queue)  # a new file (inode) in its place: read from its start
        assert lines_of_next_cycle() == ["order 5"]
        assert len(memory.launched) == 5 and kernel.verify().ok


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_the_launcher_example_runs_targets_and_reports_their_end(
    document: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    example = Example(document, LAUNCHER)
    [schedule] = example.definitions.schedules
    module_name, _, function_name = schedule.run.target.partition(":")
    calls: list[dict[str, Any]] = []

    def job(**config: Any) -> None:
        calls.append(config)
        if config.get("fail"):
            raise ValueError("the report failed")

    jobs = types.ModuleType(module_name)
    setattr(jobs, function_name, job)
    monkeypatch.setitem(sys.modules, module_name, jobs)
    plugins = Plugins()
    plugins.register(example.load(), example.name)
    clock = Clock("2030-01-01T00:00:00Z")
    with temporary_kernel() as kernel:
        kernel.apply(example.definitions, now=clock())
        runtime = Runtime(kernel, plugins, example.definitions.launchers)
        report = runtime.cycle(clock.set("2030-01-01T02:00:00Z"))
        [tick], [launched] = report.ticks, report.launches
        assert launched.run_key == tick.run_keys[0]
        assert (launched.status, launched.external_id) == ("LAUNCHED", launched.run_id)
        done = _until_completed(runtime, clock, report)
        assert (done.run_id, done.status) == (launched.run_id, "SUCCEEDED")
        assert calls == [schedule.run.config]
        # A failing target: the run FAILS with the error; a missing one fails its launch.
        template = RunTemplate(schedule.run.target, launcher=example.name, config={"fail": True})
        failing = kernel.request_run("bad", template, now=clock())
        done = _until_completed(runtime, clock, runtime.cycle(clock.advance(1)))
        assert (done.run_id, done.status, done.detail) == (
            failing.run_id,
            "FAILED",
            "ValueError: the report failed",
        )
        template = RunTemplate("no_such_module:job", launcher=example.name)
        missing = kernel.request_run("missing", template, now=clock())
        [attempt] = runtime.cycle(clock.advance(1)).launches
        assert attempt.run_id == missing.run_id and attempt.status == "REQUESTED"
        assert (attempt.last_error or "").startswith("LaunchError: cannot load 'no_such_module")


def _until_completed(runtime: Runtime, clock: Clock, report: CycleReport) -> RunRow:
    deadline = time.monotonic() + 10
    while not report.completions:
        assert time.monotonic() < deadline, "the run never completed"
        time.sleep(0.01)
        report = runtime.cycle(clock.advance(1))
    [done] = report.completions
    return done


def _fixtures() -> dict[str, Callable[[], Any]]:
    return {"arcoflow_clock": Clock, "arcoflow_plugins": Plugins}


@pytest.mark.parametrize("index", range(len(_blocks(DOCS.read_text(), "python"))))
def test_every_python_block_of_the_plugin_docs_runs(
    index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code = _blocks(DOCS.read_text(), "python")[index]
    namespace: dict[str, Any] = {"__name__": f"docs_block_{index}"}
    exec(compile(code, f"docs/plugins.md block {index + 1}", "exec"), namespace)
    for name, function in namespace.items():  # a documented test is run, with its fixtures
        if name.startswith("test_") and callable(function):
            with temporary_kernel() as kernel:
                values = {"arcoflow_kernel": kernel} | {k: f() for k, f in _fixtures().items()}
                function(**{p: values[p] for p in inspect.signature(function).parameters})


def test_the_evaluator_example_skips_weekends() -> None:
    section = _section(DOCS.read_text(), "## Schedule evaluators")
    namespace: dict[str, Any] = {}
    exec(compile(_blocks(section, "python")[0], "evaluator example", "exec"), namespace)
    evaluate = namespace["arcoflow_evaluate_tick"]
    schedule = ScheduleDefinition("s", "0 9 * * *", RunTemplate("t"), evaluator="weekdays")
    saturday, monday = datetime(2030, 1, 5, 9, tzinfo=UTC), datetime(2030, 1, 7, 9, tzinfo=UTC)
    assert evaluate(TickContext(schedule, "s:x", saturday, saturday, 1, None)) == TickResult(
        skip_reason="weekend"
    )
    assert evaluate(TickContext(schedule, "s:y", monday, monday, 1, None)) == TickResult()


def test_every_hook_is_documented() -> None:
    text = DOCS.read_text()
    missing = [hook for hook in HOOKS if f"`{hook}`" not in text]
    assert not missing, f"docs/plugins.md does not document {missing}"


def test_the_docs_name_only_real_sdk_exports() -> None:
    text = DOCS.read_text()
    imported = re.findall(r"from arcoflow\.sdk import ([^\n]+)", text)
    names = {n.strip() for line in imported for n in line.split(",")}
    assert names and names <= set(arcoflow.sdk.__all__)


@pytest.mark.parametrize("heading", [CONNECTOR, LAUNCHER])
def test_the_example_project_ships_the_documented_plugins(heading: str) -> None:
    example = Example(DOCS, heading)
    project = ROOT / "examples" / "plugins"
    assert (project / f"{example.module}.py").read_text() == example.code
    entry_points = tomllib.loads((project / "pyproject.toml").read_text())["project"][
        "entry-points"
    ]["arcoflow"]
    assert entry_points[example.name] == example.module


@pytest.mark.parametrize("kit", ["PluginKit", "StoreKit"])
def test_the_documented_kits_pass_on_the_built_in_plugins_and_stores(
    kit: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    [block] = [b for b in _blocks(DOCS.read_text(), "python") if f"({kit})" in b]
    namespace: dict[str, Any] = {"__name__": "docs_kits"}
    exec(compile(block, f"docs/plugins.md {kit} block", "exec"), namespace)
    base = getattr(spec, kit)
    machines = [
        v
        for v in namespace.values()
        if isinstance(v, type) and issubclass(v, base) and v is not base
    ]
    assert len(machines) == 2
    for machine in machines:
        run_state_machine_as_test(machine, settings=spec.scaled(0.05, steps=10, minimum=2))


def test_how_to_build_each_kit_is_documented_in_one_place() -> None:
    """docs/plugins.md "Conformance kits" says how to build StoreKit, PluginKit and SourceKit;
    the docstrings and SPEC.md point there instead of carrying their own recipe."""
    from arcoflow.sdk.testing import _sources  # noqa: PLC0415 (its module docstring)

    text = DOCS.read_text()
    section = text[text.index("## Conformance kits") :]
    section = section[: section.index("\n## ")]
    for kit in ("StoreKit", "PluginKit", "SourceKit"):
        assert f"`{kit}`" in section or f".{kit}`" in section, f"{kit} is not in the section"
    pointers = {
        "arcoflow.spec": spec.__doc__,
        "arcoflow.spec.kits": spec.kits.__doc__,
        "arcoflow.spec.machines": spec.machines.__doc__,
        "arcoflow.sdk.testing._sources": _sources.__doc__,
        "spec/SPEC.md": (ROOT / "spec" / "SPEC.md").read_text(),
    }
    for where, doc in pointers.items():
        assert doc and "docs/plugins.md" in doc and "Conformance kits" in doc, where
        recipes = re.findall(r"class \w+\((?:StoreKit|PluginKit|SourceKit)\)", doc)
        assert not recipes, f"{where} carries its own recipe: {recipes}"
