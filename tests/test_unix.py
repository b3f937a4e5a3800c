"""Unix domain sockets: `loop.create_unix_server` and `loop.create_unix_connection`.

Echo over a path, what `get_extra_info` reports for Unix addresses, how an existing path is
handled (a stale socket file is replaced, a regular file is an error, as asyncio does), the
abstract namespace, and argument errors. Every test runs on stock asyncio and on oxloop.
"""

import asyncio
import errno
import os
import pathlib
import re
import socket
import stat
import sys
import tempfile

import pytest
from nethelpers import Accepted, EchoProtocol, RecordingProtocol, fd_count, run


@pytest.fixture
def sock_path():
    """A path for a Unix socket, short enough for sun_path (108 bytes)."""
    with tempfile.TemporaryDirectory(prefix="oxl-", dir="/tmp") as tmp:
        yield os.path.join(tmp, "s")


async def unix_echo(path, message):
    """Connect to `path`, send `message`, half-close, return what came back."""
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_unix_connection(RecordingProtocol, path)
    transport.write(message)
    transport.write_eof()
    await proto.lost
    return bytes(proto.data)


def test_create_unix_server_and_connection_echo(loop, sock_path):
    async def main():
        server = await loop.create_unix_server(EchoProtocol, sock_path)
        assert stat.S_ISSOCK(os.stat(sock_path).st_mode)
        transport, proto = await loop.create_unix_connection(RecordingProtocol, sock_path)
        assert isinstance(transport, asyncio.Transport)
        assert proto.events == ["connection_made"]
        transport.write(b"over unix")
        assert await proto.wait_bytes(9) == b"over unix"
        transport.close()
        assert await proto.lost is None
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_unix_server_side_transport_is_a_transport(loop, sock_path):
    async def main():
        accepted = Accepted()
        server = await loop.create_unix_server(accepted, sock_path)
        transport, _ = await loop.create_unix_connection(RecordingProtocol, sock_path)
        server_proto = await accepted.next()
        assert isinstance(await server_proto.made, asyncio.Transport)
        transport.close()
        server.close()

    run(loop, main())


def test_unix_get_extra_info_peername_and_sockname(loop, sock_path):
    async def main():
        accepted = Accepted()
        server = await loop.create_unix_server(accepted, sock_path)
        transport, _ = await loop.create_unix_connection(RecordingProtocol, sock_path)
        server_side = await (await accepted.next()).made
        assert transport.get_extra_info("peername") == sock_path
        assert transport.get_extra_info("sockname") == ""  # the client socket is unnamed
        assert server_side.get_extra_info("sockname") == sock_path
        assert server_side.get_extra_info("peername") == ""
        sock = transport.get_extra_info("socket")
        assert sock.family == socket.AF_UNIX
        assert sock.type == socket.SOCK_STREAM
        assert sock.fileno() >= 0
        assert server.sockets[0].getsockname() == sock_path
        transport.close()
        server.close()

    run(loop, main())


def test_unix_transport_half_close(loop, sock_path):
    async def main():
        accepted = Accepted(eof_result=True)
        server = await loop.create_unix_server(accepted, sock_path)
        transport, proto = await loop.create_unix_connection(RecordingProtocol, sock_path)
        server_proto = await accepted.next()
        await server_proto.made
        assert transport.can_write_eof() is True
        transport.write(b"request")
        transport.write_eof()
        await server_proto.eof
        server_proto.transport.write(b"reply")
        server_proto.transport.close()
        assert await proto.lost is None
        assert server_proto.data == b"request"
        assert proto.data == b"reply"
        server.close()

    run(loop, main())


def test_create_unix_server_accepts_a_path_like(loop, sock_path):
    async def main():
        server = await loop.create_unix_server(EchoProtocol, pathlib.Path(sock_path))
        assert await unix_echo(pathlib.Path(sock_path), b"pathlib") == b"pathlib"
        server.close()

    run(loop, main())


def test_create_unix_server_replaces_a_stale_socket_file(loop, sock_path):
    async def main():
        dead = socket.socket(socket.AF_UNIX)
        dead.bind(sock_path)
        dead.close()  # the file stays behind, as after a crashed server
        assert stat.S_ISSOCK(os.stat(sock_path).st_mode)
        server = await loop.create_unix_server(EchoProtocol, sock_path)
        assert await unix_echo(sock_path, b"replaced") == b"replaced"
        server.close()

    run(loop, main())


def test_create_unix_server_on_a_regular_file_raises_eaddrinuse(loop, sock_path):
    async def main():
        with open(sock_path, "w") as f:
            f.write("not a socket")
        with pytest.raises(OSError) as info:
            await loop.create_unix_server(EchoProtocol, sock_path)
        assert info.value.errno == errno.EADDRINUSE
        assert info.value.strerror == f"Address {sock_path!r} is already in use"
        with open(sock_path) as f:
            assert f.read() == "not a socket"  # left alone

    run(loop, main())


