"""Writes at the edges: 0 bytes, 100 MiB at once, and objects that are not bytes-like.

For stream transports (`write`, `writelines`), datagram transports (`sendto`) and
`sock_sendall`: an empty write sends nothing and changes nothing (3.13 sends an empty datagram),
100 MiB at once arrives whole and in order at a peer that reads it all and is freed afterwards,
and a non-bytes object raises stock asyncio's TypeError, leaving the transport usable.
"""

import asyncio
import os
import random
import socket
import sys
import tempfile
import zlib

import pytest
from nethelpers import RecordingProtocol, fd_count, run

pytestmark = pytest.mark.timeout(60)

BIG = 100 * 1024 * 1024


def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


async def _stream_pair(loop, server_protocol=RecordingProtocol):
    """A client transport and the server-side protocol of the same connection."""
    made = loop.create_future()

    def factory():
        proto = server_protocol()
        made.set_result(proto)
        return proto

    server = await loop.create_server(factory, "127.0.0.1", 0)
    transport, client = await loop.create_connection(
        RecordingProtocol, *server.sockets[0].getsockname()
    )
    peer = await asyncio.wait_for(made, 10)
    server.close()
    return transport, client, peer


class HashingProtocol(asyncio.Protocol):
    """Reads everything, keeping only a running CRC-32 and the byte count."""

    def __init__(self):
        self.crc = 0
        self.count = 0
        self.lost = asyncio.get_running_loop().create_future()

    def data_received(self, data):
        self.crc = zlib.crc32(data, self.crc)
        self.count += len(data)

    def connection_lost(self, exc):
        self.lost.set_result(exc)


# --- 0 bytes ---------------------------------------------------------------------------------


def test_empty_writes_send_nothing_and_leave_the_transport_open(loop):
    handler_calls = []
    loop.set_exception_handler(lambda lp, ctx: handler_calls.append(ctx))

    async def main():
        transport, _, peer = await _stream_pair(loop)
        transport.write(b"")
        transport.write(bytearray())
        transport.write(memoryview(b""))
        transport.writelines([])
        transport.writelines([b"", bytearray()])
        sizes = transport.get_write_buffer_size()
        transport.write(b"after")
        received = await peer.wait_bytes(5)
        closing = transport.is_closing()
        transport.close()
        return sizes, received, closing, peer.callbacks()

    sizes, received, closing, callbacks = run(loop, main())
    assert sizes == 0
    assert received == b"after"
    assert not closing
    assert callbacks == ["connection_made", "data_received"]
    assert handler_calls == []


def test_sock_sendall_of_nothing_returns_at_once(loop):
    async def main():
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        with a, b:
            first = await loop.sock_sendall(a, b"")
            await loop.sock_sendall(a, memoryview(b""))
            await loop.sock_sendall(a, b"x")
            return first, await loop.sock_recv(b, 10)

    assert run(loop, main()) == (None, b"x")


def test_empty_datagram_is_sent_from_3_13_on(loop):
    # 3.13 sends a zero-length datagram for sendto(b""); earlier versions send nothing.
    async def main():
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        receiver.bind(("127.0.0.1", 0))
        receiver.setblocking(False)
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=receiver.getsockname()
        )
        transport.sendto(b"")
        transport.sendto(bytearray())
        transport.sendto(b"x")
        got = []
        while not got or got[-1] != b"x":
            got.append(await asyncio.wait_for(loop.sock_recv(receiver, 100), 10))
        transport.close()
        receiver.close()
        return got

    expected = [b"", b"", b"x"] if sys.version_info >= (3, 13) else [b"x"]
    assert run(loop, main()) == expected


# --- 100 MiB at once -------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["write", "writelines"])
def test_100_mib_at_once_arrives_whole_in_order_and_is_freed(loop, method):
    before_fds = fd_count()
    baseline = _rss()
    data = random.Random(12).randbytes(BIG)
    digest = zlib.crc32(data)

    async def main():
        transport, _, peer = await _stream_pair(loop, HashingProtocol)
        if method == "write":
            transport.write(data)
        else:
            third = BIG // 3
            transport.writelines([data[:third], memoryview(data)[third:]])
        transport.close()  # after the buffered data is sent
        while peer.count < BIG:
            await asyncio.sleep(0.01)
        transport.get_extra_info("socket")  # the socket is still described after close
        await asyncio.wait_for(peer.lost, 30)
        return peer.count, peer.crc

    count, received = run(loop, main(), timeout=45)
    assert count == BIG
    assert received == digest
    data = None  # the last reference: what stays resident now is what the loop kept
    assert fd_count() == before_fds
    assert _rss() < baseline + 32 * 1024 * 1024  # the write buffer is gone


def test_sock_sendall_of_100_mib_arrives_whole_and_in_order(loop):
    baseline = _rss()
    data = random.Random(13).randbytes(BIG)
    digest = zlib.crc32(data)

    async def main():
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        with a, b:

            async def read_all():
                crc, n, buf = 0, 0, bytearray(1 << 20)
                while n < BIG:
                    got = await loop.sock_recv_into(b, buf)
                    crc = zlib.crc32(memoryview(buf)[:got], crc)
                    n += got
                return n, crc

            reader = asyncio.ensure_future(read_all())
            await loop.sock_sendall(a, data)
            return await asyncio.wait_for(reader, 30)

    assert run(loop, main(), timeout=45) == (BIG, digest)
    data = None  # the last reference: what stays resident now is what the loop kept
    assert _rss() < baseline + 32 * 1024 * 1024


