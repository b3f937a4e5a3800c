"""Pitfall: a blocking call inside a coroutine stops every other task.

`load_report()` calls time.sleep() (think: requests.get(), a slow database driver, a big
computation). While it runs, the heartbeat task cannot tick. oxloop's watchdog sees the task
step running past the threshold and reports it while it is still blocked, with the stack down
to the blocking call; a second report completes the episode with its final duration.

    python examples/pitfalls/blocking_call.py
"""

import asyncio
import time

import oxloop
from oxloop.diagnostics import Settings


def load_report():
    time.sleep(0.3)  # blocks the whole loop; use `await asyncio.to_thread(...)` instead
    return "report"


async def heartbeat():
    while True:
        await asyncio.sleep(0.05)


async def handle_request():
    return load_report()


async def main():
    beat = asyncio.create_task(heartbeat())
    await asyncio.sleep(0.01)
    report = await asyncio.create_task(handle_request(), name="request-1")
    await asyncio.sleep(0.05)  # the watchdog sees the episode end (and prints it from its thread)
    print(f"got {report}")
    beat.cancel()
    stats = asyncio.get_running_loop().stats()
    print(
        f"stats: blocked {stats['blocked_seconds']:.1f} s in {stats['blocking_episodes']} "
        f"episode(s); the latest timer ran {stats['timer_lateness']['max_seconds']:.1f} s late"
    )


if __name__ == "__main__":
    oxloop.run(main(), diagnostics=Settings(hook=print, log=False, summary_at_close=False))
