"""Blocking-the-loop reports: the Python half of the Rust watchdog (`_oxloop.Watchdog`).

The watchdog thread calls `BlockingMonitor.on_block` as soon as it sees a callback running
past the threshold, holding the GIL, so the loop thread is frozen where it is: its stack, from
``sys._current_frames()``, is the blocked call's. The task running (``asyncio.current_task``
reads it from any thread) names the culprit, or the callback's frame does. ``on_end`` completes
the episode's report with the final duration and adds it to the per-place totals.

Both run on the watchdog thread, with the GIL; `top` and `stats` read the totals from other
threads as one-step copies, which the GIL keeps whole.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import traceback
import weakref
from collections.abc import Callable
from typing import Any

from .. import _oxloop
from .reports import BlockingReport, Frame, Report, user_frame

__all__ = ["BlockingMonitor"]

_LOOP_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "loop.py")


def _callback_stack(frame: Any) -> list[Frame]:
    """The loop thread's stack from the running callback down (the loop's own frames cut)."""
    summary = traceback.extract_stack(frame)
    start = 0
    for i, entry in enumerate(summary):
        if entry.filename == _LOOP_FILE and entry.name == "run_forever":
            start = i + 1  # the last one: a callback may run a nested loop of another class
    return [Frame(e.filename, e.lineno or 0, e.name) for e in summary[start:]]


class BlockingMonitor:
    """Starts the watchdog for one loop and turns its calls into `BlockingReport`s."""

    def __init__(
        self, loop: Any, threshold: float, emit: Callable[[Report], None], loop_id: int
    ) -> None:
        self._loop_ref = weakref.ref(loop)
        self.threshold = threshold
        self._emit = emit
        self._loop_id = loop_id
        self._watchdog: Any = None
        self._open: dict[int, BlockingReport] = {}
        self.places: dict[Frame | None, list[float]] = {}  # place -> [seconds, episodes]

    def start(self) -> None:
        """Starts the watchdog thread, once: on the loop's first run."""
        loop = self._loop_ref()
        if self._watchdog is None and loop is not None:
            self._watchdog = _oxloop.Watchdog(loop, self.threshold, self.on_block, self.on_end)

    def stop(self) -> None:
        """Stops and joins the thread (reporting an episode still open as ended)."""
        if self._watchdog is not None:
            self._watchdog.stop()

    @property
    def thread_running(self) -> bool:
        return self._watchdog is not None and self._watchdog.running

    def on_block(self, episode: int, seconds: float, still_running: bool) -> None:
        loop = self._loop_ref()
        if loop is None:
            return
        stack: list[Frame] = []
        task = None
        if still_running:
            thread_id = loop._thread_id
            frame = sys._current_frames().get(thread_id) if thread_id else None
            if frame is not None:
                stack = _callback_stack(frame)
            task = asyncio.current_task(loop)
        task_text = None
        if task is not None:
            coro = task.get_coro()
            name = getattr(coro, "__qualname__", None) or type(coro).__name__
            task_text = f"{task.get_name()!r} ({name}())"
        report = BlockingReport(
            loop_id=self._loop_id,
            episode=episode,
            seconds=seconds,
            ended=False,
            threshold=self.threshold,
            task=task_text,
            callback=stack[0].function if stack and task is None else None,
            stack=stack,
            stack_captured=bool(stack),
            place=user_frame(stack),
        )
        self._open[episode] = report
        self._emit(report)

    def on_end(self, episode: int, seconds: float) -> None:
        report = self._open.pop(episode, None)
        if report is None:
            return
        total = self.places.setdefault(report.place, [0.0, 0])
        total[0] += seconds
        total[1] += 1
        self._emit(dataclasses.replace(report, seconds=seconds, ended=True))

    def top(self, n: int = 5) -> list[tuple[Frame | None, float, int]]:
        """The places that blocked the loop longest in total: (place, seconds, episodes)."""
        ranked = sorted(self.places.items(), key=lambda item: item[1][0], reverse=True)[:n]
        return [(place, seconds, int(count)) for place, (seconds, count) in ranked]

    def stats(self) -> dict[str, Any]:
        watchdog = self._watchdog
        return {
            "blocked_seconds": watchdog.blocked_seconds if watchdog else 0.0,
            "blocking_episodes": watchdog.episodes if watchdog else 0,
        }
