"""`loop.stats()` as metrics: a Prometheus collector and OpenTelemetry observable instruments.

    import oxloop.metrics
    oxloop.metrics.track(loop, name="main")        # or track() inside the running loop
    oxloop.metrics.register_prometheus()           # prometheus_client's default registry
    oxloop.metrics.register_opentelemetry()        # a Meter from the global MeterProvider

Both read every tracked loop when they are collected (a scrape, an export), from whatever
thread does that: the counters are atomics the core shares across threads, the backlog is read
under the GIL. A tracked loop is held weakly and skipped once closed. Neither library is a
dependency: each is imported by the function that needs it.

The metric names, one per `loop.stats()` key, are in `METRICS` and in the README
("Metrics"). A metric of the diagnostics is reported only for loops with diagnostics on.
OpenTelemetry's API has no observable histogram, so timer lateness goes to Prometheus only;
``task_creation_rate`` goes to neither (it is the rate of ``tasks_created``).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Iterator
from typing import Any, NamedTuple

from .loop import Loop

__all__ = ["METRICS", "track", "untrack", "register_prometheus", "register_opentelemetry"]


class Metric(NamedTuple):
    key: str  # in loop.stats()
    kind: str  # "counter" or "gauge"
    prometheus: str  # without the _total a counter gets
    opentelemetry: str
    unit: str  # OpenTelemetry's (UCUM)
    help: str


METRICS = (
    Metric("iterations", "counter", "oxloop_iterations", "oxloop.loop.iterations", "{iteration}",
           "Loop iterations (one poll of the OS each)."),
    Metric("callbacks_run", "counter", "oxloop_callbacks_run", "oxloop.loop.callbacks_run",
           "{callback}", "Callbacks run (task steps included)."),
    Metric("timers_fired", "counter", "oxloop_timers_fired", "oxloop.loop.timers_fired",
           "{timer}", "Timers that came due and were run."),
    Metric("io_events", "counter", "oxloop_io_events", "oxloop.loop.io_events", "{event}",
           "Readiness events returned by the poller."),
    Metric("poll_wait_seconds", "counter", "oxloop_poll_wait_seconds", "oxloop.loop.poll_wait",
           "s", "Time spent waiting in the poller (idle time)."),
    Metric("ready", "gauge", "oxloop_ready_callbacks", "oxloop.loop.ready", "{callback}",
           "Callbacks ready to run: the backlog of the loop."),
    Metric("timers", "gauge", "oxloop_timers_pending", "oxloop.loop.timers", "{timer}",
           "Timers scheduled, cancelled ones not yet dropped included."),
    Metric("timers_cancelled", "gauge", "oxloop_timers_cancelled", "oxloop.loop.timers_cancelled",
           "{timer}", "Cancelled timers still in the timer heap."),
    Metric("fds", "gauge", "oxloop_fds_watched", "oxloop.loop.fds", "{fd}",
           "File descriptors the loop watches."),
    Metric("blocked_seconds", "counter", "oxloop_blocked_seconds", "oxloop.loop.blocked", "s",
           "Time the loop was blocked past the diagnostics threshold."),
    Metric("blocking_episodes", "counter", "oxloop_blocking_episodes",
           "oxloop.loop.blocking_episodes", "{episode}",
           "Times the loop was blocked past the diagnostics threshold."),
    Metric("tasks_created", "counter", "oxloop_tasks_created", "oxloop.loop.tasks.created",
           "{task}", "Tasks created on the loop."),
    Metric("tasks_live", "gauge", "oxloop_tasks_live", "oxloop.loop.tasks.live", "{task}",
           "Tasks not yet done."),
    Metric("tasks_high_water", "gauge", "oxloop_tasks_high_water", "oxloop.loop.tasks.high_water",
           "{task}", "The most tasks alive at once."),
)  # fmt: skip

_tracked: dict[str, weakref.ref[Loop]] = {}
_lock = threading.Lock()  # track() runs on loop threads, collection on exporter threads


def track(loop: Loop | None = None, *, name: str = "main") -> None:
    """Export `loop` (default: the running loop) under `name`, replacing a loop tracked under
    that name before."""
    if loop is None:
        loop = asyncio.get_running_loop()
    if not isinstance(loop, Loop):
        raise TypeError(f"oxloop.metrics tracks oxloop loops, not {type(loop).__name__}")
    with _lock:
        _tracked[name] = weakref.ref(loop)


def untrack(name: str = "main") -> None:
    with _lock:
        _tracked.pop(name, None)


def _snapshots() -> Iterator[tuple[str, dict[str, Any]]]:
    with _lock:
        loops = [(name, ref()) for name, ref in _tracked.items()]
    for name, loop in loops:
        if loop is not None and not loop.is_closed():
            yield name, loop.stats()


# -- Prometheus -------------------------------------------------------------------------------


class PrometheusCollector:
    """A prometheus_client collector of every tracked loop's stats."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        snapshots = list(_snapshots())
        for metric in METRICS:
            family_class = CounterMetricFamily if metric.kind == "counter" else GaugeMetricFamily
            family = family_class(metric.prometheus, metric.help, labels=["loop"])
            for name, stats in snapshots:
                if metric.key in stats:
                    family.add_metric([name], stats[metric.key])
            yield family
        lateness = HistogramMetricFamily(
            "oxloop_timer_lateness_seconds",
            "How late timers ran after their due time (diagnostics on).",
            labels=["loop"],
        )
        for name, stats in snapshots:
            histogram = stats.get("timer_lateness")
            if histogram is not None:
                lateness.add_metric([name], _cumulative(histogram["buckets"]), _sum(histogram))
        yield lateness


def _cumulative(buckets: list[tuple[float | None, int]]) -> list[tuple[str, int]]:
    """stats() counts each bucket on its own, the last (bound None) past every bound;
    Prometheus wants running totals, ending with +Inf."""
    total, result = 0, []
    for bound, count in buckets:
        total += count
        result.append(("+Inf" if bound is None else repr(float(bound)), total))
    return result


def _sum(histogram: dict[str, Any]) -> float:
    return histogram["mean_seconds"] * histogram["count"]


def register_prometheus(registry: Any = None) -> PrometheusCollector:
    """Register a `PrometheusCollector` with `registry` (prometheus_client's default one when
    None) and return it."""
    if registry is None:
        from prometheus_client import REGISTRY as registry
    collector = PrometheusCollector()
    registry.register(collector)
    return collector


# -- OpenTelemetry ----------------------------------------------------------------------------


def register_opentelemetry(meter: Any = None) -> list[Any]:
    """Create one observable instrument per metric on `meter` (default: the meter ``oxloop``
    of the global MeterProvider) and return them."""
    from opentelemetry import metrics

    if meter is None:
        from . import __version__

        meter = metrics.get_meter("oxloop", __version__)
    instruments = []
    for metric in METRICS:
        create = (
            meter.create_observable_counter
            if metric.kind == "counter"
            else meter.create_observable_gauge
        )
        instruments.append(
            create(
                metric.opentelemetry,
                callbacks=[_observer(metric.key, metrics.Observation)],
                unit=metric.unit,
                description=metric.help,
            )
        )
    return instruments


def _observer(key: str, observation: Any) -> Any:
    def observe(options: Any) -> list[Any]:
        return [
            observation(stats[key], {"oxloop.loop": name})
            for name, stats in _snapshots()
            if key in stats
        ]

    return observe
