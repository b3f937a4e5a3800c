"""asyncio.as_completed(): handle results in the order they finish, not the order asked.

Shows three fetches started together; each result is printed as soon as its fetch completes, so
the fastest comes first. The fetches are real HTTP requests over TCP, to a tiny server that
main() starts on 127.0.0.1 and that answers each URL after that URL's delay.

    python examples/as_completed.py
"""

import asyncio

import oxloop

# How long the local server takes to answer each URL, in seconds.
LATENCY = {
    "https://example.com/slow": 0.3,
    "https://example.com/fast": 0.1,
    "https://example.com/medium": 0.2,
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
    return response.partition(b"\r\n\r\n")[2].decode()


async def main():
    server = await asyncio.start_server(serve_page, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"asked for: {', '.join(LATENCY)}")
    fetches = [fetch_data(port, url) for url in LATENCY]
    for n, next_done in enumerate(asyncio.as_completed(fetches), 1):
        result = await next_done
        print(f"completed #{n}: {result}")
    server.close()


if __name__ == "__main__":
    oxloop.run(main())
