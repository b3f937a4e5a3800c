"""A protocol that raises in every callback: stream (plain and buffered, made by
`connect_accepted_socket` and by a server), and datagram.

What the exception handler receives (message, keys, exception), which callbacks run after the
failure, and whether the transport is closed must be stock asyncio's: a failing
`connection_made`, `connection_lost`, `datagram_received` or `error_received` is reported as a
failed callback and the transport goes on; a failing `data_received`, `eof_received`,
`get_buffer` or `buffer_updated` is a fatal error that closes the transport; a failing
`pause_writing`/`resume_writing` is reported and the transport goes on. The loop keeps running.
"""

import asyncio
import re
import socket

import pytest
from nethelpers import run

pytestmark = pytest.mark.timeout(30)


def _seen(ctx):
    """An exception handler call as compared between the loops (handle reprs differ)."""
    message = re.sub(
        r"^Exception in callback .*", "Exception in callback", ctx["message"], flags=re.S
    )
    exc = ctx.get("exception")
    return ("handler", message, sorted(ctx), repr(exc))


class Raising:
    """Mixin: every protocol method logs its call and raises ValueError(its name), except those
    named in `spare`."""

    def __init__(self, log, spare=()):
        self.log = log
        self.spare = set(spare)

    def _called(self, name, *details):
        self.log.append((name, *details))
        if name not in self.spare:
            raise ValueError(name)

    def connection_made(self, transport):
        self.transport = transport
        self._called("connection_made")

    def connection_lost(self, exc):
        self._called("connection_lost", repr(exc))

    def pause_writing(self):
        self._called("pause_writing")

    def resume_writing(self):
        self._called("resume_writing")

    def eof_received(self):
        self._called("eof_received")


class RaisingProtocol(Raising, asyncio.Protocol):
    def data_received(self, data):
        self._called("data_received")


class RaisingBufferedProtocol(Raising, asyncio.BufferedProtocol):
    def get_buffer(self, sizehint):
        self._called("get_buffer")
        return bytearray(1024)

    def buffer_updated(self, nbytes):
        self._called("buffer_updated")


class RaisingDatagramProtocol(Raising, asyncio.DatagramProtocol):
    def datagram_received(self, data, addr):
        self._called("datagram_received")

    def error_received(self, exc):
        self._called("error_received", type(exc).__name__)


async def _settle():
    for _ in range(5):
        await asyncio.sleep(0.005)


async def _drive_stream(loop, log, transport, peer):
    """Data, then EOF from the peer, then close(); logs the transport's state in between."""
    await _settle()
    log.append(("closing", transport.is_closing()))
    peer.send(b"data")
    await _settle()
    log.append(("closing", transport.is_closing()))
    peer.shutdown(socket.SHUT_WR)
    await _settle()
    log.append(("closing", transport.is_closing()))
    transport.close()
    await _settle()
    peer.close()
    assert await asyncio.sleep(0, "alive") == "alive"


def _record(loop):
    log = []
    loop.set_exception_handler(lambda lp, ctx: log.append(_seen(ctx)))
    return log


CALLBACK_FAILED = ["exception", "handle", "message"]
FATAL = ["exception", "message", "protocol", "transport"]


def _expected_stream(spare, data_method):
    made = [("connection_made",)]
    if "connection_made" not in spare:
        made.append(
            ("handler", "Exception in callback", CALLBACK_FAILED, "ValueError('connection_made')")
        )
    lost_exc = f"ValueError('{data_method}')"
    return [
        *made,
        ("closing", False),
        (data_method,),
        ("handler", f"Fatal error: protocol.{data_method}() call failed.", FATAL, lost_exc),
        ("connection_lost", lost_exc),
        ("handler", "Exception in callback", CALLBACK_FAILED, "ValueError('connection_lost')"),
        ("closing", True),
        ("closing", True),
    ]


@pytest.mark.parametrize("spare", [(), ("connection_made",)], ids=["all-raise", "made-works"])
def test_stream_protocol_raising_everywhere(loop, spare):
    log = _record(loop)

    async def main():
        mine, peer = socket.socketpair()
        mine.setblocking(False)
        transport, _ = await loop.connect_accepted_socket(lambda: RaisingProtocol(log, spare), mine)
        await _drive_stream(loop, log, transport, peer)

    run(loop, main())
    assert log == _expected_stream(spare, "data_received")


def test_eof_received_raising_is_fatal(loop):
    log = _record(loop)

    async def main():
        mine, peer = socket.socketpair()
        mine.setblocking(False)
        transport, _ = await loop.connect_accepted_socket(
            lambda: RaisingProtocol(log, ("connection_made", "data_received")), mine
        )
        await _drive_stream(loop, log, transport, peer)

    run(loop, main())
    lost_exc = "ValueError('eof_received')"
    assert log == [
        ("connection_made",),
        ("closing", False),
        ("data_received",),
        ("closing", False),
        ("eof_received",),
        ("handler", "Fatal error: protocol.eof_received() call failed.", FATAL, lost_exc),
        ("connection_lost", lost_exc),
        ("handler", "Exception in callback", CALLBACK_FAILED, "ValueError('connection_lost')"),
        ("closing", True),
    ]


