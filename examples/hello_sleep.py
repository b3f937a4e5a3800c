"""Hello, sleep, world: the smallest asyncio program, run on oxloop.

Shows the entry point: one coroutine, `main()`, handed to the event loop, which runs it until it
returns. `await asyncio.sleep(...)` suspends main() and gives control back to the loop; the loop
resumes it when the timer fires.

    python examples/hello_sleep.py
"""

import asyncio

import oxloop


async def main():
    print("Hello")
    await asyncio.sleep(0.1)  # the guide sleeps 1 s; a tenth keeps the example quick
    print("World")


if __name__ == "__main__":
    oxloop.run(main())  # oxloop's asyncio.run(main())
