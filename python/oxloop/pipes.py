"""Pipes and subprocesses: `connect_read_pipe`, `connect_write_pipe`, `subprocess_exec`,
`subprocess_shell`.

asyncio's own Unix pipe transports and subprocess transport are used as they are: they are
written against four loop hooks (`_add_reader`, `_remove_reader`, `_add_writer`,
`_remove_writer`), which here are the Rust core's `add_reader` & co. Their reads and writes run in
Python, once per pipe event: pipes are not on any hot path we measure, and reusing asyncio's
transports keeps every corner of their semantics (EOF, broken pipes, process exit ordering)
identical to stock asyncio.

A child's exit is oxloop's own, the same on every Python version: the loop watches a pidfd
(`os.pidfd_open`, Linux 5.3+) that becomes readable when the child exits, then reaps it with
`waitpid`. No child watcher (deprecated in 3.12, gone in 3.14), no SIGCHLD handler, no thread per
child. Where pidfds are missing (old kernels, seccomp), a thread per child waits instead, as
asyncio's `ThreadedChildWatcher` does.
"""

from __future__ import annotations

import os
import threading
import warnings
from asyncio.log import logger
from typing import Any

from ._compat import BaseEventLoop, UnixSelectorEventLoop, UnixSubprocessTransport, borrow

__all__ = ["PipesMixin"]


def _pidfd_works() -> bool:
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):  # no os.pidfd_open, or the kernel/seccomp refuses it
        return False
    return True


_PIDFD = _pidfd_works()


def _reap(pid: int) -> int:
    """Wait for `pid` and return its returncode as `subprocess` reports it."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        # Someone else's waitpid() took the status first.
        logger.warning(
            "child process pid %d exit status already read: will report returncode 255", pid
        )
        return 255
    return os.waitstatus_to_exitcode(status)


class PipesMixin:
    """The pipe and subprocess methods of the loop, on asyncio's own transports."""

    connect_read_pipe = borrow(BaseEventLoop, "connect_read_pipe")
    connect_write_pipe = borrow(BaseEventLoop, "connect_write_pipe")
    subprocess_exec = borrow(BaseEventLoop, "subprocess_exec")
    subprocess_shell = borrow(BaseEventLoop, "subprocess_shell")
    _log_subprocess = borrow(BaseEventLoop, "_log_subprocess")
    _make_read_pipe_transport = borrow(UnixSelectorEventLoop, "_make_read_pipe_transport")
    _make_write_pipe_transport = borrow(UnixSelectorEventLoop, "_make_write_pipe_transport")

    def _init_pipes(self) -> None:
        self._child_pidfds: dict[int, int] = {}  # pid -> pidfd the loop watches

    async def _make_subprocess_transport(
        self,
        protocol: Any,
        args: Any,
        shell: bool,
        stdin: Any,
        stdout: Any,
        stderr: Any,
        bufsize: int,
        extra: Any = None,
        **kwargs: Any,
    ) -> Any:
        waiter = self.create_future()
        transport = UnixSubprocessTransport(
            self, protocol, args, shell, stdin, stdout, stderr, bufsize,
            waiter=waiter, extra=extra, **kwargs,
        )  # fmt: skip
        self._watch_child(transport.get_pid(), transport)
        try:
            await waiter
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException:
            transport.close()
            await transport._wait()
            raise
        return transport

    def _watch_child(self, pid: int, transport: Any) -> None:
        if _PIDFD:
            pidfd = os.pidfd_open(pid)
            self._child_pidfds[pid] = pidfd
            self.add_reader(pidfd, self._child_exited, pid, transport)
            return
        thread = threading.Thread(
            target=self._wait_child_thread,
            args=(pid, transport),
            name=f"oxloop-waitpid-{pid}",
            daemon=True,
        )
        thread.start()

    def _child_exited(self, pid: int, transport: Any) -> None:
        pidfd = self._child_pidfds.pop(pid)
        self.remove_reader(pidfd)
        os.close(pidfd)
        returncode = _reap(pid)
        if self.get_debug():
            logger.debug("process %s exited with returncode %s", pid, returncode)
        self.call_soon(transport._process_exited, returncode)

    def _wait_child_thread(self, pid: int, transport: Any) -> None:
        returncode = _reap(pid)
        if self.is_closed():
            warnings.warn(
                f"Loop {self!r} closed before child {pid} exited", RuntimeWarning, stacklevel=1
            )
            return
        self.call_soon_threadsafe(transport._process_exited, returncode)

    def _forget_children(self) -> None:
        """At close: stop watching children; reap the ones that have exited (no zombies)."""
        for pid, pidfd in self._child_pidfds.items():
            self.remove_reader(pidfd)
            os.close(pidfd)
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        self._child_pidfds.clear()

    # The hooks asyncio's transports call: the loop's fd watches (the Rust core's).
    def _add_reader(self, fd: Any, callback: Any, *args: Any) -> None:
        self.add_reader(fd, callback, *args)

    def _remove_reader(self, fd: Any) -> bool:
        return self.remove_reader(fd)

    def _add_writer(self, fd: Any, callback: Any, *args: Any) -> None:
        self.add_writer(fd, callback, *args)

    def _remove_writer(self, fd: Any) -> bool:
        return self.remove_writer(fd)
