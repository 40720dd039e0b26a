"""A third-party plugin, written in its own project, installed with pip into this environment,
discovered through its entry point and driven end to end: poll and push -> run -> launched."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from arcoflow.kernel import RunTemplate, SensorDefinition
from arcoflow.sdk import Plugins, Runtime
from arcoflow.sdk.testing import Clock, push, temporary_kernel

PLUGIN = textwrap.dedent(
    '''
    """A third party's arcoflow plugin: a connector and a launcher in one module."""

    import json
    import os

    from arcoflow.sdk import Launched, PollResult, RunRequest, RunState, hookimpl


    @hookimpl
    def arcoflow_poll(context):
        items = context.sensor.config["items"]
        fresh = items[int(context.cursor or "0"):]
        requests = [RunRequest(i, config={"item": i}) for i in fresh]
        return PollResult(requests, cursor=str(len(items)))


    @hookimpl
    def arcoflow_push(message):
        return [RunRequest(f"{message.message_id}/{n}") for n in message.payload["parts"]]


    @hookimpl
    def arcoflow_launch(launch):
        journal = launch.launcher_config["journal"]
        with open(journal, "a") as fh:
            fh.write(json.dumps({"run_id": launch.run_id, "target": launch.target}) + "\\n")
        return Launched(f"tp-{launch.run_id[:8]}")


    @hookimpl
    def arcoflow_run_state(launch, external_id):
        if os.path.exists(launch.launcher_config["journal"] + ".done"):
            return RunState("succeeded", f"finished {external_id}")
        return None
    '''
)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """Build and install the plugin project; uninstall it afterwards. Yields (dist, name)."""
    tag = uuid.uuid4().hex[:8]
    dist, module, name = f"arcoflow-thirdparty-{tag}", f"arcoflow_tp_{tag}", f"tp-{tag}"
    project = tmp_path_factory.mktemp("thirdparty")
    (project / f"{module}.py").write_text(PLUGIN)
    (project / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [build-system]
            requires = ["setuptools>=68"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "{dist}"
            version = "0.1.0"
            dependencies = ["arcoflow"]

            [project.entry-points.arcoflow]
            {name} = "{module}"

            [tool.setuptools]
            py-modules = ["{module}"]
            """
        )
    )
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-build-isolation", "--no-index", str(project)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    importlib.invalidate_caches()
    try:
        yield dist, name
    finally:
        subprocess.run([*pip, "uninstall", "-y", dist], check=True, capture_output=True)
        sys.modules.pop(module, None)
        importlib.invalidate_caches()


@pytest.mark.slow
def test_an_installed_plugin_is_discovered_and_drives_runs_end_to_end(
    installed: tuple[str, str], tmp_path: Path
) -> None:
    dist, name = installed
    plugins = Plugins.discover()
    described = {info.name: info for info in plugins.describe()}
    assert described[name].hooks == (
        "arcoflow_poll",
        "arcoflow_push",
        "arcoflow_launch",
        "arcoflow_run_state",
    )
    assert described[name].source.startswith(f"{dist} 0.1.0 (")
    journal = tmp_path / "journal.jsonl"
    clock = Clock()
    with temporary_kernel() as kernel:
        template = RunTemplate("tp.job", launcher=name)
        kernel.define_sensor(
            SensorDefinition(
                "items",
                "poll",
                template,
                connector=name,
                config={"items": ["a", "b"]},
                minimum_interval=60,
            ),
            now=clock(),
        )
        kernel.define_sensor(
            SensorDefinition("hook", "push", template, connector=name), now=clock()
        )
        pushed = push(kernel, plugins, "hook", "m-1", {"parts": [1, 2]}, now=clock())
        assert pushed.evaluation.evaluation.run_keys == ("sensor:hook:m-1/1", "sensor:hook:m-1/2")
        runtime = Runtime(kernel, plugins, {name: {"journal": str(journal)}})
        report = runtime.cycle(clock())
        assert [e.evaluation.run_keys for e in report.evaluations] == [
            ("sensor:items:a", "sensor:items:b")
        ]
        assert len(report.launches) == 4 and {r.status for r in report.launches} == {"LAUNCHED"}
        launched = [json.loads(line) for line in journal.read_text().splitlines()]
        assert sorted(x["run_id"] for x in launched) == sorted(r.run_id for r in report.launches)
        assert {r.external_id for r in report.launches} == {
            f"tp-{r.run_id[:8]}" for r in report.launches
        }
        (tmp_path / "journal.jsonl.done").touch()
        done = runtime.cycle(clock.advance("1m")).completions
        assert len(done) == 4 and {r.status for r in done} == {"SUCCEEDED"}
        assert kernel.verify().ok
    # The CLI sees it too, exactly like the built-in plugins.
    listed = subprocess.run(
        [
            sys.executable,
            "-m",
            "arcoflow.sdk.cli",
            "--store",
            str(tmp_path / "s"),
            "--json",
            "plugins",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    entry = {p["name"]: p for p in json.loads(listed.stdout)}[name]
    assert entry["status"] == "loaded" and entry["source"].startswith(dist)
