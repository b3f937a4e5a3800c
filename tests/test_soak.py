"""Soak and leaks: the same workload in rounds on one loop, checking after every round that
nothing piles up: fds back to the start, the loop's queues and timer heap empty, no task left,
and the memory in use flat once warmed up. And a loop dropped without close() is collected
with its fds.

Warm-up is rounds 1 and 2 (free lists, caches and buffers fill). From the end of round 2 to
the end of the last round, the memory in use may grow by less than 1%: Python's allocated
blocks (`sys.getallocatedblocks()`: every live object) by less than 1% of their number, and
malloc's bytes in use (Rust's allocations, large buffers) by less than 1% of RSS. A leak of one
object per connection, timer or task is a steady climb these bounds catch at these sizes.

RSS itself (after gc and glibc's malloc_trim) is printed, not bounded: with the live blocks
exactly flat, stock asyncio's RSS grew 13% over rounds 3-10 of 9,000 connections (pymalloc
arenas pinned by a few long-lived objects each round), so a 1% RSS bound fails the oracle.

CI runs bounded sizes. OXLOOP_SOAK_LONG=1 runs the sizes of the README's soak: 10 rounds of
9,000 loopback connections, 1,000,000 call_soon/call_later/cancel operations, 100,000 tasks:

    OXLOOP_SOAK_LONG=1 .venv/bin/python -m pytest -q -s tests/test_soak.py
"""

import asyncio
import ctypes
import gc
import os
import resource
import sys
import weakref

import pytest
from nethelpers import at_least_nofile, fd_count, hold_and_echo, run

LONG = os.environ.get("OXLOOP_SOAK_LONG", "") not in ("", "0")
ROUNDS = 10 if LONG else 6
CONNECTIONS = 9000 if LONG else 800  # per round
TIMER_OPS = 1_000_000 if LONG else 180_000  # in all rounds together
TASKS = 100_000 if LONG else 24_000  # in all rounds together
WARM_UP = 2  # rounds not counted in the memory bounds
MAX_GROWTH = 0.01


class MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
        .split()
    ]  # fmt: skip


def _glibc():
    """glibc's malloc_trim and mallinfo2 (2.33+), or None on other C libraries."""
    libc = ctypes.CDLL(None)
    try:
        trim, info = libc.malloc_trim, libc.mallinfo2
    except AttributeError:
        return None
    info.restype = MallInfo2
    return trim, info


GLIBC = _glibc()


def memory():
    """(RSS, Python's allocated blocks, malloc's bytes in use) after collecting garbage and
    handing glibc's free memory back to the system (which keeps free lists out of RSS)."""
    gc.collect()
    malloc_in_use = 0
    if GLIBC is not None:
        trim, info = GLIBC
        trim(0)
        stats = info()
        malloc_in_use = stats.uordblks + stats.hblkhd  # heap chunks + mmapped chunks in use
    with open("/proc/self/statm") as f:
        rss = int(f.read().split()[1]) * resource.getpagesize()
    return rss, sys.getallocatedblocks(), malloc_in_use


def backlog(loop):
    """(ready callbacks, timers in the heap) of `loop`: what must be back to 0 after a round."""
    if hasattr(loop, "stats"):  # oxloop
        stats = loop.stats()
        return stats["ready"], stats["timers"]
    return len(loop._ready), len(loop._scheduled)  # stock asyncio's own queues


