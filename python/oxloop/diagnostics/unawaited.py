"""Forgotten awaits: coroutines destroyed without ever having run.

CPython warns about such a coroutine by calling ``warnings._warn_unawaited_coroutine(coro)``
when it is destroyed; with coroutine origin tracking on (the diagnosed loop switches it on for
its thread) ``coro.cr_origin`` says where it was created. While at least one diagnosed loop is
open, that function is replaced by `_unawaited`, which hands the coroutine to a diagnosed loop
(the one running on this thread, else the one opened last) and then issues the usual
RuntimeWarning itself, attributed to the same line as CPython's own, so warning filters and
``-W error`` behave as without diagnostics.
"""

from __future__ import annotations

import sys
import threading
import warnings
import weakref
from collections.abc import Callable
from typing import Any

from .. import _compat
from .reports import Frame
from .task_guard import MACHINERY

__all__ = ["subscribe", "unsubscribe", "origin_frames"]

_lock = threading.Lock()
_listeners: list[weakref.ReferenceType] = []  # diagnostics objects, most recent last
_original: Callable[[Any], None] | None = None


def origin_frames(coro: Any) -> list[Frame]:
    """Where `coro` was created, outermost first (``cr_origin`` lists the innermost first),
    without asyncio's and oxloop's frames (the loop running the code that created it)."""
    origin = getattr(coro, "cr_origin", None) or ()
    frames = [Frame(*entry) for entry in reversed(origin)]
    return [frame for frame in frames if not frame.filename.startswith(MACHINERY)] or frames


def _listener_for_here() -> Any:
    running = _compat.get_running_loop_or_none()
    chosen = None
    with _lock:
        for ref in reversed(_listeners):
            diag = ref()
            if diag is None:
                continue
            if running is not None and diag.is_for(running):
                return diag
            if chosen is None:
                chosen = diag
    return chosen


def _unawaited(coro: Any) -> None:
    diag = _listener_for_here()
    if diag is not None:
        caller = sys._getframe(1)  # running when the coroutine died: where it was dropped
        code = caller.f_code
        diag.forgotten_await(coro, Frame(code.co_filename, caller.f_lineno, code.co_qualname))
    message = f"coroutine '{coro.__qualname__}' was never awaited"
    origin = origin_frames(coro)
    if origin:
        message += f" (created at {origin[-1]})"
    # stacklevel=2: CPython calls this function directly, so level 2 is the frame that was
    # running when the coroutine died, the line CPython's own warning points at.
    warnings.warn(message, RuntimeWarning, stacklevel=2, source=coro)


def subscribe(diag: Any) -> None:
    global _original
    with _lock:
        _listeners.append(weakref.ref(diag))
        if _original is None:
            _original = warnings._warn_unawaited_coroutine
            warnings._warn_unawaited_coroutine = _unawaited


def unsubscribe(diag: Any) -> None:
    global _original
    with _lock:
        _listeners[:] = [ref for ref in _listeners if ref() not in (None, diag)]
        if not _listeners and _original is not None:
            warnings._warn_unawaited_coroutine = _original
            _original = None
