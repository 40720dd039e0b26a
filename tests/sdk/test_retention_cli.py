"""Retention through the CLI and the runtime (issue 16): the dedupe horizon to the second,
``arcoflow prune``, pruned history named (never a silent gap), the daemon pruning itself."""

from __future__ import annotations

import contextlib
import io
import json
import tomllib
from pathlib import Path

from arcoflow.kernel import (
    Kernel,
    MemoryStore,
    RetentionPolicy,
    RunTemplate,
    SensorDefinition,
    parse_definitions,
)
from arcoflow.sdk import Plugins
from arcoflow.sdk.cli import main
from arcoflow.sdk.runtime import Runtime

DEFINITIONS = """
[retention]
history = "2h"

[[sensor]]
id = "orders"
type = "push"
run = { target = "ship" }
retention = { dedupe_horizon = "1d" }
"""


def cli(store: Path, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--store", str(store), *args])
    return code, out.getvalue(), err.getvalue()


def push(store: Path, at: str) -> bool:
    code, out, err = cli(store, "--json", "push", "orders", "--message-id", "m-1", "--now", at)
    assert code == 0, err
    duplicate: bool = json.loads(out)["duplicate"]
    return duplicate


def test_a_redelivery_one_second_inside_the_horizon_is_a_duplicate_one_second_after_new(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    (tmp_path / "defs.toml").write_text(DEFINITIONS)
    assert cli(store, "apply", str(tmp_path / "defs.toml"))[0] == 0
    assert push(store, "2026-01-01T00:00:00Z") is False
    # The horizon (1 day) ends at 2026-01-02T00:00:00Z.
    assert push(store, "2026-01-01T23:59:59Z") is True
    assert cli(store, "prune", "--now", "2026-01-01T23:59:59Z")[0] == 0
    assert push(store, "2026-01-01T23:59:59Z") is True  # a prune inside it changes nothing
    assert push(store, "2026-01-02T00:00:01Z") is False  # one second after: a new message
    code, out, _ = cli(store, "--json", "evals", "orders")
    # The first evaluation's history (2h) was pruned at 23:59:59; the redelivery is new.
    assert code == 0
    assert [e["evaluated_at"] for e in json.loads(out)] == ["2026-01-02T00:00:01Z"]
    code, out, _ = cli(store, "--json", "verify")
    assert code == 0 and json.loads(out)["ok"] is True


def test_prune_reports_what_it_dropped_and_queries_name_the_gap(tmp_path: Path) -> None:
    store = tmp_path / "store"
    (tmp_path / "defs.toml").write_text(DEFINITIONS)
    cli(store, "apply", str(tmp_path / "defs.toml"))
    push(store, "2026-01-01T00:00:00Z")
    code, out, _ = cli(store, "--json", "prune", "--now", "2026-01-01T03:00:00Z")
    assert code == 0
    assert json.loads(out) == {"events": 1, "rows": 1, "keys": 0}  # the evaluation
    code, out, err = cli(store, "--json", "evals", "orders")
    assert code == 0 and json.loads(out) == []  # stdout: still one JSON document
    assert "history of sensor 'orders' before 2026-01-01T00:00:01Z was pruned" in err
    code, _, err = cli(store, "prune", "--now", "yesterday")
    assert code == 2 and "arcoflow: error: " in err and "Traceback" not in err
    code, _, err = cli(store, "prune", "--limit", "0")
    assert code == 2 and "limit" in err


def test_the_runtime_prunes_on_its_own_bounded_and_at_most_once_per_interval() -> None:
    kernel = Kernel(MemoryStore())
    kernel.set_retention(RetentionPolicy(history="1h"), now=0)
    kernel.define_sensor(SensorDefinition("orders", "push", RunTemplate("ship")), now=0)
    for i in range(30):
        kernel.ingest("orders", f"m{i}", None, now=i)
    runtime = Runtime(kernel, Plugins(), batch=1, prune_interval=60)
    first = runtime.cycle(now=7200)
    assert first.pruned == 10  # 10 * batch per pass
    assert runtime.cycle(now=7230).pruned == 0  # within the interval: no pass
    assert runtime.cycle(now=7260).pruned == 10
    assert len(kernel.evaluations("orders", limit=100)) == 10
    assert first.to_json()["pruned"] == 10
    assert kernel.verify().ok


def test_the_guides_definitions_block_is_valid() -> None:
    """docs/retention.md's example file parses, with the values it explains."""
    guide = (Path(__file__).resolve().parents[2] / "docs" / "retention.md").read_text()
    block = guide.split("```toml\n", 1)[1].split("```", 1)[0]
    definitions = parse_definitions(tomllib.loads(block))
    assert definitions.retention == RetentionPolicy(history=30 * 86400, dedupe_horizon=30 * 86400)
    assert definitions.sensors[0].retention == RetentionPolicy(7 * 86400, 2 * 86400)
