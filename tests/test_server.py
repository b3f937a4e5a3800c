"""TCP servers: `loop.create_server`, `asyncio.Server` and `loop.connect_accepted_socket`.

How a server listens (hosts, port 0, socket options, backlog, `sock=`), the whole Server API
(`start_serving`, `serve_forever`, `close`, `wait_closed`, `is_serving`, `sockets`, `get_loop`,
`async with`), and how it behaves under faults: running out of fds on accept, a protocol factory
that raises, many clients at once. Every test runs on stock asyncio (the oracle) and on oxloop.
"""

import asyncio
import errno
import gc
import re
import socket

import pytest
from nethelpers import (
    TIMEOUT,
    Accepted,
    EchoProtocol,
    RecordingProtocol,
    echo_once,
    fd_count,
    listen_backlog,
    lowest_free_fd,
    nofile_limit,
    run,
    start_echo_server,
)


def port_of(server):
    return server.sockets[0].getsockname()[1]


# --- listening ---------------------------------------------------------------------------------


def test_create_server_port_zero_binds_a_free_port(loop):
    async def main():
        server, port = await start_echo_server()
        assert port != 0
        assert server.sockets[0].getsockname() == ("127.0.0.1", port)
        assert await echo_once(port, b"hi") == b"hi"
        server.close()

    run(loop, main())


def test_create_server_listens_on_each_of_several_hosts(loop):
    async def main():
        server = await loop.create_server(EchoProtocol, ["127.0.0.1", "127.0.0.2"], 0)
        addrs = sorted(sock.getsockname() for sock in server.sockets)
        assert [host for host, _ in addrs] == ["127.0.0.1", "127.0.0.2"]
        for host, port in addrs:
            assert await echo_once(port, host.encode(), host=host) == host.encode()
        server.close()

    run(loop, main())


@pytest.mark.parametrize("reuse_address, expected", [(None, True), (True, True), (False, False)])
def test_create_server_reuse_address_sets_so_reuseaddr(loop, reuse_address, expected):
    async def main():
        server = await loop.create_server(
            asyncio.Protocol, "127.0.0.1", 0, reuse_address=reuse_address
        )
        value = server.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        assert bool(value) is expected  # on by default on Linux
        server.close()

    run(loop, main())


def test_create_server_reuse_port_lets_two_servers_share_a_port(loop):
    async def main():
        first = await loop.create_server(EchoProtocol, "127.0.0.1", 0, reuse_port=True)
        port = port_of(first)
        assert first.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) != 0
        second = await loop.create_server(EchoProtocol, "127.0.0.1", port, reuse_port=True)
        assert port_of(second) == port
        assert await echo_once(port, b"shared") == b"shared"
        first.close()
        second.close()

    run(loop, main())


def test_create_server_on_a_port_in_use_raises_eaddrinuse(loop):
    async def main():
        first, port = await start_echo_server()
        with pytest.raises(OSError) as info:
            await loop.create_server(EchoProtocol, "127.0.0.1", port)
        assert info.value.errno == errno.EADDRINUSE
        # 3.13 words the cause as str(exc).lower(): "[errno 98] address already in use".
        assert re.match(
            rf"\[Errno {errno.EADDRINUSE}\] error while attempting to bind on address "
            rf"\('127\.0\.0\.1', {port}\): (\[errno {errno.EADDRINUSE}\] )?address already in use",
            str(info.value),
        )
        first.close()

    run(loop, main())


@pytest.mark.parametrize("backlog, expected", [(None, 100), (37, 37)], ids=["default", "37"])
def test_create_server_backlog_is_given_to_listen(loop, backlog, expected):
    async def main():
        kwargs = {} if backlog is None else {"backlog": backlog}
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0, **kwargs)
        try:
            assert listen_backlog(port_of(server)) == expected
        except OSError as exc:
            pytest.skip(f"sock_diag netlink not available: {exc}")
        finally:
            server.close()

    run(loop, main())


def test_create_server_with_sock_serves_on_that_socket(loop):
    async def main():
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = await loop.create_server(EchoProtocol, sock=sock)
        assert server.sockets[0].fileno() == sock.fileno()
        assert server.sockets[0].getsockname() == sock.getsockname()
        assert await echo_once(sock.getsockname()[1], b"via sock=") == b"via sock="
        server.close()
        await server.wait_closed()
        assert sock.fileno() == -1  # the server owns the socket and closed it

    run(loop, main())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"host": "127.0.0.1", "port": 0, "sock": "SOCK"},
            "host/port and sock can not be specified at the same time",
        ),
        ({}, "Neither host/port nor sock were specified"),
        ({"sock": "DGRAM"}, "A Stream Socket was expected, got <socket.socket"),
        (
            {"host": "127.0.0.1", "port": 0, "ssl_handshake_timeout": 1.0},
            "ssl_handshake_timeout is only meaningful with ssl",
        ),
    ],
    ids=["host_and_sock", "nothing", "udp_sock", "handshake_timeout"],
)
def test_create_server_bad_arguments_raise_value_error(loop, kwargs, message):
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
                await loop.create_server(asyncio.Protocol, **real)

    run(loop, main())


