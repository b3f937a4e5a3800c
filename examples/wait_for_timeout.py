"""asyncio.wait_for(): give up on an operation that takes too long.

Shows one fetch that answers within its timeout and one that does not: when the timeout fires,
wait_for() cancels the fetch (fetch_data sees the CancelledError) and raises
asyncio.TimeoutError, which we catch. The network is simulated with asyncio.sleep().

    python examples/wait_for_timeout.py
"""

import asyncio

import oxloop

# Simulated network latency per URL, in seconds.
LATENCY = {
    "https://fast.example.com/": 0.05,
    "https://hung.example.com/": 10.0,
}


async def fetch_data(url):
    """Pretend to download `url`: wait for its latency, then return the body."""
    try:
        await asyncio.sleep(LATENCY[url])
    except asyncio.CancelledError:
        print(f"fetch of {url} cancelled")
        raise
    return f"<data from {url}>"


async def main():
    for url in LATENCY:
        try:
            result = await asyncio.wait_for(fetch_data(url), timeout=0.2)
        except asyncio.TimeoutError:  # noqa: UP041 (the guide's spelling; an alias since 3.11)
            print("Request timed out")
        else:
            print(f"got: {result}")


if __name__ == "__main__":
    oxloop.run(main())
