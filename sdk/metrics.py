"""Prometheus metrics: what the daemon does, and what the store shows, in ``arcoflow_*`` names.

Needs the optional extra ``pip install 'arcoflow[metrics]'`` (the ``prometheus_client``
library), imported only when metrics are used. Two sources:

* **the daemon's cycles** (:class:`Metrics`, counters of this process): ticks by status,
  evaluations by status, run requests, launch attempts by outcome, completions by status,
  failures by kind, poll conflicts, cycle duration and tick lag histograms, and the time of
  the last completed cycle. ``arcoflow run --metrics-port N`` serves them on
  ``http://HOST:N/metrics`` with ``prometheus_client``'s own HTTP server;
* **the store** (:class:`StoreCollector`, computed at each scrape from any process): the
  schedules and sensors by state, how far the most overdue one is behind its due time, and
  the last cycle a daemon on the store completed (its heartbeat file). ``arcoflow serve``
  answers ``GET /metrics`` with both (the daemon's part is empty unless a daemon runs in the
  same process).

Counter names below omit the ``_total`` suffix the exposition adds.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterator
from functools import cache
from typing import TYPE_CHECKING, Any, Final

from arcoflow.kernel import Kernel

from .heartbeat import store_heartbeat
from .runtime import CycleReport

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

__all__ = ["CONTENT_TYPE", "EXTRA", "Metrics", "StoreCollector", "exposition", "process_metrics"]

#: The extra that installs what this module needs.
EXTRA: Final = "arcoflow[metrics]"
#: The content type of the text exposition format.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
_CYCLE_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_LAG_BUCKETS: Final = (1, 5, 15, 30, 60, 120, 300, 900, 3600, 6 * 3600, 86400)


def _prometheus(module: str = "prometheus_client") -> Any:
    """A ``prometheus_client`` module, or an ImportError that says how to get it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"metrics need the prometheus_client library: pip install '{EXTRA}'"
        ) from None


