"""Blocking-the-loop reports and timer lateness: the diagnostics that need oxloop's core.

All oxloop-only: the watchdog reads the start time of the running callback, which the oxloop
core publishes for other threads and stock asyncio has nowhere; timer lateness is recorded by
the core's timer heap.

Timing margins are wide so a loaded CI machine cannot flip a result: the blocking calls take
0.4-0.5 s against a 0.1 s threshold, and nothing asserts an upper bound tighter than seconds.
"""

import asyncio
import dataclasses
import gc
import os
import threading
import time
from pathlib import Path

import pytest

import oxloop
from oxloop import diagnostics

pytestmark = pytest.mark.oxloop_only(
    "the watchdog reads the running callback's start time, which only oxloop's core publishes"
)

SOURCE = Path(__file__).read_text().splitlines()
BLOCK = 0.4
THRESHOLD = 0.1


def line_of(marker):
    hits = [i + 1 for i, text in enumerate(SOURCE) if text.rstrip().endswith(f"# <- {marker}")]
    assert len(hits) == 1, f"marker {marker!r} found {len(hits)} times"
    return hits[0]


def watchdog_threads():
    """Names of this process's OS threads called oxloop-watchdog (Rust threads are invisible
    to `threading.enumerate()`)."""
    names = []
    for tid in os.listdir("/proc/self/task"):
        try:
            names.append(Path(f"/proc/self/task/{tid}/comm").read_text().strip())
        except OSError:
            continue  # the thread ended while we looked
    return [name for name in names if name == "oxloop-watchdog"]


def wait_for_watchdogs(count):
    """The number of watchdog threads once it is `count`, or after 2 s: a new thread names
    itself when it first runs, a moment after it was started, and a joined one leaves /proc a
    moment after its join returned."""
    deadline = time.monotonic() + 2.0
    while len(watchdog_threads()) != count and time.monotonic() < deadline:
        time.sleep(0.005)
    return len(watchdog_threads())


@pytest.fixture
def reports():
    return []


@pytest.fixture
def new_loop(reports, loop_name):
    made = []

    def make(**overrides):
        settings = diagnostics.Settings(
            hook=reports.append, log=False, opentelemetry=False, blocking_threshold=THRESHOLD
        )
        settings = dataclasses.replace(settings, **overrides)
        loop = oxloop.new_event_loop(diagnostics=settings)
        made.append(loop)
        return loop

    yield make
    for loop in made:
        if not loop.is_closed():
            loop.close()


def load_customer_records():
    time.sleep(BLOCK)  # <- sleeps


async def handle_request():
    load_customer_records()  # <- calls-blocking
    return "done"


def test_blocking_task_reported_while_blocked_with_its_stack(new_loop, reports):
    seen_during_block = []

    def hook(report):
        reports.append(report)
        if report.kind == "blocking" and not report.ended:
            # On the watchdog thread, while the loop thread is still inside time.sleep().
            seen_during_block.append(threading.get_ident() != loop._thread_id)

    loop = new_loop(hook=hook)
    task = loop.create_task(handle_request(), name="request-1")
    assert loop.run_until_complete(task) == "done"
    loop.close()

    started, ended = [r for r in reports if r.kind == "blocking"]
    assert seen_during_block == [True]
    assert (started.ended, ended.ended) == (False, True)
    assert started.episode == ended.episode
    assert started.stack_captured
    functions = [frame.function for frame in started.stack]
    assert functions[-2:] == ["handle_request", "load_customer_records"]
    assert started.stack[-1].lineno == line_of("sleeps")
    assert started.stack[-1].line == "time.sleep(BLOCK)  # <- sleeps"
    assert started.task == "'request-1' (handle_request())"
    assert started.location.lineno == line_of("sleeps")
    assert THRESHOLD <= started.seconds < BLOCK
    assert BLOCK - 0.05 <= ended.seconds < BLOCK + 2.0
    text = started.format()
    assert "the event loop is blocked: task 'request-1' (handle_request())" in text
    assert "in load_customer_records" in text


def test_blocking_plain_callback_named(new_loop, reports):
    loop = new_loop()
    loop.call_soon(load_customer_records)
    loop.call_soon(loop.stop)
    loop.run_forever()
    loop.close()
    started = next(r for r in reports if r.kind == "blocking" and not r.ended)
    assert started.task is None
    assert started.callback == "load_customer_records"
    assert "callback load_customer_records()" in started.message


