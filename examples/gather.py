"""asyncio.gather(): run several coroutines concurrently and collect all their results.

Shows that the three fetches overlap (the whole takes about as long as the slowest one, not the
sum), and that gather() returns the results in the order the coroutines were passed, whatever
order they finished in. The network is simulated with asyncio.sleep().

    python examples/gather.py
"""

import asyncio
import time

import oxloop

# Simulated network latency per URL, in seconds.
LATENCY = {
    "https://example.com/a": 0.3,
    "https://example.com/b": 0.1,
    "https://example.com/c": 0.2,
}


async def fetch_data(url):
    """Pretend to download `url`: wait for its latency, then return the body."""
    await asyncio.sleep(LATENCY[url])
    print(f"finished {url}")
    return f"<data from {url}>"


async def main():
    url1, url2, url3 = LATENCY
    start = time.monotonic()
    results = await asyncio.gather(
        fetch_data(url1),
        fetch_data(url2),
        fetch_data(url3),
    )
    elapsed = time.monotonic() - start
    for result in results:
        print(f"result: {result}")
    print(f"ran concurrently: {elapsed < sum(LATENCY.values())}")


if __name__ == "__main__":
    oxloop.run(main())
