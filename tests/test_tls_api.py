"""TLS through the rest of the loop API, on stock asyncio (the oracle), on oxloop's Rust TLS layer
and on oxloop with asyncio's TLS protocol (`tls_loops`, see conftest).

`connect_accepted_socket(ssl=)`, `create_unix_server`/`create_unix_connection` with `ssl=`,
`ssl_shutdown_timeout` ending a close the peer never answers, the socket-side flow control
(reads of the socket pause while the application's are paused and the records pile up), and
`start_tls` on the server side with the ClientHello already read by the `StreamReader`
(CPython gh-142352), and an `SSLContext.sslobject_class` subclass, whose methods the loop must
call (not the C object's under them). Loopback only, bounded; certificates made at test time
(see tlshelpers).
"""

import asyncio
import socket
import ssl

import pytest
from nethelpers import Accepted, EchoProtocol, RecordingProtocol, payload, run
from tlshelpers import SERVER_HOSTNAME, connected_pair

import oxloop.tls

pytestmark = pytest.mark.tls_loops

SHORT = 0.3  # seconds: shutdown timeouts that must fire


async def close_server(server):
    server.close()
    await server.wait_closed()


def test_tls_connect_accepted_socket_with_ssl(loop, tls):
    async def main():
        listener = socket.create_server(("127.0.0.1", 0))
        listener.setblocking(False)
        port = listener.getsockname()[1]
        connect = asyncio.ensure_future(
            loop.create_connection(
                RecordingProtocol,
                "127.0.0.1",
                port,
                ssl=tls.client_context(),
                server_hostname=SERVER_HOSTNAME,
            )
        )
        conn, _ = await loop.sock_accept(listener)
        listener.close()
        server_transport, server_proto = await loop.connect_accepted_socket(
            EchoProtocol, conn, ssl=tls.server_context()
        )
        transport, proto = await connect
        assert isinstance(server_transport, asyncio.Transport)
        assert server_transport.get_extra_info("ssl_object").server_side
        transport.write(b"accepted elsewhere")
        assert await proto.wait_bytes(18) == b"accepted elsewhere"
        transport.close()
        assert await proto.lost is None

    run(loop, main())


def test_tls_over_unix_sockets(loop, tls, tmp_path):
    path = str(tmp_path / "tls.sock")

    async def main():
        accepted = Accepted()
        server = await loop.create_unix_server(accepted, path, ssl=tls.server_context())
        transport, proto = await loop.create_unix_connection(
            RecordingProtocol, path, ssl=tls.client_context(), server_hostname=SERVER_HOSTNAME
        )
        server_proto = await accepted.next()
        await asyncio.wait_for(server_proto.made, 10)
        assert transport.get_extra_info("socket").family == socket.AF_UNIX
        assert transport.get_extra_info("peercert")["subject"]
        assert isinstance(transport.get_extra_info("ssl_object"), ssl.SSLObject)
        transport.write(b"over a unix socket")
        assert await server_proto.wait_bytes(18) == b"over a unix socket"
        server_proto.transport.write(b"back")
        assert await proto.wait_bytes(4) == b"back"
        transport.close()
        assert await proto.lost is None
        await asyncio.wait_for(server_proto.lost, 10)
        await close_server(server)

    run(loop, main())


def test_tls_shutdown_timeout_ends_a_close_the_peer_never_answers(loop, tls):
    async def main():
        server, transport, proto, server_proto = await connected_pair(
            tls, Accepted(), ssl_shutdown_timeout=SHORT
        )
        # A paused server reads neither our close_notify nor answers it.
        server_proto.transport.pause_reading()
        start = loop.time()
        transport.close()
        exc = await asyncio.wait_for(proto.lost, 10)
        assert SHORT <= loop.time() - start < SHORT + 2
        assert isinstance(exc, asyncio.TimeoutError)
        assert proto.callbacks() == ["connection_made", "connection_lost"]
        server_proto.transport.resume_reading()
        await asyncio.wait_for(server_proto.lost, 10)
        await close_server(server)

    run(loop, main())


def test_ssl_shutdown_timeout_without_ssl_is_a_value_error(loop, tls):
    async def main():
        with pytest.raises(ValueError, match="ssl_shutdown_timeout is only meaningful"):
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", 1, ssl_shutdown_timeout=1)
        with pytest.raises(ValueError, match="ssl_shutdown_timeout is only meaningful"):
            await loop.create_server(asyncio.Protocol, "127.0.0.1", 0, ssl_shutdown_timeout=1)

    run(loop, main())


