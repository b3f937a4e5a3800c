"""oxloop's diagnostics mode: the common asyncio pitfalls reported while they happen.

Switch it on with any of::

    oxloop.run(main(), diagnostics=True)
    loop = oxloop.new_event_loop(diagnostics=True)        # or diagnostics=Settings(...)
    OXLOOP_DIAGNOSTICS=1 python app.py                     # every oxloop loop made in it
    python -m oxloop --diagnose app.py                     # the same, plus a summary at exit

What it reports (see the `Report` subclasses in `oxloop._reports`): a callback or task step
blocking the loop (with the loop thread's stack, while it still blocks), forgotten awaits,
exceptions lost in tasks, swallowed cancellations, tasks pending at shutdown, task floods; and it
adds timer lateness, time blocked and task counts to ``loop.stats()``. Reports go to the
``oxloop.diagnostics`` logger, to ``Settings.hook``, to a JSON-lines file and to OpenTelemetry,
as configured.

Off (the default), none of this exists: no thread, no task factory, no hooks.

The task-based parts work on stock asyncio loops too, through `attach(loop)`; blocking and
timer lateness need oxloop's core.
"""

from __future__ import annotations

import asyncio
import atexit
import math
import os
import sys
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import _oxloop, _unawaited
from ._blocking import BlockingMonitor
from ._reports import (
    BlockingReport,
    ForgottenAwaitReport,
    Frame,
    LostExceptionReport,
    PendingTasksReport,
    Report,
    SwallowedCancellationReport,
    TaskFloodReport,
    TaskSnapshot,
)
from ._sinks import Sinks, logger
from ._task_guard import TaskGuard
from ._task_tree import dump_tasks
from .loop import Loop, _diagnostics_requested_by_environment

__all__ = [
    "Settings",
    "Diagnostics",
    "attach",
    "dump_tasks",
    "session_summary",
    "logger",
    "Report",
    "BlockingReport",
    "ForgottenAwaitReport",
    "LostExceptionReport",
    "SwallowedCancellationReport",
    "PendingTasksReport",
    "TaskFloodReport",
    "TaskSnapshot",
    "Frame",
]


@dataclass(frozen=True)
class Settings:
    """What the diagnostics report, and where to.

    blocking_threshold: seconds a callback or task step may run before it counts as blocking
        the loop (``OXLOOP_DIAGNOSTICS_BLOCKING``).
    task_soft_limit: live tasks above which one task-flood warning is issued
        (``OXLOOP_DIAGNOSTICS_TASK_LIMIT``).
    hook: called with every `Report` object, from the loop thread or the watchdog thread.
    jsonl_path: append every report as one JSON line to this file
        (``OXLOOP_DIAGNOSTICS_JSONL``).
    log: log every report on the ``oxloop.diagnostics`` logger (WARNING).
    opentelemetry: add span events when ``opentelemetry-api`` is importable.
    origin_depth: frames kept of where each coroutine was created (coroutine origin tracking,
        for forgotten awaits). It costs on every coroutine created, about 0.2 us at 1 frame
        and 0.5-1 us at 3; 0 switches tracking off, and a forgotten await is then reported
        where it was dropped (the same line when the call's result is simply discarded).
    summary_at_close: log a summary when the loop closes, if anything was reported.
    """

    blocking_threshold: float = 0.1
    task_soft_limit: int = 10_000
    hook: Callable[[Report], Any] | None = None
    jsonl_path: str | os.PathLike | None = None
    log: bool = True
    opentelemetry: bool = True
    origin_depth: int = 1
    summary_at_close: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.blocking_threshold) and self.blocking_threshold > 0):
            raise ValueError(
                f"blocking_threshold must be a positive number of seconds, "
                f"got {self.blocking_threshold!r}"
            )
        if self.task_soft_limit < 1:
            raise ValueError(f"task_soft_limit must be at least 1, got {self.task_soft_limit!r}")
        if self.origin_depth < 0:
            raise ValueError(f"origin_depth must be 0 or more, got {self.origin_depth!r}")
        if self.hook is not None and not callable(self.hook):
            raise TypeError(f"hook must be callable, got {self.hook!r}")

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ, **overrides: Any):
        """Default settings, with the thresholds and file the environment sets."""
        values: dict[str, Any] = {}
        blocking = environ.get("OXLOOP_DIAGNOSTICS_BLOCKING")
        if blocking:
            values["blocking_threshold"] = float(blocking)
        limit = environ.get("OXLOOP_DIAGNOSTICS_TASK_LIMIT")
        if limit:
            values["task_soft_limit"] = int(limit)
        jsonl = environ.get("OXLOOP_DIAGNOSTICS_JSONL")
        if jsonl:
            values["jsonl_path"] = jsonl
        values.update(overrides)
        return cls(**values)


