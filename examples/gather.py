"""asyncio.gather(): run several coroutines concurrently and collect all their results.

Shows that the three fetches overlap (the whole takes about as long as the slowest one, not the
sum), and that gather() returns the results in the order the coroutines were passed, whatever
order they finished in. The fetches are real HTTP requests over TCP, to a tiny server that
main() starts on 127.0.0.1 and that answers each URL after that URL's delay.

    python examples/gather.py
"""

import asyncio
import time

import oxloop

# How long the local server takes to answer each URL, in seconds.
LATENCY = {
    "https://example.com/a": 0.3,
    "https://example.com/b": 0.1,
    "https://example.com/c": 0.2,
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
    print(f"finished {url}")
    return response.partition(b"\r\n\r\n")[2].decode()


async def main():
    server = await asyncio.start_server(serve_page, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url1, url2, url3 = LATENCY
    start = time.monotonic()
    results = await asyncio.gather(
        fetch_data(port, url1),
        fetch_data(port, url2),
        fetch_data(port, url3),
    )
    elapsed = time.monotonic() - start
    for result in results:
        print(f"result: {result}")
    print(f"ran concurrently: {elapsed < sum(LATENCY.values())}")
    server.close()


if __name__ == "__main__":
    oxloop.run(main())
