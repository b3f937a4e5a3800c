"""Socket transports: the `asyncio.Transport` and `asyncio.DatagramTransport` objects
protocols see.

They are real instances of asyncio's transport classes (libraries and CPython's tests check
`isinstance`). The work paid per read and per write happens in their Rust half,
`_oxloop.TransportCore` (`src/transport/`); `write`,
`writelines` and `sendto` are that half's methods, stored on the instance so a call reaches
Rust without a Python frame. These classes keep what happens once per connection: extra info,
`connection_lost`, closing the socket.
"""

from __future__ import annotations

import asyncio
import socket
import warnings
from typing import Any

from . import _compat, _oxloop
from ._compat import FlowControlMixin, SendfileMode, TransportSocket

__all__ = ["DatagramTransport", "SocketTransport"]

logger = asyncio.log.logger


def _set_nodelay(sock: socket.socket) -> None:
    # asyncio disables Nagle on TCP sockets: small writes go out without waiting for an ACK.
    if (
        hasattr(socket, "TCP_NODELAY")
        and sock.family in (socket.AF_INET, socket.AF_INET6)
        and sock.type == socket.SOCK_STREAM
        and sock.proto == socket.IPPROTO_TCP
    ):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# Slots of the concrete transport classes: no per-instance dict, and `write`/`sendto` found
# in a slot reach Rust without a Python frame.
_TRANSPORT_SLOTS = ("_sock", "_sock_fd", "_core", "_server", "__weakref__")


def _socket_address(sock: socket.socket, name: str) -> Any:
    try:
        return sock.getsockname() if name == "sockname" else sock.getpeername()
    except OSError:
        return None


