"""Pitfall: catching CancelledError and carrying on.

`flush_buffer()` catches the cancellation and returns normally, so the code that cancelled it
believes it stopped while it went on. oxloop reports the task and where it was suspended when
it was cancelled.

    python examples/pitfalls/swallowed_cancellation.py
"""

import asyncio

import oxloop
from oxloop.diagnostics import Settings


async def flush_buffer():
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        return "flushed anyway"  # swallows the cancellation: re-raise it instead


async def main():
    task = asyncio.create_task(flush_buffer())
    await asyncio.sleep(0.01)
    task.cancel()
    print(f"cancelled task returned: {await task!r}")


if __name__ == "__main__":
    oxloop.run(main(), diagnostics=Settings(hook=print, log=False, summary_at_close=False))
