"""Pitfall: an exception raised in a task nobody awaits is lost.

`sync_inventory()` fails, but its task was started and forgotten, so no code ever sees the
error. oxloop reports it as soon as that is certain (here: when the task is collected), with
the traceback and the line that created the task.

    python examples/pitfalls/lost_exception.py
"""

import asyncio
import logging

import oxloop
from oxloop.diagnostics import Settings


async def sync_inventory():
    await asyncio.sleep(0.01)
    raise ConnectionError("inventory service unreachable")


async def main():
    asyncio.create_task(sync_inventory())  # fire and forget: the error goes nowhere
    await asyncio.sleep(0.05)
    print("main() finished as if all went well")


if __name__ == "__main__":
    logging.getLogger("asyncio").disabled = True  # show oxloop's report only
    oxloop.run(main(), diagnostics=Settings(hook=print, log=False, summary_at_close=False))
