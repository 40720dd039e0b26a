"""The kernel queries the runtime added: ``launched_runs`` (an index) and ``poll_context``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from arcoflow.kernel import (
    InputError,
    Kernel,
    LmdbStore,
    MemoryStore,
    PollResult,
    RunTemplate,
    SensorDefinition,
)


@pytest.fixture(params=["memory", "lmdb"])
def kernel(request: pytest.FixtureRequest, store_dir: str) -> Iterator[Kernel]:
    store = MemoryStore() if request.param == "memory" else LmdbStore(store_dir)
    yield Kernel(store)
    store.close()


def test_launched_runs_lists_only_launched_runs_of_one_launcher(kernel: Kernel) -> None:
    a = [kernel.request_run(f"a{i}", RunTemplate("t", launcher="alpha"), now=0) for i in range(5)]
    b = kernel.request_run("b", RunTemplate("t", launcher="beta"), now=0)
    kernel.request_run("none", RunTemplate("t"), now=0)  # no launcher: never in the index
    assert kernel.launched_runs("alpha") == []
    for run in a[:4]:
        kernel.record_launch(run.run_id, external_id=f"x-{run.run_key}", now=1)
    kernel.record_launch(b.run_id, external_id="y", now=1)
    kernel.record_launch(a[4].run_id, error="boom", now=1)  # still REQUESTED: not listed
    launched = kernel.launched_runs("alpha")
    assert sorted(r.run_id for r in launched) == sorted(r.run_id for r in a[:4])
    assert [r.run_id for r in launched] == sorted(r.run_id for r in launched)
    assert all(r.status == "LAUNCHED" for r in launched)
    assert [r.run_id for r in kernel.launched_runs("beta")] == [b.run_id]
    assert kernel.launched_runs("gamma") == []
    # Completed runs leave the index; the rest page by run id.
    kernel.complete_run(launched[0].run_id, True, now=2)
    rest = kernel.launched_runs("alpha")
    assert [r.run_id for r in rest] == [r.run_id for r in launched[1:]]
    page1 = kernel.launched_runs("alpha", limit=2)
    page2 = kernel.launched_runs("alpha", after=page1[-1].run_id, limit=2)
    assert [r.run_id for r in page1 + page2] == [r.run_id for r in rest]
    assert kernel.verify().ok


def test_launched_runs_checks_its_limit(kernel: Kernel) -> None:
    with pytest.raises(InputError):
        kernel.launched_runs("alpha", limit=0)


def test_poll_context_reads_the_ticket_and_the_cursor_once(kernel: Kernel) -> None:
    kernel.define_sensor(
        SensorDefinition("s", "poll", RunTemplate("t"), connector="c", config={"k": 1}), now=0
    )
    ticket, context = kernel.poll_context("s", now=10)
    assert ticket.sensor_id == "s" and ticket.expected_state_version == 0
    assert context.cursor is None and context.cursor_version is None
    assert context.sensor.config == {"k": 1} and int(context.now.timestamp()) == 10
    kernel.record_poll(ticket, PollResult(cursor=b"\x01", cursor_version=3), now=10)
    ticket, context = kernel.poll_context("s", now=50)
    assert ticket.expected_state_version == 1
    assert (context.cursor, context.cursor_version, context.state_version) == (b"\x01", 3, 1)
