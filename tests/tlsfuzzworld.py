"""One side of the TLS differential fuzzer (`test_fuzz_tls.py`): a loop with two TLS servers and a
plain one (whose connections the program upgrades with `start_tls`), the TLS connections a random
program made on it, and what the program could observe of them.

Not a test module. The fuzzer makes one `TLSWorld` on stock asyncio, one on oxloop (its Rust TLS
layer) and one on oxloop with asyncio's own TLS protocol (`tls_implementation = "stdlib"`),
applies the same operation to each and compares what they observed. After every operation the
world runs its loop until it is quiet (`settle`): every byte written has reached the other end
(unless that end paused reading), and every connection that is closing, whose peer closed or
broke, has been lost. Handshake and shutdown timeouts are short, so a silent peer resolves too.
Timing decides only what is left out of the record: how the bytes were cut into
`data_received` calls, write flow control (how much the kernel took at once), and, on a
connection that broke under the TLS session (raw bytes written on its socket, a peer that
aborted or raised), whether the other end saw EOF or a reset.

A protocol callback raising KeyboardInterrupt or SystemExit makes the loop's run_until_complete
raise it, as on stock asyncio; the world records it (per operation, see `operation`) and runs the
loop again, so every later operation checks that the loop and its connections still work.

Reuses `fuzzworld.outcome` (a call's result as a trace line).
"""

import asyncio
import itertools
import os
import re
import socket
import ssl
import sys

from fuzzworld import outcome
from tlshelpers import SERVER_HOSTNAME, untrusting_client_context

import oxloop

HANDSHAKE = 0.1  # handshake timeout of the impatient server and of clients of silent servers
SHUTDOWN = 0.5  # every connection's ssl_shutdown_timeout (a peer that never answers close_notify)
SETTLE = 5.0  # seconds a world may take to be quiet after an operation
INTERRUPTED = 1.0  # seconds a call may still take after a callback raised KeyboardInterrupt
STEP = 0.002  # seconds between two looks at the world while it settles