# --- the Server API ----------------------------------------------------------------------------


def test_server_is_an_abstract_server(loop):
    async def main():
        server, _ = await start_echo_server()
        assert isinstance(server, asyncio.AbstractServer)
        assert server.get_loop() is loop
        assert server.is_serving() is True
        server.close()

    run(loop, main())


def test_server_sockets_are_socket_like_and_empty_after_close(loop):
    async def main():
        server, port = await start_echo_server()
        sockets = server.sockets
        assert isinstance(sockets, tuple) and len(sockets) == 1
        sock = sockets[0]
        assert sock.getsockname() == ("127.0.0.1", port)
        assert sock.family == socket.AF_INET
        assert sock.type == socket.SOCK_STREAM
        assert sock.fileno() >= 0
        server.close()
        assert server.sockets == ()

    run(loop, main())


def test_start_serving_false_does_not_listen_until_start_serving(loop):
    async def main():
        accepted = Accepted()
        server = await loop.create_server(accepted, "127.0.0.1", 0, start_serving=False)
        port = port_of(server)
        assert server.is_serving() is False
        # asyncio binds at once but calls listen() only in start_serving(): connects are refused
        with pytest.raises(ConnectionRefusedError):
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        await server.start_serving()
        assert server.is_serving() is True
        await server.start_serving()  # a second call does nothing
        transport, _ = await loop.create_connection(RecordingProtocol, "127.0.0.1", port)
        assert isinstance(await (await accepted.next()).made, asyncio.Transport)
        transport.close()
        server.close()

    run(loop, main())


def test_server_close_stops_accepting(loop):
    async def main():
        server, port = await start_echo_server()
        server.close()
        assert server.is_serving() is False
        with pytest.raises(ConnectionRefusedError):
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        await server.wait_closed()
        server.close()  # closing again does nothing

    run(loop, main())


def test_async_with_server_closes_it_on_exit(loop):
    async def main():
        server, port = await start_echo_server()
        async with server as entered:
            assert entered is server
            assert await echo_once(port, b"inside") == b"inside"
        assert server.is_serving() is False
        assert server.sockets == ()
        with pytest.raises(ConnectionRefusedError):
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)

    run(loop, main())


def test_serve_forever_serves_until_cancelled_then_closes_the_server(loop):
    async def main():
        server, port = await start_echo_server()
        task = asyncio.ensure_future(server.serve_forever())
        assert await echo_once(port, b"while serving") == b"while serving"
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert server.is_serving() is False
        assert server.sockets == ()

    run(loop, main())


def test_serve_forever_starts_a_server_created_with_start_serving_false(loop):
    async def main():
        server = await loop.create_server(EchoProtocol, "127.0.0.1", 0, start_serving=False)
        task = asyncio.ensure_future(server.serve_forever())
        await asyncio.sleep(0)  # let serve_forever() run up to its wait
        assert server.is_serving() is True
        assert await echo_once(port_of(server), b"started") == b"started"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(loop, main())


def test_server_close_ends_a_pending_serve_forever_with_cancelled_error(loop):
    async def main():
        server, _ = await start_echo_server()
        task = asyncio.ensure_future(server.serve_forever())
        await asyncio.sleep(0)
        server.close()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert server.is_serving() is False

    run(loop, main())


def test_serve_forever_twice_raises_runtime_error(loop):
    async def main():
        server, _ = await start_echo_server()
        task = asyncio.ensure_future(server.serve_forever())
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="is already being awaited on serve_forever()"):
            await server.serve_forever()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(loop, main())


def test_serve_forever_on_a_closed_server_raises_runtime_error(loop):
    async def main():
        server, _ = await start_echo_server()
        server.close()
        await server.wait_closed()
        with pytest.raises(RuntimeError, match=r"server .* is closed"):
            await server.serve_forever()

    run(loop, main())


# --- accepted connections ----------------------------------------------------------------------


def test_closing_the_server_does_not_close_accepted_connections(loop):
    async def main():
        server, port = await start_echo_server()
        transport, proto = await loop.create_connection(RecordingProtocol, "127.0.0.1", port)
        transport.write(b"first")
        await proto.wait_bytes(5)
        server.close()
        transport.write(b" second")
        assert await proto.wait_bytes(12) == b"first second"
        assert not proto.lost.done()
        transport.close()
        await proto.lost
        await server.wait_closed()

    run(loop, main())


def test_no_fd_left_after_wait_closed_and_closing_all_transports(loop):
    async def main():
        before = fd_count()
        accepted = Accepted()
        server = await loop.create_server(accepted, "127.0.0.1", 0)
        port = port_of(server)
        clients = [
            await loop.create_connection(RecordingProtocol, "127.0.0.1", port) for _ in range(20)
        ]
        server_protos = [await accepted.next() for _ in clients]
        server.close()
        for transport, _ in clients:
            transport.close()
        for proto in server_protos:
            proto.transport.close()
        # 3.12.1+ waits here until the server's connections are gone; 3.11 returns at once.
        await server.wait_closed()
        for _, proto in clients:
            await proto.lost
        for proto in server_protos:
            await proto.lost
        return before

    before = run(loop, main())
    assert fd_count() == before


