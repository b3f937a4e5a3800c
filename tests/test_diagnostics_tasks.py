"""Diagnostics built on the task factory: forgotten awaits, lost exceptions, swallowed
cancellations, tasks pending at shutdown, task floods, and `dump_tasks()`.

These need nothing from oxloop's core, so every test runs on both loops: on oxloop with
``new_event_loop(diagnostics=...)``, on stock asyncio with ``oxloop.diagnostics.attach(loop)``.
Each provokes the pitfall on purpose and checks the report's content; reports are collected
through the settings' hook (logging off, so the tests stay quiet).

Lines are found by the marker comments at their end (``# <- name``), so the tests keep
checking the right line number when the file changes.
"""

import asyncio
import dataclasses
import gc
import sys
from pathlib import Path

import pytest

import oxloop
from oxloop import diagnostics
from oxloop.diagnostics import session as diagnostics_session

SOURCE = Path(__file__).read_text().splitlines()


def line_of(marker):
    """The line number (1-based) of the line ending with ``# <- marker``."""
    hits = [i + 1 for i, text in enumerate(SOURCE) if text.rstrip().endswith(f"# <- {marker}")]
    assert len(hits) == 1, f"marker {marker!r} found {len(hits)} times"
    return hits[0]


class Diagnosed:
    """Makes diagnosed loops of the parametrised kind and collects their reports."""

    def __init__(self, loop_name):
        self.loop_name = loop_name
        self.reports = []
        self.loops = []

    def settings(self, **overrides):
        base = diagnostics.Settings(hook=self.reports.append, log=False, opentelemetry=False)
        return dataclasses.replace(base, **overrides)

    def new_loop(self, **overrides):
        settings = self.settings(**overrides)
        if self.loop_name == "oxloop":
            loop = oxloop.new_event_loop(diagnostics=settings)
        else:
            loop = asyncio.new_event_loop()
            diagnostics.attach(loop, settings)
        self.loops.append(loop)
        return loop

    def run(self, coro, **overrides):
        """Run `coro` as asyncio.run() would (Runner: leftover tasks cancelled), then close."""
        with asyncio.Runner(loop_factory=lambda: self.new_loop(**overrides)) as runner:
            return runner.run(coro)

    def of_kind(self, kind):
        return [r for r in self.reports if r.kind == kind]

    def close(self):
        for loop in self.loops:
            if not loop.is_closed():
                loop.close()


@pytest.fixture
def diagnosed(loop_name):
    made = Diagnosed(loop_name)
    try:
        yield made
    finally:
        made.close()


# -- forgotten await ---------------------------------------------------------------------------


async def send_email(to):
    await asyncio.sleep(0)


def test_forgotten_await_names_the_coroutine_and_its_creation_line(diagnosed):
    async def main():
        send_email("a@example.com")  # <- forgotten
        await asyncio.sleep(0)

    with pytest.warns(RuntimeWarning, match="send_email' was never awaited"):
        diagnosed.run(main())
    [report] = diagnosed.of_kind("forgotten_await")
    assert report.coroutine == "send_email"
    assert report.location.lineno == line_of("forgotten")
    assert report.location.filename == __file__
    assert report.location.function.endswith("main")
    assert "send_email() was never awaited" in report.format()


def test_forgotten_await_without_origin_tracking_reports_where_it_was_dropped(diagnosed):
    depth_during_run = []

    async def main():
        depth_during_run.append(sys.get_coroutine_origin_tracking_depth())
        send_email("b@example.com")  # <- dropped
        await asyncio.sleep(0)

    with pytest.warns(RuntimeWarning, match="send_email' was never awaited"):
        diagnosed.run(main(), origin_depth=0)
    assert depth_during_run == [0]  # no per-coroutine cost
    [report] = diagnosed.of_kind("forgotten_await")
    assert report.origin == []
    assert report.location.lineno == line_of("dropped")
    assert report.format().splitlines()[1] == f"  dropped at {report.location}"


def test_awaited_coroutine_is_not_reported(diagnosed):
    async def main():
        await send_email("a@example.com")

    diagnosed.run(main())
    assert diagnosed.of_kind("forgotten_await") == []


# -- exception lost in a task ------------------------------------------------------------------


async def parse(text):
    await asyncio.sleep(0)
    raise ValueError(f"bad input: {text!r}")


