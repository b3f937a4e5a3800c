"""The diagnostics of one loop (`Diagnostics`, the one hook object the loop calls), what all
diagnosed loops of the process saw (`session_summary`), and `attach` for other loops."""

from __future__ import annotations

import asyncio
import atexit
import sys
import threading
import weakref
from collections.abc import Mapping
from typing import Any

from .. import _oxloop
from . import unawaited
from .blocking import BlockingMonitor
from .reports import (
    BlockingReport,
    ForgottenAwaitReport,
    Frame,
    LostExceptionReport,
    Report,
)
from .settings import Settings, resolve
from .sinks import Sinks, logger
from .task_guard import TaskGuard

__all__ = ["Diagnostics", "attach", "print_summary_at_exit", "session_summary"]


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
        unawaited.subscribe(self)
        _LIVE.add(self)
        _BY_LOOP[loop] = self
        with _SESSION.lock:
            _SESSION.loops += 1

    def is_for(self, loop: Any) -> bool:
        return self._loop_ref() is loop

    @property
    def origin_depth(self) -> int:
        """Frames of coroutine origin the loop should track while it runs (0: none)."""
        return self.settings.origin_depth

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
            unawaited.unsubscribe(self)
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
                origin=unawaited.origin_frames(coro),
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
    if isinstance(loop, _oxloop.LoopCore):
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
