"""Streams: `asyncio.open_connection` / `start_server` and their Unix variants on the loop.

Streams are stdlib code on top of the loop's transports; these tests check that they work
unchanged: echo, the read helpers, flow control through `drain()`, closing, EOF errors.
Every test runs on stock asyncio (the oracle) and on oxloop.
"""

import asyncio
import os
import socket
import tempfile

import pytest
from nethelpers import payload, run, shrink_buffers


@pytest.fixture
def sock_path():
    """A path for a Unix socket, short enough for sun_path (108 bytes)."""
    with tempfile.TemporaryDirectory(prefix="oxl-", dir="/tmp") as tmp:
        yield os.path.join(tmp, "s")


async def echo_handler(reader, writer):
    """Echo lines until EOF, then close."""
    while line := await reader.readline():
        writer.write(line)
        await writer.drain()
    writer.close()
    await writer.wait_closed()


def test_open_connection_and_start_server_echo(loop):
    async def main():
        server = await asyncio.start_server(echo_handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert isinstance(writer.transport, asyncio.Transport)
        writer.write(b"hello\n")
        await writer.drain()
        assert await reader.readline() == b"hello\n"
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_stream_read_helpers_split_the_byte_stream(loop):
    async def handler(reader, writer):
        writer.write(b"line one\nline two\nEXACT|until>>rest")
        writer.write_eof()
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main():
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await reader.readline() == b"line one\n"
        assert await reader.readuntil(b"\n") == b"line two\n"
        assert await reader.readexactly(6) == b"EXACT|"
        assert await reader.readuntil(b">>") == b"until>>"
        assert await reader.read() == b"rest"
        assert reader.at_eof()
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
        server.close()

    run(loop, main())


def test_readexactly_at_eof_raises_incomplete_read_error_with_the_partial_data(loop):
    async def handler(reader, writer):
        writer.write(b"short")
        writer.close()

    async def main():
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        with pytest.raises(asyncio.IncompleteReadError) as info:
            await reader.readexactly(10)
        assert info.value.partial == b"short"
        assert info.value.expected == 10
        writer.close()
        await writer.wait_closed()
        server.close()

    run(loop, main())


def test_readuntil_at_eof_raises_incomplete_read_error(loop):
    async def handler(reader, writer):
        writer.write(b"no separator here")
        writer.close()

    async def main():
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        with pytest.raises(asyncio.IncompleteReadError) as info:
            await reader.readuntil(b"\n")
        assert info.value.partial == b"no separator here"
        writer.close()
        await writer.wait_closed()
        server.close()

    run(loop, main())


def test_drain_waits_for_a_slow_reader_and_bounds_the_buffer(loop):
    async def main():
        may_read = asyncio.Event()
        received = bytearray()

        async def handler(reader, writer):
            shrink_buffers(writer.get_extra_info("socket"))
            await may_read.wait()
            while chunk := await reader.read(4096):
                received.extend(chunk)
            writer.close()

        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        shrink_buffers(writer.get_extra_info("socket"))
        high = 64 * 1024
        writer.transport.set_write_buffer_limits(high=high)
        chunk = payload(64 * 1024)
        sent = 0
        # While the server does not read, fill the buffer well past the high mark ...
        while writer.transport.get_write_buffer_size() <= 4 * high:
            assert sent < 64 * 1024 * 1024, "the peer kept taking data it does not read"
            writer.write(chunk)
            sent += len(chunk)
        # ... then drain() waits, however many times the loop polls meanwhile.
        drain = asyncio.ensure_future(writer.drain())
        other = await asyncio.start_server(echo_handler, "127.0.0.1", 0)
        r2, w2 = await asyncio.open_connection("127.0.0.1", other.sockets[0].getsockname()[1])
        for n in range(3):
            w2.write(b"round trip %d\n" % n)
            assert await r2.readline() == b"round trip %d\n" % n
        assert not drain.done()
        w2.close()
        other.close()
        may_read.set()
        await drain  # the reader catches up: drain() returns
        assert writer.transport.get_write_buffer_size() <= high
        # Go on writing with drain() after each write: the buffer stays bounded.
        for _ in range(32):
            writer.write(chunk)
            sent += len(chunk)
            await writer.drain()
            assert writer.transport.get_write_buffer_size() <= high
        writer.write_eof()
        assert await reader.read() == b""  # the server closes after reading everything
        assert len(received) == sent
        writer.close()
        await writer.wait_closed()
        server.close()

    run(loop, main(), timeout=30)


def test_writer_close_and_wait_closed_send_eof_to_the_peer(loop):
    async def main():
        peer_saw = asyncio.get_running_loop().create_future()

        async def handler(reader, writer):
            peer_saw.set_result(await reader.read())
            writer.close()

        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"last words")
        assert not writer.is_closing()
        writer.close()
        assert writer.is_closing()
        await writer.wait_closed()
        assert writer.transport.is_closing()
        assert await peer_saw == b"last words"
        server.close()

    run(loop, main())


def test_writer_get_extra_info_reads_the_transport(loop):
    async def main():
        server = await asyncio.start_server(echo_handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert writer.get_extra_info("peername") == ("127.0.0.1", port)
        sock = writer.get_extra_info("socket")
        assert sock.getsockname() == writer.get_extra_info("sockname")
        writer.close()
        await writer.wait_closed()
        server.close()

    run(loop, main())


def test_open_connection_refused_raises_connection_refused_error(loop):
    async def main():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)

    run(loop, main())


def test_start_server_handles_many_clients_concurrently(loop):
    async def client(port, i):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        lines = [b"client %d line %d\n" % (i, n) for n in range(5)]
        for line in lines:
            writer.write(line)
        await writer.drain()
        got = [await reader.readline() for _ in lines]
        writer.close()
        await writer.wait_closed()
        return got == lines

    async def main():
        server = await asyncio.start_server(echo_handler, "127.0.0.1", 0, backlog=256)
        port = server.sockets[0].getsockname()[1]
        results = await asyncio.gather(*(client(port, i) for i in range(100)))
        assert all(results)
        server.close()

    run(loop, main())


def test_unix_streams_echo(loop, sock_path):
    async def main():
        server = await asyncio.start_unix_server(echo_handler, sock_path)
        reader, writer = await asyncio.open_unix_connection(sock_path)
        assert isinstance(writer.transport, asyncio.Transport)
        writer.write(b"over a unix socket\n")
        assert await reader.readline() == b"over a unix socket\n"
        writer.write_eof()
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_unix_streams_large_transfer_with_drain(loop, sock_path):
    async def handler(reader, writer):
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_unix_server(handler, sock_path)
        reader, writer = await asyncio.open_unix_connection(sock_path)
        data = payload(4 * 1024 * 1024)

        async def send():
            for start in range(0, len(data), 65536):
                writer.write(data[start : start + 65536])
                await writer.drain()
            writer.write_eof()

        sender = asyncio.ensure_future(send())
        assert await reader.read() == data
        await sender
        writer.close()
        await writer.wait_closed()
        server.close()

    run(loop, main(), timeout=30)
