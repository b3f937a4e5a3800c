"""Pitfall: calling a coroutine function without `await` does nothing.

`save_user(user)` only creates a coroutine object; without `await` it is thrown away and the
user is never saved. Python warns when it is collected; oxloop reports the coroutine's name and
the line that created it.

    python examples/pitfalls/forgotten_await.py
"""

import asyncio
import warnings

import oxloop
from oxloop.diagnostics import Settings

saved = []


async def save_user(user):
    await asyncio.sleep(0)
    saved.append(user)


async def main():
    save_user("ada")  # forgot `await`
    await save_user("grace")
    print(f"saved: {saved}")


if __name__ == "__main__":
    warnings.simplefilter("ignore", RuntimeWarning)  # show oxloop's report only
    oxloop.run(main(), diagnostics=Settings(hook=print, log=False, summary_at_close=False))