def test_100_mib_datagram_goes_to_error_received_and_the_transport_stays_open(loop):
    errors = []

    class Proto(asyncio.DatagramProtocol):
        def error_received(self, exc):
            errors.append(exc)

    async def main():
        transport, _ = await loop.create_datagram_endpoint(Proto, local_addr=("127.0.0.1", 0))
        own = transport.get_extra_info("sockname")
        transport.sendto(bytes(BIG), own)
        closing = transport.is_closing()
        transport.close()
        return closing

    assert run(loop, main()) is False
    assert [type(e) for e in errors] == [OSError]
    assert errors[0].errno == 90  # EMSGSIZE


# --- not bytes-like --------------------------------------------------------------------------

NOT_BYTES = ["text", 5, None, [b"x"], {"a": 1}]


@pytest.mark.parametrize("bad", NOT_BYTES, ids=lambda b: type(b).__name__)
def test_write_of_non_bytes_raises_type_error_and_the_transport_stays_usable(loop, bad):
    async def main():
        transport, _, peer = await _stream_pair(loop)
        with pytest.raises(TypeError) as write_error:
            transport.write(bad)
        with pytest.raises(TypeError) as writelines_error:
            transport.writelines([b"a", bad])
        transport.write(b"ok")
        received = await peer.wait_bytes(2)
        transport.close()
        return str(write_error.value), str(writelines_error.value), received

    write_msg, writelines_msg, received = run(loop, main())
    name = type(bad).__name__
    assert write_msg == f"data argument must be a bytes-like object, not '{name}'"
    if sys.version_info >= (3, 12):
        # asyncio 3.12+ takes a memoryview of each item
        assert writelines_msg == f"memoryview: a bytes-like object is required, not '{name}'"
    else:
        assert writelines_msg == f"sequence item 1: expected a bytes-like object, {name} found"
    assert received == b"ok"  # nothing of the failed writes went out


@pytest.mark.parametrize("bad", NOT_BYTES, ids=lambda b: type(b).__name__)
def test_sendto_and_sock_sendall_of_non_bytes_raise_type_error(loop, bad):
    async def main():
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
        )
        with pytest.raises(TypeError) as sendto_error:
            transport.sendto(bad, transport.get_extra_info("sockname"))
        closing = transport.is_closing()
        transport.close()
        a, b = socket.socketpair()
        a.setblocking(False)
        with a, b, pytest.raises(TypeError) as sendall_error:
            await loop.sock_sendall(a, bad)
        return str(sendto_error.value), closing, str(sendall_error.value)

    sendto_msg, closing, sendall_msg = run(loop, main())
    name = type(bad).__name__
    assert sendto_msg == f"data argument must be a bytes-like object, not '{name}'"
    assert not closing
    assert sendall_msg == f"a bytes-like object is required, not '{name}'"


@pytest.mark.oxloop_only(
    "a non-contiguous memoryview is not bytes-like (no C-contiguous buffer): oxloop's write() "
    "refuses it at the call, as sock_sendall does on both loops; stock asyncio accepts it, "
    "then its send fails and it closes the transport with a 'Fatal write error'"
)
def test_write_of_a_non_contiguous_memoryview_raises_buffer_error_at_the_call(loop):
    async def main():
        transport, _, peer = await _stream_pair(loop)
        with pytest.raises(BufferError):
            transport.write(memoryview(b"abcd")[::2])
        transport.write(b"ok")
        received = await peer.wait_bytes(2)
        closing = transport.is_closing()
        transport.close()
        return received, closing

    assert run(loop, main()) == (b"ok", False)


def test_queued_datagrams_count_toward_the_write_buffer_as_asyncio_counts_them(loop):
    # 3.13 counts an 8-byte header per queued datagram, and queues empty ones too. A Unix
    # datagram socket connected to a named one that does not read fills up and would block.
    async def main():
        with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
            receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            receiver.bind(os.path.join(tmp, "r"))
            transport, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, remote_addr=receiver.getsockname(), family=socket.AF_UNIX
            )
            for _ in range(10_000):  # until the receiver's queue is full and one datagram waits
                transport.sendto(b"x")
                if transport.get_write_buffer_size():
                    break
            one = transport.get_write_buffer_size()
            transport.sendto(b"")
            transport.sendto(b"abc")
            sizes = one, transport.get_write_buffer_size()
            transport.abort()
            receiver.close()
            return sizes

    one, more = run(loop, main())
    if sys.version_info >= (3, 13):
        assert (one, more) == (1 + 8, 1 + 8 + 8 + 3 + 8)
    else:
        assert (one, more) == (1, 1 + 3)


def test_write_that_must_wait_after_the_loop_closed_raises_and_buffers_nothing(loop):
    """A write the socket cannot take at once needs the loop to watch for writability: after
    loop.close() there is no loop to do it, and asyncio raises RuntimeError (from its
    add_writer) instead of queueing bytes that could never leave. What the kernel took at once
    is sent; nothing is buffered."""
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    transport, _ = loop.run_until_complete(loop.create_connection(asyncio.Protocol, sock=ours))
    loop.close()
    transport.write(b"")  # nothing to send: nothing to wait for
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        transport.write(b"x" * (64 << 20))
    assert transport.get_write_buffer_size() == 0
    assert not transport.is_closing()
    # Closing needs the loop (connection_lost is scheduled): a closed loop refuses, as asyncio's.
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        transport.close()
    ours.close()
    peer.close()