@pytest.mark.parametrize("failing", ["get_buffer", "buffer_updated"])
def test_buffered_protocol_raising(loop, failing):
    log = _record(loop)
    spare = {"connection_made", "get_buffer", "buffer_updated"} - {failing}

    async def main():
        mine, peer = socket.socketpair()
        mine.setblocking(False)
        transport, _ = await loop.connect_accepted_socket(
            lambda: RaisingBufferedProtocol(log, spare), mine
        )
        await _drive_stream(loop, log, transport, peer)

    run(loop, main())
    expected = _expected_stream(spare, failing)
    if failing == "buffer_updated":
        expected.insert(2, ("get_buffer",))
    assert log == expected


def test_server_protocol_raising_in_connection_made_keeps_the_server_serving(loop):
    log = _record(loop)

    async def main():
        server = await loop.create_server(lambda: RaisingProtocol(log), "127.0.0.1", 0)
        addr = server.sockets[0].getsockname()
        for _ in range(2):
            client = socket.socket()
            client.setblocking(False)
            await loop.sock_connect(client, addr)
            await _settle()
            await loop.sock_sendall(client, b"x")
            await _settle()
            client.close()
        server.close()
        await server.wait_closed()

    run(loop, main())
    one = [
        ("connection_made",),
        ("handler", "Exception in callback", CALLBACK_FAILED, "ValueError('connection_made')"),
        ("data_received",),
        (
            "handler",
            "Fatal error: protocol.data_received() call failed.",
            FATAL,
            "ValueError('data_received')",
        ),
        ("connection_lost", "ValueError('data_received')"),
        ("handler", "Exception in callback", CALLBACK_FAILED, "ValueError('connection_lost')"),
    ]
    assert log == one + one


def test_pause_and_resume_writing_raising_are_reported_and_the_transport_goes_on(loop):
    log = _record(loop)

    async def main():
        mine, peer = socket.socketpair()
        mine.setblocking(False)
        peer.setblocking(False)
        transport, _ = await loop.connect_accepted_socket(
            lambda: RaisingProtocol(log, ("connection_made",)), mine
        )
        transport.set_write_buffer_limits(high=1000, low=100)
        transport.write(b"x" * 4_000_000)
        await _settle()
        log.append(("closing", transport.is_closing()))
        while transport.get_write_buffer_size():
            try:
                peer.recv(1 << 20)
            except BlockingIOError:
                await asyncio.sleep(0.005)
        await _settle()
        log.append(("closing", transport.is_closing()))
        transport.close()
        await _settle()
        peer.close()

    run(loop, main())
    assert log == [
        ("connection_made",),
        ("pause_writing",),
        ("handler", "protocol.pause_writing() failed", FATAL, "ValueError('pause_writing')"),
        ("closing", False),
        ("resume_writing",),
        ("handler", "protocol.resume_writing() failed", FATAL, "ValueError('resume_writing')"),
        ("closing", False),
        ("connection_lost", "None"),
        ("handler", "Exception in callback", CALLBACK_FAILED, "ValueError('connection_lost')"),
    ]


def test_datagram_protocol_raising_everywhere(loop):
    log = _record(loop)

    async def main():
        transport, _ = await loop.create_datagram_endpoint(
            lambda: RaisingDatagramProtocol(log), local_addr=("127.0.0.1", 0)
        )
        await _settle()
        own = transport.get_extra_info("sockname")
        transport.sendto(b"to myself", own)
        await _settle()
        log.append(("closing", transport.is_closing()))
        # error_received is called from inside sendto(): its exception reaches the caller.
        try:
            transport.sendto(bytes(100_000), own)  # EMSGSIZE
        except ValueError as exc:
            log.append(("sendto raised", repr(exc)))
        log.append(("closing", transport.is_closing()))
        transport.close()
        await _settle()

    run(loop, main())
    assert log == [
        ("connection_made",),
        ("handler", "Exception in callback", CALLBACK_FAILED, "ValueError('connection_made')"),
        ("datagram_received",),
        ("handler", "Exception in callback", CALLBACK_FAILED, "ValueError('datagram_received')"),
        ("closing", False),
        ("error_received", "OSError"),
        ("sendto raised", "ValueError('error_received')"),
        ("closing", False),
        ("connection_lost", "None"),
        ("handler", "Exception in callback", CALLBACK_FAILED, "ValueError('connection_lost')"),
    ]
