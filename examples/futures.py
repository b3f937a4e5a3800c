"""Futures: a placeholder for a result that is not there yet.

Shows a bare Future made with loop.create_future(): a callback set with loop.call_later() fills
it in and the coroutine awaiting it wakes up with the value; a Future can carry an exception
instead of a value; and a Task is a subclass of Future.

    python examples/futures.py
"""

import asyncio

import oxloop


async def fetch_data(url):
    """Pretend to download `url` (simulated with asyncio.sleep)."""
    await asyncio.sleep(0.01)
    return f"<data from {url}>"


async def main():
    loop = asyncio.get_running_loop()

    fut = loop.create_future()
    print(f"future done: {fut.done()}")
    loop.call_later(0.05, fut.set_result, "the answer")  # someone else delivers the result
    print(f"future result: {await fut}")
    print(f"future done: {fut.done()}")

    failed = loop.create_future()
    loop.call_soon(failed.set_exception, ConnectionError("connection reset"))
    try:
        await failed
    except ConnectionError as exc:
        print(f"future raised: {exc!r}")

    task = asyncio.create_task(fetch_data("https://example.com/"))
    print(f"a Task is a Future: {isinstance(task, asyncio.Future)}")
    print(f"task result: {await task}")


if __name__ == "__main__":
    oxloop.run(main())
