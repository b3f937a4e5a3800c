"""Helpers shared by the networking tests (test_tcp, test_server, test_streams, test_unix,
test_scale, test_soak): fd counting, protocols that record or echo, and resource-limit handling.

Not a test module: pytest puts `tests/` on `sys.path` (rootdir-relative "prepend" import mode,
no `__init__.py`), so tests import it as `from nethelpers import ...`.

Protocols here are created while the loop runs (by `create_connection`, or by a server when it
accepts), so they make their futures with `asyncio.get_running_loop()`.
"""

import asyncio
import contextlib
import gc
import hashlib
import os
import resource
import socket
import struct

import pytest

TIMEOUT = 10  # seconds: generous bound for any single awaited step
SETTLE_ITERATIONS = 5  # after a test's coroutine: a peer's close is seen within three


def fd_count():
    """How many fds this process has open right now, once garbage from earlier tests (sockets
    left to the collector) is gone, so that it cannot close in the middle of a measurement."""
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


def lowest_free_fd():
    """The fd number the next open()/socket()/accept() will get."""
    fd = 0
    while True:  # fstat opens nothing, unlike listing /proc/self/fd
        try:
            os.fstat(fd)
        except OSError:
            return fd
        fd += 1


def run(loop, coro, timeout=TIMEOUT):
    """Run `coro` on `loop` to completion, failing (TimeoutError) if it takes over `timeout`,
    then let the loop finish the closes it started: a connection whose peer `coro` closed sees
    EOF and closes a few iterations later. Without them, its transport would be open when the
    loop closes, and left to the garbage collector (the teardown checks fail that). On 3.11
    `wait_for` took those iterations itself; 3.12+ returns at once."""
    result = loop.run_until_complete(asyncio.wait_for(coro, timeout))
    for _ in range(SETTLE_ITERATIONS):
        loop.call_soon(loop.stop)  # one iteration each, and no task for a task factory to see
        loop.run_forever()
    return result


def payload(size, seed=b"oxloop"):
    """`size` deterministic, non-repeating-looking bytes (so reordering would be noticed)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(seed + counter.to_bytes(8, "little")).digest()
        counter += 1
    return bytes(out[:size])


class RecordingProtocol(asyncio.Protocol):
    """Logs every callback, in order, in `events`; collects received bytes in `data`.

    Futures: `made` (result: the transport), `eof` (set on eof_received), `lost` (result: the
    exception given to connection_lost), `paused`/`resumed` (write flow control).
    `eof_result` is what eof_received returns (None/False: let the transport close).
    """

    def __init__(self, eof_result=None):
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.events = []
        self.data = bytearray()
        self.transport = None
        self.eof_result = eof_result
        self.made = loop.create_future()
        self.eof = loop.create_future()
        self.lost = loop.create_future()
        self.paused = loop.create_future()
        self.resumed = loop.create_future()
        self._want = None  # (nbytes, future) while someone waits for data

    def connection_made(self, transport):
        self.events.append("connection_made")
        self.transport = transport
        self.made.set_result(transport)

    def data_received(self, data):
        self.events.append("data_received")
        assert isinstance(data, bytes), type(data)
        self.data += data
        self._check_want()

    def eof_received(self):
        self.events.append("eof_received")
        self.eof.set_result(None)
        self._check_want()
        return self.eof_result

    def connection_lost(self, exc):
        self.events.append("connection_lost")
        if not self.lost.done():
            self.lost.set_result(exc)
        self._check_want()

    def pause_writing(self):
        self.events.append("pause_writing")
        if not self.paused.done():
            self.paused.set_result(self.transport.get_write_buffer_size())

    def resume_writing(self):
        self.events.append("resume_writing")
        if not self.resumed.done():
            self.resumed.set_result(self.transport.get_write_buffer_size())

    def _check_want(self):
        if self._want is None:
            return
        nbytes, fut = self._want
        if fut.done():
            self._want = None
        elif len(self.data) >= nbytes or self.eof.done() or self.lost.done():
            self._want = None
            fut.set_result(None)

    async def wait_bytes(self, nbytes):
        """Wait until `nbytes` bytes in total have arrived (or EOF / connection lost)."""
        fut = self.loop.create_future()
        self._want = (nbytes, fut)
        self._check_want()
        await fut
        return bytes(self.data)

    def callbacks(self):
        """`events` with consecutive data_received entries collapsed into one."""
        out = []
        for event in self.events:
            if not (out and event == out[-1] == "data_received"):
                out.append(event)
        return out


class EchoProtocol(asyncio.Protocol):
    """Writes back everything it receives; closes when the peer half-closes."""

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def eof_received(self):
        return None  # the transport closes itself


class Accepted:
    """A server's protocol factory that keeps the protocols it made.

    `await accepted.next()` gives the protocol of the next accepted connection.
    """

    def __init__(self, protocol_cls=RecordingProtocol, **kwargs):
        self.protocol_cls = protocol_cls
        self.kwargs = kwargs
        self.protocols = []
        self._queue = None

    def __call__(self):
        proto = self.protocol_cls(**self.kwargs)
        self.protocols.append(proto)
        self._get_queue().put_nowait(proto)
        return proto

    def _get_queue(self):
        if self._queue is None:
            self._queue = asyncio.Queue()
        return self._queue

    async def next(self):
        return await asyncio.wait_for(self._get_queue().get(), TIMEOUT)


async def start_echo_server(host="127.0.0.1", **kwargs):
    """An EchoProtocol server on `host`, port 0; returns (server, port)."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(EchoProtocol, host, 0, **kwargs)
    return server, server.sockets[0].getsockname()[1]