def test_lost_exception_reported_as_soon_as_the_task_is_collected(diagnosed):
    seen_before_main_returned = []

    async def main():
        asyncio.create_task(parse("x"))  # <- lost-collected
        for _ in range(5):
            await asyncio.sleep(0)
        seen_before_main_returned.extend(diagnosed.of_kind("lost_exception"))

    gc.disable()  # reported because the task died, not because a GC pass found it
    try:
        diagnosed.run(main())
    finally:
        gc.enable()
    [report] = seen_before_main_returned
    assert report.noticed == "the task was garbage-collected"
    assert isinstance(report.exception, ValueError)
    assert report.task.coroutine == "parse"
    assert report.location.lineno == line_of("lost-collected")
    text = report.format()
    assert "ValueError(\"bad input: 'x'\")" in text
    assert "Traceback (most recent call last)" in text
    assert f"{__file__}:{line_of('lost-collected')}" in text
    assert len(diagnosed.of_kind("lost_exception")) == 1  # not again at close


def test_lost_exception_of_a_live_task_reported_when_the_loop_closes(diagnosed):
    kept = []

    async def main():
        kept.append(asyncio.create_task(parse("y")))  # <- lost-at-close
        await asyncio.sleep(0.01)
        assert diagnosed.of_kind("lost_exception") == []  # still retrievable: not certain yet

    diagnosed.run(main())
    [report] = diagnosed.of_kind("lost_exception")
    assert report.noticed == "the loop was closing"
    assert report.location.lineno == line_of("lost-at-close")
    kept[0].exception()  # retrieve it, so asyncio does not log it again when it is collected


def test_retrieved_exception_is_not_reported(diagnosed):
    async def main():
        task = asyncio.create_task(parse("z"))
        with pytest.raises(ValueError):
            await task

    diagnosed.run(main())
    assert diagnosed.of_kind("lost_exception") == []


# -- cancellation ------------------------------------------------------------------------------


async def stubborn_worker(started):
    started.set()
    try:
        await asyncio.sleep(10)  # <- suspended
    except asyncio.CancelledError:
        return "carried on"


def test_swallowed_cancellation_found_with_where_it_was_suspended(diagnosed):
    async def main():
        started = asyncio.Event()
        task = asyncio.create_task(stubborn_worker(started))  # <- stubborn-created
        await started.wait()
        task.cancel()
        assert await task == "carried on"

    diagnosed.run(main())
    [report] = diagnosed.of_kind("swallowed_cancellation")
    assert report.task.coroutine == "stubborn_worker"
    assert report.outcome == "returned 'carried on'"
    assert report.location.lineno == line_of("suspended")
    assert report.task.created_at.lineno == line_of("stubborn-created")
    assert "without raising CancelledError" in report.message


async def polite_worker(started):
    started.set()
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        raise  # cleans up, then lets the cancellation through


def test_cancellation_that_propagates_is_not_reported(diagnosed):
    async def main():
        started = asyncio.Event()
        task = asyncio.create_task(polite_worker(started))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # asyncio.timeout() cancels and then withdraws its request (uncancel): not swallowed
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await asyncio.sleep(10)

    diagnosed.run(main())
    assert diagnosed.of_kind("swallowed_cancellation") == []


async def heartbeat():
    while True:
        await asyncio.sleep(1)  # <- heartbeat


def test_tasks_cancelled_at_shutdown_reported_with_their_await_stack(diagnosed):
    async def main():
        asyncio.create_task(heartbeat())  # <- heartbeat-created
        await asyncio.sleep(0)

    diagnosed.run(main())
    [report] = diagnosed.of_kind("pending_at_shutdown")
    assert report.cancelled_at_shutdown
    [task] = report.tasks
    assert task.coroutine == "heartbeat"
    assert task.created_at.lineno == line_of("heartbeat-created")
    assert report.location.lineno == line_of("heartbeat")
    assert "still pending at shutdown and had to be cancelled" in report.message
    assert f"line {line_of('heartbeat')}, in heartbeat" in report.format()


def test_tasks_pending_when_the_loop_is_closed_reported(diagnosed):
    loop = diagnosed.new_loop()
    left = []

    async def main():
        left.append(asyncio.create_task(heartbeat()))
        await asyncio.sleep(0)

    loop.run_until_complete(main())
    loop.close()
    [report] = diagnosed.of_kind("pending_at_shutdown")
    assert not report.cancelled_at_shutdown
    assert [t.coroutine for t in report.tasks] == ["heartbeat"]
    left[0]._log_destroy_pending = False  # left pending on purpose: no "destroyed" message


# -- task flood --------------------------------------------------------------------------------


async def handle_request(gate):
    await gate.wait()


