"""A TLS server's accepted connections between accept and the end of their handshake.

Stock asyncio awaits each accepted connection's handshake in a task of its own, which closes the
connection if the handshake fails (reporting it in debug mode) and is cancelled, closing the
connection, when `asyncio.run` ends. oxloop makes no task: a callback on the handshake's end does
the task's work, and closing the loop closes the connections still in their handshake. These
tests check that what the application and the peer see is the same on the three loops
(`tls_loops`, see conftest), and that oxloop indeed makes no task.
"""

import asyncio
import socket
import ssl

import pytest
from nethelpers import Accepted, RecordingProtocol, run
from tlshelpers import record_exception_handler

pytestmark = pytest.mark.tls_loops


async def tls_server(tls, factory):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, "127.0.0.1", 0, ssl=tls.server_context())
    return server, server.sockets[0].getsockname()[1]


def test_failed_server_handshake_is_reported_in_debug_mode_and_closes(loop, tls):
    async def main():
        loop.set_debug(True)
        calls = record_exception_handler(loop)
        accepted = Accepted()
        server, port = await tls_server(tls, accepted)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\n\r\n")  # not a ClientHello
        protocol = await accepted.next()
        assert await asyncio.wait_for(reader.read(), 10) == b""
        for _ in range(5):  # the report comes an iteration after the handshake's end
            await asyncio.sleep(0)
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        assert [call["message"] for call in calls] == [
            "Error on transport creation for incoming connection"
        ]
        (call,) = calls
        assert isinstance(call["exception"], ssl.SSLError)
        assert call["protocol"] is protocol
        assert call["transport"].is_closing()
        assert protocol.events == []  # the application never saw the connection

    run(loop, main())


def test_server_handshake_in_flight_when_the_runner_closes_is_closed(loop_factory, tls):
    """A client connected but silent: the server's side is mid-handshake when `main` returns.
    The runner's close closes it (the client sees EOF), and leaves nothing to the collector
    (the teardown checks would see the fd or the ResourceWarning)."""
    accepted = Accepted()
    client = None

    async def main():
        nonlocal client
        server, port = await tls_server(tls, accepted)
        client = socket.create_connection(("127.0.0.1", port))
        await accepted.next()
        server.close()

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main())
    try:
        client.settimeout(10)
        assert client.recv(100) == b""
    finally:
        client.close()
    assert accepted.protocols[0].events == []


@pytest.mark.oxloop_only("stock asyncio awaits each accepted connection's handshake in a task")
def test_no_task_per_accepted_tls_connection(loop, tls):
    async def main():
        accepted = Accepted()
        server, port = await tls_server(tls, accepted)
        before = asyncio.all_tasks()
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        for _ in clients:
            await accepted.next()
        tasks = asyncio.all_tasks()
        for client in clients:
            client.close()
        server.close()
        await server.wait_closed()
        assert tasks == before

    run(loop, main())


def test_handshaken_server_connection_reaches_the_application(loop, tls):
    """The success path: the application's connection_made, then its data, on every loop."""

    async def main():
        accepted = Accepted()
        server, port = await tls_server(tls, accepted)
        transport, _ = await loop.create_connection(
            RecordingProtocol,
            "127.0.0.1",
            port,
            ssl=tls.client_context(),
            server_hostname="localhost",
        )
        protocol = await accepted.next()
        await asyncio.wait_for(protocol.made, 10)
        transport.write(b"hello")
        while protocol.data != b"hello":
            await asyncio.sleep(0.01)
        transport.close()
        await asyncio.wait_for(protocol.lost, 10)
        server.close()
        await server.wait_closed()
        assert protocol.events[0] == "connection_made"

    run(loop, main())
