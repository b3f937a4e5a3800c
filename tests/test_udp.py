"""UDP and Unix datagram endpoints (`create_datagram_endpoint`), on both loops."""

import asyncio
import os
import socket
import tempfile

import pytest
from nethelpers import fd_count, run


class DatagramRecorder(asyncio.DatagramProtocol):
    """Records datagrams and errors; `wait(n)` resolves once `n` datagrams arrived."""

    def __init__(self):
        self.loop = asyncio.get_running_loop()
        self.events = []
        self.datagrams = []
        self.errors = []
        self.lost = self.loop.create_future()
        self._waiting = None

    def connection_made(self, transport):
        self.events.append("connection_made")
        self.transport = transport

    def datagram_received(self, data, addr):
        self.datagrams.append((data, addr))
        if self._waiting and len(self.datagrams) >= self._waiting[0]:
            self._waiting[1].set_result(None)
            self._waiting = None

    def error_received(self, exc):
        self.errors.append(exc)

    def connection_lost(self, exc):
        self.events.append("connection_lost")
        self.lost.set_result(exc)

    async def wait(self, count):
        if len(self.datagrams) < count:
            self._waiting = (count, self.loop.create_future())
            await self._waiting[1]


async def endpoint_pair(loop):
    server, server_proto = await loop.create_datagram_endpoint(
        DatagramRecorder, local_addr=("127.0.0.1", 0)
    )
    address = server.get_extra_info("sockname")
    client, client_proto = await loop.create_datagram_endpoint(
        DatagramRecorder, remote_addr=address
    )
    return server, server_proto, client, client_proto


@pytest.mark.oxloop_only(
    "Python 3.11's _SelectorDatagramTransport is not a DatagramTransport (fixed in 3.12)"
)
def test_datagram_transport_is_an_asyncio_datagram_transport(loop):
    async def main():
        server, _, client, _ = await endpoint_pair(loop)
        assert isinstance(server, asyncio.DatagramTransport)
        assert isinstance(client, asyncio.DatagramTransport)
        server.close()
        client.close()

    run(loop, main())


def test_datagram_transport_is_also_an_asyncio_transport(loop):
    async def main():
        server, _, client, _ = await endpoint_pair(loop)
        assert isinstance(server, asyncio.Transport)
        with pytest.raises(NotImplementedError):
            server.write(b"streams only")
        server.close()
        client.close()

    run(loop, main())


def test_datagrams_arrive_with_their_sender_and_replies_reach_it(loop):
    async def main():
        server, server_proto, client, client_proto = await endpoint_pair(loop)
        for i in range(5):
            client.sendto(b"ping %d" % i)
        await server_proto.wait(5)
        assert [d for d, _ in server_proto.datagrams] == [b"ping %d" % i for i in range(5)]
        sender = server_proto.datagrams[0][1]
        assert sender == client.get_extra_info("sockname")
        server.sendto(b"pong", sender)
        await client_proto.wait(1)
        assert client_proto.datagrams == [(b"pong", server.get_extra_info("sockname"))]
        server.close()
        client.close()

    run(loop, main())


def test_sendto_accepts_bytearray_and_memoryview(loop):
    async def main():
        server, server_proto, client, _ = await endpoint_pair(loop)
        client.sendto(bytearray(b"array"))
        client.sendto(memoryview(b"view"))
        await server_proto.wait(2)
        assert [d for d, _ in server_proto.datagrams] == [b"array", b"view"]
        server.close()
        client.close()

    run(loop, main())


def test_sendto_rejects_str_and_a_different_address_when_connected(loop):
    async def main():
        server, _, client, _ = await endpoint_pair(loop)
        with pytest.raises(TypeError):
            client.sendto("text")
        with pytest.raises(ValueError, match="Invalid address"):
            client.sendto(b"x", ("127.0.0.1", 9))
        server.close()
        client.close()

    run(loop, main())


