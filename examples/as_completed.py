"""asyncio.as_completed(): handle results in the order they finish, not the order asked.

Shows three fetches started together; each result is printed as soon as its fetch completes, so
the fastest comes first. The network is simulated with asyncio.sleep().

    python examples/as_completed.py
"""

import asyncio

import oxloop

# Simulated network latency per URL, in seconds.
LATENCY = {
    "https://example.com/slow": 0.3,
    "https://example.com/fast": 0.1,
    "https://example.com/medium": 0.2,
}


async def fetch_data(url):
    """Pretend to download `url`: wait for its latency, then return the body."""
    await asyncio.sleep(LATENCY[url])
    return f"<data from {url}>"


async def main():
    print(f"asked for: {', '.join(LATENCY)}")
    for n, next_done in enumerate(asyncio.as_completed([fetch_data(u) for u in LATENCY]), 1):
        result = await next_done
        print(f"completed #{n}: {result}")


if __name__ == "__main__":
    oxloop.run(main())
