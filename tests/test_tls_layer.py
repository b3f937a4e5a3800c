"""The TLS layer's per-record paths and its corners, on stock asyncio (the oracle), on oxloop's
Rust TLS layer and on oxloop with asyncio's TLS protocol (`tls_loops`, see conftest).

What oxloop.tls moves to Rust (decrypting and delivering, encrypting and sending, both flow
controls) and the cases where it hands back to asyncio's state machine: a `BufferedProtocol`
application (small buffers too), write flow control across both layers, `pause_reading` on the
application transport, `writelines` and bytes-like data, errors from the application's
callbacks, a peer that closes without close_notify or mid-handshake, garbage instead of TLS,
`abort()`, writes after close, the `SSLContext` released after a double close, and the extra
info of a server-side connection. Loopback only, bounded; certificates made at test time.
"""

import asyncio
import gc
import socket
import ssl
import weakref

import pytest
from nethelpers import Accepted, EchoProtocol, RecordingProtocol, payload, run, shrink_buffers
from tlshelpers import SERVER_HOSTNAME, open_tls, record_exception_handler, tls_stream_server

import oxloop
import oxloop.tls

pytestmark = pytest.mark.tls_loops


async def tls_server(tls, factory):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, "127.0.0.1", 0, ssl=tls.server_context())
    return server, server.sockets[0].getsockname()[1]


async def tls_client(tls, port, factory=RecordingProtocol):
    loop = asyncio.get_running_loop()
    return await loop.create_connection(
        factory, "127.0.0.1", port, ssl=tls.client_context(), server_hostname=SERVER_HOSTNAME
    )


async def accepted_connection(accepted):
    """The next server-side protocol, once its TLS handshake is done (connection_made)."""
    proto = await accepted.next()
    await asyncio.wait_for(proto.made, 10)
    return proto


async def close_server(server):
    server.close()
    await server.wait_closed()


class BufferedRecorder(asyncio.BufferedProtocol):
    """A BufferedProtocol handing out `size`-byte buffers; keeps what arrives in `data`."""

    def __init__(self, size):
        loop = asyncio.get_running_loop()
        self.buffer = bytearray(size)
        self.data = bytearray()
        self.events = []
        self.eof = loop.create_future()
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, sizehint):
        return memoryview(self.buffer)

    def buffer_updated(self, nbytes):
        if not self.events or self.events[-1] != "buffer_updated":
            self.events.append("buffer_updated")
        self.data += self.buffer[:nbytes]

    def eof_received(self):
        self.events.append("eof_received")
        self.eof.set_result(None)

    def connection_lost(self, exc):
        self.events.append("connection_lost")
        self.lost.set_result(exc)


@pytest.mark.parametrize("buffer_size", [64 * 1024, 100])
def test_tls_buffered_protocol_receives_everything_then_eof(loop, tls, buffer_size):
    # A 100-byte buffer fills before the records are all decrypted: the rest comes on the
    # following iterations.
    message = payload(300_000)

    async def main():
        accepted = Accepted()
        server, port = await tls_server(tls, accepted)
        transport, proto = await tls_client(tls, port, lambda: BufferedRecorder(buffer_size))
        server_proto = await accepted_connection(accepted)
        server_proto.transport.write(message)
        server_proto.transport.close()
        await asyncio.wait_for(proto.lost, 10)
        assert bytes(proto.data) == message
        assert proto.events == ["buffer_updated", "eof_received", "connection_lost"]
        assert transport.is_closing()
        await close_server(server)

    run(loop, main())


def test_tls_write_flow_control_pauses_and_resumes_the_application(loop, tls):
    message = payload(2 * 1024 * 1024)

    async def main():
        accepted = Accepted()
        server, port = await tls_server(tls, accepted)
        transport, proto = await tls_client(tls, port)
        server_proto = await accepted_connection(accepted)
        server_proto.transport.pause_reading()
        assert not server_proto.transport.is_reading()
        shrink_buffers(transport.get_extra_info("socket"))
        shrink_buffers(server_proto.transport.get_extra_info("socket"))
        transport.set_write_buffer_limits(high=32 * 1024)
        assert transport.get_write_buffer_limits() == (8 * 1024, 32 * 1024)
        for i in range(0, len(message), 16 * 1024):
            transport.write(message[i : i + 16 * 1024])
        paused_at = await asyncio.wait_for(proto.paused, 10)
        assert paused_at >= 32 * 1024
        assert transport.get_write_buffer_size() > 0
        server_proto.transport.resume_reading()
        resumed_at = await asyncio.wait_for(proto.resumed, 10)
        assert resumed_at <= 8 * 1024
        assert await server_proto.wait_bytes(len(message)) == message
        assert proto.events[:3] == ["connection_made", "pause_writing", "resume_writing"]
        transport.close()
        await proto.lost
        await close_server(server)

    run(loop, main())


