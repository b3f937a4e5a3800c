"""TLS: `create_server(ssl=)`, `create_connection(ssl=)`, TLS streams, `loop.start_tls()`.

TLS is a protocol over the loop's plain socket transport: asyncio's `sslproto.SSLProtocol` on
stock asyncio and on `oxloop-stdlib` (oxloop with OXLOOP_TLS=stdlib), oxloop's Rust TLS layer
(`oxloop.tls`) by default on oxloop; these tests check all three the same way: echo in both
directions (small and a few MiB), the extra info a TLS connection exposes, handshake failures
and timeouts (with no fd left behind), upgrading a plain connection, and a clean close that
reports nothing to the exception handler. Every test runs on stock asyncio (the oracle) and on
both of oxloop's TLS paths (the `tls_loops` marker, see conftest). Loopback only; certificates
are made at test time (see tlshelpers).
"""

import asyncio
import socket
import ssl

import pytest
from nethelpers import (
    Accepted,
    EchoProtocol,
    RecordingProtocol,
    fd_count,
    payload,
    run,
    stream_echo_handler,
)
from tlshelpers import (
    SERVER_HOSTNAME,
    open_tls,
    record_exception_handler,
    tls_stream_server,
    untrusting_client_context,
)

pytestmark = pytest.mark.tls_loops

SHORT = 0.3  # seconds: handshake timeouts that must fire


