"""The loop's low-level socket methods: `sock_recv` & co., `sock_connect`, `sock_accept`,
`sock_sendfile`, on top of the core's `add_reader`/`add_writer`.

Semantics are those of `asyncio.selector_events` and `asyncio.unix_events` (CPython 3.11): the
socket must be non-blocking, SSL sockets are refused, an fd that an open transport owns is
refused, and each call tries the system call first; only when it would block does the call
create a future and watch the fd until a retry succeeds. The watch is removed when the
operation completes. Only `connect()` can still fail with EINTR (which there means "in
progress"): the socket module retries the other calls itself (PEP 475), so they catch
`BlockingIOError` alone.

DEVIATION: asyncio checks for a blocking socket only in debug mode; oxloop checks always (one
`gettimeout()` per call), because `sock_recv` on a blocking socket would block the whole loop.

Differences in mechanism, not in behaviour:
- `sock_recv`, `sock_recv_into` and `sock_sendall`, the per-message calls of socket-level
  servers, wait through the core (`_sock_recv_wait`, `_sock_recv_into_wait`,
  `_sock_sendall_wait`, see `src/sock_ops.rs`): when the fd is ready the core does the
  `recv`/`send` itself and completes a plain `create_future()` future,
  with no handle and no Python callback. As in asyncio, a wait whose future is done (cancelled)
  never reads, and the watch of a cancelled operation is withdrawn when the cancellation reaches
  the coroutine (asyncio: from a done callback that runs just before), and only if the fd's watch
  is still that operation's (`_sock_unwatch` compares the future): a replaced watch belongs to
  whoever replaced it.
- The other operations watch the fd with `add_reader`/`add_writer`. asyncio removes the watch of
  a cancelled operation from a done callback and skips the removal if its handle was cancelled
  meanwhile; oxloop's core hands out no handle for a watch, so the future of a waiting operation
  (`_FdWaiter`) removes the watch from `cancel()` itself, before any other code runs, and only
  while the core still holds the callback it registered (a weak reference tells).
"""

from __future__ import annotations

import asyncio
import errno
import io
import os
import socket
import weakref
from collections.abc import Callable
from typing import Any

try:
    import ssl
except ImportError:  # Python built without OpenSSL: no socket can be an SSL socket
    _SSL_SOCKET: Any = ()
else:
    _SSL_SOCKET = ssl.SSLSocket

from ._compat import BaseEventLoop, borrow
from ._oxloop import recv_into_nowait, recv_nowait, send_nowait

__all__ = ["SocketOpsMixin"]


def _sock_call(sock: socket.socket, method: str, *args: Any) -> Any:
    """`sock.<method>(*args)`, with the method looked up at each retry as asyncio does: a
    socket-like object may replace its methods between attempts."""
    return getattr(sock, method)(*args)


class _FdWaiter(asyncio.Future):
    """The future of a socket operation waiting for its fd; cancelling it stops the watch."""

    __slots__ = ("_fd", "_on_ready")

    def cancel(self, msg: Any = None) -> bool:
        if not super().cancel(msg):
            return False
        # The core lets go of a watch's callback once the watch is removed or replaced, so a
        # live callback means the registration on the fd is still this operation's.
        if self._on_ready() is not None:
            self._unwatch()
        return True

    def _unwatch(self) -> None:
        raise NotImplementedError


class _ReadWaiter(_FdWaiter):
    __slots__ = ()

    def _unwatch(self) -> None:
        self.get_loop().remove_reader(self._fd)


class _WriteWaiter(_FdWaiter):
    __slots__ = ()

    def _unwatch(self) -> None:
        self.get_loop().remove_writer(self._fd)


def _open_fd(sock: socket.socket) -> int:
    """`sock`'s fd; a closed socket (fd -1) fails with EBADF, as the socket method stock asyncio
    tries first does (the fd checks that follow would say ValueError instead)."""
    fd = sock.fileno()
    if fd < 0:
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))
    return fd


def _accept(sock: socket.socket) -> tuple[socket.socket, Any]:
    conn, address = sock.accept()
    conn.setblocking(False)
    return conn, address


