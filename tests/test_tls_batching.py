"""The TLS layer's one send per iteration: what the application writes during one loop
iteration leaves in one socket write at the iteration's end on oxloop (as uvloop sends its
streams' writes), and what that must not change: the bytes, their order, and data written just
before `abort()` or a fatal error, which reaches the peer as it does on stock asyncio (whose
records are in the kernel by then). The latter on stock asyncio (the oracle), oxloop and
oxloop with asyncio's TLS protocol (`tls_loops`). Loopback only, bounded; certificates made at
test time.
"""

import asyncio

import pytest
from nethelpers import Accepted, payload, run
from tlshelpers import connected_pair


class CountingTransport:
    """Stands between a TLS protocol and its socket transport; keeps what each write got."""

    def __init__(self, transport):
        self._inner = transport
        self.writes = []

    def write(self, data):
        self.writes.append(bytes(data))
        self._inner.write(data)

    def __getattr__(self, name):
        return getattr(self._inner, name)


async def close_all(server, transport, proto):
    transport.close()
    await asyncio.wait_for(proto.lost, 10)
    server.close()
    await server.wait_closed()


@pytest.mark.oxloop_only("records of one iteration go to the socket in one write")
def test_tls_writes_of_one_iteration_leave_in_one_socket_write(loop, tls):
    # It used to be one socket write (one send system call) per write() call.
    async def main():
        server, transport, proto, server_proto = await connected_pair(tls, Accepted())
        ssl_protocol = transport._ssl_protocol
        counting = CountingTransport(ssl_protocol._transport)
        ssl_protocol._transport = counting
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
        transport.write(b"hello")
        transport.writelines([b" and", b" more"])
        assert counting.writes == []  # not yet: at the end of this iteration
        await server_proto.wait_bytes(52)
        assert bytes(server_proto.data) == (
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello and more"
        )
        assert len(counting.writes) == 1, [len(w) for w in counting.writes]
        ssl_protocol._transport = counting._inner
        await close_all(server, transport, proto)

    run(loop, main())


@pytest.mark.tls_loops
def test_tls_many_writes_of_one_iteration_arrive_whole_and_in_order(loop, tls):
    # Small writes wait for the iteration's end, large ones go at once: mixed, in one
    # iteration, the peer still gets every byte in order.
    async def main():
        server, transport, proto, server_proto = await connected_pair(tls, Accepted())
        pieces = [payload(size, seed=bytes([n])) for n, size in enumerate([10, 70_000, 3, 200_000])]
        for piece in pieces * 3:
            transport.write(piece)
        expected = b"".join(pieces * 3)
        await asyncio.wait_for(server_proto.wait_bytes(len(expected)), 10)
        assert bytes(server_proto.data) == expected
        await close_all(server, transport, proto)

    run(loop, main())


@pytest.mark.tls_loops
def test_tls_data_written_just_before_abort_reaches_the_peer(loop, tls):
    # On asyncio the records are in the kernel when abort() closes the socket; the records
    # oxloop keeps for the iteration's end are sent first. It used to drop them.
    async def main():
        server, transport, proto, server_proto = await connected_pair(tls, Accepted())
        server_proto.transport.write(b"last words")
        server_proto.transport.abort()
        await asyncio.wait_for(proto.wait_bytes(10), 10)
        assert bytes(proto.data) == b"last words"
        await asyncio.wait_for(proto.lost, 10)
        server.close()
        await server.wait_closed()

    run(loop, main())
