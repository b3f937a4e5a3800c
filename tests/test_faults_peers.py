"""Faults from the peer: a connection reset (SO_LINGER 0, then close) while the transport has a
large write buffered, and while it is reading.

The transport gets what stock asyncio's gets: `connection_lost(ConnectionResetError)`, no call
of the exception handler (asyncio logs a reset only in debug mode), the socket closed.
"""

import asyncio
import socket

import pytest
from nethelpers import RecordingProtocol, fd_count, payload, run, set_linger_zero, shrink_buffers

pytestmark = pytest.mark.timeout(30)


async def _connected_pair(loop):
    """A client transport (RecordingProtocol) and the plain server-side socket it talks to."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    transport, proto = await loop.create_connection(RecordingProtocol, *listener.getsockname())
    peer, _ = await loop.sock_accept(listener)
    listener.close()
    return transport, proto, peer


def _collect_handler_calls(loop):
    calls = []
    loop.set_exception_handler(lambda lp, ctx: calls.append(ctx))
    return calls


def test_peer_reset_mid_write_loses_connection_with_connection_reset(loop):
    handler_calls = _collect_handler_calls(loop)
    before = fd_count()

    async def main():
        transport, proto, peer = await _connected_pair(loop)
        shrink_buffers(transport.get_extra_info("socket"))
        shrink_buffers(peer)
        transport.write(payload(8 * 1024 * 1024))  # far more than the kernel buffers hold
        assert transport.get_write_buffer_size() > 0
        await asyncio.sleep(0.02)
        set_linger_zero(peer)
        peer.close()  # RST, with the transport's data unread
        lost = await asyncio.wait_for(proto.lost, 10)
        return lost, proto.callbacks(), transport.is_closing()

    lost, callbacks, closing = run(loop, main())
    assert type(lost) is ConnectionResetError
    assert callbacks[0] == "connection_made" and callbacks[-1] == "connection_lost"
    assert "eof_received" not in callbacks
    assert closing
    assert handler_calls == []
    assert fd_count() == before


def test_peer_reset_mid_read_loses_connection_with_connection_reset(loop):
    handler_calls = _collect_handler_calls(loop)
    before = fd_count()

    async def main():
        transport, proto, peer = await _connected_pair(loop)
        peer.setblocking(True)
        peer.sendall(b"first")
        await proto.wait_bytes(5)
        peer.sendall(b"second")  # may be dropped with the reset, as on asyncio
        set_linger_zero(peer)
        peer.close()
        lost = await asyncio.wait_for(proto.lost, 10)
        return lost, bytes(proto.data), proto.callbacks()

    lost, data, callbacks = run(loop, main())
    assert type(lost) is ConnectionResetError
    assert data in (b"first", b"firstsecond")
    assert callbacks[0] == "connection_made" and callbacks[-1] == "connection_lost"
    assert "eof_received" not in callbacks
    assert handler_calls == []
    assert fd_count() == before


def test_peer_reset_under_a_streams_reader_raises_connection_reset(loop):
    # Through asyncio's StreamReader on top of the transport: the waiting read gets the error.
    before = fd_count()

    async def main():
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        reader, writer = await asyncio.open_connection(*listener.getsockname())
        peer, _ = await loop.sock_accept(listener)
        listener.close()
        read = asyncio.ensure_future(reader.read(100))
        await asyncio.sleep(0.01)
        set_linger_zero(peer)
        peer.close()
        try:
            await asyncio.wait_for(read, 10)
        except ConnectionResetError as exc:
            result = type(exc)
        else:
            result = "no error"
        writer.close()
        try:
            await writer.wait_closed()
        except ConnectionResetError:
            pass
        return result

    assert run(loop, main()) is ConnectionResetError
    assert fd_count() == before


def test_loop_serves_new_connections_after_many_resets(loop):
    handler_calls = _collect_handler_calls(loop)
    before = fd_count()

    async def main():
        lost = []
        for _ in range(20):
            transport, proto, peer = await _connected_pair(loop)
            transport.write(b"x" * 100_000)
            set_linger_zero(peer)
            peer.close()
            lost.append(type(await asyncio.wait_for(proto.lost, 10)))
        transport, proto, peer = await _connected_pair(loop)
        peer.sendall(b"alive")
        data = await proto.wait_bytes(5)
        transport.close()
        peer.close()
        return lost, data

    lost, data = run(loop, main())
    assert set(lost) <= {ConnectionResetError, BrokenPipeError}
    assert data == b"alive"
    assert handler_calls == []
    assert fd_count() == before
