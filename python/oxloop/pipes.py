"""Pipes and subprocesses: `connect_read_pipe`, `connect_write_pipe`, `subprocess_exec`,
`subprocess_shell`.

asyncio's own Unix pipe transports and subprocess transport are used as they are: they are
written against four loop hooks (`_add_reader`, `_remove_reader`, `_add_writer`,
`_remove_writer`), which here are the Rust core's `add_reader` & co., and against the child
watcher of the event loop policy (`oxloop.EventLoopPolicy` is asyncio's Unix policy, so the
same watcher). Their reads and writes run in Python, once per pipe event: pipes are not on
any hot path we measure, and reusing asyncio's transports keeps every corner of their
semantics (EOF, broken pipes, process exit ordering) identical to stock asyncio.
"""

from __future__ import annotations

from asyncio import base_events, unix_events
from typing import Any

__all__ = ["PipesMixin"]

_BaseLoop = base_events.BaseEventLoop
_UnixLoop = unix_events._UnixSelectorEventLoop


class PipesMixin:
    """The pipe and subprocess methods of the loop, on asyncio's own transports."""

    connect_read_pipe = _BaseLoop.connect_read_pipe
    connect_write_pipe = _BaseLoop.connect_write_pipe
    subprocess_exec = _BaseLoop.subprocess_exec
    subprocess_shell = _BaseLoop.subprocess_shell
    _log_subprocess = _BaseLoop._log_subprocess
    _make_read_pipe_transport = _UnixLoop._make_read_pipe_transport
    _make_write_pipe_transport = _UnixLoop._make_write_pipe_transport
    _make_subprocess_transport = _UnixLoop._make_subprocess_transport
    _child_watcher_callback = _UnixLoop._child_watcher_callback

    # The hooks asyncio's transports call: the loop's fd watches (the Rust core's).
    def _add_reader(self, fd: Any, callback: Any, *args: Any) -> None:
        self.add_reader(fd, callback, *args)

    def _remove_reader(self, fd: Any) -> bool:
        return self.remove_reader(fd)

    def _add_writer(self, fd: Any, callback: Any, *args: Any) -> None:
        self.add_writer(fd, callback, *args)

    def _remove_writer(self, fd: Any) -> bool:
        return self.remove_writer(fd)
