"""TCP connections: `loop.create_connection` and the socket transport it returns.

The specification of what a protocol sees on a TCP connection: which callbacks, in which order,
with which arguments; what each transport method does; flow control in both directions; faults
(refused, reset, exceptions in callbacks, cancelled connects) and resource hygiene (no fd leaks).
Every test runs on stock asyncio (the oracle) and on oxloop. Loopback only.
"""

import asyncio
import contextvars
import errno
import re
import socket

import pytest
from nethelpers import (
    Accepted,
    RecordingProtocol,
    echo_once,
    fd_count,
    payload,
    run,
    set_linger_zero,
    shrink_buffers,
    start_echo_server,
)


async def tcp_pair(server_kwargs=None, client_cls=RecordingProtocol, **connect_kwargs):
    """A RecordingProtocol server and one client connection to it.

    Returns (server, client_transport, client_protocol, server_protocol); both protocols have
    had connection_made.
    """
    loop = asyncio.get_running_loop()
    accepted = Accepted(**(server_kwargs or {}))
    server = await loop.create_server(accepted, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport, proto = await loop.create_connection(client_cls, "127.0.0.1", port, **connect_kwargs)
    server_proto = await accepted.next()
    await server_proto.made
    return server, transport, proto, server_proto


async def fill_until_buffered(transport, chunk=64 * 1024, limit=64 * 1024 * 1024):
    """Write `chunk`s until the transport has to buffer some in user space (the peer is not
    reading); returns how many bytes were written in total."""
    data = payload(chunk)
    written = 0
    while transport.get_write_buffer_size() == 0:
        assert written < limit, "peer kept accepting data although it does not read"
        transport.write(data)
        written += chunk
    return written


def free_port():
    """A loopback port nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- create_connection -------------------------------------------------------------------------


def test_create_connection_returns_a_transport_after_connection_made(loop):
    async def main():
        server, transport, proto, _ = await tcp_pair()
        assert isinstance(transport, asyncio.Transport)
        assert isinstance(proto, RecordingProtocol)
        assert proto.transport is transport
        # connection_made has run by the time create_connection returns
        assert proto.events == ["connection_made"]
        transport.close()
        server.close()

    run(loop, main())


def test_server_side_transport_is_a_transport_instance(loop):
    async def main():
        server, transport, _, server_proto = await tcp_pair()
        assert isinstance(server_proto.transport, asyncio.Transport)
        transport.close()
        server.close()

    run(loop, main())


def test_create_connection_to_closed_port_raises_connection_refused(loop):
    async def main():
        with pytest.raises(ConnectionRefusedError) as info:
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", free_port())
        assert info.value.errno == errno.ECONNREFUSED

    run(loop, main())


def test_create_connection_with_connected_sock_uses_that_socket(loop):
    async def main():
        server, port = await start_echo_server()
        sock = socket.create_connection(("127.0.0.1", port))
        transport, proto = await loop.create_connection(RecordingProtocol, sock=sock)
        assert transport.get_extra_info("socket").fileno() == sock.fileno()
        assert not sock.getblocking()  # the transport made it non-blocking
        transport.write(b"via sock=")
        assert await proto.wait_bytes(9) == b"via sock="
        transport.close()
        server.close()

    run(loop, main())


def test_closing_transport_closes_the_sock_given_to_create_connection(loop):
    async def main():
        server, port = await start_echo_server()
        sock = socket.create_connection(("127.0.0.1", port))
        transport, proto = await loop.create_connection(RecordingProtocol, sock=sock)
        transport.close()
        await proto.lost
        assert sock.fileno() == -1
        server.close()

    run(loop, main())


def test_create_connection_local_addr_binds_the_client_socket(loop):
    async def main():
        accepted = Accepted()
        server = await loop.create_server(accepted, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        # all of 127.0.0.0/8 is loopback on Linux, so 127.0.0.2 is a distinct local address
        transport, _ = await loop.create_connection(
            RecordingProtocol, "127.0.0.1", port, local_addr=("127.0.0.2", 0)
        )
        assert transport.get_extra_info("sockname")[0] == "127.0.0.2"
        server_proto = await accepted.next()
        await server_proto.made
        assert server_proto.transport.get_extra_info("peername") == transport.get_extra_info(
            "sockname"
        )
        transport.close()
        server.close()

    run(loop, main())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"happy_eyeballs_delay": 0.1},
        {"interleave": 1},
        {"happy_eyeballs_delay": 0.1, "interleave": 2},
        {"ssl": None},
    ],
    ids=["happy_eyeballs_delay", "interleave", "both", "ssl_none"],
)
def test_create_connection_options_still_connect_and_echo(loop, kwargs):
    async def main():
        server, port = await start_echo_server()
        transport, proto = await loop.create_connection(
            RecordingProtocol, "127.0.0.1", port, **kwargs
        )
        assert transport.get_extra_info("sslcontext") is None
        transport.write(b"hello")
        assert await proto.wait_bytes(5) == b"hello"
        transport.close()
        server.close()

    run(loop, main())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"host": "127.0.0.1", "port": 1, "sock": "SOCK"},
            "host/port and sock can not be specified at the same time",
        ),
        ({}, "host and port was not specified and no sock specified"),
        (
            {"host": "127.0.0.1", "port": 1, "server_hostname": "example.com"},
            "server_hostname is only meaningful with ssl",
        ),
        (
            {"host": "127.0.0.1", "port": 1, "ssl_handshake_timeout": 1.0},
            "ssl_handshake_timeout is only meaningful with ssl",
        ),
        ({"sock": "DGRAM"}, "A Stream Socket was expected, got <socket.socket"),
    ],
    ids=["host_and_sock", "nothing", "server_hostname", "handshake_timeout", "udp_sock"],
)
def test_create_connection_bad_arguments_raise_value_error(loop, kwargs, message):
    async def main():
        with (
            socket.socket() as tcp,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
        ):
            real = dict(kwargs)
            if real.get("sock") == "SOCK":
                real["sock"] = tcp
            elif real.get("sock") == "DGRAM":
                real["sock"] = udp
            with pytest.raises(ValueError, match=re.escape(message)):
                await loop.create_connection(asyncio.Protocol, **real)

    run(loop, main())


# --- protocol callbacks ------------------------------------------------------------------------


def test_callbacks_run_in_order_made_data_eof_lost(loop):
    async def main():
        server, transport, proto, server_proto = await tcp_pair()
        server_proto.transport.write(b"hello ")
        server_proto.transport.write(b"world")
        server_proto.transport.write_eof()
        exc = await proto.lost
        assert exc is None
        assert proto.callbacks() == [
            "connection_made",
            "data_received",
            "eof_received",
            "connection_lost",
        ]
        assert proto.data == b"hello world"
        server_proto.transport.close()
        server.close()

    run(loop, main())


def test_connection_lost_called_once_after_local_close(loop):
    async def main():
        server, transport, proto, server_proto = await tcp_pair()
        transport.close()
        assert await proto.lost is None
        await server_proto.lost  # the peer sees EOF and closes too
        assert proto.events.count("connection_lost") == 1
        assert proto.events[-1] == "connection_lost"
        server.close()

    run(loop, main())


@pytest.mark.parametrize(
    "calls",
    [("close", "abort"), ("abort", "close"), ("close", "close"), ("abort", "abort")],
    ids="-then-".join,
)
def test_connection_lost_called_exactly_once_whatever_close_calls(loop, calls):
    async def main():
        server, transport, proto, server_proto = await tcp_pair()
        for name in calls:
            getattr(transport, name)()
        assert await proto.lost is None
        await server_proto.lost
        # a full round trip on another connection gives a second call time to show up
        echo_server, port = await start_echo_server()
        assert await echo_once(port, b"x") == b"x"
        assert proto.events.count("connection_lost") == 1
        echo_server.close()
        server.close()

    run(loop, main())


def test_exception_in_data_received_goes_to_exception_handler(loop):
    errors = []
    loop.set_exception_handler(lambda lp, context: errors.append(context))

    class Boom(RecordingProtocol):
        def data_received(self, data):
            super().data_received(data)
            raise ZeroDivisionError("boom")

    async def main():
        server, transport, proto, server_proto = await tcp_pair(client_cls=Boom)
        server_proto.transport.write(b"trigger")
        exc = await proto.lost
        assert len(errors) == 1
        context = errors[0]
        assert context["message"] == "Fatal error: protocol.data_received() call failed."
        assert isinstance(context["exception"], ZeroDivisionError)
        assert context["transport"] is transport
        assert context["protocol"] is proto
        # asyncio then aborts the connection, handing the same exception to connection_lost
        assert exc is context["exception"]
        assert transport.is_closing()
        # the loop keeps serving other connections
        echo_server, port = await start_echo_server()
        assert await echo_once(port, b"still alive") == b"still alive"
        echo_server.close()
        server.close()

    run(loop, main())


REQUEST = contextvars.ContextVar("REQUEST", default="outer")


class ContextRecordingProtocol(RecordingProtocol):
    """A RecordingProtocol that also notes, in `seen`, the value of REQUEST each callback saw."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen = []

    def connection_made(self, transport):
        self.seen.append(("connection_made", REQUEST.get()))
        super().connection_made(transport)

    def eof_received(self):
        self.seen.append(("eof_received", REQUEST.get()))
        return super().eof_received()

    def connection_lost(self, exc):
        self.seen.append(("connection_lost", REQUEST.get()))
        super().connection_lost(exc)


# The transport is made in a task that set REQUEST, while the loop itself runs in a context
# where it is unset: a callback that ran in the loop's context instead of the transport's would
# see "outer". On asyncio, connection_lost after the peer's EOF or reset is scheduled from the
# reader callback, so it runs in a copy of the transport's context (uvloop's test_context
# checks the same).
@pytest.mark.parametrize("how", ["eof", "reset"])
def test_connection_lost_after_the_peer_closes_runs_in_the_transport_context(loop, how):
    async def main():
        REQUEST.set("inner")
        server, transport, proto, server_proto = await tcp_pair(client_cls=ContextRecordingProtocol)
        if how == "reset":
            set_linger_zero(server_proto.transport.get_extra_info("socket"))
            server_proto.transport.abort()
        else:
            server_proto.transport.write_eof()
        await proto.lost
        assert proto.seen[-1] == ("connection_lost", "inner")
        assert all(value == "inner" for _, value in proto.seen), proto.seen
        server.close()

    run(loop, main())


def test_connection_lost_after_a_drained_close_runs_in_the_writers_context(loop):
    # close() with data still buffered: connection_lost comes from the write path once the
    # buffer drains (on asyncio, the writer callback added by the task that wrote).
    async def main():
        REQUEST.set("inner")
        server, transport, proto, server_proto = await tcp_pair(client_cls=ContextRecordingProtocol)
        server_proto.transport.pause_reading()
        shrink_buffers(transport.get_extra_info("socket"))
        await fill_until_buffered(transport)
        assert transport.get_write_buffer_size() > 0
        transport.close()
        server_proto.transport.resume_reading()
        await proto.lost
        assert proto.seen[-1] == ("connection_lost", "inner")
        server.close()

    run(loop, main())


def test_get_protocol_and_set_protocol_switch_where_data_goes(loop):
    async def main():
        server, transport, proto, server_proto = await tcp_pair()
        assert transport.get_protocol() is proto
        other = RecordingProtocol()
        transport.set_protocol(other)
        assert transport.get_protocol() is other
        server_proto.transport.write(b"to the new protocol")
        assert await other.wait_bytes(19) == b"to the new protocol"
        assert proto.data == b""
        transport.close()
        server.close()

    run(loop, main())


# --- get_extra_info, TCP_NODELAY ---------------------------------------------------------------


def test_get_extra_info_socket_peername_sockname(loop):
    async def main():
        server, transport, proto, server_proto = await tcp_pair()
        port = server.sockets[0].getsockname()[1]
        sock = transport.get_extra_info("socket")
        assert isinstance(sock.fileno(), int) and sock.fileno() >= 0
        assert sock.family == socket.AF_INET
        assert sock.type == socket.SOCK_STREAM
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) == socket.SOCK_STREAM
        assert transport.get_extra_info("peername") == ("127.0.0.1", port)
        assert transport.get_extra_info("sockname") == sock.getsockname()
        assert sock.getpeername() == ("127.0.0.1", port)
        server_side = server_proto.transport
        assert server_side.get_extra_info("peername") == transport.get_extra_info("sockname")
        assert server_side.get_extra_info("sockname") == ("127.0.0.1", port)
        assert transport.get_extra_info("no such key") is None
        assert transport.get_extra_info("no such key", 42) == 42
        transport.close()
        server.close()

    run(loop, main())