class _CoreTransport:
    """What stream and datagram transports share: the Rust core, extra info, the lifecycle.

    Extra info as asyncio has it ('socket', 'sockname', 'peername'), but 'socket' and
    'sockname' are made on first request instead of for every connection (they cost memory
    per connection and few callers ask); they are filled in before the socket closes, so they
    answer as on asyncio after the connection is gone. 'peername' is read at once unless the
    accept call already gave it, because a reset peer can no longer be asked.
    """

    __slots__ = ()
    _core: Any
    _extra: dict[str, Any]
    _sock: socket.socket | None
    _server: Any

    def _init(self, loop: Any, sock: socket.socket, server: Any = None) -> None:
        self._loop = loop
        self._sock = None
        self._sock_fd = sock.fileno()
        self._server = server
        if "peername" not in self._extra:
            self._extra["peername"] = _socket_address(sock, "peername")

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        extra = self._extra
        if name in extra:
            return extra[name]
        if name in ("socket", "sockname") and self._sock is not None:
            self._fill_extra(self._sock)
            return extra[name]
        return default

    def _fill_extra(self, sock: socket.socket) -> None:
        extra = self._extra
        if "socket" not in extra:
            extra["socket"] = TransportSocket(sock)
        if "sockname" not in extra:
            extra["sockname"] = _socket_address(sock, "sockname")

    def _start(self, loop: Any, sock: socket.socket, core: Any, protocol: Any, waiter: Any) -> None:
        self._sock = sock
        self._core = core
        loop.call_soon(protocol.connection_made, self)
        # Reading starts only after connection_made(), and the waiter wakes after both.
        loop.call_soon(core._start_reading)
        if waiter is not None:
            loop.call_soon(_set_result_unless_cancelled, waiter, None)

    def __repr__(self) -> str:  # asyncio's transport repr, with the poller's view
        info = [type(self).__name__]
        if self._sock is None:
            info.append("closed")
        elif self._core.is_closing():
            info.append("closing")
        info.append(f"fd={self._sock_fd}")
        if self._sock is not None and self._loop is not None and not self._loop.is_closed():
            reading, writing = self._core._polling()
            info.append("read=polling" if reading else "read=idle")
            state = "polling" if writing else "idle"
            info.append(f"write=<{state}, bufsize={self._core.get_write_buffer_size()}>")
        return "<{}>".format(" ".join(info))

    def __del__(self, _warn: Any = warnings.warn) -> None:
        # Slots are unset if __init__ failed before it got to them.
        sock = getattr(self, "_sock", None)
        if sock is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            sock.close()

    # -- the asyncio transport API shared by both kinds -----------------------------------

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._core.get_protocol()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._core.set_protocol(protocol)

    def is_closing(self) -> bool:
        return self._core.is_closing()

    def is_reading(self) -> bool:
        return self._core.is_reading()

    def pause_reading(self) -> None:
        if self._core.pause_reading() and self._loop.get_debug():
            logger.debug("%r pauses reading", self)

    def resume_reading(self) -> None:
        if self._core.resume_reading() and self._loop.get_debug():
            logger.debug("%r resumes reading", self)

    def close(self) -> None:
        self._core.close()

    def abort(self) -> None:
        self._core._force_close(None)

    def get_write_buffer_size(self) -> int:
        return self._core.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._core.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._core.set_write_buffer_limits(high, low)

    # -- the read and write paths, as a readiness event runs them (asyncio's names: an error
    # escaping them is reported with a handle of one of these, as on asyncio) -------------

    def _read_ready(self) -> None:
        if self._loop is not None:
            self._loop._transport_ready(self._core, False)

    def _write_ready(self) -> None:
        if self._loop is not None:
            self._loop._transport_ready(self._core, True)

    # -- called by the Rust half ----------------------------------------------------------

    def _fatal_error(self, exc: BaseException, message: str = "Fatal error on transport") -> None:
        # A failing socket (reset, broken pipe) is the peer's doing: asyncio only logs it in
        # debug mode. Anything else is a bug worth the exception handler.
        if isinstance(exc, OSError):
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=True)
        else:
            self._loop.call_exception_handler(
                {
                    "message": message,
                    "exception": exc,
                    "transport": self,
                    "protocol": self._core.get_protocol(),
                }
            )
        self._core._force_close(exc)

    def _force_close(self, exc: BaseException | None) -> None:
        self._core._force_close(exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        protocol = self._core.get_protocol()
        try:
            if protocol is not None:
                protocol.connection_lost(exc)
        finally:
            waiter = self._core._take_empty_waiter()
            # The fd leaves the loop before the socket closes, so the loop never watches a
            # number the OS may already have handed to a new connection.
            self._core._detach()
            sock, self._sock = self._sock, None
            if sock is not None:
                self._fill_extra(sock)
                sock.close()
            self._loop = None
            server, self._server = self._server, None
            if server is not None:
                _compat.server_detach(server, self)
            if waiter is not None and not waiter.done():
                waiter.set_exception(ConnectionError("Connection is closed by peer"))


class SocketTransport(_CoreTransport, FlowControlMixin):
    """A TCP or Unix stream socket transport with asyncio's semantics.

    A `FlowControlMixin` like asyncio's own socket transport, because asyncio's sendfile
    fallback insists on one; the flow control itself is the Rust core's.
    """

    __slots__ = (*_TRANSPORT_SLOTS, "write", "writelines")
    _start_tls_compatible = True
    _sendfile_compatible = SendfileMode.TRY_NATIVE

    def __init__(
        self,
        loop: Any,
        sock: socket.socket,
        protocol: asyncio.BaseProtocol,
        waiter: asyncio.Future | None = None,
        extra: dict[str, Any] | None = None,
        server: Any = None,
    ) -> None:
        # Not FlowControlMixin.__init__: its state lives in the core.
        asyncio.BaseTransport.__init__(self, extra)
        self._init(loop, sock, server)
        core = _oxloop.TransportCore.create(loop, sock, protocol, self)
        self.write = core.write
        self.writelines = core.writelines
        if server is not None:
            _compat.server_attach(server, self)
        _set_nodelay(sock)
        self._start(loop, sock, core, protocol, waiter)

    @property
    def _protocol_paused(self) -> bool:
        return self._core._protocol_paused

    def write_eof(self) -> None:
        self._core.write_eof()

    def can_write_eof(self) -> bool:
        return True

    # -- loop.sendfile() support (asyncio's selector loop protocol for it) ---------------

    def _make_empty_waiter(self) -> asyncio.Future:
        return self._core._make_empty_waiter()

    def _reset_empty_waiter(self) -> None:
        self._core._reset_empty_waiter()


class DatagramTransport(_CoreTransport, asyncio.Transport, asyncio.DatagramTransport):
    """A UDP or Unix datagram socket transport with asyncio's semantics.

    Also an `asyncio.Transport` (whose stream methods raise NotImplementedError), as asyncio's
    own datagram transport is: code and tests check `isinstance(t, asyncio.Transport)`.
    """

    max_size = 256 * 1024  # the most one read returns, as asyncio's

    __slots__ = (*_TRANSPORT_SLOTS, "_loop", "_address", "sendto")

    def __init__(
        self,
        loop: Any,
        sock: socket.socket,
        protocol: asyncio.BaseProtocol,
        address: Any = None,
        waiter: asyncio.Future | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(extra)
        self._init(loop, sock)
        self._address = address
        # A socketpair end is connected although its peer has no name (peername ""): it sends
        # to its peer, where asyncio tests the name for truth and fails with TypeError.
        connected = self._extra["peername"] is not None
        core = _oxloop.TransportCore.create_datagram(loop, sock, protocol, self, address, connected)
        self.sendto = core.sendto
        self._start(loop, sock, core, protocol, waiter)


def _set_result_unless_cancelled(fut: asyncio.Future, result: Any) -> None:
    if not fut.cancelled():
        fut.set_result(result)