def test_one_report_per_episode_and_top_places(new_loop, reports):
    loop = new_loop()

    async def main():
        for _ in range(2):
            load_customer_records()
            await asyncio.sleep(0)
        await asyncio.sleep(0.05)  # long enough for the watchdog to see the last episode end

    loop.run_until_complete(main())
    stats = loop.stats()
    diag = loop._diagnostics
    loop.close()
    blocking = [r for r in reports if r.kind == "blocking"]
    assert [(r.episode, r.ended) for r in blocking] == [
        (1, False),
        (1, True),
        (2, False),
        (2, True),
    ]
    assert stats["blocking_episodes"] == 2
    assert stats["blocked_seconds"] >= 2 * (BLOCK - 0.05)
    [(place, seconds, episodes)] = diag.blocking.top()
    assert (place.function, place.lineno, episodes) == (
        "load_customer_records",
        line_of("sleeps"),
        2,
    )
    assert seconds == pytest.approx(stats["blocked_seconds"])
    assert "top places:" in diag.summary()


def test_short_callbacks_are_not_reported(new_loop, reports):
    loop = new_loop()

    async def main():
        for _ in range(20):
            time.sleep(0.005)
            await asyncio.sleep(0.005)

    loop.run_until_complete(main())
    loop.close()
    assert [r for r in reports if r.kind == "blocking"] == []


def test_watchdog_thread_starts_on_first_run_and_stops_when_the_loop_closes(new_loop):
    # A diagnosed loop an earlier test dropped unclosed stops its watchdog when collected:
    # collect it now, not in the middle of the count.
    gc.collect()
    before = len(watchdog_threads())
    loop = new_loop()
    assert len(watchdog_threads()) == before  # nothing runs until the loop does
    loop.run_until_complete(asyncio.sleep(0))
    assert wait_for_watchdogs(before + 1) == before + 1
    assert loop._diagnostics.blocking.thread_running
    loop.close()
    assert not loop._diagnostics.blocking.thread_running  # close() joined the thread
    # The kernel wakes the joiner as the thread exits, a moment before it leaves /proc.
    assert wait_for_watchdogs(before) == before


def test_no_watchdog_thread_when_diagnostics_are_off(monkeypatch):
    monkeypatch.delenv("OXLOOP_DIAGNOSTICS", raising=False)
    before = len(os.listdir("/proc/self/task"))  # every OS thread, named yet or not
    loop = oxloop.new_event_loop()
    try:
        loop.run_until_complete(asyncio.sleep(0.01))
        assert len(os.listdir("/proc/self/task")) == before
        assert loop._diagnostics is None
    finally:
        loop.close()


def test_close_while_a_report_waits_for_the_gil_does_not_deadlock(new_loop, reports):
    """The watchdog wants the GIL to report; close() joins it with the GIL released."""
    delivered = threading.Event()

    def slow_hook(report):
        reports.append(report)
        time.sleep(0.05)  # keep the watchdog inside Python a while
        delivered.set()

    loop = new_loop(hook=slow_hook)

    def spin():
        end = time.monotonic() + BLOCK  # a CPU loop: holds the GIL but lets it switch
        while time.monotonic() < end:
            pass

    loop.call_soon(spin)
    loop.call_soon(loop.stop)
    loop.run_forever()
    loop.close()  # returns: with the GIL held while joining, this would hang
    assert delivered.is_set()
    assert [r.ended for r in reports if r.kind == "blocking"] == [False, True]
    assert reports[0].stack[-1].function == "spin"


def test_timer_lateness_histogram(new_loop):
    loop = new_loop()

    async def main():
        loop.call_later(0.01, lambda: None)  # due while the loop is blocked below
        time.sleep(0.2)
        await asyncio.sleep(0.01)

    loop.run_until_complete(main())
    lateness = loop.stats()["timer_lateness"]
    loop.close()
    assert lateness["count"] >= 2
    assert lateness["max_seconds"] >= 0.15  # the timer that waited for the sleep
    counts = dict(lateness["buckets"])
    assert counts[0.5] >= 1  # 0.1 s <= lateness < 0.5 s
    assert sum(counts.values()) == lateness["count"]


def test_stats_keep_the_core_counters_and_add_the_diagnostics(new_loop):
    loop = new_loop()
    loop.run_until_complete(asyncio.sleep(0))
    stats = loop.stats()
    loop.close()
    for key in ("iterations", "callbacks_run", "ready", "timers", "timers_fired", "io_events"):
        assert key in stats
    for key in ("blocked_seconds", "blocking_episodes", "timer_lateness", "tasks_live"):
        assert key in stats


def test_diagnosed_run_through_oxloop_run(reports):
    settings = diagnostics.Settings(
        hook=reports.append, log=False, opentelemetry=False, blocking_threshold=THRESHOLD
    )
    assert oxloop.run(handle_request(), diagnostics=settings) == "done"
    assert [r.ended for r in reports if r.kind == "blocking"] == [False, True]
    assert reports[0].stack[-2].lineno == line_of("calls-blocking")
