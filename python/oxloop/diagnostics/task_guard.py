"""The task side of the diagnostics mode, built on the loop's task factory.

While diagnostics are on, the loop creates its tasks through `TaskGuard.create_task`, the
native `oxloop._oxloop.TaskBook`: it makes a `Task` (asyncio's C task with four slots more),
notes where it was created, and counts it; its done callback counts the task out and hands a
task that was cancelled or failed back to the guard. From that the guard reports:

- **task flood**: live tasks, high-water mark, creation rate and the top creation sites; one
  warning when the live count crosses the soft limit (again only after it fell below half);
- **swallowed cancellation**: a task that ``cancel()`` was called on and that finished without
  raising CancelledError, with the await stack it had when ``cancel()`` was called;
- **tasks pending at shutdown**: tasks ``asyncio.run()`` had to cancel after the main coroutine
  returned (recognised by who calls ``cancel()``), and tasks still pending when the loop closes;
- **lost exception**: a failed task whose exception nobody retrieved, reported when asyncio's
  finaliser says so (the task was collected) or, for tasks still alive, when the loop closes.

It needs nothing from oxloop's loop, so it works on stock asyncio loops too (see
`oxloop.diagnostics.attach`).
"""

from __future__ import annotations

import asyncio
import os
import sys
import weakref
from collections.abc import Callable
from typing import Any

from .. import _compat, _oxloop
from . import task_tree
from .reports import (
    Frame,
    LostExceptionReport,
    PendingTasksReport,
    Report,
    SwallowedCancellationReport,
    TaskFloodReport,
)

__all__ = ["Task", "TaskGuard", "MACHINERY"]

# Frames in these directories are asyncio's or oxloop's machinery, not where the user made a
# task: create_task, gather, ensure_future, TaskGroup, Runner, oxloop.run.
MACHINERY = (
    os.path.dirname(asyncio.__file__) + os.sep,
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,  # the oxloop package
)


TOP_SITES = 5


class Task(asyncio.Task):
    """asyncio's Task, plus where it was created and its await stack when first cancelled.

    Named ``Task`` so that its repr and asyncio's messages about it read as usual.
    """

    __slots__ = ("_oxloop_site", "_oxloop_cancel_stack", "_oxloop_at_shutdown", "_oxloop_reported")

    def cancel(self, msg: Any = None) -> bool:
        if not self.done():
            if self._oxloop_cancel_stack is None:
                self._oxloop_cancel_stack = task_tree.await_stack(self.get_coro())
            # Checked on every call: gather() may have cancelled it first, as its parent was.
            if sys._getframe(1).f_code is _compat.CANCEL_ALL_TASKS_CODE:
                self._oxloop_at_shutdown = True
        return super().cancel(msg)


def _outcome(task: asyncio.Task) -> str:
    exc = _compat.task_exception(task)  # read without marking it retrieved
    if exc is not None:
        return f"raised {exc!r}"
    return f"returned {_compat.task_result(task)!r}"


