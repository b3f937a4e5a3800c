"""What is my program waiting for? `oxloop.dump_tasks()` prints the live tasks as a tree.

Each task shows the line it is suspended at; a task indented under another is one the outer
task is waiting for. It reads only asyncio's own task state: no diagnostics needed, any loop.

    python examples/pitfalls/dump_tasks.py
"""

import asyncio

import oxloop


async def download(part, done):
    await done.wait()


async def download_all(done):
    await asyncio.gather(download(1, done), download(2, done))


async def main():
    done = asyncio.Event()
    job = asyncio.create_task(download_all(done), name="download-all")
    await asyncio.sleep(0.01)
    print(oxloop.dump_tasks())
    done.set()
    await job


if __name__ == "__main__":
    oxloop.run(main())