class SocketOpsMixin:
    """The `sock_*` methods of `oxloop.Loop` (which provides `add_reader`/`add_writer`)."""

    # sock_sendfile's checks and its read-and-send fallback are asyncio's, as loop.sendfile's
    # are (network.py): one policy for both. The zero-copy path is oxloop's.
    _check_sendfile_params = borrow(BaseEventLoop, "_check_sendfile_params")
    _sock_sendfile_fallback = borrow(BaseEventLoop, "_sock_sendfile_fallback")

    # -- waiting for an fd --------------------------------------------------------------------
    #
    # `on_ready(waiter, *args)` runs each time the fd is ready; it completes the waiter and
    # removes the watch once the operation succeeds or fails, and stays registered when the
    # retry would still block.

    def _readable(self, fd: int, on_ready: Callable[..., None], *args: Any) -> _ReadWaiter:
        waiter = _ReadWaiter(loop=self)
        waiter._fd = fd
        waiter._on_ready = weakref.ref(on_ready)
        self.add_reader(fd, on_ready, waiter, *args)
        return waiter

    def _writable(self, fd: int, on_ready: Callable[..., None], *args: Any) -> _WriteWaiter:
        waiter = _WriteWaiter(loop=self)
        waiter._fd = fd
        waiter._on_ready = weakref.ref(on_ready)
        self.add_writer(fd, on_ready, waiter, *args)
        return waiter

    def _retry(self, waiter: _FdWaiter, op: Callable[..., Any], *args: Any) -> None:
        try:
            result = op(*args)
        except BlockingIOError:
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            waiter._unwatch()
            waiter.set_exception(exc)
        else:
            waiter._unwatch()
            waiter.set_result(result)

    def _now_ready(self, waiter: _FdWaiter) -> None:
        """For callers that retry the operation themselves once the fd is ready."""
        waiter._unwatch()
        waiter.set_result(None)

    # -- receiving ----------------------------------------------------------------------------
    #
    # The checks are written out in each method rather than in a helper: these calls are the
    # per-message path of socket-level servers, and a call costs more than the two tests. The
    # first attempt goes through `recv_nowait` & co. (Rust), which answer "would block" with a
    # value: raising and catching BlockingIOError costs several times the system call.

    async def sock_recv(self, sock: socket.socket, n: int) -> bytes:
        """Receive up to `n` bytes from `sock`; b"" at end of stream."""
        if isinstance(sock, _SSL_SOCKET):
            raise TypeError("Socket cannot be of type SSLSocket")
        if sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")
        fd = _open_fd(sock)
        self._ensure_fd_no_transport(fd)
        data = recv_nowait(fd, n)
        if data is not None:
            return data
        waiter = self.create_future()
        self._sock_recv_wait(sock, fd, n, waiter)
        try:
            return await waiter
        except BaseException:
            self._sock_unwatch(fd, waiter)
            raise

    async def sock_recv_into(self, sock: socket.socket, buf: Any) -> int:
        """Receive into the writable buffer `buf`; return the number of bytes received."""
        if isinstance(sock, _SSL_SOCKET):
            raise TypeError("Socket cannot be of type SSLSocket")
        if sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")
        fd = _open_fd(sock)
        self._ensure_fd_no_transport(fd)
        nbytes = recv_into_nowait(fd, buf)
        if nbytes is not None:
            return nbytes
        waiter = self.create_future()
        self._sock_recv_into_wait(sock, fd, buf, waiter)
        try:
            return await waiter
        except BaseException:
            self._sock_unwatch(fd, waiter)
            raise

    async def sock_recvfrom(self, sock: socket.socket, bufsize: int) -> tuple[bytes, Any]:
        """Receive a datagram of up to `bufsize` bytes; return (data, sender address)."""
        if isinstance(sock, _SSL_SOCKET):
            raise TypeError("Socket cannot be of type SSLSocket")
        if sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")
        if sock.fileno() >= 0:  # a closed socket: the socket call fails as on asyncio
            self._ensure_fd_no_transport(sock)
        try:
            return sock.recvfrom(bufsize)
        except BlockingIOError:
            pass
        fd = sock.fileno()
        return await self._readable(fd, self._retry, _sock_call, sock, "recvfrom", bufsize)

    async def sock_recvfrom_into(
        self, sock: socket.socket, buf: Any, nbytes: int = 0
    ) -> tuple[int, Any]:
        """Receive a datagram into `buf` (at most `nbytes`, 0: all of `buf`); (size, address)."""
        if isinstance(sock, _SSL_SOCKET):
            raise TypeError("Socket cannot be of type SSLSocket")
        if sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")
        if sock.fileno() >= 0:  # a closed socket: the socket call fails as on asyncio
            self._ensure_fd_no_transport(sock)
        if not nbytes:
            nbytes = len(buf)
        try:
            return sock.recvfrom_into(buf, nbytes)
        except BlockingIOError:
            pass
        return await self._readable(
            sock.fileno(), self._retry, _sock_call, sock, "recvfrom_into", buf, nbytes
        )

    # -- sending ------------------------------------------------------------------------------

    async def sock_sendall(self, sock: socket.socket, data: Any) -> None:
        """Send all of `data`. On error some of it may have been sent, as with asyncio."""
        if isinstance(sock, _SSL_SOCKET):
            raise TypeError("Socket cannot be of type SSLSocket")
        if sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")
        fd = _open_fd(sock)
        self._ensure_fd_no_transport(fd)
        sent = send_nowait(fd, data)
        if sent == len(data):
            return
        # Count in bytes from here on: `send` does, whatever the item size of `data`.
        rest = memoryview(data).cast("B")[sent:]
        if rest:
            waiter = self.create_future()
            self._sock_sendall_wait(sock, fd, rest, waiter)
            try:
                await waiter
            except BaseException:
                self._sock_unwatch(fd, waiter)
                raise

    async def sock_sendto(self, sock: socket.socket, data: Any, address: Any) -> int:
        """Send the datagram `data` to `address`; return the number of bytes sent."""
        if isinstance(sock, _SSL_SOCKET):
            raise TypeError("Socket cannot be of type SSLSocket")
        if sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")
        if sock.fileno() >= 0:  # a closed socket: the socket call fails as on asyncio
            self._ensure_fd_no_transport(sock)
        try:
            return sock.sendto(data, address)
        except BlockingIOError:
            pass
        fd = sock.fileno()
        return await self._writable(fd, self._retry, _sock_call, sock, "sendto", data, address)

    # -- connecting and accepting -------------------------------------------------------------

    async def sock_connect(self, sock: socket.socket, address: Any) -> None:
        """Connect `sock` to `address`, resolving a host name first for IP sockets."""
        if isinstance(sock, _SSL_SOCKET):
            raise TypeError("Socket cannot be of type SSLSocket")
        if sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")
        if sock.fileno() >= 0:  # a closed socket: the socket call fails as on asyncio
            self._ensure_fd_no_transport(sock)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            infos = await self._ensure_resolved(
                address, family=sock.family, type=sock.type, proto=sock.proto
            )
            address = infos[0][4]
        try:
            sock.connect(address)
        except (BlockingIOError, InterruptedError):
            # EINTR from a non-blocking connect() means the connection goes on in the
            # background (CPython issue 23618), just as EINPROGRESS does.
            pass
        else:
            return
        await self._writable(sock.fileno(), self._connect_ready, sock, address)

    def _connect_ready(self, waiter: _WriteWaiter, sock: socket.socket, address: Any) -> None:
        try:
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            failure: BaseException | None = exc
        else:
            failure = OSError(err, f"Connect call failed {address}") if err else None
        waiter._unwatch()
        if failure is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(failure)

    async def sock_accept(self, sock: socket.socket) -> tuple[socket.socket, Any]:
        """Accept a connection on the listening `sock`: (non-blocking socket, peer address)."""
        if isinstance(sock, _SSL_SOCKET):
            raise TypeError("Socket cannot be of type SSLSocket")
        if sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")
        if sock.fileno() >= 0:  # a closed socket: the socket call fails as on asyncio
            self._ensure_fd_no_transport(sock)
        try:
            return _accept(sock)
        except BlockingIOError:
            pass
        return await self._readable(sock.fileno(), self._retry, _accept, sock)

    # -- sendfile -----------------------------------------------------------------------------

    async def sock_sendfile(
        self,
        sock: socket.socket,
        file: Any,
        offset: int = 0,
        count: int | None = None,
        *,
        fallback: bool = True,
    ) -> int:
        """Send `count` bytes (None: up to EOF) of `file` from `offset` over the stream `sock`.

        Uses `os.sendfile`; when that cannot serve this file (no fd, not a regular file), reads
        and sends the file instead if `fallback` is true, else raises SendfileNotAvailableError.
        Returns the number of bytes sent; the file position ends after the last byte sent.
        """
        if sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")
        if isinstance(sock, _SSL_SOCKET):
            raise TypeError("Socket cannot be of type SSLSocket")
        self._check_sendfile_params(sock, file, offset, count)
        try:
            return await self._sock_sendfile_native(sock, file, offset, count)
        except asyncio.SendfileNotAvailableError:
            if not fallback:
                raise
        return await self._sock_sendfile_fallback(sock, file, offset, count)

    async def _sock_sendfile_native(
        self, sock: socket.socket, file: Any, offset: int, count: int | None
    ) -> int:
        try:
            fileno = file.fileno()
        except (AttributeError, io.UnsupportedOperation):
            raise asyncio.SendfileNotAvailableError("not a regular file") from None
        try:
            size = os.fstat(fileno).st_size
        except OSError:
            raise asyncio.SendfileNotAvailableError("not a regular file") from None
        # As asyncio: without a count, each call asks for the file's size (sendfile stops at
        # EOF), and a file of size 0 sends nothing.
        blocksize = count if count else size
        if not blocksize:
            return 0
        fd = sock.fileno()
        total = 0
        try:
            while True:
                if count:
                    blocksize = count - total
                    if blocksize <= 0:
                        return total
                try:
                    sent = os.sendfile(fd, fileno, offset + total, blocksize)
                except BlockingIOError:
                    sent = None
                except OSError as exc:
                    if total == 0:
                        # Most often the file is not one sendfile(2) can read (a pipe, a
                        # socket): the caller can still read and send it.
                        raise asyncio.SendfileNotAvailableError("os.sendfile call failed") from exc
                    if exc.errno == errno.ENOTCONN and type(exc) is not ConnectionError:
                        # A peer that went away mid-transfer: the same error on every system.
                        raise ConnectionError("socket is not connected", errno.ENOTCONN) from exc
                    raise
                if sent is None:
                    await self._writable(fd, self._now_ready)
                elif sent == 0:  # EOF
                    return total
                else:
                    total += sent
        finally:
            if total:
                os.lseek(fileno, offset + total, os.SEEK_SET)
