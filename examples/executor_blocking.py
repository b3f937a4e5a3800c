"""loop.run_in_executor(): call blocking code without stalling the event loop.

Shows a blocking fetch_data(url) (plain blocking sockets, standing in for a blocking client
library) run in the loop's default thread pool. Two fetches run side by side in worker threads,
talking to a tiny HTTP server that runs on the loop itself (main() starts it on 127.0.0.1), while
a heartbeat coroutine keeps ticking on the loop: the loop was never blocked.

    python examples/executor_blocking.py
"""

import asyncio
import socket
import threading
import time

import oxloop


async def serve_page(reader, writer):
    """The tiny web server: answer `GET <url> HTTP/1.0` with a page, after 0.3 s.

    The request carries the whole URL (as requests to a proxy do), so one local server can
    stand in for every site.
    """
    try:
        request = await reader.readuntil(b"\r\n\r\n")  # request line + (no) headers
        url = request.split()[1].decode()
        await asyncio.sleep(0.3)
        body = f"<data from {url}>".encode()
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
    finally:
        writer.close()


def fetch_data(port, url):
    """A blocking download: it would freeze the loop if called directly."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"GET {url} HTTP/1.0\r\n\r\n".encode())
        response = b"".join(iter(lambda: sock.recv(4096), b""))  # until the server closes
    return response.partition(b"\r\n\r\n")[2].decode(), threading.get_ident()


async def heartbeat(stop):
    """Tick every 20 ms until `stop` is set; return how many ticks there were."""
    ticks = 0
    while not stop.is_set():
        await asyncio.sleep(0.02)
        ticks += 1
    return ticks


async def main():
    loop = asyncio.get_running_loop()
    server = await asyncio.start_server(serve_page, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    beat = asyncio.create_task(heartbeat(stop))
    urls = ["https://example.com/1", "https://example.com/2"]
    start = time.monotonic()
    results = await asyncio.gather(*(loop.run_in_executor(None, fetch_data, port, u) for u in urls))
    elapsed = time.monotonic() - start
    stop.set()
    ticks = await beat
    for body, thread_id in results:
        print(f"got {body} (ran on the loop's thread: {thread_id == threading.get_ident()})")
    print(f"fetches overlapped: {elapsed < 0.3 * len(urls)}")
    print(f"loop kept running during the blocking calls: {ticks >= 5}")
    server.close()


if __name__ == "__main__":
    oxloop.run(main())