async def fds_back_to(before, timeout=2.0):
    """Wait (bounded) until the process has no more fds open than `before`; return the count."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while fd_count() > before and loop.time() < deadline:
        await asyncio.sleep(0.01)
    return fd_count()


# --- protocols -----------------------------------------------------------------------------


def test_tls_echo_over_create_server_and_create_connection(loop, tls):
    async def main():
        server = await loop.create_server(EchoProtocol, "127.0.0.1", 0, ssl=tls.server_context())
        port = server.sockets[0].getsockname()[1]
        transport, proto = await loop.create_connection(
            RecordingProtocol,
            "127.0.0.1",
            port,
            ssl=tls.client_context(),
            server_hostname=SERVER_HOSTNAME,
        )
        assert isinstance(transport, asyncio.Transport)
        assert proto.transport is transport
        transport.write(b"hello ")
        transport.writelines([b"over ", b"tls"])
        assert await proto.wait_bytes(len(b"hello over tls")) == b"hello over tls"
        transport.close()
        assert await proto.lost is None
        events = proto.callbacks()
        assert events[:2] == ["connection_made", "data_received"]
        assert events[-1] == "connection_lost" and events.count("connection_lost") == 1
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_tls_server_protocol_receives_the_plaintext(loop, tls):
    async def main():
        accepted = Accepted()
        server = await loop.create_server(accepted, "127.0.0.1", 0, ssl=tls.server_context())
        port = server.sockets[0].getsockname()[1]
        reader, writer = await open_tls(tls, port)
        server_proto = await accepted.next()
        await server_proto.made
        assert isinstance(server_proto.transport, asyncio.Transport)
        assert server_proto.transport.get_extra_info("ssl_object").server_side
        writer.write(b"plaintext in, ciphertext on the wire")
        data = await server_proto.wait_bytes(36)
        assert data == b"plaintext in, ciphertext on the wire"
        server_proto.transport.write(b"reply")
        assert await reader.readexactly(5) == b"reply"
        writer.close()
        await writer.wait_closed()
        assert await server_proto.lost is None
        server.close()
        await server.wait_closed()

    run(loop, main())


# --- streams -------------------------------------------------------------------------------


def test_tls_streams_echo(loop, tls):
    async def main():
        server, port = await tls_stream_server(tls)
        reader, writer = await open_tls(tls, port)
        writer.write(b"ping\n")
        await writer.drain()
        assert await reader.readline() == b"ping\n"
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_tls_streams_echo_a_few_mib_in_both_directions(loop, tls):
    size = 4 * 1024 * 1024
    data = payload(size)

    async def main():
        server, port = await tls_stream_server(tls)
        reader, writer = await open_tls(tls, port)

        async def send():
            for start in range(0, size, 256 * 1024):
                writer.write(data[start : start + 256 * 1024])
                await writer.drain()

        _, echoed = await asyncio.gather(send(), reader.readexactly(size))
        assert echoed == data
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_tls_client_extra_info_describes_the_session(loop, tls):
    async def main():
        server, port = await tls_stream_server(tls)
        reader, writer = await open_tls(tls, port)
        ssl_object = writer.get_extra_info("ssl_object")
        assert isinstance(ssl_object, ssl.SSLObject)
        assert not ssl_object.server_side
        assert ssl_object.server_hostname == SERVER_HOSTNAME
        peercert = writer.get_extra_info("peercert")
        assert ("DNS", "localhost") in peercert["subjectAltName"]
        assert peercert == ssl_object.getpeercert()
        cipher = writer.get_extra_info("cipher")
        assert cipher == ssl_object.cipher()
        name, version, bits = cipher
        assert isinstance(name, str) and version.startswith("TLS") and bits > 0
        assert writer.get_extra_info("compression") == ssl_object.compression()
        assert isinstance(writer.get_extra_info("sslcontext"), ssl.SSLContext)
        # What the plain transport underneath knows is passed through.
        assert writer.get_extra_info("peername") == ("127.0.0.1", port)
        sock = writer.get_extra_info("socket")
        assert sock.family == socket.AF_INET and sock.type == socket.SOCK_STREAM
        assert writer.get_extra_info("sockname") == sock.getsockname()
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_tls_transport_and_the_transport_under_it_are_asyncio_transports(loop, tls):
    async def main():
        server, port = await tls_stream_server(tls)
        reader, writer = await open_tls(tls, port)
        assert isinstance(writer.transport, asyncio.Transport)
        # The TLS layer (the stdlib's SSLProtocol on both loops) runs over a plain transport.
        raw = writer.transport._ssl_protocol._transport
        assert isinstance(raw, asyncio.Transport)
        assert raw is not writer.transport
        assert raw.get_extra_info("socket").fileno() == writer.get_extra_info("socket").fileno()
        writer.close()
        await writer.wait_closed()
        assert raw.is_closing()
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_tls_clean_close_reports_nothing_to_the_exception_handler(loop, tls):
    async def main():
        calls = record_exception_handler(loop)
        before = fd_count()
        server, port = await tls_stream_server(tls)
        for _ in range(3):
            reader, writer = await open_tls(tls, port)
            writer.write(b"bye\n")
            assert await reader.readline() == b"bye\n"
            writer.close()
            await writer.wait_closed()
            assert writer.transport.is_closing()
        server.close()
        await server.wait_closed()
        assert await fds_back_to(before) == before
        assert calls == []

    run(loop, main())


def test_tls_server_close_first_is_seen_as_eof_by_the_client(loop, tls):
    async def handler(reader, writer):
        writer.write(b"goodbye")
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main():
        calls = record_exception_handler(loop)
        server, port = await tls_stream_server(tls, handler)
        reader, writer = await open_tls(tls, port)
        assert await reader.read() == b"goodbye"
        assert reader.at_eof()
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        assert calls == []

    run(loop, main())


# --- handshake failures --------------------------------------------------------------------


def test_tls_untrusted_certificate_fails_the_handshake_and_leaks_no_fd(loop, tls):
    async def main():
        before = fd_count()
        server, port = await tls_stream_server(tls)
        for _ in range(3):
            with pytest.raises(ssl.SSLCertVerificationError):
                await asyncio.open_connection(
                    "127.0.0.1",
                    port,
                    ssl=untrusting_client_context(),
                    server_hostname=SERVER_HOSTNAME,
                )
        server.close()
        await server.wait_closed()
        assert await fds_back_to(before) == before

    run(loop, main())


def test_tls_wrong_hostname_fails_the_handshake(loop, tls):
    async def main():
        server, port = await tls_stream_server(tls)
        with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
            await asyncio.open_connection(
                "127.0.0.1", port, ssl=tls.client_context(), server_hostname="not-localhost"
            )
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_tls_client_handshake_timeout_with_a_silent_peer(loop, tls):
    async def main():
        before = fd_count()
        listener = socket.create_server(("127.0.0.1", 0))
        listener.setblocking(False)
        port = listener.getsockname()[1]
        accept = asyncio.ensure_future(loop.sock_accept(listener))
        start = loop.time()
        with pytest.raises(ConnectionAbortedError, match="SSL handshake is taking longer"):
            await open_tls(tls, port, ssl_handshake_timeout=SHORT)
        assert SHORT <= loop.time() - start < SHORT + 2
        conn, _ = await accept
        # The client hello arrived, then the client gave up and closed the connection.
        assert await loop.sock_recv(conn, 65536)
        conn.setblocking(True)
        conn.settimeout(2)
        while conn.recv(65536):
            pass
        conn.close()
        listener.close()
        assert await fds_back_to(before) == before

    run(loop, main())


def test_tls_server_handshake_timeout_closes_a_silent_client(loop, tls):
    async def main():
        calls = record_exception_handler(loop)
        before = fd_count()
        server, port = await tls_stream_server(tls, ssl_handshake_timeout=SHORT)
        client = socket.create_connection(("127.0.0.1", port))
        client.setblocking(False)
        start = loop.time()
        # The server says nothing to a client that never sends a hello, then hangs up.
        assert await loop.sock_recv(client, 65536) == b""
        assert SHORT <= loop.time() - start < SHORT + 2
        client.close()
        server.close()
        await server.wait_closed()
        assert await fds_back_to(before) == before
        assert calls == []  # a handshake timeout is reported only in debug mode

    run(loop, main())


def test_ssl_handshake_timeout_without_ssl_is_a_value_error(loop, tls):
    async def main():
        with pytest.raises(ValueError, match="ssl_handshake_timeout is only meaningful"):
            await asyncio.open_connection("127.0.0.1", 1, ssl_handshake_timeout=1)
        with pytest.raises(ValueError, match="ssl_handshake_timeout is only meaningful"):
            await asyncio.start_server(stream_echo_handler, "127.0.0.1", 0, ssl_handshake_timeout=1)

    run(loop, main())


# --- start_tls -----------------------------------------------------------------------------


async def starttls_handler(reader, writer, tls):
    """A plain-text server that upgrades to TLS on request, then echoes lines."""
    assert await reader.readline() == b"STARTTLS\n"
    writer.write(b"GO\n")
    await writer.drain()
    await writer.start_tls(tls.server_context())
    assert writer.get_extra_info("ssl_object").server_side
    await stream_echo_handler(reader, writer)


def test_stream_writer_start_tls_upgrades_both_ends(loop, tls):
    async def main():
        calls = record_exception_handler(loop)
        server = await asyncio.start_server(
            lambda r, w: starttls_handler(r, w, tls), "127.0.0.1", 0
        )
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert writer.get_extra_info("ssl_object") is None
        plain = writer.transport
        writer.write(b"STARTTLS\n")
        assert await reader.readline() == b"GO\n"
        await writer.start_tls(tls.client_context(), server_hostname=SERVER_HOSTNAME)
        assert writer.transport is not plain
        assert isinstance(writer.transport, asyncio.Transport)
        assert isinstance(writer.get_extra_info("ssl_object"), ssl.SSLObject)
        for line in (b"secret one\n", b"secret two\n"):
            writer.write(line)
            assert await reader.readline() == line
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        assert calls == []

    run(loop, main())


def test_loop_start_tls_upgrades_a_protocol_connection(loop, tls):
    async def main():
        server = await asyncio.start_server(
            lambda r, w: starttls_handler(r, w, tls), "127.0.0.1", 0
        )
        port = server.sockets[0].getsockname()[1]
        transport, proto = await loop.create_connection(RecordingProtocol, "127.0.0.1", port)
        transport.write(b"STARTTLS\n")
        assert await proto.wait_bytes(3) == b"GO\n"
        proto.data.clear()
        tls_transport = await loop.start_tls(
            transport, proto, tls.client_context(), server_hostname=SERVER_HOSTNAME
        )
        assert isinstance(tls_transport, asyncio.Transport)
        assert tls_transport.get_protocol() is proto
        assert tls_transport.get_extra_info("peercert")["subject"]
        # The plain transport now carries TLS records for the new one.
        assert transport.get_protocol() is not proto
        tls_transport.write(b"upgraded\n")
        assert await proto.wait_bytes(9) == b"upgraded\n"
        tls_transport.close()
        assert await proto.lost is None
        assert transport.is_closing()
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_loop_start_tls_server_side_inside_a_protocol(loop, tls):
    class UpgradingServer(asyncio.Protocol):
        """Plain until the first data, then upgrades itself and echoes over TLS."""

        def __init__(self):
            self.upgraded = asyncio.get_running_loop().create_future()

        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            if self.upgraded.done():
                self.transport.write(data)
                return
            assert data == b"STARTTLS\n"
            self.transport.write(b"GO\n")
            task = asyncio.get_running_loop().create_task(
                loop.start_tls(self.transport, self, tls.server_context(), server_side=True)
            )
            task.add_done_callback(self._upgraded)

        def _upgraded(self, task):
            self.transport = task.result()
            self.upgraded.set_result(self.transport)

    async def main():
        accepted = Accepted(UpgradingServer)
        server = await loop.create_server(accepted, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"STARTTLS\n")
        assert await reader.readline() == b"GO\n"
        await writer.start_tls(tls.client_context(), server_hostname=SERVER_HOSTNAME)
        server_proto = await accepted.next()
        server_transport = await server_proto.upgraded
        assert isinstance(server_transport, asyncio.Transport)
        assert server_transport.get_extra_info("ssl_object").server_side
        writer.write(b"echo me\n")
        assert await reader.readline() == b"echo me\n"
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    run(loop, main())