def test_tls_paused_application_pauses_the_socket_reads(loop, tls):
    # The records the application cannot take wait in the TLS layer up to its read high-water
    # mark (256 KiB); then the socket is no longer read, and the sender's writes back up.
    message = payload(4 * 1024 * 1024)

    async def main():
        server, transport, proto, server_proto = await connected_pair(tls, Accepted())
        raw = transport._ssl_protocol._transport  # the socket transport under the TLS layer
        transport.pause_reading()
        server_proto.transport.write(message)
        for _ in range(500):
            if not raw.is_reading():
                break
            await asyncio.sleep(0.01)
        assert not raw.is_reading()
        held = transport.get_read_buffer_size()
        assert 256 * 1024 <= held < len(message)
        await asyncio.sleep(0.05)
        assert transport.get_read_buffer_size() == held  # nothing more read from the socket
        assert proto.data == b""
        transport.resume_reading()
        assert await proto.wait_bytes(len(message)) == message
        assert raw.is_reading()
        transport.close()
        await proto.lost
        await close_server(server)

    run(loop, main())


@pytest.mark.oxloop_only(
    "asyncio's StreamWriter.start_tls left bytes the reader had buffered out of the handshake "
    "until CPython gh-142352 (3.14)",
    before=(3, 14),
)
def test_stream_start_tls_keeps_a_client_hello_the_reader_already_has(loop, tls):
    async def handler(reader, writer):
        # The command and the ClientHello came in one read: the hello is in the reader's buffer.
        assert await reader.readline() == b"STARTTLS\n"
        await writer.start_tls(tls.server_context())
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main():
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setblocking(False)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        client = tls.client_context().wrap_bio(incoming, outgoing, server_hostname=SERVER_HOSTNAME)
        with pytest.raises(ssl.SSLWantReadError):
            client.do_handshake()
        await loop.sock_sendall(sock, b"STARTTLS\n" + outgoing.read())
        while True:
            try:
                client.do_handshake()
                break
            except ssl.SSLWantReadError:
                await loop.sock_sendall(sock, outgoing.read())
                data = await loop.sock_recv(sock, 65536)
                assert data, "the server closed during the handshake"
                incoming.write(data)
        client.write(b"secret\n")
        await loop.sock_sendall(sock, outgoing.read())
        echoed = b""
        while not echoed.endswith(b"\n"):
            try:
                echoed += client.read()
            except ssl.SSLWantReadError:
                incoming.write(await loop.sock_recv(sock, 65536))
        assert echoed == b"secret\n"
        sock.close()
        await close_server(server)

    run(loop, main())


@pytest.mark.oxloop_only("which TLS protocol oxloop uses is oxloop's")
def test_start_tls_uses_the_loops_tls_protocol(loop, loop_name, tls):
    async def main():
        upgraded = loop.create_future()

        async def handler(reader, writer):
            await writer.start_tls(tls.server_context())
            upgraded.set_result(writer.transport._ssl_protocol)
            writer.write(await reader.readline())
            await writer.drain()
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, proto = await loop.create_connection(RecordingProtocol, "127.0.0.1", port)
        tls_transport = await loop.start_tls(
            transport, proto, tls.client_context(), server_hostname=SERVER_HOSTNAME
        )
        tls_transport.write(b"upgraded\n")
        assert await proto.wait_bytes(9) == b"upgraded\n"
        protocols = [tls_transport._ssl_protocol, await upgraded]
        await proto.lost
        await close_server(server)
        return protocols

    for protocol in run(loop, main()):
        if loop_name == "oxloop-stdlib":
            assert type(protocol) is asyncio.sslproto.SSLProtocol
        else:
            assert isinstance(protocol, oxloop.tls.TLSProtocol)


def test_tls_sslobject_class_subclass_drives_handshake_and_shutdown(loop, tls):
    """A context's `sslobject_class` may override `do_handshake` and `unwrap`: the loop calls
    them, on both sides of a connection that opens, echoes and closes cleanly."""
    calls = []

    class CountingSSLObject(ssl.SSLObject):
        def do_handshake(self):
            calls.append(("do_handshake", self.server_side))
            return super().do_handshake()

        def unwrap(self):
            calls.append(("unwrap", self.server_side))
            return super().unwrap()

    async def main():
        server_context, client_context = tls.server_context(), tls.client_context()
        server_context.sslobject_class = client_context.sslobject_class = CountingSSLObject
        accepted = Accepted(EchoProtocol)
        server = await loop.create_server(accepted, "127.0.0.1", 0, ssl=server_context)
        port = server.sockets[0].getsockname()[1]
        transport, protocol = await loop.create_connection(
            RecordingProtocol,
            "127.0.0.1",
            port,
            ssl=client_context,
            server_hostname=SERVER_HOSTNAME,
        )
        transport.write(b"ping")
        await asyncio.wait_for(protocol.wait_bytes(4), 10)
        transport.close()
        await asyncio.wait_for(protocol.lost, 10)
        await close_server(server)
        assert bytes(protocol.data) == b"ping"

    run(loop, main())
    for side in (False, True):
        assert ("do_handshake", side) in calls
    assert ("unwrap", False) in calls  # the client closed first: it sent close_notify