def client_hello():
    """The first flight of a TLS client (its ClientHello), as bytes."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    outgoing = ssl.MemoryBIO()
    sslobj = context.wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname=SERVER_HOSTNAME)
    try:
        sslobj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


class Recorder:
    """An application protocol's observations: its callbacks in order (consecutive data
    collapsed into one "data"), the plaintext bytes it got, and write flow control checked to
    alternate (pause, resume, pause...). `raises` maps a callback to the exception it raises."""

    def __init__(self, name, raises):
        self.name = name
        self.raises = dict(raises)
        self.events = []
        self.received = 0
        self.sent = 0
        self.transport = None
        self.made = False
        self.lost = False
        self.raised = False
        self.interrupted = False  # a callback raised KeyboardInterrupt or SystemExit
        self.keep_open = False  # what eof_received returns
        self.started_tls = False  # the program called start_tls on this end
        self.tls_pending = False  # ... and it has not returned the TLS transport
        self.aborted = False
        self.reading_paused = False
        self.writing_paused = False
        self.flow_errors = 0

    def _event(self, method, record=True):
        if record and not (method == "data" and self.events and self.events[-1] == "data"):
            self.events.append(method)
        self._raise(method)

    def _raise(self, method):
        exc = self.raises.get(method)
        if exc is None:
            return
        if issubclass(exc, Exception):
            self.raised = True
        else:
            # KeyboardInterrupt and SystemExit leave the loop and the transport open: raised
            # once, as an interrupted program would see them.
            del self.raises[method]
            self.interrupted = True
        raise exc(f"{self.name} from {method}")

    def connection_made(self, transport):
        self.transport = transport
        self.made = True
        self._event("connection_made")

    def eof_received(self):
        self._event("eof_received")
        return self.keep_open

    def connection_lost(self, exc):
        self.lost = True
        self.events.append(f"connection_lost({type(exc).__name__})")
        self._raise("connection_lost")

    def pause_writing(self):
        self.flow_errors += self.writing_paused
        self.writing_paused = True

    def resume_writing(self):
        self.flow_errors += not self.writing_paused
        self.writing_paused = False

    def closing(self):
        return self.transport is not None and self.transport.is_closing()

    def record(self, rough):
        """What the other worlds must match. On a connection that broke (`rough`), an end that
        aborted or raised gives its callbacks (a raising data_received got a first chunk of a
        size timing decides); the other end only whether it was made and lost."""
        if not rough:
            return (self.name, self.events, self.received, self.flow_errors)
        if self.raised or self.aborted:
            return (self.name, self.events, self.flow_errors)
        return (self.name, self.made, self.lost, self.flow_errors)


class StreamRecorder(Recorder, asyncio.Protocol):
    def data_received(self, data):
        self.received += len(data)
        self._event("data")


class BufferedRecorder(Recorder, asyncio.BufferedProtocol):
    """Hands out a 100-byte buffer, so records are decrypted over several calls."""

    def __init__(self, name, raises):
        super().__init__(name, raises)
        self.buffer = bytearray(100)

    def get_buffer(self, sizehint):
        # Not recorded: asyncio asks for a buffer before each read that may find only a
        # handshake message (a session ticket), and how many arrive per read is timing.
        self._event("get_buffer", record=False)
        return memoryview(self.buffer)

    def buffer_updated(self, nbytes):
        self.received += nbytes
        self._event("data")


class ReaderRecorder(StreamRecorder, asyncio.StreamReaderProtocol):
    """A plain server end reading through a `StreamReader` until it starts TLS (the shape of
    CPython gh-142352: what the reader holds then is the start of the handshake)."""

    def __init__(self, name, raises):
        StreamRecorder.__init__(self, name, raises)
        self.reader = asyncio.StreamReader()
        # A callback makes StreamWriter.start_tls take this end for a server's (never called:
        # Recorder's connection_made comes first).
        asyncio.StreamReaderProtocol.__init__(self, self.reader, lambda reader, writer: None)

    def data_received(self, data):
        if self.started_tls:
            StreamRecorder.data_received(self, data)
        else:
            self.reader.feed_data(data)


class Connection:
    """A TLS connection with both ends on the world's loop."""

    def __init__(self, client, server):
        self.client = client
        self.server = server
        self.broken = False  # raw bytes or a shutdown under the TLS session

    def sides(self):
        return ((self.client, self.server), (self.server, self.client))

    def rough(self):
        """True once timing may decide between EOF and reset on one end."""
        return self.broken or any(r.raised or r.aborted for r in (self.client, self.server))

    def quiet(self):
        for me, peer in self.sides():
            if me.lost or not me.made or (me.reading_paused and not me.closing()):
                continue
            if self.rough() or me.closing() or peer.closing() or peer.lost:
                return False  # it must be lost
            if me.received < peer.sent:
                return False
        return True


