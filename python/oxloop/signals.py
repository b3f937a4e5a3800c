"""Signal handlers: `add_signal_handler` and `remove_signal_handler`, with asyncio's semantics.

Python's C-level handler writes the signal number to the wakeup fd (`signal.set_wakeup_fd`);
the loop watches the other end of that socket pair and runs the handlers as callbacks. Once per
signal, so Python.
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
import logging
import signal
import socket
import sys
import warnings
from collections.abc import Callable
from typing import Any

from . import _compat

__all__ = ["SignalsMixin"]

logger = logging.getLogger("asyncio")


def _ignore_signal(signum: int, frame: Any) -> None:
    """The Python-level handler for signals the loop handles through the wakeup fd."""


def _call_not_callable(callback: Any, *args: Any) -> None:
    """Calls a signal handler that is no callable, raising the TypeError asyncio reports."""
    callback(*args)


class SignalsMixin:
    """The signal methods of `oxloop.Loop` (which provides `add_reader` and the callbacks)."""

    def _init_signals(self) -> None:
        self._signal_handlers: dict[int, tuple[Callable[..., Any], tuple, contextvars.Context]] = {}
        self._signal_sockets: tuple[socket.socket, socket.socket] | None = None

    def add_signal_handler(self, sig: int, callback: Callable[..., Any], *args: Any) -> None:
        """Run `callback(*args)` in the loop when signal `sig` arrives."""
        if asyncio.iscoroutine(callback) or _compat.iscoroutinefunction(callback):
            raise TypeError("coroutines cannot be used with add_signal_handler()")
        self._check_signal(sig)
        self._check_closed()
        sockets = self._signal_wakeup_socket()
        try:
            signal.set_wakeup_fd(sockets[1].fileno())
        except (ValueError, OSError) as exc:  # ValueError: not the main thread
            raise RuntimeError(str(exc)) from None
        self._signal_handlers[sig] = (callback, args, contextvars.copy_context())
        try:
            signal.signal(sig, _ignore_signal)
            signal.siginterrupt(sig, False)
        except OSError as exc:
            del self._signal_handlers[sig]
            if not self._signal_handlers:
                self._stop_signal_wakeup()
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught") from None
            raise

    def remove_signal_handler(self, sig: int) -> bool:
        """Remove the handler for `sig`; True if there was one."""
        self._check_signal(sig)
        if self._signal_handlers.pop(sig, None) is None:
            return False
        default = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        try:
            signal.signal(sig, default)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught") from None
            raise
        if not self._signal_handlers:
            self._stop_signal_wakeup()
        return True

    def _check_signal(self, sig: Any) -> None:
        if not isinstance(sig, int):
            raise TypeError(f"sig must be an int, not {sig!r}")
        if sig not in signal.valid_signals():
            raise ValueError(f"invalid signal number {sig}")

    def _signal_wakeup_socket(self) -> tuple[socket.socket, socket.socket]:
        if self._signal_sockets is None:
            reader, writer = socket.socketpair()
            reader.setblocking(False)
            writer.setblocking(False)
            self._signal_sockets = (reader, writer)
            self.add_reader(reader.fileno(), self._read_signals)
        return self._signal_sockets

    def _read_signals(self) -> None:
        assert self._signal_sockets is not None
        reader = self._signal_sockets[0]
        while True:
            try:
                data = reader.recv(4096)
            except (BlockingIOError, InterruptedError):
                return
            if not data:
                return
            for signum in data:
                entry = self._signal_handlers.get(signum)
                if entry is not None:
                    callback, args, context = entry
                    if not callable(callback):
                        # asyncio takes any object and fails when the handler runs, as here;
                        # call_soon would refuse it now, losing the signals read with it.
                        args = (callback, *args)
                        callback = _call_not_callable
                    self.call_soon(callback, *args, context=context)

    def _stop_signal_wakeup(self) -> None:
        try:
            signal.set_wakeup_fd(-1)
        except (ValueError, OSError) as exc:
            logger.info("set_wakeup_fd(-1) failed: %s", exc)
        if self._signal_sockets is not None:
            reader, writer = self._signal_sockets
            self._signal_sockets = None
            self.remove_reader(reader.fileno())
            reader.close()
            writer.close()

    def _remove_all_signal_handlers(self) -> None:
        if not self._signal_handlers:
            if self._signal_sockets is not None:
                self._stop_signal_wakeup()
            return
        if sys.is_finalizing():
            warnings.warn(
                f"Closing the loop {self!r} on interpreter shutdown stage, "
                "skipping signal handlers removal",
                ResourceWarning,
                stacklevel=2,
                source=self,
            )
            self._signal_handlers.clear()
            return
        for sig in list(self._signal_handlers):
            self.remove_signal_handler(sig)