def test_unreachable_peer_reports_error_received_and_stays_open(loop):
    async def main():
        # A port nobody listens on: the kernel answers with ICMP port unreachable, which a
        # connected UDP socket reports as ECONNREFUSED on a later call.
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()
        probe.close()
        client, proto = await loop.create_datagram_endpoint(DatagramRecorder, remote_addr=dead)
        for _ in range(20):
            client.sendto(b"anyone?")
            await asyncio.sleep(0.01)
            if proto.errors:
                break
        assert proto.errors and isinstance(proto.errors[0], ConnectionRefusedError)
        assert not client.is_closing()
        client.close()

    run(loop, main())


def test_close_calls_connection_lost_once_and_releases_the_fd(loop):
    async def main():
        before = fd_count()
        server, server_proto, client, client_proto = await endpoint_pair(loop)
        server.close()
        server.close()
        client.abort()
        assert await server_proto.lost is None
        assert await client_proto.lost is None
        await asyncio.sleep(0)
        assert server_proto.events == ["connection_made", "connection_lost"]
        assert fd_count() == before

    run(loop, main())


def test_sendto_after_close_on_a_connected_endpoint_is_ignored(loop):
    async def main():
        server, _, client, proto = await endpoint_pair(loop)
        client.close()
        await proto.lost
        for _ in range(10):
            client.sendto(b"late")  # logged after a few, never raised
        server.close()

    run(loop, main())


def test_pause_and_resume_reading(loop):
    async def main():
        server, server_proto, client, _ = await endpoint_pair(loop)
        server.pause_reading()
        assert not server.is_reading()
        client.sendto(b"held")
        await asyncio.sleep(0.05)
        assert server_proto.datagrams == []
        server.resume_reading()
        await server_proto.wait(1)
        assert server_proto.datagrams[0][0] == b"held"
        server.close()
        client.close()

    run(loop, main())


def test_unix_datagram_endpoint(loop):
    async def main():
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "server.sock")
            server, server_proto = await loop.create_datagram_endpoint(
                DatagramRecorder, local_addr=path, family=socket.AF_UNIX
            )
            client_path = os.path.join(tmp, "client.sock")
            client, client_proto = await loop.create_datagram_endpoint(
                DatagramRecorder, local_addr=client_path, remote_addr=path, family=socket.AF_UNIX
            )
            client.sendto(b"over unix")
            await server_proto.wait(1)
            assert server_proto.datagrams == [(b"over unix", client_path)]
            server.sendto(b"back", client_path)
            await client_proto.wait(1)
            assert client_proto.datagrams[0][0] == b"back"
            server.close()
            client.close()
            await asyncio.sleep(0)

    run(loop, main())


@pytest.mark.oxloop_only(
    "asyncio tests the unnamed peer ('') for truth and fails sendto() with TypeError"
)
def test_sendto_without_address_on_a_datagram_socketpair_reaches_the_peer(loop):
    """A socketpair end is connected: sendto(data) goes to its peer. (It used to fail with a
    fatal TypeError, so uvloop's test_socketpair timed out waiting for the data, and its
    executor thread, blocked in recv, kept the process from exiting.)"""

    async def main():
        ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        with ours, peer:
            transport, proto = await loop.create_datagram_endpoint(DatagramRecorder, sock=ours)
            peer.send(b"hello")
            await proto.wait(1)
            assert proto.datagrams == [(b"hello", None)]
            transport.sendto(b"back")
            peer.setblocking(False)
            assert await loop.sock_recv(peer, 100) == b"back"
            assert proto.errors == []
            transport.close()
            assert await proto.lost is None

    run(loop, main())


def test_many_datagrams_in_a_burst_all_arrive_in_order(loop):
    async def main():
        server, server_proto, client, _ = await endpoint_pair(loop)
        sock = server.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        count = 500
        for i in range(count):
            client.sendto(i.to_bytes(4, "big") * 64)
        await server_proto.wait(count)
        got = [int.from_bytes(d[:4], "big") for d, _ in server_proto.datagrams]
        assert got == list(range(count))
        server.close()
        client.close()

    run(loop, main())
