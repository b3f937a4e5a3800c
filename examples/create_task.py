"""Tasks: asyncio.create_task() schedules a coroutine to run concurrently with the caller.

Shows that creating a task starts it in the background (main() goes on running until it awaits),
and that awaiting the task gives the coroutine's return value. The fetch is a real HTTP request
over TCP, to a tiny server that main() starts on 127.0.0.1.

    python examples/create_task.py
"""

import asyncio

import oxloop


async def serve_page(reader, writer):
    """The tiny web server: answer `GET <url> HTTP/1.0` with a page, after a short delay.

    The request carries the whole URL (as requests to a proxy do), so one local server can
    stand in for every site.
    """
    try:
        request = await reader.readuntil(b"\r\n\r\n")  # request line + (no) headers
        url = request.split()[1].decode()
        await asyncio.sleep(0.05)  # as a network round trip would
        body = f"<data from {url}>".encode()
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
    finally:
        writer.close()


async def fetch_data(port, url):
    """Download `url` through the local server on `port`; return the body."""
    print(f"fetching {url}")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {url} HTTP/1.0\r\n\r\n".encode())
        response = await reader.read()  # HTTP/1.0: the server closes when it is done
    finally:
        writer.close()
    return response.partition(b"\r\n\r\n")[2].decode()


async def main():
    server = await asyncio.start_server(serve_page, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    task = asyncio.create_task(fetch_data(port, "https://example.com/item/1"))
    print("task created; main() keeps running")
    await asyncio.sleep(0)  # yield once: the task starts fetching
    print(f"task done before awaiting: {task.done()}")
    result = await task
    print(f"task result: {result}")
    print(f"task done after awaiting: {task.done()}")
    server.close()


if __name__ == "__main__":
    oxloop.run(main())
