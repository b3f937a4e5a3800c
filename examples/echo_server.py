"""An echo server and its clients, with streams: asyncio.start_server / open_connection.

Shows a TCP server on 127.0.0.1 (port 0: the OS picks a free port) whose handler echoes each
line back until the client hangs up, and three clients that talk to it at the same time, each
getting back exactly what it sent.

    python examples/echo_server.py
"""

import asyncio

import oxloop


async def handle_client(reader, writer):
    """Echo each line back to this client until it closes its side."""
    peer = writer.get_extra_info("peername")
    while line := await reader.readline():  # b"" at end of stream
        writer.write(line)
        await writer.drain()  # wait if the client reads slower than we write
    print(f"server: {peer[0]} hung up")
    writer.close()
    await writer.wait_closed()


async def client(port, n):
    """Send two lines, read each echo back, then hang up."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    replies = []
    for text in (f"hello from client {n}", f"bye from client {n}"):
        writer.write(text.encode() + b"\n")
        replies.append((await reader.readline()).decode().rstrip("\n"))
    writer.close()
    await writer.wait_closed()
    return replies


async def main():
    server = await asyncio.start_server(handle_client, "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()
    print(f"echo server listening on {host}:{port}")
    async with server:
        results = await asyncio.gather(*(client(port, n) for n in (1, 2, 3)))
        for n, replies in enumerate(results, 1):
            print(f"client {n} got back: {replies}")
    print(f"server closed: {not server.is_serving()}")


if __name__ == "__main__":
    oxloop.run(main())