@pytest.mark.skipif(sys.version_info >= (3, 13), reason="3.13 unlinks it (cleanup_socket)")
def test_unix_server_close_leaves_the_socket_file(loop, sock_path):
    async def main():
        server = await loop.create_unix_server(EchoProtocol, sock_path)
        server.close()
        await server.wait_closed()
        assert stat.S_ISSOCK(os.stat(sock_path).st_mode)

    run(loop, main())


def test_abstract_namespace_server_and_connection(loop):
    name = f"\0oxloop-test-{os.getpid()}-{id(loop)}"

    async def main():
        server = await loop.create_unix_server(EchoProtocol, name)
        # Linux reports abstract addresses as bytes
        assert server.sockets[0].getsockname() == name.encode()
        transport, proto = await loop.create_unix_connection(RecordingProtocol, name)
        assert transport.get_extra_info("peername") == name.encode()
        transport.write(b"abstract")
        assert await proto.wait_bytes(8) == b"abstract"
        transport.close()
        server.close()

    run(loop, main())


def test_create_unix_connection_to_a_missing_path_raises_file_not_found(loop, sock_path):
    async def main():
        with pytest.raises(FileNotFoundError):
            await loop.create_unix_connection(asyncio.Protocol, sock_path)

    run(loop, main())


def test_create_unix_connection_to_a_stale_socket_file_raises_connection_refused(loop, sock_path):
    async def main():
        dead = socket.socket(socket.AF_UNIX)
        dead.bind(sock_path)
        dead.close()
        with pytest.raises(ConnectionRefusedError):
            await loop.create_unix_connection(asyncio.Protocol, sock_path)

    run(loop, main())


def test_create_unix_server_and_connection_with_sock(loop, sock_path):
    async def main():
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(sock_path)
        server = await loop.create_unix_server(EchoProtocol, sock=listener)
        assert server.sockets[0].fileno() == listener.fileno()
        client = socket.socket(socket.AF_UNIX)
        client.connect(sock_path)
        transport, proto = await loop.create_unix_connection(RecordingProtocol, sock=client)
        assert transport.get_extra_info("socket").fileno() == client.fileno()
        transport.write(b"via sock=")
        assert await proto.wait_bytes(9) == b"via sock="
        transport.close()
        await proto.lost
        assert client.fileno() == -1
        server.close()
        await server.wait_closed()
        assert listener.fileno() == -1

    run(loop, main())


def test_unix_server_start_serving_false_then_start_serving(loop, sock_path):
    async def main():
        server = await loop.create_unix_server(EchoProtocol, sock_path, start_serving=False)
        assert server.is_serving() is False
        with pytest.raises(ConnectionRefusedError):  # bound, but listen() not called yet
            await loop.create_unix_connection(asyncio.Protocol, sock_path)
        await server.start_serving()
        assert server.is_serving() is True
        assert await unix_echo(sock_path, b"now serving") == b"now serving"
        server.close()

    run(loop, main())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"path": "PATH", "sock": "UNIX"}, "path and sock can not be specified at the same time"),
        ({}, "no path and sock were specified"),
        ({"sock": "TCP"}, "A UNIX Domain Stream Socket was expected, got <socket.socket"),
    ],
    ids=["path_and_sock", "nothing", "tcp_sock"],
)
def test_create_unix_connection_bad_arguments_raise_value_error(loop, sock_path, kwargs, message):
    async def main():
        with socket.socket(socket.AF_UNIX) as unix, socket.socket() as tcp:
            real = {"PATH": sock_path, "UNIX": unix, "TCP": tcp}
            real = {key: real[value] for key, value in kwargs.items()}
            with pytest.raises(ValueError, match=re.escape(message)):
                await loop.create_unix_connection(asyncio.Protocol, **real)

    run(loop, main())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"path": "PATH", "sock": "UNIX"}, "path and sock can not be specified at the same time"),
        ({}, "path was not specified, and no sock specified"),
        ({"sock": "TCP"}, "A UNIX Domain Stream Socket was expected, got <socket.socket"),
    ],
    ids=["path_and_sock", "nothing", "tcp_sock"],
)
def test_create_unix_server_bad_arguments_raise_value_error(loop, sock_path, kwargs, message):
    async def main():
        with socket.socket(socket.AF_UNIX) as unix, socket.socket() as tcp:
            real = {"PATH": sock_path, "UNIX": unix, "TCP": tcp}
            real = {key: real[value] for key, value in kwargs.items()}
            with pytest.raises(ValueError, match=re.escape(message)):
                await loop.create_unix_server(asyncio.Protocol, **real)

    run(loop, main())


def test_no_fd_leak_after_many_unix_connections(loop, sock_path):
    async def main():
        before = fd_count()
        server = await loop.create_unix_server(EchoProtocol, sock_path)
        for batch in range(5):
            replies = await asyncio.gather(
                *(unix_echo(sock_path, b"%d-%d" % (batch, i)) for i in range(20))
            )
            assert replies == [b"%d-%d" % (batch, i) for i in range(20)]
        server.close()
        await server.wait_closed()
        return before

    before = run(loop, main())
    assert fd_count() == before
