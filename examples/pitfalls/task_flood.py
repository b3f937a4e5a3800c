"""Pitfall: creating tasks without bound.

One task per incoming item, with nothing to limit how many run at once, piles up thousands of
tasks (memory, and every one of them competing for the loop). oxloop warns once when the live
tasks cross the soft limit (10,000 by default, 1,000 here), naming the line creating them.

    python examples/pitfalls/task_flood.py
"""

import asyncio

import oxloop
from oxloop.diagnostics import Settings


async def process(item):
    await asyncio.sleep(0.05)


async def main():
    tasks = [asyncio.create_task(process(item)) for item in range(2000)]  # unbounded
    await asyncio.gather(*tasks)
    print(f"processed {len(tasks)} items")


if __name__ == "__main__":
    settings = Settings(hook=print, log=False, summary_at_close=False, task_soft_limit=1000)
    oxloop.run(main(), diagnostics=settings)