def test_task_flood_warns_once_and_names_the_creation_site(diagnosed):
    async def main():
        gate = asyncio.Event()
        tasks = []
        for _ in range(60):
            tasks.append(asyncio.create_task(handle_request(gate)))  # <- flood
        gate.set()
        await asyncio.gather(*tasks)

    diagnosed.run(main(), task_soft_limit=50)
    [report] = diagnosed.of_kind("task_flood")
    assert report.live == 51  # the warning comes as the limit is crossed
    assert report.limit == 50
    site, count = report.top_sites[0]
    assert site.lineno == line_of("flood")
    assert count == 50  # the 51st is main's task, created elsewhere
    assert f"{__file__}:{line_of('flood')}" in report.format()


def test_task_counts_and_high_water_mark(diagnosed):
    loop = diagnosed.new_loop()
    diag = diagnostics_session._BY_LOOP[loop]

    async def main():
        gate = asyncio.Event()
        tasks = [asyncio.create_task(handle_request(gate)) for _ in range(7)]
        await asyncio.sleep(0)
        live_during = diag.stats()["tasks_live"]
        gate.set()
        await asyncio.gather(*tasks)
        return live_during

    assert loop.run_until_complete(main()) == 8  # 7 + main
    stats = diag.stats()
    assert stats["tasks_created"] == 8
    assert stats["tasks_high_water"] == 8
    assert stats["tasks_live"] == 0
    assert diagnosed.of_kind("task_flood") == []


# -- dump_tasks --------------------------------------------------------------------------------


async def leaf(gate):
    await gate.wait()  # <- leaf-waits


async def branch(gate):
    await asyncio.gather(leaf(gate), leaf(gate))  # <- branch-waits


def test_dump_tasks_shows_who_awaits_whom_with_their_lines(loop):
    """Works without diagnostics, on any loop."""

    async def main():
        gate = asyncio.Event()
        task = asyncio.create_task(branch(gate), name="branch")
        await asyncio.sleep(0.01)
        text = oxloop.dump_tasks()
        gate.set()
        await task
        return text

    text = loop.run_until_complete(main())
    lines = text.splitlines()
    assert lines[0].startswith("4 live tasks on ")  # main, branch and two leaves
    [branch_line] = [line for line in lines if "'branch'" in line]
    leaves = [line for line in lines if "(leaf())" in line]
    assert f"{__file__}:{line_of('branch-waits')} in branch" in branch_line
    assert len(leaves) == 2
    for line in leaves:
        assert f"{__file__}:{line_of('leaf-waits')} in leaf" in line
        assert line.startswith(("   ├─ ", "   └─ "))  # under the task that gathers them
    assert lines.index(branch_line) < min(lines.index(line) for line in leaves)


async def in_group(gate):
    async with asyncio.TaskGroup() as group:
        group.create_task(leaf(gate), name="grouped-1")
        group.create_task(leaf(gate), name="grouped-2")


async def waiting(gate):
    first = asyncio.create_task(leaf(gate), name="waited-1")
    second = asyncio.create_task(leaf(gate), name="waited-2")
    await asyncio.wait([first, second])


async def waiting_for(gate):
    await asyncio.wait_for(asyncio.create_task(leaf(gate), name="waited-for"), 60)


def _tree_under(loop, parent_coro, parent_name):
    """dump_tasks() while `parent_coro` (as task `parent_name`) waits: the parent's line and
    the lines of the tasks under it."""

    async def main():
        gate = asyncio.Event()
        task = asyncio.create_task(parent_coro(gate), name=parent_name)
        await asyncio.sleep(0.01)
        text = oxloop.dump_tasks()
        gate.set()
        await task
        return text

    lines = loop.run_until_complete(main()).splitlines()
    [at] = [i for i, line in enumerate(lines) if f"task {parent_name!r}" in line]
    under = []
    for line in lines[at + 1 :]:
        if not line.startswith(("   ├─ ", "   └─ ", "      ")):
            break
        under.append(line)
    return lines[at], under


@pytest.mark.parametrize(
    ("parent", "name", "children"),
    [
        (in_group, "group", ["grouped-1", "grouped-2"]),
        (waiting, "waiter", ["waited-1", "waited-2"]),
        (waiting_for, "waiter-for", ["waited-for"]),
    ],
    ids=["TaskGroup", "wait", "wait_for"],
)
def test_dump_tasks_puts_the_tasks_a_task_waits_for_under_it(loop, parent, name, children):
    """Works without diagnostics, on any loop."""
    _, under = _tree_under(loop, parent, name)
    assert sorted(line.split("'")[1] for line in under) == children
    for line in under:
        assert f"{__file__}:{line_of('leaf-waits')} in leaf" in line
