"""Threads and executors: call_soon_threadsafe (waking an idle loop, many concurrent producers),
run_in_executor (default and custom executors, results, exceptions), shutdown_default_executor,
asyncio.to_thread and asyncio.run_coroutine_threadsafe.
"""

import asyncio
import concurrent.futures
import contextvars
import gc
import threading
import time

import pytest

pytestmark = pytest.mark.timeout(30)

VAR = contextvars.ContextVar("VAR", default="unset")


# --- call_soon_threadsafe -------------------------------------------------------------------


@pytest.mark.timeout(10)
def test_call_soon_threadsafe_wakes_idle_loop(loop):
    # Nothing scheduled: the loop blocks in its poller with no timeout until the thread calls in.
    fut = loop.create_future()

    def later():
        time.sleep(0.2)
        loop.call_soon_threadsafe(fut.set_result, 1)

    t = threading.Thread(target=later)
    t0 = time.monotonic()
    t.start()
    try:
        assert loop.run_until_complete(fut) == 1
    finally:
        t.join()
    elapsed = time.monotonic() - t0
    assert 0.15 <= elapsed < 1.5


@pytest.mark.timeout(10)
def test_call_soon_threadsafe_wakes_loop_waiting_on_a_far_timer(loop):
    fut = loop.create_future()
    far = loop.call_later(60, lambda: None)

    def later():
        time.sleep(0.1)
        loop.call_soon_threadsafe(fut.set_result, "woken")

    t = threading.Thread(target=later)
    t0 = time.monotonic()
    t.start()
    try:
        assert loop.run_until_complete(fut) == "woken"
    finally:
        t.join()
        far.cancel()
    assert time.monotonic() - t0 < 1.5


def test_call_soon_threadsafe_passes_args_and_context(loop):
    ctx = contextvars.Context()
    ctx.run(VAR.set, "thread ctx")
    fut = loop.create_future()

    def cb(a, b):
        fut.set_result((a, b, VAR.get()))

    t = threading.Thread(target=lambda: loop.call_soon_threadsafe(cb, 1, 2, context=ctx))
    t.start()
    try:
        assert loop.run_until_complete(fut) == (1, 2, "thread ctx")
    finally:
        t.join()


@pytest.mark.timeout(60)
def test_call_soon_threadsafe_from_many_busy_threads(loop):
    n_threads, per_thread = 4, 2500
    total = n_threads * per_thread
    received = []
    done = loop.create_future()
    barrier = threading.Barrier(n_threads)

    def record(tid, i):
        received.append((tid, i))
        if len(received) == total:
            done.set_result(None)

    def producer(tid):
        barrier.wait()
        for i in range(per_thread):
            loop.call_soon_threadsafe(record, tid, i)

    threads = [threading.Thread(target=producer, args=(tid,)) for tid in range(n_threads)]
    loop.call_soon(lambda: [t.start() for t in threads])  # producers race with the running loop
    try:
        loop.run_until_complete(asyncio.wait_for(done, 30))
    finally:
        for t in threads:
            t.join()
    assert len(received) == total
    for tid in range(n_threads):
        assert [i for t, i in received if t == tid] == list(range(per_thread))


# --- run_in_executor ------------------------------------------------------------------------


def test_run_in_executor_default_returns_result_from_other_thread(loop):
    main_thread = threading.get_ident()

    def work(a, b):
        return a + b, threading.get_ident()

    result, ident = loop.run_until_complete(loop.run_in_executor(None, work, 2, 3))
    assert result == 5
    assert ident != main_thread


def test_run_in_executor_returns_asyncio_future(loop):
    fut = loop.run_in_executor(None, lambda: "x")
    assert isinstance(fut, asyncio.Future)
    assert fut.get_loop() is loop
    assert loop.run_until_complete(fut) == "x"


def test_run_in_executor_propagates_exception(loop):
    err = ValueError("in executor")

    def work():
        raise err

    with pytest.raises(ValueError) as info:
        loop.run_until_complete(loop.run_in_executor(None, work))
    assert info.value is err