def soak(loop, one_round, label):
    """Run `one_round()` ROUNDS times; after each, fds and the loop's queues must be back to where
    they started, and the memory in use must not climb after the warm-up."""
    fds = fd_count()
    rounds = []
    for number in range(1, ROUNDS + 1):
        one_round()
        assert fd_count() == fds, f"round {number}"
        assert backlog(loop) == (0, 0), f"round {number}"
        assert not asyncio.all_tasks(loop), f"round {number}"
        rounds.append(memory())
    (rss, blocks, malloc), (rss_end, blocks_end, malloc_end) = rounds[WARM_UP - 1], rounds[-1]
    print(
        f"{label}, {ROUNDS} rounds; from the end of round {WARM_UP} to the end: "
        f"RSS {rss / 2**20:.1f} -> {rss_end / 2**20:.1f} MiB ({(rss_end - rss) / rss:+.2%}), "
        f"allocated blocks {blocks_end - blocks:+d} ({(blocks_end - blocks) / blocks:+.3%}), "
        f"malloc in use {(malloc_end - malloc) / 1024:+.0f} KiB"
    )
    assert blocks_end - blocks < MAX_GROWTH * blocks, [r[1] for r in rounds]
    assert malloc_end - malloc < MAX_GROWTH * rss, [r[2] for r in rounds]


@pytest.mark.timeout(600 if LONG else 120)
def test_rounds_of_loopback_connections_leave_no_fd_and_flat_memory(loop):
    with at_least_nofile(2 * CONNECTIONS + 256):
        soak(
            loop,
            lambda: run(loop, hold_and_echo(CONNECTIONS), timeout=300),
            f"{CONNECTIONS} connections a round",
        )


def test_rounds_of_callbacks_and_timers_leave_empty_queues_and_flat_memory(loop):
    per_round = TIMER_OPS // ROUNDS // 4  # four operations on each i below

    def one_round():
        fired = []
        for i in range(per_round):
            loop.call_soon(fired.append, i)
            # Due soon: fires within the round. Far away and cancelled: stays in the heap
            # until the loop drops cancelled timers, which it must do for the heap to empty.
            loop.call_later(0.001 * (i % 3), fired.append, i)
            loop.call_later(3600 + i, fired.append, -1).cancel()
        loop.run_until_complete(asyncio.sleep(0.01))
        # One more iteration: timers cancelled after the heap was last pruned go now.
        loop.run_until_complete(asyncio.sleep(0))
        assert sorted(fired) == sorted(list(range(per_round)) * 2)

    soak(loop, one_round, f"{per_round * 4 * ROUNDS:,} call_soon/call_later/cancel operations")


def test_rounds_of_tasks_leave_no_task_and_flat_memory(loop):
    per_round = TASKS // ROUNDS

    async def work(i):
        await asyncio.sleep(0)
        return i

    async def one_round():
        tasks = [loop.create_task(work(i)) for i in range(per_round)]
        assert await asyncio.gather(*tasks) == list(range(per_round))

    soak(loop, lambda: run(loop, one_round(), timeout=120), f"{per_round * ROUNDS:,} tasks")


async def sleep_forever():
    await asyncio.sleep(3600)


PENDING = {
    # each leaves the loop holding something that leads back to the loop
    "callbacks": lambda loop: (loop.call_soon(loop.stop), loop.call_later(3600, loop.stop)),
    "server": lambda loop: loop.run_until_complete(
        loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
    ),
    "sleeping task": lambda loop: loop.run_until_complete(
        asyncio.sleep(0, loop.create_task(sleep_forever()))
    ),
}


@pytest.mark.filterwarnings("ignore::ResourceWarning")  # "unclosed event loop": on purpose
@pytest.mark.parametrize(
    "pending",
    [
        pytest.param(name, marks=pytest.mark.exception_handler_expected("task destroyed pending"))
        if name == "sleeping task"
        else name
        for name in sorted(PENDING)
    ],
)
def test_loop_dropped_unclosed_with_work_pending_is_collected_with_its_fds(loop_factory, pending):
    """oxloop hid the handles a loop holds from the cycle collector, so such a loop (its poller,
    its eventfd, the server's socket) was never freed; stock asyncio collects and closes it."""
    fds = fd_count()
    refs = []
    for _ in range(3):
        loop = loop_factory()
        PENDING[pending](loop)
        refs.append(weakref.ref(loop))
        del loop
    gc.collect()
    assert [ref() for ref in refs] == [None] * 3
    assert fd_count() == fds
