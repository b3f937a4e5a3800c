"""asyncio.wait(..., return_when=FIRST_COMPLETED): act on whichever task finishes first.

Shows racing two fetches: wait() returns as soon as one is done, with the finished task in
`done` and the other in `pending`, which we then cancel. Since Python 3.11 wait() takes tasks
(or futures), not bare coroutines, so each fetch_data() call is wrapped in a task. The fetches
are real HTTP requests over TCP, to a tiny server that main() starts on 127.0.0.1 and that
answers each URL after that URL's delay.

    python examples/wait_first_completed.py
"""

import asyncio

import oxloop

# How long the local server takes to answer each URL, in seconds: the mirror answers first.
LATENCY = {
    "https://slow.example.com/file": 5.0,
    "https://mirror.example.com/file": 0.05,
}


async def serve_page(reader, writer):
    """The tiny web server: answer `GET <url> HTTP/1.0` with a page, after the URL's delay.

    The request carries the whole URL (as requests to a proxy do), so one local server can
    stand in for every site.
    """
    try:
        request = await reader.readuntil(b"\r\n\r\n")  # request line + (no) headers
        url = request.split()[1].decode()
        await asyncio.sleep(LATENCY[url])
        body = f"<data from {url}>".encode()
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
    except asyncio.CancelledError:
        pass  # the program ended while this request was still waiting: just hang up
    finally:
        writer.close()


async def fetch_data(port, url):
    """Download `url` through the local server on `port`; return the body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {url} HTTP/1.0\r\n\r\n".encode())
        response = await reader.read()  # HTTP/1.0: the server closes when it is done
    finally:
        writer.close()  # also when cancelled: hang up on the server
    return response.partition(b"\r\n\r\n")[2].decode()


async def main():
    server = await asyncio.start_server(serve_page, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url1, url2 = LATENCY
    tasks = [asyncio.create_task(fetch_data(port, url)) for url in (url1, url2)]
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    print(f"done: {len(done)}, pending: {len(pending)}")
    for task in done:
        print(f"first result: {task.result()}")
    for task in pending:
        task.cancel()
    await asyncio.wait(pending)  # let the cancellations finish
    print(f"cancelled the rest: {all(task.cancelled() for task in pending)}")
    server.close()


if __name__ == "__main__":
    oxloop.run(main())
