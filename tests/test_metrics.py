"""oxloop.metrics: loop.stats() exported through prometheus_client and OpenTelemetry's SDK.

oxloop only (stock asyncio has no stats()). Each exporter is read from another thread while the
loop runs, as a scrape or a periodic export would, after the loop ran known work: 50 callbacks,
a timer, and (diagnostics on) a task.
"""

import asyncio
import urllib.request

import pytest

import oxloop
import oxloop.metrics


@pytest.fixture
def tracked_loop():
    loop = oxloop.new_event_loop(diagnostics=True)
    oxloop.metrics.track(loop, name="web")
    try:
        yield loop
    finally:
        oxloop.metrics.untrack("web")
        loop.close()


async def some_work():
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    for i in range(50):
        loop.call_soon(lambda i=i: i == 49 and done.set_result(None))
    await done
    await asyncio.sleep(0.01)
    await asyncio.create_task(asyncio.sleep(0))


def read_from_another_thread(loop, read):
    async def main():
        await some_work()
        return await loop.run_in_executor(None, read)

    return loop.run_until_complete(main())


def test_prometheus_scrape_over_http(tracked_loop):
    prometheus_client = pytest.importorskip("prometheus_client")
    registry = prometheus_client.CollectorRegistry()
    oxloop.metrics.register_prometheus(registry)
    server, thread = prometheus_client.start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        port = server.server_address[1]

        def scrape():
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                return r.read().decode()

        text = read_from_another_thread(tracked_loop, scrape)
    finally:
        server.shutdown()
        server.server_close()
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("oxloop_")
    }
    assert samples['oxloop_callbacks_run_total{loop="web"}'] >= 50
    assert samples['oxloop_timers_fired_total{loop="web"}'] >= 1
    assert samples['oxloop_iterations_total{loop="web"}'] >= 1
    assert samples['oxloop_tasks_created_total{loop="web"}'] >= 2
    assert samples['oxloop_ready_callbacks{loop="web"}'] >= 0
    assert 'oxloop_fds_watched{loop="web"}' in samples
    assert samples['oxloop_timer_lateness_seconds_count{loop="web"}'] >= 1
    assert samples['oxloop_timer_lateness_seconds_bucket{le="+Inf",loop="web"}'] >= 1
    assert "# TYPE oxloop_poll_wait_seconds_total counter" in text


def test_opentelemetry_observable_instruments(tracked_loop):
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        oxloop.metrics.register_opentelemetry(provider.get_meter("test"))
        data = read_from_another_thread(tracked_loop, reader.get_metrics_data)
    finally:
        provider.shutdown()
    points = {
        metric.name: (metric.unit, [(p.attributes, p.value) for p in metric.data.data_points])
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    unit, [(attributes, value)] = points["oxloop.loop.callbacks_run"]
    assert attributes == {"oxloop.loop": "web"} and value >= 50 and unit == "{callback}"
    assert points["oxloop.loop.poll_wait"][0] == "s"
    assert points["oxloop.loop.timers_fired"][1][0][1] >= 1
    assert points["oxloop.loop.tasks.created"][1][0][1] >= 2
    assert {metric.opentelemetry for metric in oxloop.metrics.METRICS} <= set(points)


def test_without_diagnostics_only_the_core_counters_are_reported():
    prometheus_client = pytest.importorskip("prometheus_client")
    registry = prometheus_client.CollectorRegistry()
    oxloop.metrics.register_prometheus(registry)
    loop = oxloop.new_event_loop(diagnostics=False)
    oxloop.metrics.track(loop, name="plain")
    try:
        loop.run_until_complete(some_work())
        assert registry.get_sample_value("oxloop_callbacks_run_total", {"loop": "plain"}) >= 50
        assert registry.get_sample_value("oxloop_tasks_live", {"loop": "plain"}) is None
    finally:
        oxloop.metrics.untrack("plain")
        loop.close()


def test_track_defaults_to_the_running_loop_and_skips_it_once_closed():
    prometheus_client = pytest.importorskip("prometheus_client")
    registry = prometheus_client.CollectorRegistry()
    oxloop.metrics.register_prometheus(registry)

    async def main():
        oxloop.metrics.track(name="running")

    loop = oxloop.new_event_loop()
    try:
        loop.run_until_complete(main())
        assert registry.get_sample_value("oxloop_iterations_total", {"loop": "running"}) >= 1
        loop.close()
        assert registry.get_sample_value("oxloop_iterations_total", {"loop": "running"}) is None
    finally:
        oxloop.metrics.untrack("running")
        loop.close()


def test_track_refuses_a_loop_without_stats():
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(TypeError, match="oxloop loops"):
            oxloop.metrics.track(loop)
    finally:
        loop.close()