def resolve(setting: bool | Settings | None) -> Settings | None:
    """The settings a loop gets for its ``diagnostics=`` argument (None: the environment's)."""
    if setting is None:
        setting = _diagnostics_requested_by_environment()
    if isinstance(setting, Settings):
        return setting
    if setting is True:
        return Settings.from_environment()
    if setting is False:
        return None
    raise TypeError(
        f"diagnostics must be True, False, None or an oxloop.diagnostics.Settings, got {setting!r}"
    )


class _Session:
    """What every diagnosed loop of the process reported: for `session_summary()`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.blocking: dict[Frame | None, list[float]] = {}
        self.lost: list[str] = []
        self.loops = 0
        self.high_water = 0

    def add(self, report: Report) -> None:
        with self.lock:
            if isinstance(report, BlockingReport):
                if not report.ended:
                    return  # counted once, when complete
                total = self.blocking.setdefault(report.place, [0.0, 0])
                total[0] += report.seconds
                total[1] += 1
            if isinstance(report, LostExceptionReport) and len(self.lost) < 10:
                self.lost.append(f"{report.exception!r} in {report.task.describe()}")
            self.counts[report.kind] = self.counts.get(report.kind, 0) + 1


_SESSION = _Session()
_LIVE: weakref.WeakSet[Diagnostics] = weakref.WeakSet()
_BY_LOOP: weakref.WeakKeyDictionary[Any, Diagnostics] = weakref.WeakKeyDictionary()


def _summary_lines(
    counts: Mapping[str, int],
    blocking: list[tuple[Frame | None, float, int]],
    lost: list[str],
    extra: list[str],
) -> list[str]:
    lines = []
    episodes = counts.get("blocking", 0)
    if episodes:
        total = sum(seconds for _, seconds, _ in blocking)
        lines.append(f"blocking: {episodes} episode(s), {total:.3f} s in total; top places:")
        for place, seconds, n in blocking:
            lines.append(f"  {seconds:8.3f} s  {n:4d}x  {place if place else '(unknown)'}")
    for kind, label in (
        ("forgotten_await", "forgotten awaits"),
        ("lost_exception", "exceptions lost in tasks"),
        ("swallowed_cancellation", "swallowed cancellations"),
        ("pending_at_shutdown", "reports of tasks pending at shutdown"),
        ("task_flood", "task-flood warnings"),
    ):
        if counts.get(kind):
            lines.append(f"{label}: {counts[kind]}")
    if lost:
        lines += [f"  lost: {entry}" for entry in lost]
    return lines + extra


def session_summary() -> str:
    """A summary of everything the diagnosed loops of this process reported."""
    with _SESSION.lock:
        counts = dict(_SESSION.counts)
        ranked = sorted(_SESSION.blocking.items(), key=lambda item: item[1][0], reverse=True)
        blocking = [(place, s, int(n)) for place, (s, n) in ranked[:5]]
        lost = list(_SESSION.lost)
        loops, high_water = _SESSION.loops, _SESSION.high_water
    lines = [f"oxloop diagnostics summary: {loops} diagnosed loop(s)"]
    body = _summary_lines(counts, blocking, lost, [f"task high-water mark: {high_water}"])
    if not any(counts.values()):
        body.insert(0, "no pitfalls seen")
    return "\n".join(lines + [f"  {line}" for line in body])


class Diagnostics:
    """The diagnostics of one loop. Made by the loop (``diagnostics=``) or by `attach`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, settings: Settings, *, native: bool):
        self.settings = settings
        self._loop_ref = weakref.ref(loop)
        self._loop_id = id(loop)
        self._native = native
        self._closed = False
        self.counts: dict[str, int] = {}
        self._sinks = Sinks(
            log=settings.log,
            hook=settings.hook,
            jsonl_path=settings.jsonl_path,
            opentelemetry=settings.opentelemetry,
        )
        self.tasks = TaskGuard(loop, settings.task_soft_limit, self._emit)
        self.blocking = (
            BlockingMonitor(loop, settings.blocking_threshold, self._emit, self._loop_id)
            if native
            else None
        )
        loop.set_task_factory(self.tasks.create_task)
        if native:
            _oxloop._set_timer_lag_recording(loop, True)
        _unawaited.subscribe(self)
        _LIVE.add(self)
        _BY_LOOP[loop] = self
        with _SESSION.lock:
            _SESSION.loops += 1

    def is_for(self, loop: Any) -> bool:
        return self._loop_ref() is loop

    @property
    def opentelemetry(self) -> bool:
        """True when reports also go to OpenTelemetry."""
        return self._sinks.opentelemetry

    # -- hooks the loop calls ---------------------------------------------------------------

    def loop_starting(self) -> None:
        """The loop starts running (on its own thread): start the watchdog on the first run."""
        if self.blocking is not None and not self._closed:
            self.blocking.start()

    def exception_context(self, context: dict[str, Any]) -> None:
        """The loop's exception handler is being called with `context`."""
        self.tasks.exception_context(context)

    def loop_closing(self) -> None:
        """The loop is closing: report what is now certain, stop the watchdog, summarise."""
        if self._closed:
            return
        self._closed = True
        try:
            self.tasks.loop_closing()
        finally:
            self._stop_threads()
            loop = self._loop_ref()
            if self._native and loop is not None:
                _oxloop._set_timer_lag_recording(loop, False)
            _unawaited.unsubscribe(self)
            with _SESSION.lock:
                _SESSION.high_water = max(_SESSION.high_water, self.tasks.high_water)
            if (
                self.settings.summary_at_close
                and not _summary_at_exit
                and any(self.counts.values())
            ):
                logger.warning("%s", self.summary())
            self._sinks.close()

    def _stop_threads(self) -> None:
        if self.blocking is not None:
            self.blocking.stop()

    # -- reports ----------------------------------------------------------------------------

    def _emit(self, report: Report) -> None:
        if not (isinstance(report, BlockingReport) and not report.ended):
            self.counts[report.kind] = self.counts.get(report.kind, 0) + 1
        _SESSION.add(report)
        self._sinks.emit(report)

    def forgotten_await(self, coro: Any, dropped_at: Frame | None) -> None:
        self._emit(
            ForgottenAwaitReport(
                loop_id=self._loop_id,
                coroutine=coro.__qualname__,
                origin=_unawaited.origin_frames(coro),
                dropped_at=dropped_at,
            )
        )

    def stats(self) -> dict[str, Any]:
        """What the diagnostics add to ``loop.stats()``."""
        stats = self.tasks.stats()
        loop = self._loop_ref()
        if self.blocking is not None:
            stats.update(self.blocking.stats())
        if self._native and loop is not None:
            stats["timer_lateness"] = _oxloop._timer_lag(loop)
        return stats

    def summary(self) -> str:
        """What this loop's diagnostics saw, in a few lines."""
        lines = [f"oxloop diagnostics summary for loop {self._loop_id:#x}:"]
        stats = self.stats()
        extra = [
            f"tasks: {stats['tasks_created']} created, high-water mark "
            f"{stats['tasks_high_water']}, {stats['tasks_live']} alive"
        ]
        lateness = stats.get("timer_lateness")
        if lateness and lateness["count"]:
            extra.append(
                f"timer lateness: {lateness['count']} timers, mean "
                f"{lateness['mean_seconds'] * 1e3:.2f} ms, max "
                f"{lateness['max_seconds'] * 1e3:.2f} ms"
            )
        blocking = self.blocking.top() if self.blocking is not None else []
        body = _summary_lines(self.counts, blocking, [], extra)
        return "\n".join(lines + [f"  {line}" for line in body])