def test_tcp_nodelay_is_set_on_client_and_server_transports(loop):
    async def main():
        server, transport, proto, server_proto = await tcp_pair()
        for t in (transport, server_proto.transport):
            sock = t.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        transport.close()
        server.close()

    run(loop, main())


# --- write side --------------------------------------------------------------------------------


def test_write_and_writelines_deliver_in_order(loop):
    async def main():
        server, transport, proto, server_proto = await tcp_pair()
        transport.write(b"one ")
        transport.writelines([b"two ", b"three ", b""])
        transport.write(b"four")
        assert await server_proto.wait_bytes(18) == b"one two three four"
        transport.close()
        server.close()

    run(loop, main())


def test_write_accepts_bytearray_and_memoryview(loop):
    async def main():
        server, transport, proto, server_proto = await tcp_pair()
        transport.write(bytearray(b"bytearray "))
        transport.write(memoryview(b"memoryview "))
        transport.write(memoryview(b"xxsliced")[2:])
        transport.writelines([bytearray(b" a"), memoryview(b" b")])
        expected = b"bytearray memoryview sliced a b"
        assert await server_proto.wait_bytes(len(expected)) == expected
        transport.close()
        server.close()

    run(loop, main())


def test_write_str_raises_type_error(loop):
    async def main():
        server, transport, proto, server_proto = await tcp_pair()
        with pytest.raises(TypeError, match="data argument must be a bytes-like object, not 'str'"):
            transport.write("text")
        transport.close()
        server.close()

    run(loop, main())


