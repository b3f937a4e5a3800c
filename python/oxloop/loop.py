"""The oxloop event loop class: the Rust core (`LoopCore`) plus what runs once per loop.

`LoopCore` (Rust) owns everything paid per callback: `call_soon`, `call_later`, `call_at`,
`call_soon_threadsafe`, the timer heap, the poller, `add_reader`/`add_writer` and the loop
iteration itself. This class adds the parts that run once per loop or once per error:
`run_forever`/`run_until_complete` setup, `close`, tasks and futures (asyncio's own), the
exception handler, the default executor, async generator hooks and signal handlers. Their
behaviour follows `asyncio.base_events` and `asyncio.unix_events`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sys
import threading
import time
import traceback
import warnings
import weakref
from collections.abc import Callable
from typing import Any

from . import _compat, _oxloop
from .diagnostics.switch import requested_by_environment
from .dns import DnsMixin
from .network import NetworkMixin
from .pipes import PipesMixin
from .signals import SignalsMixin
from .sock_ops import SocketOpsMixin

__all__ = ["Loop"]

logger = logging.getLogger("asyncio")

# asyncio.constants.DEBUG_STACK_DEPTH: frames kept for coroutine origins and source tracebacks.
_DEBUG_STACK_DEPTH = 10


class Loop(
    _oxloop.LoopCore,
    NetworkMixin,
    SocketOpsMixin,
    DnsMixin,
    PipesMixin,
    SignalsMixin,
    asyncio.AbstractEventLoop,
):
    """An asyncio event loop whose per-callback work runs in Rust."""

    # Timers due within this much of "now" run in the current iteration (as stock asyncio).
    _clock_resolution = time.get_clock_info("monotonic").resolution

    def __init__(self, *, diagnostics: Any = None) -> None:
        # Diagnostics (oxloop.diagnostics): None unless switched on, so the module is not even
        # imported by default. `diagnostics` is True/False/None (the environment) or Settings;
        # a bad value raises here, before the loop exists.
        settings = None
        if diagnostics or (diagnostics is None and requested_by_environment()):
            from .diagnostics.settings import resolve

            try:
                settings = resolve(diagnostics)
            except BaseException:
                self._close_core()  # the core (made by __new__) exists: release its poller
                raise
        super().__init__()
        if type(self).time is not Loop.time:
            self._use_python_clock(True)
        self._diagnostics: Any = None
        self._exception_handler: Callable[..., Any] | None = None
        self._default_executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._executor_shutdown_called = False
        self._asyncgens: weakref.WeakSet = weakref.WeakSet()
        self._asyncgens_shutdown_called = False
        self._coroutine_origin_tracking_enabled = False
        self._coroutine_origin_tracking_saved_depth: int | None = None
        self._init_signals()
        self._init_network()
        self._init_pipes()
        self.set_debug(_compat.debug_mode_requested())
        if settings is not None:
            try:
                from .diagnostics.session import Diagnostics

                self._diagnostics = Diagnostics(self, settings, native=True)
            except BaseException:
                self.close()  # e.g. the JSON-lines file cannot be opened: no loop, no leak
                raise

    # The core reads its own clock unless `time` is replaced on the instance, as
    # `mock.patch.object(loop, "time")` does: asyncio schedules and expires timers through
    # `self.time()`, and tests steer timers that way (aiohttp's keep-alive tests).
    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name == "time":
            self._use_python_clock(True)

    def __delattr__(self, name: str) -> None:
        super().__delattr__(name)
        if name == "time":
            self._use_python_clock(type(self).time is not Loop.time)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} running={self.is_running()} "
            f"closed={self.is_closed()} debug={self.get_debug()}>"
        )

    # -- running and stopping -------------------------------------------------------------

    def _check_running(self) -> None:
        if self.is_running():
            raise RuntimeError("This event loop is already running")
        if _compat.get_running_loop_or_none() is not None:
            raise RuntimeError("Cannot run the event loop while another loop is running")

    def run_forever(self) -> None:
        """Run until `stop()` is called."""
        self._check_closed()
        self._check_running()
        self._set_coroutine_origin_tracking(self._wants_coroutine_origins(self.get_debug()))
        if self._diagnostics is not None:
            self._diagnostics.loop_starting()
        saved_hooks = sys.get_asyncgen_hooks()
        try:
            sys.set_asyncgen_hooks(
                firstiter=self._asyncgen_firstiter_hook,
                finalizer=self._asyncgen_finalizer_hook,
            )
            _compat.set_running_loop(self)
            self._run_forever_core()
        finally:
            _compat.set_running_loop(None)
            self._set_coroutine_origin_tracking(False)
            sys.set_asyncgen_hooks(*saved_hooks)

    def run_until_complete(self, future: Any) -> Any:
        """Run until `future` (a future, task or coroutine) is done and return its result."""
        self._check_closed()
        self._check_running()
        made_here = not asyncio.isfuture(future)
        future = asyncio.ensure_future(future, loop=self)
        if made_here:
            # The caller cannot retrieve an exception from a task it never saw: don't log it
            # as "never retrieved" when the loop is interrupted.
            _compat.task_quiet_when_destroyed_pending(future)
        future.add_done_callback(_compat.run_until_complete_cb)
        # asyncio's callback leaves the loop running when the future ends in KeyboardInterrupt
        # or SystemExit, which a task's step re-raises out of the loop. A plain future (an
        # executor job's) raises nothing: without this, the loop would never stop.
        plain = not isinstance(future, asyncio.Task)
        if plain:
            future.add_done_callback(_stop_on_fatal_exception)
        try:
            self.run_forever()
        except BaseException:
            if made_here and future.done() and not future.cancelled():
                future.exception()  # mark it retrieved: the error is propagating already
            raise
        finally:
            future.remove_done_callback(_compat.run_until_complete_cb)
            if plain:
                future.remove_done_callback(_stop_on_fatal_exception)
        if not future.done():
            raise RuntimeError("Event loop stopped before Future completed.")
        return future.result()

    def close(self) -> None:
        """Close the loop: drop pending callbacks, release the poller, stop the executor."""
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        if self.get_debug():
            logger.debug("Close %r", self)
        if self._diagnostics is not None:
            self._diagnostics.loop_closing()  # reports what is certain now; stops the watchdog
        self._remove_all_signal_handlers()
        self._forget_children()
        self._close_tls_handshakes()
        self._close_core()
        executor, self._default_executor = self._default_executor, None
        if executor is not None:
            executor.shutdown(wait=False)

    def __del__(self, _warn: Callable[..., Any] = warnings.warn) -> None:
        try:
            closed = self.is_closed()
        except AttributeError:  # __init__ failed before the core existed
            return
        if not closed:
            _warn(f"unclosed event loop {self!r}", ResourceWarning, source=self)
            if not self.is_running():
                self.close()

    def set_debug(self, enabled: bool) -> None:
        super().set_debug(enabled)
        if self.is_running():
            self.call_soon_threadsafe(
                self._set_coroutine_origin_tracking, self._wants_coroutine_origins(bool(enabled))
            )

    def _wants_coroutine_origins(self, debug: bool) -> bool:
        """Debug mode tracks where coroutines are created; diagnostics too, unless told not to."""
        return debug or (self._diagnostics is not None and self._diagnostics.origin_depth > 0)

    def _set_coroutine_origin_tracking(self, enabled: bool) -> None:
        if bool(enabled) == self._coroutine_origin_tracking_enabled:
            return
        if enabled:
            self._coroutine_origin_tracking_saved_depth = sys.get_coroutine_origin_tracking_depth()
            depth = _DEBUG_STACK_DEPTH
            if not self.get_debug() and self._diagnostics is not None:
                depth = self._diagnostics.origin_depth  # fewer frames: cheaper
            sys.set_coroutine_origin_tracking_depth(depth)
        else:
            sys.set_coroutine_origin_tracking_depth(self._coroutine_origin_tracking_saved_depth)
        self._coroutine_origin_tracking_enabled = bool(enabled)

    def _timer_handle_cancelled(self, handle: Any) -> None:
        # asyncio's own TimerHandle calls this on cancel to count dead heap entries. Only an
        # asyncio.TimerHandle built by hand can reach here, and it is never in our heap.
        pass

    def stats(self) -> dict[str, Any]:
        """Counters of the loop's work: iterations, callbacks run, timers, I/O events, backlog.

        With diagnostics on, also time blocked, timer lateness and task counts.
        """
        stats = self._stats()
        if self._diagnostics is not None:
            stats.update(self._diagnostics.stats())
        return stats

    # -- callbacks: the Python side of the Rust core's error and debug paths ---------------

    def _check_callback(self, callback: Any, method: str) -> None:
        """asyncio's debug-mode callback check (the core always does the cheap part)."""
        if asyncio.iscoroutine(callback) or _compat.iscoroutinefunction(callback):
            raise TypeError(f"coroutines cannot be used with {method}()")
        if not callable(callback):
            raise TypeError(f"a callable object was expected by {method}(), got {callback!r}")

    def _extract_stack(self) -> traceback.StackSummary:
        # Frame 1 is the caller of call_soon & co.: the Rust methods add no frame.
        return _compat.extract_stack(sys._getframe(1))

    def _callback_failed(
        self, handle: Any, exc: BaseException, func: Any = None, args: Any = None
    ) -> None:
        if isinstance(handle, _oxloop.TransportCore) and func is not None:
            # An error escaped a transport's read or write path (a datagram protocol's
            # `datagram_received`/`error_received`; other protocol errors are handled there):
            # reported with a handle of the transport's `_read_ready`/`_write_ready`, as
            # asyncio reports its reader or writer handle.
            handle = asyncio.Handle(func, args, self)
        elif isinstance(handle, _oxloop.TransportCore):
            # The transport is gone: name its core.
            self.call_exception_handler(
                {
                    "message": f"Exception in I/O callback of {handle._transport!r}",
                    "exception": exc,
                    "transport": handle._transport,
                }
            )
            return
        # One-shot handles let go of their callback before running it: the core passes it.
        if func is None:
            func, args = handle._callback, handle._args
        callback = _compat.format_callback_source(func, args, self.get_debug())
        context: dict[str, Any] = {
            "message": f"Exception in callback {callback}",
            "exception": exc,
            "handle": handle,
        }
        if handle._source_traceback:
            context["source_traceback"] = handle._source_traceback
        self.call_exception_handler(context)

    def _slow_callback(self, handle: Any, seconds: float) -> None:
        callback = handle._callback
        owner = getattr(callback, "__self__", None)
        shown = repr(owner) if isinstance(owner, asyncio.Task) else str(handle)
        logger.warning("Executing %s took %.3f seconds", shown, seconds)

    # -- exception handler ------------------------------------------------------------------

    def get_exception_handler(self) -> Callable[..., Any] | None:
        return self._exception_handler

    def set_exception_handler(self, handler: Callable[..., Any] | None) -> None:
        if handler is not None and not callable(handler):
            raise TypeError(f"A callable object or None is expected, got {handler!r}")
        self._exception_handler = handler

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        """Log `context` on the 'asyncio' logger, as stock asyncio does."""
        message = context.get("message") or "Unhandled exception in event loop"
        exception = context.get("exception")
        exc_info: Any = False
        if exception is not None:
            exc_info = (type(exception), exception, exception.__traceback__)
        lines = [message]
        for key in sorted(context):
            if key in ("message", "exception"):
                continue
            value = context[key]
            if key == "source_traceback":
                formatted = "".join(traceback.format_list(value)).rstrip()
                value = f"Object created at (most recent call last):\n{formatted}"
            elif key == "handle_traceback":
                formatted = "".join(traceback.format_list(value)).rstrip()
                value = f"Handle created at (most recent call last):\n{formatted}"
            else:
                value = repr(value)
            lines.append(f"{key}: {value}")
        logger.error("\n".join(lines), exc_info=exc_info)

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        """Route an error report to the handler set by `set_exception_handler`, or log it."""
        if self._diagnostics is not None:
            self._diagnostics.exception_context(context)
        if self._exception_handler is None:
            try:
                self.default_exception_handler(context)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                logger.error("Exception in default exception handler", exc_info=True)
            return
        try:
            # 3.12+ runs the handler in the context of the task or handle the report is about.
            handler_context = _compat.handler_context(context)
            if handler_context is None:
                self._exception_handler(self, context)
            else:
                handler_context.run(self._exception_handler, self, context)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            try:
                self.default_exception_handler(
                    {
                        "message": "Unhandled error in exception handler",
                        "exception": exc,
                        "context": context,
                    }
                )
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                logger.error(
                    "Exception in default exception handler while handling an unexpected "
                    "error in custom exception handler",
                    exc_info=True,
                )

    # -- executor ---------------------------------------------------------------------------

    def run_in_executor(self, executor: Any, func: Callable[..., Any], *args: Any):
        """Run `func(*args)` in `executor` (default: a thread pool) and await its result."""
        self._check_closed()
        if self.get_debug():
            self._check_callback(func, "run_in_executor")
        if executor is None:
            if self._executor_shutdown_called:
                raise RuntimeError("Executor shutdown has been called")
            executor = self._default_executor
            if executor is None:
                executor = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="asyncio")
                self._default_executor = executor
        return asyncio.wrap_future(executor.submit(func, *args), loop=self)

    def set_default_executor(self, executor: concurrent.futures.ThreadPoolExecutor) -> None:
        if not isinstance(executor, concurrent.futures.ThreadPoolExecutor):
            raise TypeError("executor must be ThreadPoolExecutor instance")
        self._default_executor = executor

    async def shutdown_default_executor(self, timeout: float | None = None) -> None:
        """Shut the default executor down, waiting (in a helper thread) for its jobs."""
        self._executor_shutdown_called = True
        executor = self._default_executor
        if executor is None:
            return
        done = self.create_future()

        def shut_down() -> None:
            try:
                executor.shutdown(wait=True)
                if not self.is_closed():
                    self.call_soon_threadsafe(_set_result_unless_done, done, None)
            except Exception as exc:
                if not self.is_closed():
                    self.call_soon_threadsafe(_set_exception_unless_done, done, exc)

        thread = threading.Thread(target=shut_down, name="oxloop-executor-shutdown")
        thread.start()
        try:
            if timeout is None:
                await done
            else:
                await asyncio.wait_for(asyncio.shield(done), timeout)
        except TimeoutError:
            warnings.warn(
                f"The executor did not finish joining its threads within {timeout} seconds.",
                RuntimeWarning,
                stacklevel=2,
            )
            executor.shutdown(wait=False)
        finally:
            thread.join(timeout)

    # -- async generators -------------------------------------------------------------------

    def _asyncgen_firstiter_hook(self, agen: Any) -> None:
        if self._asyncgens_shutdown_called:
            warnings.warn(
                f"asynchronous generator {agen!r} was scheduled after "
                "loop.shutdown_asyncgens() call",
                ResourceWarning,
                stacklevel=2,
                source=self,
            )
        self._asyncgens.add(agen)

    def _asyncgen_finalizer_hook(self, agen: Any) -> None:
        self._asyncgens.discard(agen)
        if not self.is_closed():
            self.call_soon_threadsafe(self.create_task, agen.aclose())

    async def shutdown_asyncgens(self) -> None:
        """Close every async generator still alive on this loop."""
        self._asyncgens_shutdown_called = True
        if not self._asyncgens:
            return
        agens = list(self._asyncgens)
        self._asyncgens.clear()
        results = await asyncio.gather(*[agen.aclose() for agen in agens], return_exceptions=True)
        for agen, result in zip(agens, results, strict=True):
            if isinstance(result, Exception):
                self.call_exception_handler(
                    {
                        "message": "an error occurred during closing of "
                        f"asynchronous generator {agen!r}",
                        "exception": result,
                        "asyncgen": agen,
                    }
                )


def _set_result_unless_done(fut: asyncio.Future, result: Any) -> None:
    if not fut.done():
        fut.set_result(result)


def _set_exception_unless_done(fut: asyncio.Future, exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


def _stop_on_fatal_exception(fut: asyncio.Future) -> None:
    """Stops `run_until_complete` of a plain future that ended in KeyboardInterrupt or
    SystemExit (asyncio's own done callback stops it in every other case)."""
    if not fut.cancelled() and isinstance(fut.exception(), (KeyboardInterrupt, SystemExit)):
        fut.get_loop().stop()