async def echo_once(port, message, host="127.0.0.1"):
    """Connect, send `message`, half-close, return everything the server sent back."""
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_connection(RecordingProtocol, host, port)
    transport.write(message)
    transport.write_eof()
    await proto.lost
    return bytes(proto.data)


async def stream_echo_handler(reader, writer):
    """Echo everything until EOF, then close cleanly."""
    while data := await reader.read(64 * 1024):
        writer.write(data)
        await writer.drain()
    writer.close()
    await writer.wait_closed()


class CountingEcho(asyncio.Protocol):
    """Echo protocol that tracks how many server-side connections are open at once."""

    open_now = 0
    peak = 0
    all_closed = None  # a future set when open_now drops back to 0

    def connection_made(self, transport):
        self.transport = transport
        CountingEcho.open_now += 1
        CountingEcho.peak = max(CountingEcho.peak, CountingEcho.open_now)

    def data_received(self, data):
        self.transport.write(data)

    def connection_lost(self, exc):
        CountingEcho.open_now -= 1
        if CountingEcho.open_now == 0 and CountingEcho.all_closed is not None:
            if not CountingEcho.all_closed.done():
                CountingEcho.all_closed.set_result(None)


async def hold_and_echo(count, batch=500):
    """Open `count` connections (in batches), hold them all, echo once on each, close all."""
    loop = asyncio.get_running_loop()
    CountingEcho.open_now = CountingEcho.peak = 0
    CountingEcho.all_closed = None
    server = await loop.create_server(CountingEcho, "127.0.0.1", 0, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    conns = []
    for start in range(0, count, batch):
        n = min(batch, count - start)
        conns += await asyncio.gather(
            *(loop.create_connection(RecordingProtocol, "127.0.0.1", port) for _ in range(n))
        )
    for i, (transport, _) in enumerate(conns):
        transport.write(b"connection %05d" % i)
    replies = await asyncio.gather(*(proto.wait_bytes(16) for _, proto in conns))
    assert replies == [b"connection %05d" % i for i in range(count)]
    assert CountingEcho.peak == count  # every connection was open at the same time
    CountingEcho.all_closed = loop.create_future()
    for transport, _ in conns:
        transport.close()
    await asyncio.gather(*(proto.lost for _, proto in conns))
    # The server side sees each close as an EOF some iterations later: wait for all of them.
    await CountingEcho.all_closed
    server.close()
    await server.wait_closed()


def set_linger_zero(sock):
    """Make close() on `sock` send RST instead of FIN (SO_LINGER on, timeout 0)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def shrink_buffers(sock, size=16 * 1024):
    """Small kernel socket buffers, so a peer that does not read fills them quickly."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


@contextlib.contextmanager
def nofile_limit(soft):
    """Temporarily set the RLIMIT_NOFILE soft limit to `soft` (restored on exit)."""
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, old)


@contextlib.contextmanager
def at_least_nofile(needed):
    """Raise RLIMIT_NOFILE to at least `needed` fds for the block, or skip the test.

    The soft limit goes up to the hard limit; the hard limit goes up only if the process may
    raise it (root). Both are restored on exit.
    """
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft, hard = old
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            except (ValueError, OSError):
                pytest.skip(
                    f"needs {needed} fds but RLIMIT_NOFILE hard limit is {hard} "
                    "and this process may not raise it"
                )
        else:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, old)


def listen_backlog(port):
    """The listen() backlog of the TCP listening socket on local `port`, read with sock_diag.

    (`ss -lnt` shows the same number as Send-Q.) Raises OSError if netlink is not available.
    """
    nlmsg_done, sock_diag_by_family = 3, 20
    tcp_listen = 10
    req = struct.pack("=BBBBI", socket.AF_INET, socket.IPPROTO_TCP, 0, 0, 1 << tcp_listen)
    req += bytes(48)  # inet_diag_sockid: match any
    header = struct.pack("=IHHII", 16 + len(req), sock_diag_by_family, 0x1 | 0x300, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 4) as nl:  # NETLINK_SOCK_DIAG
        nl.sendto(header + req, (0, 0))
        while True:
            buf = nl.recv(65536)
            if not buf:
                break
            offset = 0
            while offset + 16 <= len(buf):
                length, kind = struct.unpack_from("=IH", buf, offset)
                if kind == nlmsg_done or length < 16:
                    raise LookupError(f"no TCP socket listening on port {port}")
                msg = offset + 16
                sport = struct.unpack_from("!H", buf, msg + 4)[0]
                if sport == port:
                    return struct.unpack_from("=I", buf, msg + 60)[0]  # idiag_wqueue
                offset += (length + 3) & ~3
    raise LookupError(f"no TCP socket listening on port {port}")