@pytest.mark.oxloop_only(
    "asyncio 3.12+ buffers a reference to the bytearray, so a change after write() is sent",
    since=(3, 12),
)
def test_write_buffered_bytearray_is_copied(loop):
    """Data the kernel could not take at once is kept as it was at write() time."""

    async def main():
        server, transport, proto, server_proto = await tcp_pair()
        server_proto.transport.pause_reading()
        shrink_buffers(transport.get_extra_info("socket"))
        written = await fill_until_buffered(transport)
        data = bytearray(b"A" * 1000)
        transport.write(data)
        data[:] = b"B" * 1000  # mutate after write(): must not change what is sent
        transport.write_eof()
        server_proto.transport.resume_reading()
        received = await server_proto.wait_bytes(written + 1000)
        await server_proto.eof
        assert received[written:] == b"A" * 1000
        transport.close()
        server.close()

    run(loop, main())


def test_write_empty_bytes_sends_nothing(loop):
    async def main():
        server, transport, proto, server_proto = await tcp_pair()
        transport.write(b"")
        assert transport.get_write_buffer_size() == 0
        transport.write(b"end")
        transport.write_eof()
        await server_proto.eof
        assert server_proto.data == b"end"
        transport.close()
        server.close()

    run(loop, main())


def test_tcp_transport_can_write_eof(loop):
    async def main():
        server, transport, proto, server_proto = await tcp_pair()
        assert transport.can_write_eof() is True
        assert server_proto.transport.can_write_eof() is True
        transport.close()
        server.close()

    run(loop, main())


