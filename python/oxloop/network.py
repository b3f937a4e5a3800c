"""Connections and servers: `create_connection`, `create_server`, the Unix variants,
`create_datagram_endpoint`, `connect_accepted_socket`, `start_tls`, `sendfile`.

Everything here runs once per connection or once per server. The orchestration (address
resolution, happy eyeballs, socket options, the `asyncio.Server` object) is asyncio's own code:
its methods are pure logic over a few loop hooks, so this mixin takes them as they are and
provides the hooks, which make oxloop's transports (`transports.SocketTransport`) and accept
connections. Reusing them keeps every argument check, error message and corner case identical
to stock asyncio instead of re-implementing it.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import os
import socket
import ssl
from typing import Any

from . import _compat
from ._compat import (
    ACCEPT_RETRY_DELAY,
    SSL_HANDSHAKE_TIMEOUT,
    SSL_SHUTDOWN_TIMEOUT,
    BaseEventLoop,
    UnixSelectorEventLoop,
    borrow,
)
from .tls import TLSProtocol, tls_implementation_from_env
from .transports import DatagramTransport, SocketTransport

__all__ = ["NetworkMixin"]

logger = asyncio.log.logger

# accept() failures that mean "out of resources for now": stop accepting for a moment.
_ACCEPT_RESOURCE_ERRORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class NetworkMixin:
    """The connection and server methods of the loop, on top of oxloop's transports."""

    # asyncio's orchestration, used unchanged (see the module doc).
    create_connection = borrow(BaseEventLoop, "create_connection")
    _connect_sock = borrow(BaseEventLoop, "_connect_sock")
    create_server = borrow(BaseEventLoop, "create_server")
    _create_server_getaddrinfo = borrow(BaseEventLoop, "_create_server_getaddrinfo")
    connect_accepted_socket = borrow(BaseEventLoop, "connect_accepted_socket")
    _create_connection_transport = borrow(BaseEventLoop, "_create_connection_transport")
    sendfile = borrow(BaseEventLoop, "sendfile")
    _sendfile_fallback = borrow(BaseEventLoop, "_sendfile_fallback")
    create_datagram_endpoint = borrow(BaseEventLoop, "create_datagram_endpoint")
    create_unix_connection = borrow(UnixSelectorEventLoop, "create_unix_connection")
    create_unix_server = borrow(UnixSelectorEventLoop, "create_unix_server")

    def _init_network(self) -> None:
        # State asyncio's borrowed methods read (see _compat.BORROWED): 3.13's
        # create_unix_server fills this {listening socket: inode of its file} for _stop_serving.
        self._unix_server_sockets: dict[socket.socket, int] = {}
        # "native" (oxloop.tls.TLSProtocol) or "stdlib" (asyncio's SSLProtocol): see oxloop.tls.
        self.tls_implementation = tls_implementation_from_env()
        # Socket transports of accepted TLS connections still in their handshake (_accept_tls).
        self._tls_handshakes: set[SocketTransport] = set()

    @property
    def _debug(self) -> bool:
        return self.get_debug()

    # -- transports -------------------------------------------------------------------------

    def _make_socket_transport(
        self,
        sock: socket.socket,
        protocol: asyncio.BaseProtocol,
        waiter: asyncio.Future | None = None,
        *,
        extra: dict[str, Any] | None = None,
        server: Any = None,
    ) -> SocketTransport:
        return SocketTransport(self, sock, protocol, waiter, extra, server)

    def _make_datagram_transport(
        self,
        sock: socket.socket,
        protocol: asyncio.BaseProtocol,
        address: Any = None,
        waiter: asyncio.Future | None = None,
        extra: dict[str, Any] | None = None,
    ) -> DatagramTransport:
        return DatagramTransport(self, sock, protocol, address, waiter, extra)

    def _make_ssl_transport(
        self,
        rawsock: socket.socket,
        protocol: asyncio.BaseProtocol,
        sslcontext: Any,
        waiter: asyncio.Future | None = None,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
        extra: dict[str, Any] | None = None,
        server: Any = None,
        ssl_handshake_timeout: float | None = SSL_HANDSHAKE_TIMEOUT,
        ssl_shutdown_timeout: float | None = SSL_SHUTDOWN_TIMEOUT,
    ) -> asyncio.Transport:
        ssl_protocol = self._make_tls_protocol(
            protocol,
            sslcontext,
            waiter,
            server_side,
            server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
        SocketTransport(self, rawsock, ssl_protocol, extra=extra, server=server)
        return ssl_protocol._app_transport

    def _make_tls_protocol(self, *args: Any, **kwargs: Any) -> Any:
        # TLS is a protocol (a BufferedProtocol) over a plain socket transport: asyncio's
        # SSLProtocol, or by default its subclass with the per-record work in Rust.
        if self.tls_implementation == "stdlib":
            return _compat.SSLProtocol(self, *args, **kwargs)
        return TLSProtocol(self, *args, **kwargs)

    async def start_tls(
        self,
        transport: Any,
        protocol: Any,
        sslcontext: Any,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
    ) -> Any:
        """Upgrade `transport` to TLS; return the transport `protocol` now uses.

        asyncio's `start_tls` step for step, with this loop's TLS protocol (asyncio's names
        `sslproto.SSLProtocol` itself) and, on the server side, the bytes a `StreamReader`
        already holds handed to the handshake (CPython gh-142352, fixed in 3.14: before, a
        ClientHello read with the last plain-text line was lost and the handshake hung).
        """
        if not isinstance(sslcontext, ssl.SSLContext):
            raise TypeError(
                f"sslcontext is expected to be an instance of ssl.SSLContext, got {sslcontext!r}"
            )
        if not getattr(transport, "_start_tls_compatible", False):
            raise TypeError(f"transport {transport!r} is not supported by start_tls()")
        waiter = self.create_future()
        ssl_protocol = self._make_tls_protocol(
            protocol,
            sslcontext,
            waiter,
            server_side,
            server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
            call_connection_made=False,
        )
        # Paused before the protocol changes, so no data arrives before connection_made.
        transport.pause_reading()
        if server_side:
            ssl_protocol._incoming.write(_compat.take_unread_stream_data(protocol))
        transport.set_protocol(ssl_protocol)
        connection_made = self.call_soon(ssl_protocol.connection_made, transport)
        resume = self.call_soon(transport.resume_reading)
        try:
            await waiter
        except BaseException:
            transport.close()
            connection_made.cancel()
            resume.cancel()
            raise
        return ssl_protocol._app_transport

    async def _sendfile_native(
        self, transport: Any, file: Any, offset: int, count: int | None
    ) -> int:
        # The transport's buffer must be empty and its reads paused while the kernel sends
        # the file straight from the page cache on its socket.
        resume_reading = transport.is_reading()
        transport.pause_reading()
        await transport._make_empty_waiter()
        try:
            return await self.sock_sendfile(transport._sock, file, offset, count, fallback=False)
        finally:
            transport._reset_empty_waiter()
            if resume_reading:
                transport.resume_reading()

    # -- servers: the hooks asyncio.Server calls ------------------------------------------

    def _start_serving(
        self,
        protocol_factory: Any,
        sock: socket.socket,
        sslcontext: Any = None,
        server: Any = None,
        backlog: int = 100,
        ssl_handshake_timeout: float | None = SSL_HANDSHAKE_TIMEOUT,
        ssl_shutdown_timeout: float | None = SSL_SHUTDOWN_TIMEOUT,
    ) -> None:
        self.add_reader(
            sock.fileno(),
            self._accept_connection,
            protocol_factory,
            sock,
            sslcontext,
            server,
            backlog,
            ssl_handshake_timeout,
            ssl_shutdown_timeout,
        )

    def _stop_serving(self, sock: socket.socket) -> None:
        # 3.13's create_unix_server (cleanup_socket=True) records the inode of the socket file it
        # bound; the file is removed when the server stops, unless something replaced it.
        inode = self._unix_server_sockets.pop(sock, None)
        path = sock.getsockname() if inode is not None else None
        self.remove_reader(sock.fileno())
        sock.close()
        if path is not None:
            try:
                if os.stat(path).st_ino == inode:
                    os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                logger.error("Unable to clean up listening UNIX socket %r: %r", path, exc)

    def _accept_connection(
        self,
        protocol_factory: Any,
        sock: socket.socket,
        sslcontext: Any = None,
        server: Any = None,
        backlog: int = 100,
        ssl_handshake_timeout: float | None = SSL_HANDSHAKE_TIMEOUT,
        ssl_shutdown_timeout: float | None = SSL_SHUTDOWN_TIMEOUT,
    ) -> None:
        # Several connections may wait behind one readiness event: take up to `backlog`.
        for _ in range(backlog):
            try:
                conn, addr = sock.accept()
                conn.setblocking(False)
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno not in _ACCEPT_RESOURCE_ERRORS:
                    raise  # reported by the loop as a failed callback; the server stays up
                # The listening socket stays readable while the process is out of fds: stop
                # watching it for a moment instead of spinning, as asyncio does.
                self.call_exception_handler(
                    {
                        "message": "socket.accept() out of system resource",
                        "exception": exc,
                        "socket": _compat.TransportSocket(sock),
                    }
                )
                self.remove_reader(sock.fileno())
                self.call_later(
                    ACCEPT_RETRY_DELAY,
                    self._start_serving,
                    protocol_factory,
                    sock,
                    sslcontext,
                    server,
                    backlog,
                    ssl_handshake_timeout,
                    ssl_shutdown_timeout,
                )
                return
            if self._debug:
                logger.debug("%r got a new connection from %r: %r", server, addr, conn)
            extra = {"peername": addr}
            protocol = self._accepted_protocol(protocol_factory, conn)
            if protocol is None:
                continue
            # DEVIATION: no task per connection (asyncio makes one to await a waiter nobody
            # else sees); a plain connection_made runs one iteration sooner, as on uvloop.
            if sslcontext:
                self._accept_tls(
                    protocol,
                    conn,
                    extra,
                    sslcontext,
                    server,
                    ssl_handshake_timeout,
                    ssl_shutdown_timeout,
                )
            else:
                self._accept_plain(protocol, conn, extra, server)

    def _accept_plain(
        self, protocol: Any, conn: socket.socket, extra: dict[str, Any], server: Any
    ) -> None:
        def make() -> SocketTransport:
            return SocketTransport(self, conn, protocol, extra=extra, server=server)

        self._accepted_transport(conn, protocol, make)

    def _accepted_protocol(self, protocol_factory: Any, conn: socket.socket) -> Any:
        """The application's protocol for an accepted connection, or None if its factory failed
        (reported in debug mode only, as asyncio does; the connection is closed)."""
        try:
            return protocol_factory()
        except (SystemExit, KeyboardInterrupt):
            conn.close()
            raise
        except BaseException as exc:
            conn.close()
            if self._debug:
                self.call_exception_handler(
                    {
                        "message": "Error on transport creation for incoming connection",
                        "exception": exc,
                    }
                )
            return None

    def _accepted_transport(self, conn: socket.socket, protocol: Any, make: Any) -> Any:
        """`make()`: the transport of an accepted connection (or its TLS protocol), or None if
        making it failed. That is oxloop's failure: never silent, whatever the mode; the
        connection is closed and the server keeps serving."""
        try:
            return make()
        except (SystemExit, KeyboardInterrupt):
            conn.close()
            raise
        except BaseException as exc:
            conn.close()
            self.call_exception_handler(
                {
                    "message": "Error on transport creation for incoming connection",
                    "exception": exc,
                    "protocol": protocol,
                }
            )
            return None

    def _accept_tls(
        self,
        protocol: Any,
        conn: socket.socket,
        extra: dict[str, Any],
        sslcontext: Any,
        server: Any,
        ssl_handshake_timeout: float | None,
        ssl_shutdown_timeout: float | None,
    ) -> None:
        """Start the server side of a TLS connection. asyncio awaits the handshake in a task per
        connection; here a callback on the handshake's waiter does that task's work, one
        iteration after the handshake ends as the task's wakeup would. Until then the socket
        transport is listed in `_tls_handshakes`, so that closing the loop closes it, as the
        cancellation of asyncio's task by `asyncio.run` does."""
        waiter = self.create_future()
        tls_protocol = self._accepted_transport(
            conn,
            protocol,
            lambda: self._make_tls_protocol(
                protocol,
                sslcontext,
                waiter,
                server_side=True,
                ssl_handshake_timeout=ssl_handshake_timeout,
                ssl_shutdown_timeout=ssl_shutdown_timeout,
            ),
        )
        if tls_protocol is None:
            return
        raw = self._accepted_transport(
            conn,
            protocol,
            lambda: SocketTransport(self, conn, tls_protocol, extra=extra, server=server),
        )
        if raw is None:
            return
        self._tls_handshakes.add(raw)
        waiter.add_done_callback(
            functools.partial(self._tls_accepted, protocol, tls_protocol._app_transport, raw)
        )

    def _tls_accepted(self, protocol: Any, transport: Any, raw: Any, waiter: Any) -> None:
        """The handshake of an accepted TLS connection ended: on failure, what asyncio's task
        does (close the connection; report in debug mode)."""
        self._tls_handshakes.discard(raw)
        exc = asyncio.CancelledError() if waiter.cancelled() else waiter.exception()
        if exc is None:
            return
        transport.close()
        if self._debug:
            self.call_exception_handler(
                {
                    "message": "Error on transport creation for incoming connection",
                    "exception": exc,
                    "protocol": protocol,
                    "transport": transport,
                }
            )

    def _close_tls_handshakes(self) -> None:
        """Close the connections still in their server-side handshake, now: the loop is closing
        and will run no more callbacks. (asyncio.run cancels asyncio's per-connection tasks,
        which close them; the application's protocol never saw them.)"""
        handshakes, self._tls_handshakes = self._tls_handshakes, set()
        for raw in handshakes:
            if raw._loop is None:  # lost already; only the waiter's callback had yet to run
                continue
            raw.abort()
            raw._call_connection_lost(None)