class Metrics:
    """The daemon's metrics in ``registry`` (default: ``prometheus_client``'s global one).
    :meth:`observe` counts one cycle's :class:`CycleReport`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        prom = _prometheus()
        self.registry = registry if registry is not None else prom.REGISTRY
        r = self.registry
        self.ticks = prom.Counter(
            "arcoflow_ticks", "Ticks recorded, by status", ["status"], registry=r
        )
        self.evaluations = prom.Counter(
            "arcoflow_evaluations", "Sensor evaluations recorded, by status", ["status"], registry=r
        )
        self.run_requests = prom.Counter(
            "arcoflow_run_requests",
            "Run keys requested by ticks and evaluations (an existing key is counted too)",
            registry=r,
        )
        self.launches = prom.Counter(
            "arcoflow_launches",
            "Launch attempts recorded, by outcome (launched, retry, gave_up)",
            ["outcome"],
            registry=r,
        )
        self.completions = prom.Counter(
            "arcoflow_completions", "Runs completed, by status", ["status"], registry=r
        )
        self.failures = prom.Counter(
            "arcoflow_failures", "Failures in cycles, by kind", ["kind"], registry=r
        )
        self.conflicts = prom.Counter(
            "arcoflow_conflicts", "Polls another daemon recorded first", registry=r
        )
        self.cycle_seconds = prom.Histogram(
            "arcoflow_cycle_duration_seconds",
            "Wall time of one daemon cycle",
            buckets=_CYCLE_BUCKETS,
            registry=r,
        )
        self.tick_lag = prom.Histogram(
            "arcoflow_tick_lag_seconds",
            "How long after its scheduled time each tick was evaluated",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.last_cycle = prom.Gauge(
            "arcoflow_last_cycle_timestamp_seconds",
            "When this process last completed a cycle (Unix time)",
            registry=r,
        )

    def observe(self, report: CycleReport, seconds: float) -> None:
        """Count what one cycle did; ``seconds``: how long it took."""
        for tick in report.ticks:
            self.ticks.labels(tick.status).inc()
            self.tick_lag.observe(max(report.now - tick.scheduled_for, 0))
            if tick.status == "TRIGGERED":
                self.run_requests.inc(len(tick.run_keys))
        for row in report.evaluations:
            self.evaluations.labels(row.evaluation.status).inc()
            self.run_requests.inc(len(row.evaluation.run_keys))
        for run in report.launches:
            outcome = {"LAUNCHED": "launched", "GAVE_UP": "gave_up"}.get(run.status, "retry")
            self.launches.labels(outcome).inc()
        for run in report.completions:
            self.completions.labels(run.status).inc()
        for failure in report.failures:
            self.failures.labels(failure.kind).inc()
        self.conflicts.inc(len(report.conflicts))
        self.cycle_seconds.observe(seconds)
        self.last_cycle.set(time.time())

    def serve(self, port: int, host: str = "127.0.0.1") -> Callable[[], None]:
        """Serve ``/metrics`` on ``host:port`` in a background thread (``prometheus_client``'s
        own server); returns the function that stops it."""
        server, thread = _prometheus().start_http_server(port, host, registry=self.registry)

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(5)

        return stop


def process_metrics() -> Metrics:
    """This process's :class:`Metrics` in the global registry (created on first use: a
    metric can be registered only once per registry). Raises the ImportError naming the
    extra whenever ``prometheus_client`` cannot be imported."""
    _prometheus()
    return _process_metrics()


@cache
def _process_metrics() -> Metrics:
    return Metrics()


class StoreCollector:
    """Gauges read from the store at each scrape; any process with the store can serve them."""

    def __init__(self, kernel: Kernel, clock: Callable[[], float] = time.time) -> None:
        self.kernel = kernel
        self.clock = clock

    def collect(self) -> Iterator[Any]:
        prom = _prometheus("prometheus_client.core")
        now = int(self.clock())
        schedules = self.kernel.schedules()
        sensors = self.kernel.sensors()
        count = prom.GaugeMetricFamily(
            "arcoflow_schedules", "Schedules in the store, by state", labels=["state"]
        )
        enabled = sum(1 for s in schedules if s.enabled)
        count.add_metric(["enabled"], enabled)
        count.add_metric(["disabled"], len(schedules) - enabled)
        yield count
        by_state = prom.GaugeMetricFamily(
            "arcoflow_sensors",
            "Sensors in the store, by state (failing: running with failures since the last "
            "successful evaluation)",
            labels=["state"],
        )
        running = [s for s in sensors if s.running]
        by_state.add_metric(["running"], len(running))
        by_state.add_metric(["stopped"], len(sensors) - len(running))
        by_state.add_metric(["failing"], sum(1 for s in running if s.failures))
        yield by_state
        lag = prom.GaugeMetricFamily(
            "arcoflow_due_lag_seconds",
            "How far the most overdue schedule or sensor is behind its due time (0: none is)",
            labels=["kind"],
        )
        due = [s.next_fire_at for s in schedules if s.enabled and s.next_fire_at is not None]
        lag.add_metric(["schedule"], max([now - t for t in due if t < now], default=0))
        polls = [s.next_eval_at for s in running if s.next_eval_at is not None]
        lag.add_metric(["sensor"], max([now - t for t in polls if t < now], default=0))
        yield lag
        beat = store_heartbeat(self.kernel.store)
        if beat is not None:
            yield prom.GaugeMetricFamily(
                "arcoflow_daemon_last_cycle_timestamp_seconds",
                "When a daemon on this store last completed a cycle (its heartbeat file)",
                value=beat.finished_at,
            )

    def describe(self) -> list[Any]:
        return []  # collected fresh at each scrape: nothing to check at registration


def exposition(kernel: Kernel, registry: CollectorRegistry | None = None) -> bytes:
    """The text exposition of ``registry`` (default: the global one) plus the store's gauges
    for ``kernel``: what ``GET /metrics`` answers."""
    prom = _prometheus()
    store_registry = prom.CollectorRegistry(auto_describe=False)
    store_registry.register(StoreCollector(kernel))
    own = prom.generate_latest(registry if registry is not None else prom.REGISTRY)
    return bytes(own + prom.generate_latest(store_registry))