def test_write_eof_half_closes_and_the_peer_can_still_reply(loop):
    async def main():
        server, transport, proto, server_proto = await tcp_pair(server_kwargs={"eof_result": True})
        transport.write(b"request")
        transport.write_eof()
        await server_proto.eof
        assert server_proto.data == b"request"
        assert not server_proto.transport.is_closing()
        server_proto.transport.write(b"response")
        server_proto.transport.close()
        assert await proto.lost is None
        assert proto.data == b"response"
        assert proto.callbacks()[-2:] == ["eof_received", "connection_lost"]
        server.close()

    run(loop, main())


def test_write_after_write_eof_raises_runtime_error(loop):
    async def main():
        server, transport, proto, server_proto = await tcp_pair()
        transport.write_eof()
        with pytest.raises(RuntimeError, match=re.escape("Cannot call write() after write_eof()")):
            transport.write(b"late")
        transport.close()
        server.close()

    run(loop, main())


def test_write_eof_is_sent_after_buffered_data(loop):
    async def main():
        server, transport, proto, server_proto = await tcp_pair()
        server_proto.transport.pause_reading()
        shrink_buffers(transport.get_extra_info("socket"))
        written = await fill_until_buffered(transport)
        transport.write_eof()  # data is still buffered: the FIN must follow it
        server_proto.transport.resume_reading()
        await server_proto.eof
        assert len(server_proto.data) == written
        transport.close()
        server.close()

    run(loop, main())


