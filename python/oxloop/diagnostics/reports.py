"""The reports of oxloop's diagnostics mode: one class per pitfall, readable by a person first.

Every report has a ``kind``, a one-line ``message`` (what happened), a ``location`` (where in
the user's code, as a `Frame`) introduced by ``location_label``, and ``details()`` (the lines
after: stacks, tracebacks, advice). ``format()`` joins them for logs; ``to_dict()`` gives the
same content as JSON-ready data for the JSON-lines sink and for hooks that ship reports on.
"""

from __future__ import annotations

import linecache
import os
import sysconfig
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

__all__ = [
    "Frame",
    "TaskSnapshot",
    "Report",
    "BlockingReport",
    "ForgottenAwaitReport",
    "LostExceptionReport",
    "SwallowedCancellationReport",
    "PendingTasksReport",
    "TaskFloodReport",
    "user_frame",
]

# Library code: the stdlib, installed packages and oxloop itself. The innermost frame outside
# these is the user's line that made the call (to time.sleep, requests.get, asyncio.sleep).
_LIBRARY_DIRS = tuple(
    {
        os.path.join(path, "")
        for key in ("stdlib", "platstdlib", "purelib", "platlib")
        if (path := sysconfig.get_paths().get(key))
    }
    | {os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "")}  # oxloop
)


class Frame(NamedTuple):
    """One place in the code. A plain tuple underneath, so the hot path stores raw tuples."""

    filename: str
    lineno: int
    function: str

    def __str__(self) -> str:
        return f"{self.filename}:{self.lineno} in {self.function}"

    @property
    def line(self) -> str:
        """The source line, stripped ('' when the file cannot be read)."""
        return linecache.getline(self.filename, self.lineno).strip()

    def to_dict(self) -> dict[str, Any]:
        return {"filename": self.filename, "lineno": self.lineno, "function": self.function}

    @property
    def is_library(self) -> bool:
        return self.filename.startswith(_LIBRARY_DIRS)


def user_frame(frames: list[Frame]) -> Frame | None:
    """The innermost frame of the user's own code in `frames` (outermost first); the outermost
    frame when they are all library code (an application installed as a package)."""
    for frame in reversed(frames):
        if not frame.is_library:
            return frame
    return frames[0] if frames else None


def format_stack(frames: list[Frame], indent: str = "  ") -> list[str]:
    """Frames, outermost first, as traceback-style lines with their source."""
    lines = []
    for frame in frames:
        lines.append(f'{indent}File "{frame.filename}", line {frame.lineno}, in {frame.function}')
        source = frame.line
        if source:
            lines.append(f"{indent}  {source}")
    return lines


@dataclass(frozen=True)
class TaskSnapshot:
    """A task as it was when diagnostics looked at it."""

    name: str
    coroutine: str
    created_at: Frame | None
    await_stack: list[Frame]  # outermost first; the last frame is where it was suspended

    def describe(self) -> str:
        return f"task {self.name!r} ({self.coroutine}())"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "coroutine": self.coroutine,
            "created_at": self.created_at.to_dict() if self.created_at else None,
            "await_stack": [f.to_dict() for f in self.await_stack],
        }


