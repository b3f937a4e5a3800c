"""oxloop: a drop-in asyncio event loop whose per-callback work runs in Rust.

Use it like stock asyncio::

    import oxloop
    oxloop.run(main())                                  # like asyncio.run(main())
    with asyncio.Runner(loop_factory=oxloop.new_event_loop) as runner:
        runner.run(main())
    asyncio.run(main(), loop_factory=oxloop.new_event_loop)   # Python 3.12+

Futures and tasks are asyncio's own, so every asyncio API and introspection tool keeps working.
"""

import asyncio as _asyncio
import functools as _functools
import threading as _threading
import warnings as _warnings
from collections.abc import Awaitable as _Awaitable
from typing import TypeVar as _TypeVar

from . import _compat
from .diagnostics.task_tree import dump_tasks
from .loop import Loop

__all__ = ["Loop", "EventLoopPolicy", "new_event_loop", "run", "install", "dump_tasks"]
__version__ = "0.1.0"

_T = _TypeVar("_T")


def new_event_loop(*, diagnostics=None) -> Loop:
    """Return a new oxloop event loop (not set as the current loop).

    `diagnostics`: True, False, an `oxloop.diagnostics.Settings`, or None to follow the
    ``OXLOOP_DIAGNOSTICS`` environment variable (see `oxloop.diagnostics`).
    """
    return Loop(diagnostics=diagnostics)


def run(main: _Awaitable[_T], *, debug: bool | None = None, diagnostics=None) -> _T:
    """Run a coroutine on a new oxloop loop and return its result.

    The semantics of `asyncio.run`: leftover tasks are cancelled, async generators and the
    default executor are shut down, and the loop is closed. `diagnostics` as in
    `new_event_loop`.
    """
    if _compat.get_running_loop_or_none() is not None:
        raise RuntimeError("oxloop.run() cannot be called from a running event loop")
    factory = _functools.partial(new_event_loop, diagnostics=diagnostics)
    with _asyncio.Runner(debug=debug, loop_factory=factory) as runner:
        return runner.run(main)


if _compat.POLICY_CLASS is not None:

    class EventLoopPolicy(_compat.POLICY_CLASS):
        """An event loop policy whose loops are oxloop loops (asyncio's policies are deprecated
        from Python 3.14: prefer `oxloop.run()` or `loop_factory=oxloop.new_event_loop`)."""

        def _loop_factory(self) -> Loop:  # the hook the default policy calls to make a loop
            return new_event_loop()

        def new_event_loop(self) -> Loop:
            return new_event_loop()

else:

    class EventLoopPolicy:  # type: ignore[no-redef]
        """Python 3.16+ has no event loop policies: there is nothing to install a loop into."""

        def __init__(self) -> None:
            raise NotImplementedError(_NO_POLICIES)


_NO_POLICIES = (
    "asyncio's event loop policies are gone in this Python version: use oxloop.run(main()) or "
    "asyncio.run(main(), loop_factory=oxloop.new_event_loop)"
)


def install() -> None:
    """Make oxloop the loop that `asyncio.run()` and `asyncio.new_event_loop()` create.

    Works through asyncio's event loop policy, which Python 3.14 deprecates (this warns there,
    as asyncio does) and 3.16 removes (this raises NotImplementedError there).
    """
    if _compat.POLICIES_DEPRECATED:
        _warnings.warn(
            "oxloop.install() sets an asyncio event loop policy, and policies are deprecated "
            "since Python 3.14; use oxloop.run(main()) or "
            "asyncio.run(main(), loop_factory=oxloop.new_event_loop)",
            DeprecationWarning,
            stacklevel=2,
        )
    _install()


def _install() -> None:
    if _threading.current_thread() is not _threading.main_thread():
        raise RuntimeError("oxloop.install() must be called from the main thread")
    if _compat.set_event_loop_policy is None:
        raise NotImplementedError(_NO_POLICIES)
    _compat.set_event_loop_policy(EventLoopPolicy())