@pytest.mark.parametrize("eof_result", [None, False])
def test_eof_received_returning_false_closes_the_transport(loop, eof_result):
    async def main():
        server, transport, proto, server_proto = await tcp_pair(server_kwargs={"eof_result": True})
        proto.eof_result = eof_result
        server_proto.transport.write_eof()
        assert await proto.lost is None
        assert transport.is_closing()
        assert proto.callbacks() == ["connection_made", "eof_received", "connection_lost"]
        await server_proto.eof  # our close reached the server as EOF
        server_proto.transport.close()
        server.close()

    run(loop, main())


def test_eof_received_returning_true_keeps_the_write_side_open(loop):
    async def main():
        server, transport, proto, server_proto = await tcp_pair(server_kwargs={"eof_result": True})
        proto.eof_result = True
        server_proto.transport.write_eof()
        await proto.eof
        assert not transport.is_closing()
        assert not proto.lost.done()
        transport.write(b"still writing")
        assert await server_proto.wait_bytes(13) == b"still writing"
        transport.close()
        assert await proto.lost is None
        assert proto.events.count("connection_lost") == 1
        server_proto.transport.close()
        server.close()

    run(loop, main())


# --- close, abort, is_closing ------------------------------------------------------------------


def test_is_closing_is_false_while_open_and_true_after_close(loop):
    async def main():
        server, transport, proto, server_proto = await tcp_pair()
        assert transport.is_closing() is False
        transport.close()
        assert transport.is_closing() is True
        await proto.lost
        assert transport.is_closing() is True
        server.close()

    run(loop, main())


def test_close_flushes_buffered_data_then_calls_connection_lost_none(loop):
    async def main():
        server, transport, proto, server_proto = await tcp_pair()
        server_proto.transport.pause_reading()
        shrink_buffers(transport.get_extra_info("socket"))
        written = await fill_until_buffered(transport)
        extra = payload(256 * 1024, seed=b"tail")
        transport.write(extra)
        transport.close()
        assert transport.is_closing()
        assert not proto.lost.done()
        server_proto.transport.resume_reading()
        await server_proto.eof
        assert len(server_proto.data) == written + len(extra)
        assert server_proto.data.endswith(extra)
        assert await proto.lost is None
        server.close()

    run(loop, main())


