"""Tasks: asyncio.create_task() schedules a coroutine to run concurrently with the caller.

Shows that creating a task starts it in the background (main() goes on running until it awaits),
and that awaiting the task gives the coroutine's return value. The "network" is simulated with
asyncio.sleep() for now.

    python examples/create_task.py
"""

import asyncio

import oxloop


async def fetch_data(url):
    """Pretend to download `url`: wait as a network round trip would, then return the body."""
    print(f"fetching {url}")
    await asyncio.sleep(0.05)
    return f"<data from {url}>"


async def main():
    task = asyncio.create_task(fetch_data("https://example.com/item/1"))
    print("task created; main() keeps running")
    await asyncio.sleep(0)  # yield once: the task starts fetching
    print(f"task done before awaiting: {task.done()}")
    result = await task
    print(f"task result: {result}")
    print(f"task done after awaiting: {task.done()}")


if __name__ == "__main__":
    oxloop.run(main())
