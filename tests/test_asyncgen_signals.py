"""Async generator finalisation and POSIX signals.

Async generators: one dropped mid-iteration is closed on the loop (the finalizer hook schedules
aclose), shutdown_asyncgens closes those still alive, and asyncio.run does so on exit.
Signals: add_signal_handler / remove_signal_handler (delivery with args, on the loop, argument
validation, only in the main thread), a signal waking a loop idle in its poller, and Ctrl-C
(SIGINT) on a process inside asyncio.run cancelling main and raising KeyboardInterrupt.
"""

import asyncio
import gc
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

pytestmark = [
    pytest.mark.timeout(30),
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals"),
]


def asyncio_run(main, loop_factory):
    """asyncio.run(main, loop_factory=...) -- which 3.11 lacks: there, go through a policy."""
    if sys.version_info >= (3, 12):
        return asyncio.run(main, loop_factory=loop_factory)
    new_loop = loop_factory()  # made now: the factory itself may consult the policy

    class Policy(asyncio.DefaultEventLoopPolicy):
        def new_event_loop(self):
            return new_loop

    old = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(Policy())
    try:
        return asyncio.run(main)
    finally:
        asyncio.set_event_loop_policy(old)


def make_gen(events):
    async def gen():
        try:
            yield 1
            yield 2
        finally:
            events.append(("finally", asyncio.get_running_loop()))

    return gen()


# --- async generators ---------------------------------------------------------------------


def test_dropped_async_gen_is_finalised_while_loop_runs(loop):
    events = []

    async def main():
        g = make_gen(events)
        assert await g.__anext__() == 1
        del g
        gc.collect()
        for _ in range(10):  # aclose() runs as a task scheduled by the finalizer hook
            if events:
                break
            await asyncio.sleep(0)
        return list(events)

    seen = loop.run_until_complete(main())
    assert seen == [("finally", loop)]


def test_shutdown_asyncgens_closes_live_async_gens(loop):
    events = []
    gens = []

    async def start():
        g = make_gen(events)
        await g.__anext__()
        gens.append(g)  # kept alive: only shutdown_asyncgens can close it

    loop.run_until_complete(start())
    assert events == []
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert events == [("finally", loop)]
    assert gens[0].ag_frame is None  # closed


def test_shutdown_asyncgens_with_no_generators(loop):
    loop.run_until_complete(loop.shutdown_asyncgens())


def test_async_gen_fully_consumed_is_not_closed_twice(loop):
    events = []

    async def main():
        g = make_gen(events)
        return [x async for x in g], g

    values, g = loop.run_until_complete(main())
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert values == [1, 2]
    assert len(events) == 1


def test_asyncio_run_closes_live_async_gens(loop_factory):
    events = []
    gens = []

    async def main():
        g = make_gen(events)
        await g.__anext__()
        gens.append(g)
        return asyncio.get_running_loop()

    lp = asyncio_run(main(), loop_factory)
    assert events == [("finally", lp)]


# --- add_signal_handler ----------------------------------------------------------------------


@pytest.fixture
def restore_sigusr1():
    old = signal.getsignal(signal.SIGUSR1)
    yield
    signal.signal(signal.SIGUSR1, old)


def test_signal_handler_called_with_args_on_the_loop(loop, restore_sigusr1):
    fut = loop.create_future()

    def handler(*args):
        fut.set_result((args, asyncio.get_running_loop()))

    loop.add_signal_handler(signal.SIGUSR1, handler, "arg", 2)
    try:

        async def main():
            os.kill(os.getpid(), signal.SIGUSR1)
            return await asyncio.wait_for(fut, 5)

        args, running = loop.run_until_complete(main())
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)
    assert args == ("arg", 2)
    assert running is loop


def test_signal_handler_called_once_per_signal(loop, restore_sigusr1):
    calls = []
    loop.add_signal_handler(signal.SIGUSR1, calls.append, "x")
    try:

        async def main():
            for n in range(1, 4):
                os.kill(os.getpid(), signal.SIGUSR1)
                deadline = time.monotonic() + 5
                while len(calls) < n and time.monotonic() < deadline:
                    await asyncio.sleep(0.001)
            await asyncio.sleep(0.05)  # room for any spurious extra call

        loop.run_until_complete(main())
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)
    assert calls == ["x", "x", "x"]


@pytest.fixture
def restore_sigusr2():
    old = signal.getsignal(signal.SIGUSR2)
    yield
    signal.signal(signal.SIGUSR2, old)


def test_handler_that_is_no_callable_fails_when_run_and_other_signals_still_run(
    loop, exception_contexts, restore_sigusr1, restore_sigusr2
):
    # asyncio takes any object as a handler and reports the TypeError when its signal's
    # handler runs. Both signals arrive before the loop reads them: the other one's handler
    # must still run (it was lost when the first one failed while the two were read).
    calls = []
    loop.add_signal_handler(signal.SIGUSR1, 42)
    loop.add_signal_handler(signal.SIGUSR2, calls.append, "usr2")
    try:
        signal.raise_signal(signal.SIGUSR1)
        signal.raise_signal(signal.SIGUSR2)
        for _ in range(3):
            loop.call_soon(loop.stop)
            loop.run_forever()
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)
        loop.remove_signal_handler(signal.SIGUSR2)
    assert calls == ["usr2"]
    assert [type(c.get("exception")) for c in exception_contexts] == [TypeError]