def test_run_in_executor_many_concurrent_calls(loop):
    async def main():
        futs = [loop.run_in_executor(None, pow, i, 2) for i in range(200)]
        return await asyncio.gather(*futs)

    assert loop.run_until_complete(main()) == [i * i for i in range(200)]


def test_set_default_executor_is_used(loop):
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="oxtest")
    try:
        loop.set_default_executor(executor)
        name = loop.run_until_complete(
            loop.run_in_executor(None, lambda: threading.current_thread().name)
        )
        assert name.startswith("oxtest")
    finally:
        executor.shutdown(wait=True)


def test_run_in_explicit_executor(loop):
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="explicit") as executor:
        name = loop.run_until_complete(
            loop.run_in_executor(executor, lambda: threading.current_thread().name)
        )
    assert name.startswith("explicit")


def test_shutdown_default_executor_joins_threads(loop):
    threads = set()

    def work():
        threads.add(threading.current_thread())
        time.sleep(0.01)

    async def main():
        await asyncio.gather(*(loop.run_in_executor(None, work) for _ in range(8)))
        await loop.shutdown_default_executor()

    loop.run_until_complete(main())
    assert threads
    assert not any(t.is_alive() for t in threads)


def raise_keyboard_interrupt():
    raise KeyboardInterrupt("from the job")


@pytest.mark.timeout(10)
@pytest.mark.parametrize("how", ["executor_job", "future_set_exception"])
def test_run_until_complete_of_a_future_ending_in_keyboard_interrupt_stops(loop, loop_name, how):
    # Nothing propagates out of the loop when a future (not a task) gets KeyboardInterrupt or
    # SystemExit. Stock asyncio's done callback assumes it did, as a task's step re-raises it,
    # and never stops the loop: only the guard timer does (a documented deviation). oxloop stops
    # and raises it at once.
    if how == "executor_job":
        future = loop.run_in_executor(None, raise_keyboard_interrupt)
    else:
        future = loop.create_future()
        loop.call_soon(future.set_exception, KeyboardInterrupt("set on the future"))
    guard_fired = []
    loop.call_later(1.0, lambda: (guard_fired.append(True), loop.stop()))
    with pytest.raises(KeyboardInterrupt):
        loop.run_until_complete(future)
    assert guard_fired == ([True] if loop_name == "asyncio" else [])


def test_run_until_complete_of_a_task_ending_in_keyboard_interrupt_raises_it_once(loop):
    # A task's KeyboardInterrupt propagates out of the loop itself; the loop runs normally after.
    async def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        loop.run_until_complete(interrupted())
    assert loop.run_until_complete(asyncio.sleep(0, "after")) == "after"


def test_run_in_executor_after_shutdown_default_executor_raises(loop):
    loop.run_until_complete(loop.run_in_executor(None, lambda: None))
    loop.run_until_complete(loop.shutdown_default_executor())
    with pytest.raises(RuntimeError):
        loop.run_in_executor(None, lambda: None)


def test_run_in_executor_after_shutdown_raises_even_with_a_new_default_executor(loop):
    # asyncio refuses the default executor for good once its shutdown was called, whatever
    # executor is the default now.
    loop.run_until_complete(loop.shutdown_default_executor())
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        loop.set_default_executor(executor)
        with pytest.raises(RuntimeError, match="Executor shutdown has been called"):
            loop.run_in_executor(None, lambda: None)
        # An explicit executor is still fine.
        assert loop.run_until_complete(loop.run_in_executor(executor, lambda: 7)) == 7
    finally:
        executor.shutdown(wait=True)


def test_shutdown_default_executor_without_executor_is_fine(loop):
    loop.run_until_complete(loop.shutdown_default_executor())
    with pytest.raises(RuntimeError):
        loop.run_in_executor(None, lambda: None)