class TaskGuard:
    """Counts and watches the tasks of one loop; `create_task` is the loop's task factory."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, soft_limit: int, emit: Callable[[Report], None]
    ) -> None:
        self._loop_id = id(loop)
        self._loop_ref = weakref.ref(loop)
        self.soft_limit = soft_limit
        self._emit = emit
        self.sites: dict[tuple[str, int, str] | None, int] = {}  # site -> live tasks
        self._failed: weakref.WeakSet[asyncio.Task] = weakref.WeakSet()
        self._cancelled_at_shutdown: list[Any] = []
        # The task factory: makes, counts and watches each task (see the module doc).
        self.create_task = _oxloop.TaskBook(
            Task, soft_limit, self.sites, list(MACHINERY), self._report_flood, self._unusual_end
        )

    @property
    def created(self) -> int:
        return self.create_task.created

    @property
    def live(self) -> int:
        return self.create_task.live

    @property
    def high_water(self) -> int:
        return self.create_task.high_water

    def _unusual_end(self, task: Task) -> None:
        """A task of ours ended after cancel() was called on it, or with an exception."""
        if task.cancelled():
            if task._oxloop_at_shutdown:
                self._cancelled_at_shutdown.append(self._snapshot(task, task._oxloop_cancel_stack))
            return
        # cancelling() > 0: a cancel() request nobody withdrew (asyncio.timeout and TaskGroup
        # withdraw theirs with uncancel() when they turn it into their own outcome).
        if task._oxloop_cancel_stack is not None and task.cancelling() > 0:
            snap = self._snapshot(task, task._oxloop_cancel_stack)
            outcome = _outcome(task)
            self._emit(
                SwallowedCancellationReport(loop_id=self._loop_id, task=snap, outcome=outcome)
            )
        if _compat.task_exception(task) is not None:
            self._failed.add(task)

    # -- reports --------------------------------------------------------------------------

    @staticmethod
    def _snapshot(task: Task, stack: list[Frame] | None) -> Any:
        snap = task_tree.snapshot(task)
        if stack is not None:  # the stack as it was when cancel() was called
            snap = type(snap)(snap.name, snap.coroutine, snap.created_at, stack)
        return snap

    def rate(self) -> float:
        """Tasks created per second over the last second or so."""
        return self.create_task.rate()

    def top_sites(self, n: int = TOP_SITES) -> list[tuple[Frame | None, int]]:
        ranked = sorted(self.sites.items(), key=lambda item: item[1], reverse=True)[:n]
        return [(Frame(*site) if site else None, count) for site, count in ranked]

    def _report_flood(self) -> None:
        self._emit(
            TaskFloodReport(
                loop_id=self._loop_id,
                live=self.live,
                limit=self.soft_limit,
                high_water=self.high_water,
                created=self.created,
                rate_per_second=self.rate(),
                top_sites=self.top_sites(),
            )
        )

    def _report_lost(self, task: Task, noticed: str) -> None:
        task._oxloop_reported = True
        self._emit(
            LostExceptionReport(
                loop_id=self._loop_id,
                task=task_tree.snapshot(task),
                exception=_compat.task_exception(task),
                noticed=noticed,
            )
        )

    def exception_context(self, context: dict[str, Any]) -> None:
        """Sees what the loop's exception handler is given; asyncio's task finaliser reports a
        collected task whose exception was never retrieved through it."""
        task = context.get("future")
        if (
            isinstance(task, Task)
            and not task._oxloop_reported
            and context.get("exception") is not None
            and context.get("exception") is _compat.task_exception(task)
            and str(context.get("message", "")).endswith("exception was never retrieved")
        ):
            self._report_lost(task, "the task was garbage-collected")

    def loop_closing(self) -> None:
        """Reports what is certain once the loop closes: tasks cancelled at shutdown, tasks
        still pending, and failed tasks still alive whose exception nobody retrieved."""
        if self._cancelled_at_shutdown:
            tasks, self._cancelled_at_shutdown = self._cancelled_at_shutdown, []
            self._emit(
                PendingTasksReport(loop_id=self._loop_id, tasks=tasks, cancelled_at_shutdown=True)
            )
        loop = self._loop_ref()
        if loop is not None:
            pending = task_tree.live_tasks(loop)
            if pending:
                self._emit(
                    PendingTasksReport(
                        loop_id=self._loop_id,
                        tasks=[task_tree.snapshot(t) for t in pending],
                        cancelled_at_shutdown=False,
                    )
                )
        for task in list(self._failed):
            if task._log_traceback and not task._oxloop_reported:
                self._report_lost(task, "the loop was closing")

    def stats(self) -> dict[str, Any]:
        return {
            "tasks_created": self.created,
            "tasks_live": self.live,
            "tasks_high_water": self.high_water,
            "task_creation_rate": self.rate(),
        }