def test_remove_signal_handler_returns_true_then_false(loop, restore_sigusr1):
    loop.add_signal_handler(signal.SIGUSR1, lambda: None)
    assert loop.remove_signal_handler(signal.SIGUSR1) is True
    assert loop.remove_signal_handler(signal.SIGUSR1) is False


def test_remove_signal_handler_restores_default_disposition(loop, restore_sigusr1):
    signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    loop.add_signal_handler(signal.SIGUSR1, lambda: None)
    assert signal.getsignal(signal.SIGUSR1) is not signal.SIG_DFL
    loop.remove_signal_handler(signal.SIGUSR1)
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL


def test_close_removes_signal_handlers(loop_factory, restore_sigusr1):
    signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    lp = loop_factory()
    lp.add_signal_handler(signal.SIGUSR1, lambda: None)
    lp.close()
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL


@pytest.mark.parametrize("sig", [0, -1, 1000, signal.NSIG])
def test_add_signal_handler_invalid_number_raises_value_error(loop, sig):
    with pytest.raises(ValueError):
        loop.add_signal_handler(sig, lambda: None)


@pytest.mark.parametrize("sig", ["SIGUSR1", 10.0, None])
def test_add_signal_handler_non_int_raises_type_error(loop, sig):
    with pytest.raises(TypeError):
        loop.add_signal_handler(sig, lambda: None)


def test_remove_signal_handler_validates_signal(loop):
    with pytest.raises(ValueError):
        loop.remove_signal_handler(1000)
    with pytest.raises(TypeError):
        loop.remove_signal_handler("SIGUSR1")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP])
def test_add_signal_handler_uncatchable_signal_raises_runtime_error(loop, sig):
    with pytest.raises(RuntimeError):
        loop.add_signal_handler(sig, lambda: None)
    assert loop.remove_signal_handler(sig) is False


def test_add_signal_handler_coroutine_callback_raises_type_error(loop, restore_sigusr1):
    async def coro_fn():
        pass

    with pytest.raises(TypeError):
        loop.add_signal_handler(signal.SIGUSR1, coro_fn)
    coro = coro_fn()
    try:
        with pytest.raises(TypeError):
            loop.add_signal_handler(signal.SIGUSR1, coro)
    finally:
        coro.close()
    assert loop.remove_signal_handler(signal.SIGUSR1) is False


def test_add_signal_handler_from_non_main_thread_raises_runtime_error(loop_factory):
    result = {}

    def in_thread():
        lp = loop_factory()
        try:

            async def main():
                try:
                    lp.add_signal_handler(signal.SIGUSR1, lambda: None)
                except Exception as e:  # noqa: BLE001 - reported to the main thread
                    return e
                return None

            result["error"] = lp.run_until_complete(main())
        finally:
            lp.close()

    t = threading.Thread(target=in_thread)
    t.start()
    t.join(10)
    assert isinstance(result["error"], RuntimeError)


@pytest.mark.timeout(10)
def test_signal_wakes_idle_loop_promptly(loop, restore_sigusr1):
    # Nothing scheduled: the loop sleeps in its poller until the signal arrives.
    fut = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, lambda: fut.set_result(time.monotonic()))

    def later():
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGUSR1)

    t = threading.Thread(target=later)
    t0 = time.monotonic()
    t.start()
    try:
        handled_at = loop.run_until_complete(fut)
    finally:
        t.join()
        loop.remove_signal_handler(signal.SIGUSR1)
    assert 0.15 <= handled_at - t0 < 1.5


# --- SIGINT and asyncio.run (in a child process) ------------------------------------------------


CHILD_SIGINT = """
import asyncio, signal, sys
# A parent started in the background may pass SIGINT down as ignored; be an ordinary process.
signal.signal(signal.SIGINT, signal.default_int_handler)
if sys.argv[1] == "oxloop":
    import oxloop
    factory = oxloop.new_event_loop
else:
    factory = asyncio.new_event_loop

async def main():
    print("ready", flush=True)
    try:
        if sys.argv[2] == "idle":  # in the poller, the only timer 30 s away
            await asyncio.sleep(30)
        else:  # busy: a callback or task step runs on every iteration
            while True:
                await asyncio.sleep(0)
    except asyncio.CancelledError:
        print("main cancelled", flush=True)
        raise
    print("main finished", flush=True)

try:
    if sys.version_info >= (3, 12):
        asyncio.run(main(), loop_factory=factory)
    else:
        with asyncio.Runner(loop_factory=factory) as runner:  # what asyncio.run does in 3.11
            runner.run(main())
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
    sys.exit(0)
sys.exit(3)
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("main_is", ["idle", "busy"])
def test_sigint_cancels_main_and_raises_keyboard_interrupt(loop_name, main_is):
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD_SIGINT, loop_name, main_is],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.1)  # let the loop settle into its poller
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert time.monotonic() - t0 < 10
    assert out.split() == ["main", "cancelled", "KeyboardInterrupt"], err
    assert proc.returncode == 0, err