def test_tls_pause_reading_holds_the_plaintext_back(loop, tls):
    async def main():
        accepted = Accepted()
        server, port = await tls_server(tls, accepted)
        transport, proto = await tls_client(tls, port)
        server_proto = await accepted_connection(accepted)
        transport.pause_reading()
        assert not transport.is_reading()
        server_proto.transport.write(b"held back")
        for _ in range(20):
            await asyncio.sleep(0.01)
        assert proto.data == b""
        transport.resume_reading()
        assert transport.is_reading()
        assert await proto.wait_bytes(9) == b"held back"
        transport.close()
        await proto.lost
        await close_server(server)

    run(loop, main())


def test_tls_write_takes_bytes_like_data_and_rejects_the_rest(loop, tls):
    async def main():
        accepted = Accepted()
        server, port = await tls_server(tls, accepted)
        transport, proto = await tls_client(tls, port)
        server_proto = await accepted_connection(accepted)
        transport.write(bytearray(b"one "))
        transport.write(memoryview(b"two "))
        transport.write(b"")
        transport.writelines([b"three ", bytearray(b"four")])
        with pytest.raises(TypeError, match="data: expecting a bytes-like instance, got str"):
            transport.write("five")
        assert await server_proto.wait_bytes(18) == b"one two three four"
        transport.close()
        await proto.lost
        await close_server(server)

    run(loop, main())


class FailingReceiver(RecordingProtocol):
    def data_received(self, data):
        super().data_received(data)
        raise RuntimeError("application bug")


def test_tls_error_in_data_received_is_reported_and_closes(loop, tls):
    async def main():
        calls = record_exception_handler(loop)
        accepted = Accepted()
        server, port = await tls_server(tls, accepted)
        transport, proto = await tls_client(tls, port, FailingReceiver)
        server_proto = await accepted_connection(accepted)
        server_proto.transport.write(b"boom")
        exc = await asyncio.wait_for(proto.lost, 10)
        assert isinstance(exc, RuntimeError)
        assert [c["message"] for c in calls] == ["Fatal error on SSL protocol"]
        assert isinstance(calls[0]["exception"], RuntimeError)
        await asyncio.wait_for(server_proto.lost, 10)
        await close_server(server)

    run(loop, main())


class FailingPauser(RecordingProtocol):
    def pause_writing(self):
        super().pause_writing()
        raise RuntimeError("pause failed")


def test_tls_error_in_pause_writing_goes_to_the_exception_handler(loop, tls):
    async def main():
        calls = record_exception_handler(loop)
        accepted = Accepted()
        server, port = await tls_server(tls, accepted)
        transport, proto = await tls_client(tls, port, FailingPauser)
        server_proto = await accepted_connection(accepted)
        transport.set_write_buffer_limits(high=0)
        transport.write(b"x" * 1000)
        await asyncio.wait_for(proto.paused, 10)
        assert [c["message"] for c in calls] == ["protocol.pause_writing() failed"]
        assert calls[0]["transport"] is transport
        assert await server_proto.wait_bytes(1000) == b"x" * 1000
        transport.close()
        await proto.lost
        await close_server(server)

    run(loop, main())


def test_tls_peer_closing_without_close_notify_is_eof(loop, tls):
    async def main():
        accepted = Accepted()
        server, port = await tls_server(tls, accepted)
        transport, proto = await tls_client(tls, port)
        server_proto = await accepted_connection(accepted)
        server_proto.transport.write(b"last words")
        assert await proto.wait_bytes(10) == b"last words"
        # The TCP connection ends under the TLS session: no close_notify.
        server_proto.transport.get_extra_info("socket").shutdown(socket.SHUT_RDWR)
        assert await asyncio.wait_for(proto.lost, 10) is None
        assert proto.callbacks() == [
            "connection_made",
            "data_received",
            "eof_received",
            "connection_lost",
        ]
        await close_server(server)

    run(loop, main())


def test_tls_abort_drops_the_connection_at_once(loop, tls):
    async def main():
        accepted = Accepted()
        server, port = await tls_server(tls, accepted)
        transport, proto = await tls_client(tls, port)
        server_proto = await accepted_connection(accepted)
        transport.abort()
        assert transport.is_closing()
        assert await asyncio.wait_for(proto.lost, 10) is None
        await asyncio.wait_for(server_proto.lost, 10)
        assert "data_received" not in server_proto.events
        transport.write(b"after abort")  # dropped, as on asyncio
        await close_server(server)

    run(loop, main())


def test_tls_writes_after_close_are_dropped(loop, tls):
    async def main():
        accepted = Accepted()
        server, port = await tls_server(tls, accepted)
        transport, proto = await tls_client(tls, port)
        server_proto = await accepted_connection(accepted)
        transport.write(b"before")
        transport.close()
        transport.write(b"after")
        assert await proto.lost is None
        await asyncio.wait_for(server_proto.lost, 10)
        assert bytes(server_proto.data) == b"before"
        await close_server(server)

    run(loop, main())