def attach(loop: asyncio.AbstractEventLoop, settings: bool | Settings = True) -> Diagnostics:
    """Switch on the task-based diagnostics on a stock asyncio (or any) loop, not yet running.

    Reports forgotten awaits, lost exceptions, swallowed cancellations, tasks pending at
    shutdown and task floods, and ``dump_tasks()`` works as everywhere. Blocking detection and
    timer lateness need oxloop's own loop: make it with ``diagnostics=`` instead.

    It sets the loop's task factory, and wraps the loop's ``call_exception_handler`` and
    ``close`` on the instance (to see collected tasks and to report at close). It switches
    coroutine origin tracking on for the calling thread: attach from the thread that will run
    the loop.
    """
    if isinstance(loop, Loop):
        raise TypeError("oxloop loops take diagnostics at creation: new_event_loop(diagnostics=…)")
    resolved = resolve(settings)
    if resolved is None:
        raise ValueError("attach() needs diagnostics on: settings must not be False")
    if loop in _BY_LOOP:
        return _BY_LOOP[loop]
    diag = Diagnostics(loop, resolved, native=False)
    saved_depth = sys.get_coroutine_origin_tracking_depth()
    if resolved.origin_depth:
        sys.set_coroutine_origin_tracking_depth(resolved.origin_depth)
    original_handler = loop.call_exception_handler
    original_close = loop.close

    def call_exception_handler(context: dict[str, Any]) -> None:
        diag.exception_context(context)
        original_handler(context)

    def close() -> None:
        if not loop.is_closed() and not loop.is_running():
            diag.loop_closing()
            sys.set_coroutine_origin_tracking_depth(saved_depth)
        original_close()

    loop.call_exception_handler = call_exception_handler  # type: ignore[method-assign]
    loop.close = close  # type: ignore[method-assign]
    return diag


_summary_at_exit = False


def print_summary_at_exit() -> None:
    """Print `session_summary()` to stderr when the process exits (``--diagnose``), instead of
    a summary per loop when each closes."""
    global _summary_at_exit
    if not _summary_at_exit:
        _summary_at_exit = True
        atexit.register(lambda: print(session_summary(), file=sys.stderr, flush=True))


def _stop_all_watchdogs() -> None:
    # Before the interpreter finalises: a watchdog must not try to take the GIL after that.
    for diag in list(_LIVE):
        diag._stop_threads()


atexit.register(_stop_all_watchdogs)