@dataclass(frozen=True, kw_only=True)
class Report:
    """What every report has; subclasses add the pitfall's own facts."""

    kind: ClassVar[str] = "report"
    location_label: ClassVar[str] = "at"

    loop_id: int
    time: float = field(default_factory=time.time)  # wall clock, seconds since the epoch

    @property
    def message(self) -> str:
        raise NotImplementedError

    @property
    def location(self) -> Frame | None:
        return None

    def details(self) -> list[str]:
        return []

    def format(self) -> str:
        lines = [f"oxloop: {self.message}"]
        if self.location is not None:
            lines.append(f"  {self.location_label} {self.location}")
        lines += [f"  {line}" for line in self.details()]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()

    def fields(self) -> dict[str, Any]:
        """The pitfall's own facts, JSON-ready."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        location = self.location
        return {
            "kind": self.kind,
            "message": self.message,
            "location": location.to_dict() if location else None,
            "time": self.time,
            "loop_id": self.loop_id,
            **self.fields(),
        }


@dataclass(frozen=True, kw_only=True)
class BlockingReport(Report):
    """A callback or task step ran past the blocking threshold.

    Reported twice per episode with the same ``episode`` number: once while it still runs
    (``ended`` false, ``seconds`` so far, with the loop thread's stack), then completed
    (``ended`` true, ``seconds`` the final duration).
    """

    kind: ClassVar[str] = "blocking"

    episode: int
    seconds: float
    ended: bool
    threshold: float
    task: str | None  # "'Task-3' (handler())" when a task step blocked
    callback: str | None  # the callback's function when a plain callback blocked
    stack: list[Frame]  # the loop thread's stack from the callback down, outermost first
    stack_captured: bool
    place: Frame | None  # the innermost frame of the user's own code in `stack`

    @property
    def what(self) -> str:
        if self.task is not None:
            return f"task {self.task}"
        if self.callback is not None:
            return f"callback {self.callback}()"
        return "a callback"

    @property
    def message(self) -> str:
        if self.ended:
            return (
                f"the event loop was blocked for {self.seconds:.3f} s by {self.what} "
                f"(episode {self.episode}, over)"
            )
        return (
            f"the event loop is blocked: {self.what} has been running for "
            f"{self.seconds:.3f} s (threshold {self.threshold:g} s); no other task can run"
        )

    @property
    def location(self) -> Frame | None:
        return self.place

    def details(self) -> list[str]:
        if self.ended:
            return [f"(stack in the first report of episode {self.episode})"]
        if not self.stack_captured:
            return [
                "stack not captured: the callback held the GIL until it returned "
                "(a long call into C code that does not release it)"
            ]
        lines = ["loop thread's stack while blocked (most recent call last):"]
        lines += format_stack(self.stack)
        lines.append(
            "fix: move blocking work to a thread (await asyncio.to_thread(...)) or use an "
            "async library"
        )
        return lines

    def fields(self) -> dict[str, Any]:
        return {
            "episode": self.episode,
            "seconds": self.seconds,
            "ended": self.ended,
            "threshold": self.threshold,
            "task": self.task,
            "callback": self.callback,
            "stack": [f.to_dict() for f in self.stack],
            "stack_captured": self.stack_captured,
        }


@dataclass(frozen=True, kw_only=True)
class ForgottenAwaitReport(Report):
    """A coroutine was created, never awaited, and destroyed: its code never ran."""

    kind: ClassVar[str] = "forgotten_await"

    coroutine: str
    origin: list[Frame]  # where it was created, outermost first (empty: not tracked)
    dropped_at: Frame | None  # the line running when it was destroyed

    @property
    def message(self) -> str:
        return f"coroutine {self.coroutine}() was never awaited, so it never ran"

    @property
    def location_label(self) -> str:  # type: ignore[override]
        return "created at" if self.origin else "dropped at"

    @property
    def location(self) -> Frame | None:
        return self.origin[-1] if self.origin else self.dropped_at

    def details(self) -> list[str]:
        lines = []
        if len(self.origin) > 1:
            lines.append("created by (most recent call last):")
            lines += format_stack(self.origin)
        elif not self.origin:
            lines.append(
                "where it was created is unknown (coroutine origin tracking is off here); "
                "it was dropped on the line above"
            )
        lines.append(
            f"fix: `await {self.coroutine}(...)`, or run it concurrently with "
            "asyncio.create_task(...) and keep the task"
        )
        return lines

    def fields(self) -> dict[str, Any]:
        return {
            "coroutine": self.coroutine,
            "origin": [f.to_dict() for f in self.origin],
            "dropped_at": self.dropped_at.to_dict() if self.dropped_at else None,
        }


def _exception_fields(exc: BaseException) -> dict[str, Any]:
    return {
        "type": type(exc).__qualname__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }


@dataclass(frozen=True, kw_only=True)
class LostExceptionReport(Report):
    """A task ended with an exception that nobody retrieved (awaited, result(), exception())."""

    kind: ClassVar[str] = "lost_exception"
    location_label: ClassVar[str] = "task created at"

    task: TaskSnapshot
    exception: BaseException
    noticed: str  # "task collected" or "loop closing"

    @property
    def message(self) -> str:
        return (
            f"{self.task.describe()} failed with {self.exception!r} and nobody retrieved "
            "the exception"
        )

    @property
    def location(self) -> Frame | None:
        return self.task.created_at

    def details(self) -> list[str]:
        lines = [f"noticed when: {self.noticed}"]
        lines += "".join(traceback.format_exception(self.exception)).rstrip().splitlines()
        lines.append("fix: await the task (or gather it), or add a done callback that logs errors")
        return lines

    def fields(self) -> dict[str, Any]:
        return {
            "task": self.task.to_dict(),
            "exception": _exception_fields(self.exception),
            "noticed": self.noticed,
        }


@dataclass(frozen=True, kw_only=True)
class SwallowedCancellationReport(Report):
    """A task asked to cancel finished without raising CancelledError."""

    kind: ClassVar[str] = "swallowed_cancellation"
    location_label: ClassVar[str] = "suspended at"

    task: TaskSnapshot  # await_stack: where it was suspended when cancel() was called
    outcome: str  # "returned 42", "raised ValueError('x')"

    @property
    def message(self) -> str:
        return (
            f"{self.task.describe()} was asked to cancel but finished without raising "
            f"CancelledError (it {self.outcome})"
        )

    @property
    def location(self) -> Frame | None:
        return user_frame(self.task.await_stack)

    def details(self) -> list[str]:
        lines = []
        if self.task.await_stack:
            lines.append("await stack when cancel() was called (most recent call last):")
            lines += format_stack(self.task.await_stack)
        if self.task.created_at is not None:
            lines.append(f"task created at {self.task.created_at}")
        lines.append(
            "fix: after cleaning up, re-raise CancelledError (or use try/finally); whoever "
            "cancelled it believes it stopped"
        )
        return lines

    def fields(self) -> dict[str, Any]:
        return {"task": self.task.to_dict(), "outcome": self.outcome}


@dataclass(frozen=True, kw_only=True)
class PendingTasksReport(Report):
    """Tasks still pending when the loop shut down.

    ``cancelled_at_shutdown`` true: ``asyncio.run()`` (or ``oxloop.run()``) had to cancel them
    after the main coroutine returned; false: the loop was closed with them still pending.
    """

    kind: ClassVar[str] = "pending_at_shutdown"
    location_label: ClassVar[str] = "first one suspended at"

    tasks: list[TaskSnapshot]
    cancelled_at_shutdown: bool
    shown: ClassVar[int] = 20

    @property
    def message(self) -> str:
        n = len(self.tasks)
        tasks, they = ("task was", "it was") if n == 1 else ("tasks were", "they were")
        if self.cancelled_at_shutdown:
            return (
                f"{n} {tasks} still pending at shutdown and had to be cancelled; "
                f"what {they} doing may be left half done"
            )
        return f"{n} {tasks} still pending when the loop was closed; they will never finish"

    @property
    def location(self) -> Frame | None:
        for task in self.tasks:
            if task.await_stack:
                return user_frame(task.await_stack)
        return None

    def details(self) -> list[str]:
        lines = []
        for task in self.tasks[: self.shown]:
            created = f", created at {task.created_at}" if task.created_at else ""
            lines.append(f"{task.describe()}{created}, awaiting:")
            lines += format_stack(task.await_stack, indent="    ")
        if len(self.tasks) > self.shown:
            lines.append(f"... and {len(self.tasks) - self.shown} more")
        lines.append(
            "fix: stop background tasks before main() returns (cancel and await them, or "
            "use asyncio.TaskGroup)"
        )
        return lines

    def fields(self) -> dict[str, Any]:
        return {
            "tasks": [t.to_dict() for t in self.tasks],
            "cancelled_at_shutdown": self.cancelled_at_shutdown,
        }


@dataclass(frozen=True, kw_only=True)
class TaskFloodReport(Report):
    """The number of live tasks crossed the soft limit."""

    kind: ClassVar[str] = "task_flood"
    location_label: ClassVar[str] = "most created at"

    live: int
    limit: int
    high_water: int
    created: int
    rate_per_second: float
    top_sites: list[tuple[Frame | None, int]]  # (creation site, live tasks from it)

    @property
    def message(self) -> str:
        return f"{self.live} tasks are alive: over the soft limit of {self.limit}"

    @property
    def location(self) -> Frame | None:
        return self.top_sites[0][0] if self.top_sites else None

    def details(self) -> list[str]:
        lines = [
            f"high-water mark {self.high_water}, {self.created} created in total, "
            f"about {self.rate_per_second:.0f} per second recently",
            "top creation sites (live tasks):",
        ]
        for site, count in self.top_sites:
            lines.append(f"  {count:8d}  {site if site is not None else '(unknown)'}")
        lines.append(
            "fix: bound the concurrency (asyncio.Semaphore, a worker pool on an asyncio.Queue)"
        )
        return lines

    def fields(self) -> dict[str, Any]:
        return {
            "live": self.live,
            "limit": self.limit,
            "high_water": self.high_water,
            "created": self.created,
            "rate_per_second": self.rate_per_second,
            "top_sites": [
                {"site": site.to_dict() if site else None, "live": count}
                for site, count in self.top_sites
            ],
        }
