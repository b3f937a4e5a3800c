"""loop.run_in_executor(): call blocking code without stalling the event loop.

Shows a blocking fetch_data(url) (time.sleep stands in for a blocking client library) run in the
loop's default thread pool. Two fetches run side by side in worker threads while a heartbeat
coroutine keeps ticking on the loop, which proves the loop was never blocked.

    python examples/executor_blocking.py
"""

import asyncio
import threading
import time

import oxloop


def fetch_data(url):
    """A blocking download (simulated): it would freeze the loop if called directly."""
    time.sleep(0.3)
    return f"<data from {url}>", threading.get_ident()


async def heartbeat(stop):
    """Tick every 20 ms until `stop` is set; return how many ticks there were."""
    ticks = 0
    while not stop.is_set():
        await asyncio.sleep(0.02)
        ticks += 1
    return ticks


async def main():
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    beat = asyncio.create_task(heartbeat(stop))
    urls = ["https://example.com/1", "https://example.com/2"]
    start = time.monotonic()
    results = await asyncio.gather(*(loop.run_in_executor(None, fetch_data, u) for u in urls))
    elapsed = time.monotonic() - start
    stop.set()
    ticks = await beat
    for body, thread_id in results:
        print(f"got {body} (ran on the loop's thread: {thread_id == threading.get_ident()})")
    print(f"fetches overlapped: {elapsed < 0.3 * len(urls)}")
    print(f"loop kept running during the blocking calls: {ticks >= 5}")


if __name__ == "__main__":
    oxloop.run(main())
