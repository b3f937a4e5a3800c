"""Futures: a placeholder for a result that is not there yet.

Shows a bare Future made with loop.create_future(): a callback set with loop.call_later() fills
it in and the coroutine awaiting it wakes up with the value; a Future can carry an exception
instead of a value; and a Task is a subclass of Future (here a task that fetches a page over
TCP from a tiny HTTP server that main() starts on 127.0.0.1).

    python examples/futures.py
"""

import asyncio

import oxloop


async def serve_page(reader, writer):
    """The tiny web server: answer `GET <url> HTTP/1.0` with a page for that URL.

    The request carries the whole URL (as requests to a proxy do), so one local server can
    stand in for every site.
    """
    try:
        request = await reader.readuntil(b"\r\n\r\n")  # request line + (no) headers
        url = request.split()[1].decode()
        body = f"<data from {url}>".encode()
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
    finally:
        writer.close()


async def fetch_data(port, url):
    """Download `url` through the local server on `port`; return the body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {url} HTTP/1.0\r\n\r\n".encode())
        response = await reader.read()  # HTTP/1.0: the server closes when it is done
    finally:
        writer.close()
    return response.partition(b"\r\n\r\n")[2].decode()


async def main():
    loop = asyncio.get_running_loop()

    fut = loop.create_future()
    print(f"future done: {fut.done()}")
    loop.call_later(0.05, fut.set_result, "the answer")  # someone else delivers the result
    print(f"future result: {await fut}")
    print(f"future done: {fut.done()}")

    failed = loop.create_future()
    loop.call_soon(failed.set_exception, ConnectionError("connection reset"))
    try:
        await failed
    except ConnectionError as exc:
        print(f"future raised: {exc!r}")

    server = await asyncio.start_server(serve_page, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    task = asyncio.create_task(fetch_data(port, "https://example.com/"))
    print(f"a Task is a Future: {isinstance(task, asyncio.Future)}")
    print(f"task result: {await task}")
    server.close()


if __name__ == "__main__":
    oxloop.run(main())
