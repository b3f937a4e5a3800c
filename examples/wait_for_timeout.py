"""asyncio.wait_for(): give up on an operation that takes too long.

Shows one fetch that answers within its timeout and one that does not: when the timeout fires,
wait_for() cancels the fetch (fetch_data sees the CancelledError) and raises
asyncio.TimeoutError, which we catch. The fetches are real HTTP requests over TCP, to a tiny
server that main() starts on 127.0.0.1 and that answers each URL after that URL's delay.

    python examples/wait_for_timeout.py
"""

import asyncio

import oxloop

# How long the local server takes to answer each URL, in seconds.
LATENCY = {
    "https://fast.example.com/": 0.05,
    "https://hung.example.com/": 10.0,
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
    except asyncio.CancelledError:
        print(f"fetch of {url} cancelled")
        raise
    finally:
        writer.close()  # also when cancelled: hang up on the server
    return response.partition(b"\r\n\r\n")[2].decode()


async def main():
    server = await asyncio.start_server(serve_page, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    for url in LATENCY:
        try:
            result = await asyncio.wait_for(fetch_data(port, url), timeout=0.2)
        except asyncio.TimeoutError:  # noqa: UP041 (the guide's spelling; an alias since 3.11)
            print("Request timed out")
        else:
            print(f"got: {result}")
    server.close()


if __name__ == "__main__":
    oxloop.run(main())