# --- to_thread / run_coroutine_threadsafe ----------------------------------------------------


def test_to_thread_runs_in_other_thread_with_context(loop):
    main_thread = threading.get_ident()

    def work(x):
        return x * 2, threading.get_ident(), VAR.get()

    async def main():
        VAR.set("copied to thread")
        return await asyncio.to_thread(work, 21)

    value, ident, var = loop.run_until_complete(main())
    assert value == 42
    assert ident != main_thread
    assert var == "copied to thread"


def test_to_thread_propagates_exception(loop):
    def work():
        raise KeyError("to_thread")

    async def main():
        await asyncio.to_thread(work)

    with pytest.raises(KeyError, match="to_thread"):
        loop.run_until_complete(main())


def test_run_coroutine_threadsafe_from_another_thread(loop):
    async def on_loop(x):
        await asyncio.sleep(0.01)
        return x + 1, asyncio.get_running_loop()

    results = []

    def submitter():
        fut = asyncio.run_coroutine_threadsafe(on_loop(1), loop)
        results.append(fut.result(timeout=10))

    async def main():
        t = threading.Thread(target=submitter)
        t.start()
        while t.is_alive():
            await asyncio.sleep(0.01)
        t.join()

    loop.run_until_complete(main())
    assert results == [(2, loop)]


def test_run_coroutine_threadsafe_to_loop_running_in_thread(loop):
    ready = threading.Event()
    loop.call_soon(ready.set)
    runner = threading.Thread(target=loop.run_forever)
    runner.start()
    try:
        assert ready.wait(10)

        async def on_loop():
            await asyncio.sleep(0.01)
            return threading.current_thread() is runner

        assert asyncio.run_coroutine_threadsafe(on_loop(), loop).result(timeout=10) is True

        async def failing():
            raise ArithmeticError("remote")

        with pytest.raises(ArithmeticError, match="remote"):
            asyncio.run_coroutine_threadsafe(failing(), loop).result(timeout=10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(10)
    assert not runner.is_alive()


def test_threadsafe_handle_made_while_the_loop_stops_stays_collectable(loop):
    """A call_soon_threadsafe from another thread whose allocations run a collection, during
    which the loop thread stops the loop: the handle lands in the queue of a stopped loop, and
    it and its context must be under the cycle collector, as every handle of a stopped loop is
    (an unclosed loop dropped with it pending must be collectable through it).

    A gc callback stops the loop from inside the first collection the other thread runs (the
    lowest threshold makes one run inside the call, in the allocations of its handle; it failed
    so before the fix). Whatever the interleaving, once the loop has stopped the handle must be
    tracked; if no collection ran there, the thread stops the loop itself after the call."""
    stopped = threading.Event()
    fired = []

    def stop_the_loop_during_this_collection(phase, info):
        if phase != "start" or fired or threading.current_thread() is not worker:
            return
        fired.append(True)
        loop.call_soon_threadsafe(loop.stop)
        # Waiting lets the loop thread take the GIL, see the stop and finish run_forever.
        stopped.wait(10)

    made = []

    def other_thread():
        old = gc.get_threshold()
        gc.callbacks.append(stop_the_loop_during_this_collection)
        gc.set_threshold(1)
        try:
            made.append(loop.call_soon_threadsafe(print, "never runs"))
        finally:
            gc.set_threshold(*old)
            gc.callbacks.remove(stop_the_loop_during_this_collection)
            if not fired:
                loop.call_soon_threadsafe(loop.stop)

    worker = threading.Thread(target=other_thread, daemon=True)
    loop.call_soon(worker.start)
    loop.run_forever()
    stopped.set()
    worker.join(10)
    assert not worker.is_alive()
    [handle] = made
    assert gc.is_tracked(handle)
    # Handle.get_context() is 3.12+ on asyncio.
    context = handle.get_context() if hasattr(handle, "get_context") else handle._context
    assert gc.is_tracked(context)
    handle.cancel()