def test_data_written_just_before_close_is_all_delivered(loop):
    async def main():
        server, transport, proto, server_proto = await tcp_pair()
        chunks = [payload(1024, seed=bytes([i % 256, i // 256])) for i in range(1000)]
        for chunk in chunks:
            transport.write(chunk)
        transport.close()
        await server_proto.eof
        assert server_proto.data == b"".join(chunks)
        assert await proto.lost is None
        server.close()

    run(loop, main())


def test_abort_discards_the_buffer_and_calls_connection_lost_none(loop):
    async def main():
        server, transport, proto, server_proto = await tcp_pair()
        server_proto.transport.pause_reading()
        shrink_buffers(transport.get_extra_info("socket"))
        written = await fill_until_buffered(transport)
        buffered = transport.get_write_buffer_size()
        assert buffered > 0
        transport.abort()
        assert transport.is_closing()
        assert await proto.lost is None
        server_proto.transport.resume_reading()
        await server_proto.lost
        # what the kernel had already taken may arrive; the user-space buffer never does
        assert len(server_proto.data) <= written - buffered
        server.close()

    run(loop, main())


def test_write_after_close_is_ignored(loop):
    async def main():
        server, transport, proto, server_proto = await tcp_pair()
        transport.write(b"before")
        await server_proto.wait_bytes(6)
        transport.close()
        # asyncio logs "socket.send() raised exception." after a few of these; never raises
        for _ in range(10):
            transport.write(b"after close")
        transport.writelines([b"after close"])
        await server_proto.eof
        await proto.lost
        for _ in range(10):
            transport.write(b"after connection_lost")
        assert server_proto.data == b"before"
        server.close()

    run(loop, main())


def test_write_after_peer_reset_is_ignored(loop):
    async def main():
        server, transport, proto, server_proto = await tcp_pair()
        set_linger_zero(server_proto.transport.get_extra_info("socket"))
        server_proto.transport.abort()
        await proto.lost
        for _ in range(10):
            transport.write(b"into the void")
        server.close()

    run(loop, main())


# --- reading: pause_reading / resume_reading ---------------------------------------------------


def test_pause_reading_stops_data_received_until_resume_reading(loop):
    async def main():
        server, transport, proto, server_proto = await tcp_pair()
        assert transport.is_reading() is True
        transport.pause_reading()
        assert transport.is_reading() is False
        server_proto.transport.write(b"held back")
        assert server_proto.transport.get_write_buffer_size() == 0  # it is in our kernel buffer
        # whole round trips on another connection: the loop polls many times meanwhile
        echo_server, port = await start_echo_server()
        for _ in range(3):
            assert await echo_once(port, b"x") == b"x"
        assert proto.data == b""
        assert "data_received" not in proto.events
        transport.resume_reading()
        assert transport.is_reading() is True
        assert await proto.wait_bytes(9) == b"held back"
        transport.close()
        echo_server.close()
        server.close()

    run(loop, main())


def test_pause_reading_also_holds_back_eof(loop):
    async def main():
        server, transport, proto, server_proto = await tcp_pair()
        transport.pause_reading()
        server_proto.transport.write(b"data")
        server_proto.transport.write_eof()
        echo_server, port = await start_echo_server()
        assert await echo_once(port, b"x") == b"x"
        assert proto.events == ["connection_made"]
        transport.resume_reading()
        assert await proto.lost is None
        assert proto.callbacks() == [
            "connection_made",
            "data_received",
            "eof_received",
            "connection_lost",
        ]
        echo_server.close()
        server.close()

    run(loop, main())


def test_pause_and_resume_reading_twice_are_harmless(loop):
    async def main():
        server, transport, proto, server_proto = await tcp_pair()
        transport.pause_reading()
        transport.pause_reading()
        assert transport.is_reading() is False
        transport.resume_reading()
        transport.resume_reading()
        assert transport.is_reading() is True
        server_proto.transport.write(b"ok")
        assert await proto.wait_bytes(2) == b"ok"
        transport.close()
        server.close()

    run(loop, main())


def test_is_reading_is_false_after_close(loop):
    async def main():
        server, transport, proto, server_proto = await tcp_pair()
        transport.close()
        assert transport.is_reading() is False
        transport.resume_reading()  # no effect on a closing transport
        assert transport.is_reading() is False
        await proto.lost
        server.close()

    run(loop, main())


# --- write flow control ------------------------------------------------------------------------


def test_default_write_buffer_limits_are_16k_and_64k(loop):
    async def main():
        server, transport, proto, server_proto = await tcp_pair()
        assert transport.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
        assert transport.get_write_buffer_size() == 0
        transport.close()
        server.close()

    run(loop, main())


@pytest.mark.parametrize(
    "kwargs, limits",
    [
        ({"high": 1000}, (250, 1000)),  # low defaults to high // 4
        ({"low": 1000}, (1000, 4000)),  # high defaults to 4 * low
        ({"high": 5000, "low": 10}, (10, 5000)),
        ({"high": 0, "low": 0}, (0, 0)),
        ({}, (16 * 1024, 64 * 1024)),
    ],
    ids=["high_only", "low_only", "both", "zero", "defaults"],
)
def test_set_write_buffer_limits_sets_the_marks(loop, kwargs, limits):
    async def main():
        server, transport, proto, server_proto = await tcp_pair()
        transport.set_write_buffer_limits(**kwargs)
        assert transport.get_write_buffer_limits() == limits
        transport.close()
        server.close()

    run(loop, main())


@pytest.mark.parametrize(
    "kwargs",
    [{"high": 1, "low": 2}, {"low": -1}, {"high": -1}],
    ids=["high_below_low", "negative_low", "negative_high"],
)
def test_set_write_buffer_limits_rejects_bad_values(loop, kwargs):
    async def main():
        server, transport, proto, server_proto = await tcp_pair()
        with pytest.raises(
            ValueError, match=r"high \(-?\d+\) must be >= low \(-?\d+\) must be >= 0"
        ):
            transport.set_write_buffer_limits(**kwargs)
        transport.close()
        server.close()

    run(loop, main())


def test_pause_writing_and_resume_writing_are_called_at_the_marks(loop):
    async def main():
        server, transport, proto, server_proto = await tcp_pair()
        server_proto.transport.pause_reading()
        shrink_buffers(transport.get_extra_info("socket"))
        high, low = 64 * 1024, 16 * 1024
        transport.set_write_buffer_limits(high=high, low=low)
        chunk = payload(16 * 1024)
        written = 0
        while not proto.paused.done():  # pause_writing is called from inside write()
            assert written < 64 * 1024 * 1024, "pause_writing never called"
            assert transport.get_write_buffer_size() <= high
            transport.write(chunk)
            written += len(chunk)
        assert proto.paused.result() > high
        assert transport.get_write_buffer_size() > high
        server_proto.transport.resume_reading()
        assert await proto.resumed <= low
        assert proto.events.count("pause_writing") == 1
        assert proto.events.count("resume_writing") == 1
        assert proto.events.index("pause_writing") < proto.events.index("resume_writing")
        assert len(await server_proto.wait_bytes(written)) == written
        transport.close()
        server.close()

    run(loop, main())


def test_lowering_the_high_mark_below_the_buffer_pauses_at_once(loop):
    async def main():
        server, transport, proto, server_proto = await tcp_pair()
        server_proto.transport.pause_reading()
        shrink_buffers(transport.get_extra_info("socket"))
        transport.set_write_buffer_limits(high=64 * 1024 * 1024)
        await fill_until_buffered(transport)
        assert not proto.paused.done()
        transport.set_write_buffer_limits(high=0)
        assert proto.paused.done()
        server_proto.transport.resume_reading()
        assert await proto.resumed == 0
        transport.close()
        server.close()

    run(loop, main())


# --- BufferedProtocol --------------------------------------------------------------------------


class RecordingBufferedProtocol(asyncio.BufferedProtocol):
    """Reads into a fixed buffer of `size` bytes; logs callbacks like RecordingProtocol."""

    def __init__(self, size):
        self.buffer = bytearray(size)
        self.data = bytearray()
        self.events = []
        self.hints = []
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.events.append("connection_made")
        self.transport = transport

    def get_buffer(self, sizehint):
        self.events.append("get_buffer")
        self.hints.append(sizehint)
        return self.buffer

    def buffer_updated(self, nbytes):
        self.events.append("buffer_updated")
        assert 0 < nbytes <= len(self.buffer)
        self.data += self.buffer[:nbytes]

    def eof_received(self):
        self.events.append("eof_received")

    def connection_lost(self, exc):
        self.events.append("connection_lost")
        self.lost.set_result(exc)


@pytest.mark.parametrize("size", [64 * 1024, 7], ids=["64KiB_buffer", "7_byte_buffer"])
def test_buffered_protocol_receives_everything_through_get_buffer(loop, size):
    async def main():
        accepted = Accepted()
        server = await loop.create_server(accepted, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, proto = await loop.create_connection(
            lambda: RecordingBufferedProtocol(size), "127.0.0.1", port
        )
        server_proto = await accepted.next()
        await server_proto.made
        data = payload(1024 * 1024 if size > 7 else 100 * 1024)
        server_proto.transport.write(data)
        server_proto.transport.write_eof()
        assert await proto.lost is None
        assert proto.data == data
        assert "data_received" not in proto.events
        assert proto.events[0] == "connection_made"
        assert proto.events[-2:] == ["eof_received", "connection_lost"]
        # every buffer_updated directly follows the get_buffer that handed out the buffer;
        # asyncio also asks for a buffer for the read that then finds EOF
        updates = [i for i, event in enumerate(proto.events) if event == "buffer_updated"]
        assert updates
        assert all(proto.events[i - 1] == "get_buffer" for i in updates)
        assert all(isinstance(hint, int) for hint in proto.hints)
        server.close()

    run(loop, main())


# --- faults ------------------------------------------------------------------------------------


def test_peer_reset_gives_connection_reset_error_and_others_keep_working(loop):
    errors = []
    loop.set_exception_handler(lambda lp, context: errors.append(context))

    async def main():
        server, transport, proto, server_proto = await tcp_pair()
        echo_server, echo_port = await start_echo_server()
        other, other_proto = await loop.create_connection(RecordingProtocol, "127.0.0.1", echo_port)
        set_linger_zero(server_proto.transport.get_extra_info("socket"))
        server_proto.transport.abort()  # close with SO_LINGER 0: the kernel sends RST
        exc = await proto.lost
        assert isinstance(exc, ConnectionResetError)
        assert exc.errno == errno.ECONNRESET  # code that reads exc.errno sees it, as on asyncio
        assert transport.is_closing()
        assert proto.events.count("connection_lost") == 1
        # an OSError on a transport is not reported to the exception handler
        assert errors == []
        other.write(b"unaffected")
        assert await other_proto.wait_bytes(10) == b"unaffected"
        other.close()
        echo_server.close()
        server.close()

    run(loop, main())


def test_large_transfer_arrives_intact_and_in_order(loop):
    async def main():
        server, port = await start_echo_server()
        transport, proto = await loop.create_connection(RecordingProtocol, "127.0.0.1", port)
        data = payload(8 * 1024 * 1024)
        view = memoryview(data)
        for start in range(0, len(data), 1024 * 1024):
            transport.write(view[start : start + 1024 * 1024])
        transport.write_eof()
        assert await proto.lost is None
        assert len(proto.data) == len(data)
        assert proto.data == data
        server.close()

    run(loop, main(), timeout=30)


def test_no_fd_leak_after_many_connections(loop):
    async def main():
        before = fd_count()
        server, port = await start_echo_server()
        for batch in range(10):
            replies = await asyncio.gather(
                *(echo_once(port, b"msg %d %d" % (batch, i)) for i in range(20))
            )
            assert replies == [b"msg %d %d" % (batch, i) for i in range(20)]
        server.close()
        await server.wait_closed()
        return before

    before = run(loop, main())
    assert fd_count() == before


def test_cancelled_create_connection_leaves_no_fd_and_no_stray_callbacks(loop):
    """A connect cancelled while in progress closes its socket and unregisters its fd, so a
    later connection that reuses the fd number gets only its own data."""

    async def main():
        # A listener that never accepts: once its accept queue is full, SYNs are dropped and
        # connects to it stay in progress.
        blackhole = socket.socket()
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(0)
        hole = blackhole.getsockname()
        filled = []
        for _ in range(8):
            try:
                t, _ = await asyncio.wait_for(loop.create_connection(asyncio.Protocol, *hole), 0.3)
            except TimeoutError:
                break
            filled.append(t)
        else:
            pytest.fail("connects to a full accept queue kept succeeding")

        server, port = await start_echo_server()
        before = fd_count()
        for i in range(20):
            task = asyncio.ensure_future(loop.create_connection(asyncio.Protocol, *hole))
            done, _ = await asyncio.wait([task], timeout=0.02)
            assert not done, "connect to a full accept queue completed"
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert fd_count() == before
            # a new connection very likely gets the fd number the cancelled one had
            assert await echo_once(port, b"reuse %d" % i) == b"reuse %d" % i
        assert fd_count() == before
        for t in filled:
            t.close()
        blackhole.close()
        server.close()

    run(loop, main(), timeout=30)
