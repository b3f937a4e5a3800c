"""Pitfall: background tasks still running when main() returns.

`oxloop.run()` (like `asyncio.run()`) cancels them at shutdown, wherever they happen to be: a
half-written file, a half-applied update. oxloop reports each with the line it was waiting at.

    python examples/pitfalls/pending_at_shutdown.py
"""

import asyncio

import oxloop
from oxloop.diagnostics import Settings


async def write_audit_log():
    while True:
        await asyncio.sleep(1)  # waiting for the next batch when shutdown comes


async def main():
    asyncio.create_task(write_audit_log())
    await asyncio.sleep(0.01)
    print("main() returns with the audit writer still running")


if __name__ == "__main__":
    oxloop.run(main(), diagnostics=Settings(hook=print, log=False, summary_at_close=False))