def test_many_concurrent_clients_each_get_their_own_echo(loop):
    async def main():
        server, port = await start_echo_server(backlog=512)
        messages = [b"client %03d " % i * (i + 1) for i in range(200)]
        replies = await asyncio.gather(*(echo_once(port, m) for m in messages))
        assert replies == messages
        server.close()

    run(loop, main(), timeout=30)


def test_accepted_protocol_factory_is_called_once_per_connection(loop):
    async def main():
        accepted = Accepted()
        server = await loop.create_server(accepted, "127.0.0.1", 0)
        transports = [
            (await loop.create_connection(RecordingProtocol, "127.0.0.1", port_of(server)))[0]
            for _ in range(3)
        ]
        for _ in transports:
            proto = await accepted.next()
            assert await proto.made is proto.transport
        assert len(accepted.protocols) == 3
        assert len({id(p) for p in accepted.protocols}) == 3
        for t in transports:
            t.close()
        server.close()

    run(loop, main())


@pytest.mark.parametrize("debug", [False, True], ids=["nodebug", "debug"])
def test_protocol_factory_error_drops_that_connection_and_server_keeps_serving(loop, debug):
    reports = []
    # keep no reference to the exception: its traceback would keep the dropped socket open
    loop.set_exception_handler(
        lambda lp, context: reports.append((context["message"], type(context.get("exception"))))
    )
    loop.set_debug(debug)
    calls = []

    def factory():
        calls.append(1)
        if len(calls) == 1:
            raise ZeroDivisionError("factory failed")
        return EchoProtocol()

    async def main():
        server = await loop.create_server(factory, "127.0.0.1", 0)
        port = port_of(server)
        transport, proto = await loop.create_connection(RecordingProtocol, "127.0.0.1", port)
        # The server drops the connection it could not make a protocol for. Stock asyncio 3.13
        # in debug mode leaves the socket to the garbage collector (a reference cycle through
        # the reported exception), so collect while waiting.
        while not proto.lost.done():
            gc.collect()
            await asyncio.sleep(0.01)
        assert await echo_once(port, b"next one") == b"next one"
        server.close()

    run(loop, main())
    # asyncio reports a failed protocol factory only in debug mode
    if debug:
        assert reports == [
            ("Error on transport creation for incoming connection", ZeroDivisionError)
        ]
    else:
        assert reports == []


def test_emfile_on_accept_is_reported_and_the_server_keeps_serving(loop):
    errors = []
    reported = loop.create_future()

    def handler(lp, context):
        errors.append(context)
        if not reported.done():
            reported.set_result(None)

    loop.set_exception_handler(handler)

    async def main():
        accepted = Accepted()
        server = await loop.create_server(accepted, "127.0.0.1", 0)
        port = port_of(server)
        client = socket.socket()
        client.setblocking(False)
        # No fd number is free below the limit: the server's accept() fails with EMFILE.
        with nofile_limit(lowest_free_fd()):
            assert client.connect_ex(("127.0.0.1", port)) in (0, errno.EINPROGRESS)
            await asyncio.wait_for(asyncio.shield(reported), TIMEOUT)
        # asyncio keeps trying accept() up to `backlog` times in that tick, reporting each
        for context in errors:
            assert context["message"] == "socket.accept() out of system resource"
            assert context["exception"].errno == errno.EMFILE
        # fds are available again: the server accepts the waiting connection (asyncio retries
        # after a 1 s back-off) and keeps serving
        proto = await accepted.next()
        await proto.made
        transport, _ = await loop.create_connection(RecordingProtocol, sock=client)
        transport.write(b"after EMFILE")
        assert await proto.wait_bytes(12) == b"after EMFILE"
        assert server.is_serving()
        transport.close()
        server.close()

    run(loop, main())


# --- connect_accepted_socket -------------------------------------------------------------------


def test_connect_accepted_socket_wraps_a_socket_accepted_elsewhere(loop):
    async def main():
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            client_sock = socket.create_connection(listener.getsockname())
            conn, _ = listener.accept()
        transport, proto = await loop.connect_accepted_socket(EchoProtocol, conn)
        assert isinstance(transport, asyncio.Transport)
        assert isinstance(proto, EchoProtocol)
        assert transport.get_extra_info("socket").fileno() == conn.fileno()
        assert transport.get_extra_info("peername") == client_sock.getsockname()
        client, client_proto = await loop.create_connection(RecordingProtocol, sock=client_sock)
        client.write(b"accepted elsewhere")
        client.write_eof()
        assert await client_proto.lost is None
        assert client_proto.data == b"accepted elsewhere"
        assert conn.fileno() == -1  # the echo side closed after EOF, closing the socket

    run(loop, main())


def test_connect_accepted_socket_rejects_a_non_stream_socket(loop):
    async def main():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            with pytest.raises(ValueError, match="A Stream Socket was expected, got"):
                await loop.connect_accepted_socket(asyncio.Protocol, udp)

    run(loop, main())
