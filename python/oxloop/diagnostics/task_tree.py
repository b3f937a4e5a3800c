"""What a task is doing now: its await stack, and `dump_tasks()`, a tree of a loop's live tasks.

A task's await stack is the chain of coroutines it is suspended in: the task's coroutine, the
coroutine it awaits (``cr_await``), and so on, each frame at its current line. The tree links a
task to the tasks it waits for: the task its ``await`` is blocked on (``_fut_waiter``), the
children of the ``gather()`` it awaits, the tasks of the ``TaskGroup`` whose ``async with`` block
it is leaving, and the tasks it passed to ``asyncio.wait()`` or ``asyncio.wait_for()``. Tasks
that no other task waits for are the roots.

Works on any asyncio loop: it reads only asyncio's own task attributes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .. import _compat
from .reports import Frame, TaskSnapshot, user_frame

__all__ = ["dump_tasks", "await_stack", "snapshot"]

_MAX_DEPTH = 100  # a guard against a malformed cr_await chain, far deeper than real code


def await_stack(coro: Any) -> list[Frame]:
    """The frames of `coro` and what it awaits, outermost first, each at its current line."""
    frames: list[Frame] = []
    while coro is not None and len(frames) < _MAX_DEPTH:
        frame = (
            getattr(coro, "cr_frame", None)
            or getattr(coro, "gi_frame", None)
            or getattr(coro, "ag_frame", None)
        )
        if frame is None:
            break
        code = frame.f_code
        frames.append(Frame(code.co_filename, frame.f_lineno, code.co_qualname))
        coro = (
            getattr(coro, "cr_await", None)
            or getattr(coro, "gi_yieldfrom", None)
            or getattr(coro, "ag_await", None)
        )
    return frames


def coroutine_name(task: asyncio.Task) -> str:
    coro = task.get_coro()
    return getattr(coro, "__qualname__", None) or type(coro).__name__


def snapshot(task: asyncio.Task, created_at: Frame | None = None) -> TaskSnapshot:
    if created_at is None:
        site = getattr(task, "_oxloop_site", None)  # set on tasks the diagnostics created
        created_at = Frame(*site) if site is not None else None
    return TaskSnapshot(
        name=task.get_name(),
        coroutine=coroutine_name(task),
        created_at=created_at,
        await_stack=await_stack(task.get_coro()),
    )


def _group_tasks(frame: Any) -> list[Any]:
    group = frame.f_locals.get("self")
    return list(getattr(group, _compat.TASKGROUP_TASKS, ()))


def _waited_set(frame: Any) -> list[Any]:
    return list(frame.f_locals.get("fs", ()))


def _wait_for_target(frame: Any) -> list[Any]:
    return [frame.f_locals.get("fut")]


# The asyncio coroutines a task sits in while it waits for other tasks that neither
# `_fut_waiter` nor gather's `_children` shows, and how to find those tasks in their frames.
# Matched by code object (see _compat), so a version whose helpers moved is simply not followed
# there (their tasks show up as roots) until _compat knows them.
_WAITING_FRAMES = {
    code: find
    for code, find in (
        (_compat.TASKGROUP_WAIT_CODE, _group_tasks),
        (_compat.WAIT_CODE, _waited_set),
        (_compat.WAIT_FOR_CODE, _wait_for_target),
    )
    if code is not None
}


def _awaited_tasks(task: asyncio.Task) -> list[asyncio.Task]:
    awaited: list[Any] = []
    waiter = _compat.task_waiter(task)
    if isinstance(waiter, asyncio.Task):
        awaited.append(waiter)
    elif waiter is not None:
        children = getattr(waiter, _compat.GATHER_CHILDREN, None)  # the future gather() returns
        if isinstance(children, list):
            awaited.extend(children)
    coro, depth = task.get_coro(), 0
    while coro is not None and depth < _MAX_DEPTH:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            break
        find = _WAITING_FRAMES.get(frame.f_code)
        if find is not None:
            awaited.extend(find(frame))
        coro, depth = (
            getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None),
            depth + 1,
        )
    unique: dict[asyncio.Task, None] = {}
    for child in awaited:
        if isinstance(child, asyncio.Task) and child is not task:
            unique[child] = None
    return list(unique)


def _add_awaited_by(tasks: list[asyncio.Task], waits_for: dict[asyncio.Task, list]) -> None:
    """Python 3.14+ records which tasks await each task (``asyncio.capture_call_graph``, the
    same links ``python -m asyncio pstree`` shows): add those the frames did not reveal."""
    capture = getattr(asyncio, "capture_call_graph", None)
    if capture is None:
        return
    for task in tasks:
        try:
            graph = capture(task, depth=0)
        except (RuntimeError, ValueError, TypeError):  # not a native task, or it just finished
            continue
        for waiter in getattr(graph, "awaited_by", ()) if graph is not None else ():
            parent = waiter.future
            children = waits_for.get(parent)
            if children is not None and task not in children and parent is not task:
                children.append(task)


def live_tasks(loop: asyncio.AbstractEventLoop) -> list[asyncio.Task]:
    # all_tasks() iterates a WeakSet another thread may change; asyncio retries the same way.
    for _ in range(100):
        try:
            return sorted(asyncio.all_tasks(loop), key=lambda t: t.get_name())
        except RuntimeError:
            continue
    return []


def _describe(task: asyncio.Task) -> str:
    snap = snapshot(task)
    text = snap.describe()
    stack = snap.await_stack
    if stack:
        text += f" at {user_frame(stack)}"
        if len(stack) > 1:
            text += " [" + " > ".join(frame.function for frame in stack) + "]"
    elif task.done():
        text += " (done)"
    else:
        text += " (not started yet)"
    if snap.created_at is not None:
        text += f"; created at {snap.created_at}"
    return text


def dump_tasks(loop: asyncio.AbstractEventLoop | None = None) -> str:
    """A text tree of `loop`'s live tasks (default: the running loop): who awaits whom, each
    task with the line it is suspended at.

    Each line reads ``task 'name' (coroutine()) at file:line in function [await stack]``, the
    place being the innermost line of the user's code in the await stack;
    a task indented under another is one the outer task is waiting for (its ``await``, its
    ``gather()``, ``wait()`` or ``wait_for()``, or the end of its ``TaskGroup`` block). Tasks
    waited for by nobody (the main task, tasks started and left to run) are the roots.
    """
    if loop is None:
        loop = asyncio.get_running_loop()
    tasks = live_tasks(loop)
    waits_for = {task: _awaited_tasks(task) for task in tasks}
    _add_awaited_by(tasks, waits_for)
    waited = {child for children in waits_for.values() for child in children}
    roots = [task for task in tasks if task not in waited]
    lines = [f"{len(tasks)} live task{'s' if len(tasks) != 1 else ''} on {loop!r}"]
    shown: set[asyncio.Task] = set()

    def render(task: asyncio.Task, prefix: str, branch: str) -> None:
        if task in shown:
            lines.append(f"{prefix}{branch}task {task.get_name()!r} (shown above)")
            return
        shown.add(task)
        lines.append(f"{prefix}{branch}{_describe(task)}")
        children = waits_for.get(task, [])
        inner = prefix + ("   " if branch in ("", "└─ ") else "│  ")
        for i, child in enumerate(children):
            render(child, inner, "└─ " if i == len(children) - 1 else "├─ ")

    for root in roots:
        render(root, "", "")
    for task in tasks:  # only a cycle of waits leaves tasks unshown
        if task not in shown:
            render(task, "", "")
    return "\n".join(lines)