def test_tls_client_context_is_released_after_a_double_close(loop, tls):
    # asyncio's transport lets go of the TLS protocol on a second close(): nothing keeps the
    # context alive then, without waiting for the cycle collector.
    async def main():
        server, port = await tls_server(tls, EchoProtocol)
        context = tls.client_context()
        transport, proto = await loop.create_connection(
            RecordingProtocol, "127.0.0.1", port, ssl=context, server_hostname=SERVER_HOSTNAME
        )
        transport.write(b"ping")
        await proto.wait_bytes(4)
        transport.close()
        transport.close()
        await proto.lost
        await close_server(server)
        return weakref.ref(context), proto

    gc.disable()
    try:
        # The application protocol still holds its transport.
        ref, proto = run(loop, main())
        assert proto.transport is not None
        assert ref() is None
    finally:
        gc.enable()


def test_tls_peer_closing_mid_handshake_fails_the_connect(loop, tls):
    async def main():
        async def hang_up(reader, writer):
            writer.close()

        server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(ConnectionResetError):
            await tls_client(tls, port)
        await close_server(server)

    run(loop, main())


def test_tls_garbage_instead_of_a_server_hello_fails_the_connect(loop, tls):
    async def main():
        async def babble(reader, writer):
            writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            await reader.read()
            writer.close()

        server = await asyncio.start_server(babble, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(ssl.SSLError):
            await tls_client(tls, port)
        await close_server(server)

    run(loop, main())


def test_tls_garbage_instead_of_a_client_hello_closes_quietly(loop, tls):
    async def main():
        calls = record_exception_handler(loop)
        server, port = await tls_server(tls, RecordingProtocol)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\n\r\n")
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
        await writer.wait_closed()
        await close_server(server)
        assert calls == []

    run(loop, main())


def test_tls_server_side_extra_info(loop, tls):
    async def main():
        accepted = Accepted()
        server_context = tls.server_context()
        server = await loop.create_server(accepted, "127.0.0.1", 0, ssl=server_context)
        port = server.sockets[0].getsockname()[1]
        transport, proto = await tls_client(tls, port)
        server_proto = await accepted_connection(accepted)
        await server_proto.made
        st = server_proto.transport
        assert st.get_extra_info("sslcontext") is server_context
        assert st.get_extra_info("peercert") is None  # the client sent no certificate
        assert st.get_extra_info("cipher")[1] in ("TLSv1.2", "TLSv1.3")
        assert st.get_extra_info("compression") is None
        assert st.get_extra_info("ssl_object").server_side
        assert st.get_extra_info("peername") == transport.get_extra_info("sockname")
        assert st.get_extra_info("sockname") == ("127.0.0.1", port)
        assert st.get_extra_info("socket").fileno() >= 0
        assert st.get_extra_info("no such key", "default") == "default"
        transport.close()
        await proto.lost
        await close_server(server)

    run(loop, main())


# --- the switch -----------------------------------------------------------------------------


@pytest.mark.oxloop_only("OXLOOP_TLS chooses between oxloop's two TLS paths")
@pytest.mark.parametrize(
    "setting, expected", [(None, "native"), ("stdlib", "stdlib"), ("native", "native")]
)
def test_oxloop_tls_environment_variable_picks_the_tls_protocol(
    loop_name, tls, monkeypatch, setting, expected
):
    if setting is None:
        monkeypatch.delenv("OXLOOP_TLS", raising=False)
    else:
        monkeypatch.setenv("OXLOOP_TLS", setting)
    loop = oxloop.new_event_loop()

    async def main():
        server, port = await tls_server(tls, EchoProtocol)
        transport, proto = await tls_client(tls, port)
        protocol = transport._ssl_protocol
        transport.close()
        await proto.lost
        await close_server(server)
        return protocol

    try:
        assert loop.tls_implementation == expected
        protocol = run(loop, main())
    finally:
        loop.close()
    if expected == "native":
        assert isinstance(protocol, oxloop.tls.TLSProtocol)
    else:
        assert type(protocol) is asyncio.sslproto.SSLProtocol


def test_loops_in_threads_at_once_keep_each_connections_bytes(loop_factory, tls):
    """Loops in two threads echo TLS streams at the same time, each its own byte pattern.
    `SSLObject.read` lets go of the GIL while it decrypts: a decrypt buffer shared by threads
    mixed one loop's plaintext into the other's (oxloop's single-copy read did)."""
    import threading

    size, chunk = 2 * 1024 * 1024, 64 * 1024

    async def roundtrip(seed):
        server, port = await tls_stream_server(tls)
        reader, writer = await open_tls(tls, port)
        sent = bytes((seed + i * 7 + i // 251) % 256 for i in range(size))

        async def send():
            for start in range(0, size, chunk):
                writer.write(sent[start : start + chunk])
                await writer.drain()

        sender = asyncio.ensure_future(send())
        received = await reader.readexactly(size)
        await sender
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return received == sent

    results = {}

    def in_thread(seed):
        thread_loop = loop_factory()
        try:
            results[seed] = thread_loop.run_until_complete(asyncio.wait_for(roundtrip(seed), 60))
        except BaseException as exc:  # the assertion below names it
            results[seed] = exc

    threads = [threading.Thread(target=in_thread, args=(seed,)) for seed in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert results == {1: True, 2: True}
