"""The servers of the networking benchmarks (bench/net.py), one per process, on a chosen loop.

    python bench/net_servers.py LOOP KIND PORT      # LOOP: asyncio, uvloop, oxloop

KIND is one of:

- ``sock``: echo with the low-level socket API, ``loop.sock_accept``, ``loop.sock_recv`` and
  ``loop.sock_sendall``, one task per connection.
- ``streams``: echo with ``asyncio.start_server``: ``reader.read(65536)``, ``writer.write``,
  ``await writer.drain()``.
- ``protocol``: echo with an ``asyncio.Protocol`` whose ``data_received`` calls
  ``transport.write(data)``.
- ``bulk``: loadgen's bulk protocol through streams: reads the byte count and a newline, sends
  that many bytes with ``writer.write`` + ``await writer.drain()`` in 256 KiB chunks, closes.
- ``http``: uvicorn with httptools serving a trivial ASGI app ("Hello, world!").
- ``https``: the same over TLS, as ``uvicorn --ssl-certfile CERTFILE --ssl-keyfile KEYFILE``
  configures it (bench/tls.py's ``https`` row): ``net_servers.py LOOP https PORT CERTFILE
  KEYFILE``.

LOOP is any loop of bench/common.py, ``oxloop-stdlib`` (oxloop with asyncio's own TLS) included.
With PORT 0 the OS picks a free port. The server binds 127.0.0.1 and prints ``listening PORT``
on stdout once it accepts connections; it runs until killed. Any error other than a peer
closing its connection ends the process with the traceback on stderr, so the harness reports
the reason instead of waiting for a server that stopped answering.
"""

import asyncio
import functools
import os
import socket
import sys
import traceback

import common  # bench/common.py: the same loop factories as the other benchmarks

HOST = "127.0.0.1"
READ_SIZE = 65536  # what stream servers commonly read at once (and asyncio's own default)
BULK_CHUNK = bytes(256 * 1024)


def announce(port):
    print(f"listening {port}", flush=True)


def die(message, exc=None):
    """End the process at once: a benchmark server that lost a connection to a bug is useless."""
    print(f"net_servers: {message}", file=sys.stderr)
    if exc is not None:
        traceback.print_exception(exc, file=sys.stderr)
    sys.stderr.flush()
    os._exit(1)


def exit_on_error(handler):
    """A connection handler in which a peer closing is normal and anything else is fatal."""

    @functools.wraps(handler)
    async def wrapper(*args):
        try:
            await handler(*args)
        except ConnectionError:
            pass
        except Exception as exc:
            die(f"{handler.__name__} failed", exc)

    return wrapper


def fatal_exception_handler(loop, context):
    """The loop's exception handler: what asyncio would log (e.g. from a protocol) is fatal."""
    exc = context.get("exception")
    if isinstance(exc, ConnectionError):
        return
    die(context.get("message", "unhandled exception in the loop"), exc)


# --- sock ------------------------------------------------------------------------------------


@exit_on_error
async def sock_echo(loop, conn):
    with conn:
        while data := await loop.sock_recv(conn, READ_SIZE):
            await loop.sock_sendall(conn, data)


async def serve_sock(port):
    loop = asyncio.get_running_loop()
    with socket.create_server((HOST, port), backlog=1024) as lsock:
        lsock.setblocking(False)
        announce(lsock.getsockname()[1])
        while True:
            conn, _ = await loop.sock_accept(lsock)
            conn.setblocking(False)
            # asyncio's transports set TCP_NODELAY; raw sockets do not get it by default.
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            loop.create_task(sock_echo(loop, conn))


# --- streams ---------------------------------------------------------------------------------


@exit_on_error
async def streams_echo(reader, writer):
    while data := await reader.read(READ_SIZE):
        writer.write(data)
        await writer.drain()
    writer.close()


async def serve_streams(port):
    server = await asyncio.start_server(streams_echo, HOST, port)
    announce(server.sockets[0].getsockname()[1])
    await server.serve_forever()


# --- protocol --------------------------------------------------------------------------------


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def serve_protocol(port):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(EchoProtocol, HOST, port)
    announce(server.sockets[0].getsockname()[1])
    await server.serve_forever()


# --- bulk ------------------------------------------------------------------------------------


@exit_on_error
async def bulk_send(reader, writer):
    left = int(await reader.readline())
    chunk = memoryview(BULK_CHUNK)
    while left > 0:
        n = min(left, len(chunk))
        writer.write(chunk[:n])
        await writer.drain()
        left -= n
    writer.close()
    await writer.wait_closed()


async def serve_bulk(port):
    server = await asyncio.start_server(bulk_send, HOST, port)
    announce(server.sockets[0].getsockname()[1])
    await server.serve_forever()


# --- http ------------------------------------------------------------------------------------

HELLO = b"Hello, world!"
HELLO_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", str(len(HELLO)).encode())]


async def hello_app(scope, receive, send):
    """The trivial ASGI app: 200 and a fixed body for every HTTP request."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HELLO_HEADERS})
    await send({"type": "http.response.body", "body": HELLO})


async def serve_http(port, certfile=None, keyfile=None):
    import uvicorn

    config = uvicorn.Config(
        hello_app,
        host=HOST,
        port=port,
        http="httptools",
        loop="none",  # uvicorn runs on the loop it is awaited on: the one under test
        lifespan="off",
        access_log=False,
        log_level="warning",
        ssl_certfile=certfile,  # both None: plain HTTP
        ssl_keyfile=keyfile,
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    # uvicorn has no "started" event to await: poll its flag until it serves, or fails.
    while not server.started:
        if serving.done():
            serving.result()  # raises what stopped it
            die("uvicorn exited before it started serving")
        await asyncio.sleep(0.01)
    announce(server.servers[0].sockets[0].getsockname()[1])
    await serving


SERVERS = {
    "sock": serve_sock,
    "streams": serve_streams,
    "protocol": serve_protocol,
    "bulk": serve_bulk,
    "http": serve_http,
    "https": serve_http,  # with the certificate and key files
}


async def serve(kind, port, *files):
    asyncio.get_running_loop().set_exception_handler(fatal_exception_handler)
    await SERVERS[kind](port, *files)


def main(argv):
    files = 2 if len(argv) > 1 and argv[1] == "https" else 0
    if len(argv) != 3 + files or argv[0] not in common.LOOP_NAMES or argv[1] not in SERVERS:
        loops, kinds = ",".join(common.LOOP_NAMES), ",".join(SERVERS)
        sys.exit(f"usage: net_servers.py {{{loops}}} {{{kinds}}} PORT [CERTFILE KEYFILE]")
    loop_name, kind, port = argv[0], argv[1], int(argv[2])
    with asyncio.Runner(loop_factory=lambda: common.make_loop(loop_name)) as runner:
        runner.run(serve(kind, port, *argv[3:]))


if __name__ == "__main__":
    main(sys.argv[1:])
