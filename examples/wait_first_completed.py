"""asyncio.wait(..., return_when=FIRST_COMPLETED): act on whichever task finishes first.

Shows racing two fetches: wait() returns as soon as one is done, with the finished task in
`done` and the other in `pending`, which we then cancel. Since Python 3.11 wait() takes tasks
(or futures), not bare coroutines, so each fetch_data() call is wrapped in a task. The network
is simulated with asyncio.sleep().

    python examples/wait_first_completed.py
"""

import asyncio

import oxloop

# Simulated network latency per URL, in seconds: the mirror answers first.
LATENCY = {
    "https://slow.example.com/file": 5.0,
    "https://mirror.example.com/file": 0.05,
}


async def fetch_data(url):
    """Pretend to download `url`: wait for its latency, then return the body."""
    await asyncio.sleep(LATENCY[url])
    return f"<data from {url}>"


async def main():
    url1, url2 = LATENCY
    tasks = [asyncio.create_task(fetch_data(url)) for url in (url1, url2)]
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    print(f"done: {len(done)}, pending: {len(pending)}")
    for task in done:
        print(f"first result: {task.result()}")
    for task in pending:
        task.cancel()
    await asyncio.wait(pending)  # let the cancellations finish
    print(f"cancelled the rest: {all(task.cancelled() for task in pending)}")


if __name__ == "__main__":
    oxloop.run(main())