class TLSWorld:
    """A loop under test, its TLS servers and the connections a program made on it."""

    def __init__(self, factory, debug, tls, stdlib=False):
        self.loop = factory()
        if stdlib:
            self.loop.tls_implementation = "stdlib"
        self.loop.set_debug(debug)
        self.loop.set_exception_handler(self._handler)
        self.tls = tls
        self.trace = []
        self.interrupts = []  # what left the loop during the current operation
        self.conns = []
        self.orphans = []  # clients whose connect failed, ends of an upgrade that failed
        self.detached = []  # ends whose start_tls failed (no longer their transport's protocol)
        self.clients = itertools.count()  # client names
        self.server_recorders = []  # every protocol the servers' factories made, in order
        self.raw_socks = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.setblocking(False)
        self.server = self._serve(HANDSHAKE * 40)
        self.impatient = self._serve(HANDSHAKE)
        self.plain_recorders = []  # what the plain server's factory made
        self.next_plain = (StreamRecorder, {})
        self.plain = self.loop.run_until_complete(
            self.loop.create_server(self._plain_protocol, "127.0.0.1", 0)
        )

    def _handler(self, loop, context):
        exc = context.get("exception")
        # A callback of a plain transport (an upgrade's, before or instead of TLS) is named by its
        # class, which is oxloop's own: "_SelectorSocketTransport._call_connection_lost(None)" on
        # asyncio is "_CoreTransport._call_connection_lost(None)" on oxloop.
        message = re.sub(r"\b_\w*Transport\.", "Transport.", context["message"])
        self.trace.append(f"handler({message}, {type(exc).__name__})")

    def _serve(self, handshake_timeout):
        def factory():
            recorder = StreamRecorder(f"s{len(self.server_recorders)}", self.next_server_raises)
            self.server_recorders.append(recorder)
            return recorder

        self.next_server_raises = {}
        return self.loop.run_until_complete(
            self.loop.create_server(
                factory,
                "127.0.0.1",
                0,
                ssl=self.tls.server_context(),
                ssl_handshake_timeout=handshake_timeout,
                ssl_shutdown_timeout=SHUTDOWN,
            )
        )

    def drive(self, coro, bounded=False):
        """run_until_complete(coro), again after each KeyboardInterrupt or SystemExit a protocol
        callback raised out of the loop (recorded in the trace, as a program that catches them
        would go on). `bounded`: a task still pending a second after such an interruption is
        cancelled, since a callback that never returned can leave a waiter nothing wakes (a
        client's connection_made: its create_connection waits for good on every loop)."""
        task = self.loop.create_task(coro)
        cancel = None
        while True:
            try:
                return self.loop.run_until_complete(task)
            except (KeyboardInterrupt, SystemExit) as exc:
                if task.done() and not task.cancelled() and task.exception() is exc:
                    raise
                self.interrupts.append(f"{type(exc).__name__}({exc})")
                if cancel is None and bounded:
                    cancel = self.loop.call_later(INTERRUPTED, task.cancel)
            finally:
                if cancel is not None and task.done():
                    cancel.cancel()

    def _plain_protocol(self):
        kind, raises = self.next_plain
        recorder = kind(f"p{len(self.plain_recorders)}", raises)
        self.plain_recorders.append(recorder)
        return recorder

    def operation(self, method, *args):
        """Applies one operation of the program; then the KeyboardInterrupt and SystemExit that
        left the loop meanwhile, sorted (which callback of which end raised them, not in which
        of the operation's loop runs they surfaced: that can be timing)."""
        getattr(self, method)(*args)
        if self.interrupts:
            self.trace.append(("interrupted", sorted(self.interrupts)))
            self.interrupts = []

    def run(self, coro, bound=SETTLE):
        return self.drive(asyncio.wait_for(coro, bound), bounded=True)

    def quiet(self):
        if not all(conn.quiet() for conn in self.conns):
            return False
        # An end whose peer went away before they were a Connection must be lost.
        paired = {id(conn.server) for conn in self.conns}
        return all(
            r.lost or not r.made or id(r) in paired for r in self.server_recorders + self.orphans
        )

    def settle(self, also=lambda: True):
        """Runs the loop until the world is quiet and `also()` is true (bounded)."""

        async def until_quiet():
            deadline = self.loop.time() + SETTLE
            while not (self.quiet() and also()):
                if self.loop.time() > deadline:
                    self.trace.append("never quiet")
                    return
                await asyncio.sleep(STEP)

        self.drive(until_quiet())

    # -- connections ------------------------------------------------------------------------

    def connect(self, kind, buffered, client_raises, server_raises):
        """A TLS client connection of the loop to its own server (`kind` "ok"), with a context
        that trusts no CA ("untrusted"), or to a plain listener that never speaks ("silent"),
        answers garbage ("garbage"), hangs up ("hangup") or sends a truncated record."""
        name = f"c{next(self.clients)}"
        client = (BufferedRecorder if buffered else StreamRecorder)(name, client_raises)
        self.next_server_raises = server_raises
        if kind in ("ok", "untrusted"):
            port = self.server.sockets[0].getsockname()[1]
        else:
            port = self.listener.getsockname()[1]
        context = untrusting_client_context() if kind == "untrusted" else self.tls.client_context()
        before = len(self.server_recorders)
        coro = self.loop.create_connection(
            lambda: client,
            "127.0.0.1",
            port,
            ssl=context,
            server_hostname=SERVER_HOSTNAME,
            ssl_handshake_timeout=HANDSHAKE if kind == "silent" else None,
            ssl_shutdown_timeout=SHUTDOWN,
        )

        async def connect():
            task = self.loop.create_task(coro)
            if kind in ("ok", "untrusted"):
                return await task
            conn, _ = await self.loop.sock_accept(self.listener)
            try:
                if kind == "garbage":
                    await self.loop.sock_sendall(conn, b"HTTP/1.1 400 Bad Request\r\n\r\n")
                elif kind == "truncated":
                    await self.loop.sock_sendall(conn, b"\x16\x03\x03\x00\x50" + b"\x02" * 10)
                    conn.shutdown(socket.SHUT_WR)
                elif kind == "hangup":
                    conn.close()
                return await task
            finally:
                conn.close()

        outcome_line = f"connect({kind}):{outcome(lambda: self.run(connect()))}"
        self.trace.append(outcome_line)
        self.next_server_raises = {}
        new = self.server_recorders[before:]
        if outcome_line.endswith(":ok") and new:
            self.conns.append(Connection(client, new[-1]))
            # The server's end is made once the client's Finished arrives.
            self.settle(lambda: client.lost or new[-1].made)
        else:
            self.orphans.append(client)
            self.settle()
            self.trace.append((client.name, client.events))

    def raw_client(self, how):
        """A plain TCP client of the impatient server: silent, sending garbage, or a part of a
        ClientHello (then waiting, or shutting its side); traces how the server ends it."""

        async def talk():
            sock = socket.socket()
            sock.setblocking(False)
            self.raw_socks.append(sock)
            await self.loop.sock_connect(sock, self.impatient.sockets[0].getsockname())
            if how.startswith("garbage"):
                await self.loop.sock_sendall(sock, b"GET / HTTP/1.1\r\n\r\n")
            elif how.startswith("partial"):
                await self.loop.sock_sendall(sock, client_hello()[:40])
            if how.endswith("eof"):
                sock.shutdown(socket.SHUT_WR)
            got = 0
            while chunk := await self.loop.sock_recv(sock, 65536):
                got += len(chunk)
            return "bytes then EOF" if got else "EOF"

        result = []
        self.trace.append(
            f"raw_client({how}):{outcome(lambda: result.append(self.run(talk())))}{result}"
        )
        self.settle()

    def upgrade(self, how, buffered, client_raises, server_raises):
        """A plain connection of the loop to its plain server, upgraded with `start_tls` on both
        ends at once ("ok"; "early": the client writes as soon as its start_tls returns, so the
        server may read those bytes with the client's Finished; "readahead": the client sends a
        line then its ClientHello, and the server starts TLS once its `StreamReader` holds the
        hello, gh-142352; "late": the server starts once its plain protocol got the hello), or
        on one end: after closing it ("closing", "server_closing"), once the peer closed
        ("peer_closed"), with a peer that stays plain ("timeout", "server_timeout"), or twice
        at once ("twice")."""
        name = f"c{next(self.clients)}"
        client = (BufferedRecorder if buffered else StreamRecorder)(name, client_raises)
        self.next_plain = (ReaderRecorder if how == "readahead" else StreamRecorder, server_raises)
        before = len(self.plain_recorders)
        port = self.plain.sockets[0].getsockname()[1]
        connect = self.loop.create_connection(lambda: client, "127.0.0.1", port)
        line = outcome(lambda: self.run(connect))
        self.next_plain = (StreamRecorder, {})
        self.settle(lambda: len(self.plain_recorders) > before and self.plain_recorders[-1].made)
        if line != "ok" or len(self.plain_recorders) <= before:
            self.trace.append(f"upgrade({how}): plain connection {line}")
            return
        server = self.plain_recorders[before]
        if how == "peer_closed":
            client.keep_open = True
            server.transport.close()
            self.settle(lambda: server.lost and "eof_received" in client.events)
        elif how == "closing":
            client.transport.close()
        elif how == "server_closing":
            server.transport.close()
        results = {}
        # start_tls on a closing transport, and the first of two at once, never return on
        # stock asyncio (their TLS protocol's waiter is never woken): bounded, and sooner than
        # `drive` cancels a call after an interruption, so that one bound decides.
        bound = SETTLE if how not in ("closing", "server_closing", "twice") else INTERRUPTED / 2
        line = outcome(lambda: self.run(self._upgrade(how, client, server, results), bound))
        self.trace.append(f"upgrade({how}):{line}{sorted(results.items())}")
        if results.get("client") == "ok" and results.get("server") == "ok":
            self.conns.append(Connection(client, server))
            self.settle()
        else:
            # An end whose start_tls failed is not told it was lost: its transport's protocol
            # is the TLS protocol, which had not made the connection.
            for recorder in (client, server):
                (self.detached if recorder.tls_pending else self.orphans).append(recorder)
            self.settle()
            self.trace.append([(r.name, r.events, r.received) for r in (client, server)])

    async def _upgrade(self, how, client, server, results):
        long, short = HANDSHAKE * 40, HANDSHAKE
        if how in ("closing", "peer_closed", "timeout"):
            await self._start_tls(client, results, "client", short)
        elif how in ("server_closing", "server_timeout"):
            await self._start_tls(server, results, "server", short)
        elif how == "late":
            # The server's plain protocol got the ClientHello as data: it is gone, on every loop
            # (only a StreamReader's bytes are handed over), so the client's handshake times
            # out and the server's then fails (its own timeout is long: one must come first).
            client_upgrade = asyncio.ensure_future(
                self._start_tls(client, results, "client", short)
            )
            while not server.received:
                await asyncio.sleep(STEP)
            await self._start_tls(server, results, "server", long)
            await client_upgrade
        elif how == "twice":
            await asyncio.gather(
                self._start_tls(client, results, "client", short),
                self._start_tls(client, results, "client again", short),
            )
        else:
            if how == "readahead":
                client.transport.write(b"STARTTLS\n")
            upgrading = asyncio.ensure_future(self._start_server_tls(how, server, results))
            await asyncio.sleep(0)
            await self._start_tls(client, results, "client", long)
            if how == "early" and results["client"] == "ok":
                client.transport.write(b"e" * 1000)
                client.sent += 1000
            await upgrading

    async def _start_server_tls(self, how, server, results):
        if how == "readahead":
            results["line"] = await server.reader.readline()
            while not server.reader._buffer:  # until the ClientHello is there too
                await asyncio.sleep(STEP)
            if not isinstance(self.loop, oxloop.Loop) and sys.version_info < (3, 14):
                hand_over_read_ahead(server.transport, server)
            # Upgraded as a stream server's handler does it, through its StreamWriter (kept: on
            # 3.13 a StreamWriter collected while open closes its transport).
            server.writer = asyncio.StreamWriter(server.transport, server, server.reader, self.loop)
            server.started_tls = server.tls_pending = True
            try:
                await server.writer.start_tls(
                    self.tls.server_context(), ssl_handshake_timeout=HANDSHAKE * 40
                )
            except Exception as exc:  # noqa: BLE001 - how it failed is the observation
                results["server"] = type(exc).__name__
                return
            # StreamWriter.start_tls takes no shutdown timeout on 3.11; the world's is short.
            server.writer.transport._ssl_protocol._ssl_shutdown_timeout = SHUTDOWN
            server.transport = server.writer.transport
            server.tls_pending = False
            results["server"] = "ok"
            return
        await self._start_tls(server, results, "server", HANDSHAKE * 40)

    async def _start_tls(self, me, results, label, timeout):
        server_side = me.name[0] in "ps"
        if server_side:
            context, options = self.tls.server_context(), {"server_side": True}
        else:
            context, options = self.tls.client_context(), {"server_hostname": SERVER_HOSTNAME}
        me.started_tls = me.tls_pending = True
        try:
            me.transport = await self.loop.start_tls(
                me.transport,
                me,
                context,
                ssl_handshake_timeout=timeout,
                ssl_shutdown_timeout=SHUTDOWN,
                **options,
            )
            results[label] = "ok"
            me.tls_pending = False
        except Exception as exc:  # noqa: BLE001 - how it failed is the observation
            results[label] = type(exc).__name__

    # -- calls on a connection's ends -------------------------------------------------------

    def end(self, index, side):
        if not self.conns:
            return None, None
        conn = self.conns[index % len(self.conns)]
        return conn, (conn.client if side == "client" else conn.server)

    def app_call(self, index, side, method, arg):
        """A call on the application transport of one end."""
        conn, me = self.end(index, side)
        if conn is None:
            return
        transport = me.transport
        if transport is None:
            self.trace.append(f"{side}.{method}: not made")
            return
        result = []
        if method == "write":
            closing = transport.is_closing()
            line = outcome(lambda: transport.write(b"w" * arg))
            if line == "ok" and not closing:
                me.sent += arg
        elif method == "writelines":
            closing = transport.is_closing()
            line = outcome(lambda: transport.writelines([b"a" * arg, bytearray(b"b" * arg)]))
            if line == "ok" and not closing:
                me.sent += 2 * arg
        elif method == "get_extra_info":
            line = outcome(lambda: result.append(describe(transport.get_extra_info(arg))))
        elif method == "set_write_buffer_limits":
            line = outcome(lambda: transport.set_write_buffer_limits(*arg))
        else:
            line = outcome(lambda: result.append(getattr(transport, method)()))
            if method == "abort":
                me.aborted = True
            elif line == "ok" and method in ("pause_reading", "resume_reading"):
                me.reading_paused = method == "pause_reading"
        if method in ("get_write_buffer_size",):
            result = []  # how much the kernel took at once is timing
        self.trace.append(f"{side}.{method}({arg}):{line}{result}")
        self.settle()

    def raw_call(self, index, side, how):
        """Bytes or a shutdown on one end's socket, under its TLS session."""
        conn, me = self.end(index, side)
        if conn is None or me.transport is None:
            return
        got = []
        line = outcome(lambda: got.append(me.transport.get_extra_info("socket").fileno()))
        if line != "ok" or got[0] < 0:
            self.trace.append(f"{side}.raw({how}): no socket ({line})")
            return
        fd = got[0]
        conn.broken = True
        if how == "garbage":
            line = outcome(lambda: os.write(fd, b"\x17\x03\x03\x00\x20" + b"\xee" * 32))
        elif how == "truncated":
            # A record header announcing 64 bytes, 10 of them, and the end of the stream.
            line = outcome(lambda: os.write(fd, b"\x17\x03\x03\x00\x40" + b"\xee" * 10))
            line += outcome(lambda: shutdown(fd, socket.SHUT_WR))
        else:  # no close_notify: the TCP stream just ends
            mode = socket.SHUT_WR if how == "eof" else socket.SHUT_RDWR
            line = outcome(lambda: shutdown(fd, mode))
        self.trace.append(f"{side}.raw({how}):{line}")
        self.settle()

    # -- the end ----------------------------------------------------------------------------

    def observed(self):
        conns = [
            (conn.client.record(conn.rough()), conn.server.record(conn.rough()))
            for conn in self.conns
        ]
        paired = {id(conn.server) for conn in self.conns}
        unpaired = [r.record(False) for r in self.server_recorders if id(r) not in paired]
        return self.trace, conns, unpaired

    def finish(self):
        ends = [conn.client for conn in self.conns] + self.orphans + self.server_recorders
        ends += self.plain_recorders + self.detached
        for recorder in ends:
            if recorder.transport is not None:
                outcome(recorder.transport.abort)  # after a second close() it raises
        for sock in self.raw_socks:
            sock.close()
        for server in (self.server, self.impatient, self.plain):
            server.close()
            self.drive(server.wait_closed())
        for _ in range(5):
            self.drive(asyncio.sleep(0))
        self.listener.close()
        self.loop.close()


def hand_over_read_ahead(transport, protocol):
    """What CPython 3.14's start_tls does (gh-142352) and oxloop's does on every version, done
    by hand on stock asyncio 3.11-3.13: the bytes a server's `StreamReader` already holds go to
    the TLS handshake (else they stay in the reader and the handshake waits for its timeout, the
    documented deviation). They are written into the TLS protocol's incoming BIO as it becomes
    the transport's protocol, before its connection_made starts the handshake."""
    data = bytes(protocol.reader._buffer)
    protocol.reader._buffer.clear()
    set_protocol = transport.set_protocol

    def hand_over(ssl_protocol):
        ssl_protocol._incoming.write(data)
        del transport.set_protocol
        set_protocol(ssl_protocol)

    transport.set_protocol = hand_over


def shutdown(fd, how):
    """shutdown() on a socket by its fd, through a duplicate (the loop owns the socket)."""
    with socket.socket(fileno=os.dup(fd)) as dup:
        dup.shutdown(how)


def describe(value):
    """An extra-info value as the trace records it: its type, or for a socket its family."""
    if value is None:
        return None
    if hasattr(value, "fileno") and hasattr(value, "family"):
        return f"socket({value.family.name})"
    return type(value).__name__
