"""Loop lifecycle: run_until_complete / run_forever / stop / close, running and closed states,
asyncio.run and asyncio.Runner with a loop_factory, futures and tasks (create_future,
create_task, task factories), and debug mode (get/set_debug, slow callback warnings, -X dev and
PYTHONASYNCIODEBUG, and the extra checks debug mode turns on).
"""

import asyncio
import contextvars
import gc
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import weakref

import pytest

pytestmark = pytest.mark.timeout(30)


async def answer(value=42, delay=0):
    await asyncio.sleep(delay)
    return value


# --- run_until_complete / run_forever / stop ------------------------------------------------


def test_run_until_complete_returns_result(loop):
    assert loop.run_until_complete(answer(7, delay=0.01)) == 7


def test_run_until_complete_accepts_a_future(loop):
    fut = loop.create_future()
    loop.call_soon(fut.set_result, "done")
    assert loop.run_until_complete(fut) == "done"


def test_run_until_complete_raises_the_exception(loop):
    err = ValueError("failed")

    async def fail():
        await asyncio.sleep(0)
        raise err

    with pytest.raises(ValueError) as info:
        loop.run_until_complete(fail())
    assert info.value is err
    assert not loop.is_running()


def test_run_until_complete_stopped_before_future_completes(loop):
    fut = loop.create_future()
    loop.call_soon(loop.stop)
    with pytest.raises(RuntimeError, match="Event loop stopped before Future completed."):
        loop.run_until_complete(fut)
    assert not fut.done()


def test_run_forever_until_stop(loop):
    calls = []
    loop.call_soon(calls.append, "soon")
    loop.call_later(0.02, loop.stop)
    t0 = time.monotonic()
    loop.run_forever()
    assert time.monotonic() - t0 >= 0.015
    assert calls == ["soon"]
    assert not loop.is_running()


def test_stop_before_run_forever_runs_exactly_one_iteration(loop):
    calls = []

    def first():
        calls.append("first")
        loop.call_soon(calls.append, "next iteration")

    loop.call_soon(first)
    loop.call_soon(calls.append, "second")
    loop.stop()
    loop.run_forever()
    assert calls == ["first", "second"]
    loop.stop()
    loop.run_forever()
    assert calls == ["first", "second", "next iteration"]


def test_stop_before_run_forever_with_nothing_scheduled_returns(loop):
    loop.stop()
    t0 = time.monotonic()
    loop.run_forever()
    assert time.monotonic() - t0 < 1


def test_loop_can_run_repeatedly(loop):
    for i in range(5):
        assert loop.run_until_complete(answer(i)) == i


def test_run_forever_while_running_raises(loop):
    errors = []

    def nested():
        for method in (loop.run_forever, lambda: loop.run_until_complete(loop.create_future())):
            try:
                method()
            except RuntimeError as e:
                errors.append(str(e))
        loop.stop()

    loop.call_soon(nested)
    loop.run_forever()
    assert len(errors) == 2
    assert all("already running" in e for e in errors)


@pytest.mark.parametrize("inner", ["same kind", "stock asyncio"])
def test_second_loop_in_same_thread_while_one_runs_raises(loop, loop_factory, inner):
    errors = []
    other = loop_factory() if inner == "same kind" else asyncio.new_event_loop()

    def nested():
        other.call_soon(other.stop)  # would end a (wrongly) started nested run
        try:
            other.run_forever()
        except RuntimeError as e:
            errors.append(str(e))
        loop.stop()

    try:
        loop.call_soon(nested)
        loop.run_forever()
    finally:
        other.close()
    assert len(errors) == 1
    assert "another loop is running" in errors[0]


def test_close_running_loop_raises(loop):
    errors = []

    def try_close():
        try:
            loop.close()
        except RuntimeError as e:
            errors.append(str(e))
        loop.stop()

    loop.call_soon(try_close)
    loop.run_forever()
    assert len(errors) == 1
    assert "running" in errors[0]
    assert not loop.is_closed()


def test_is_running_and_is_closed(loop):
    assert not loop.is_running()
    assert not loop.is_closed()
    seen = []
    loop.call_soon(lambda: seen.append((loop.is_running(), loop.is_closed())))
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == [(True, False)]
    assert not loop.is_running()
    loop.close()
    assert loop.is_closed()
    assert not loop.is_running()


def test_close_twice_is_fine(loop):
    loop.close()
    loop.close()
    assert loop.is_closed()


@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")
@pytest.mark.parametrize("pending", ["call_soon", "call_later", "reader", "task"])
def test_unclosed_loop_dropped_with_callbacks_to_itself_is_collected(
    loop_factory, pending, exception_contexts
):
    # A loop the program forgot to close is garbage once dropped, even while callbacks that
    # refer to it are pending: the collector finds it, it warns and closes itself, and its
    # fds go with it (the teardown checks see any left open). On oxloop, only callbacks the
    # loop alone holds count: a pending handle is hidden from the collector (handles.rs), so
    # one held elsewhere too, as `asyncio.sleep` holds its timer, keeps the loop (README).
    lp = loop_factory()
    rsock, wsock = socket.socketpair()
    if pending == "call_soon":
        lp.call_soon(lp.stop)
    elif pending == "call_later":
        lp.call_later(3600, lp.stop)
    elif pending == "reader":
        lp.add_reader(rsock, lp.stop)
    else:
        lp.create_task(asyncio.sleep(3600))  # its first step is queued
    dropped = weakref.ref(lp)
    del lp
    with pytest.warns(ResourceWarning, match="unclosed event loop"):
        gc.collect()
    assert dropped() is None
    rsock.close()
    wsock.close()
    destroyed = ["Task was destroyed but it is pending!"] if pending == "task" else []
    assert [c["message"] for c in exception_contexts] == destroyed


CLOSED_LOOP_CALLS = [
    "call_soon",
    "call_later",
    "call_at",
    "call_soon_threadsafe",
    "run_forever",
    "run_until_complete",
    "create_task",
    "add_reader",
    "add_writer",
    "run_in_executor",
]


@pytest.mark.parametrize("method", CLOSED_LOOP_CALLS)
def test_calls_on_closed_loop_raise(loop, method):
    loop.close()
    coro = answer()
    a, b = socket.socketpair()
    call = {
        "call_soon": lambda: loop.call_soon(print),
        "call_later": lambda: loop.call_later(1, print),
        "call_at": lambda: loop.call_at(loop.time() + 1, print),
        "call_soon_threadsafe": lambda: loop.call_soon_threadsafe(print),
        "run_forever": lambda: loop.run_forever(),
        "run_until_complete": lambda: loop.run_until_complete(coro),
        "create_task": lambda: loop.create_task(coro),
        "add_reader": lambda: loop.add_reader(a.fileno(), print),
        "add_writer": lambda: loop.add_writer(a.fileno(), print),
        "run_in_executor": lambda: loop.run_in_executor(None, print),
    }[method]
    try:
        with pytest.raises(RuntimeError, match="closed"):
            call()
    finally:
        coro.close()
        a.close()
        b.close()


# --- running loop discovery, asyncio.run, Runner ---------------------------------------------


def test_get_running_loop_and_get_event_loop_inside_coroutine(loop):
    async def main():
        return asyncio.get_running_loop(), asyncio.get_event_loop()

    running, current = loop.run_until_complete(main())
    assert running is loop
    assert current is loop
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()  # not running any more


def test_get_running_loop_inside_plain_callback(loop):
    seen = []
    loop.call_soon(lambda: seen.append(asyncio.get_running_loop()))
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == [loop]


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


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.run(loop_factory=) is 3.12+")
def test_asyncio_run_loop_factory_keyword(loop_factory):
    async def main():
        return asyncio.get_running_loop()

    probe = loop_factory()
    expected_type = type(probe)
    probe.close()
    lp = asyncio.run(main(), loop_factory=loop_factory)
    assert type(lp) is expected_type
    assert lp.is_closed()


def test_asyncio_run_uses_the_loop(loop_factory):
    probe = loop_factory()
    expected_type = type(probe)
    probe.close()

    async def main():
        lp = asyncio.get_running_loop()
        await asyncio.sleep(0.001)
        return type(lp), lp

    loop_type, lp = asyncio_run(main(), loop_factory)
    assert loop_type is expected_type
    assert lp.is_closed()


def test_asyncio_run_propagates_exception(loop_factory):
    async def main():
        raise LookupError("from main")

    with pytest.raises(LookupError, match="from main"):
        asyncio_run(main(), loop_factory)


def test_asyncio_runner_with_loop_factory(loop_factory):
    probe = loop_factory()
    expected_type = type(probe)
    probe.close()

    async def which_loop():
        return asyncio.get_running_loop()

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        lp = runner.get_loop()
        assert type(lp) is expected_type
        assert runner.run(which_loop()) is lp
        assert runner.run(answer(5)) == 5  # a second run reuses the same loop
        assert runner.run(which_loop()) is lp
    assert lp.is_closed()


# --- futures and tasks -------------------------------------------------------------------------


def test_create_future_is_asyncio_future_bound_to_loop(loop):
    fut = loop.create_future()
    assert isinstance(fut, asyncio.Future)
    assert fut.get_loop() is loop
    assert not fut.done()
    loop.call_soon(fut.set_result, 3)
    assert loop.run_until_complete(fut) == 3


def test_create_task_returns_asyncio_task(loop):
    seen = {}

    async def body():
        seen["current"] = asyncio.current_task()
        return "task result"

    task = loop.create_task(body(), name="my-task")
    assert isinstance(task, asyncio.Task)
    assert task.get_loop() is loop
    assert task.get_name() == "my-task"
    assert task in asyncio.all_tasks(loop)
    assert loop.run_until_complete(task) == "task result"
    assert seen["current"] is task
    assert task not in asyncio.all_tasks(loop)


def test_current_task_inside_coroutine_run_by_run_until_complete(loop):
    async def main():
        task = asyncio.current_task()
        return task, asyncio.all_tasks()

    task, tasks = loop.run_until_complete(main())
    assert isinstance(task, asyncio.Task)
    assert task in tasks


def test_task_factory(loop):
    calls = []

    def factory(lp, coro, **kwargs):
        calls.append((lp, coro, kwargs))
        return asyncio.Task(coro, loop=lp, **kwargs)

    assert loop.get_task_factory() is None
    loop.set_task_factory(factory)
    assert loop.get_task_factory() is factory

    coro = answer(1)
    task = loop.create_task(coro, name="factory-made")
    assert calls == [(loop, coro, {})]
    assert task.get_name() == "factory-made"
    assert loop.run_until_complete(task) == 1

    ctx = contextvars.copy_context()
    coro2 = answer(2)
    task2 = loop.create_task(coro2, context=ctx)
    assert calls[1] == (loop, coro2, {"context": ctx})
    assert loop.run_until_complete(task2) == 2

    loop.set_task_factory(None)
    assert loop.get_task_factory() is None
    assert loop.run_until_complete(loop.create_task(answer(3))) == 3
    assert len(calls) == 2


def test_task_factory_used_by_asyncio_create_task(loop):
    made = []

    def factory(lp, coro, **kwargs):
        task = asyncio.Task(coro, loop=lp, **kwargs)
        made.append(task)
        return task

    loop.set_task_factory(factory)

    async def main():
        return await asyncio.create_task(answer(9))

    assert loop.run_until_complete(main()) == 9
    assert len(made) == 2  # main itself (via run_until_complete) and the inner task


@pytest.mark.parametrize("bad", [1, "factory", object()])
def test_set_task_factory_non_callable_raises_type_error(loop, bad):
    with pytest.raises(TypeError):
        loop.set_task_factory(bad)
    assert loop.get_task_factory() is None


# --- debug mode -----------------------------------------------------------------------------------


def test_get_set_debug(loop):
    loop.set_debug(True)
    assert loop.get_debug() is True
    loop.set_debug(False)
    assert loop.get_debug() is False


def test_slow_callback_duration_default_and_settable(loop):
    assert loop.slow_callback_duration == pytest.approx(0.1)
    loop.slow_callback_duration = 0.25
    assert loop.slow_callback_duration == 0.25


def _slow_warnings(caplog):
    return [
        r
        for r in caplog.records
        if r.name == "asyncio"
        and r.levelno == logging.WARNING
        and r.getMessage().startswith("Executing")
        and "took" in r.getMessage()
    ]


def test_debug_mode_warns_about_slow_callback(loop, caplog):
    loop.set_debug(True)
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.call_soon(time.sleep, 0.15)
        loop.call_soon(loop.stop)
        loop.run_forever()
    assert len(_slow_warnings(caplog)) == 1


def test_slow_callback_duration_is_honoured(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.01
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.call_soon(time.sleep, 0.03)
        loop.call_soon(loop.stop)
        loop.run_forever()
    assert len(_slow_warnings(caplog)) >= 1  # >= : on a loaded machine stop() may be slow too


def test_no_slow_callback_warning_outside_debug_mode(loop, caplog):
    loop.set_debug(False)
    loop.slow_callback_duration = 0.01
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.call_soon(time.sleep, 0.03)
        loop.call_soon(loop.stop)
        loop.run_forever()
    assert _slow_warnings(caplog) == []


CHILD_GET_DEBUG = """
import asyncio, sys
if sys.argv[1] == "oxloop":
    import oxloop
    factory = oxloop.new_event_loop
else:
    factory = asyncio.new_event_loop
loop = factory()
print("DEBUG", loop.get_debug())
loop.close()
"""


def _child_get_debug(loop_name, *, flags=(), env_extra=None):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONASYNCIODEBUG", "PYTHONDEVMODE")}
    env.update(env_extra or {})
    out = subprocess.run(
        [sys.executable, *flags, "-c", CHILD_GET_DEBUG, loop_name],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return [line for line in out.stdout.splitlines() if line.startswith("DEBUG")]


@pytest.mark.parametrize(
    "flags, env_extra, expected",
    [
        ((), None, "DEBUG False"),
        (("-X", "dev"), None, "DEBUG True"),
        ((), {"PYTHONASYNCIODEBUG": "1"}, "DEBUG True"),
    ],
    ids=["plain", "-X dev", "PYTHONASYNCIODEBUG=1"],
)
def test_debug_mode_from_interpreter_flags(loop_name, flags, env_extra, expected):
    assert _child_get_debug(loop_name, flags=flags, env_extra=env_extra) == [expected]


@pytest.mark.parametrize("method", ["call_soon", "call_later", "call_at"])
def test_debug_mode_rejects_non_threadsafe_call_from_other_thread(loop, method):
    loop.set_debug(True)
    schedule = {
        "call_soon": lambda: loop.call_soon(print),
        "call_later": lambda: loop.call_later(10, print),
        "call_at": lambda: loop.call_at(loop.time() + 10, print),
    }[method]

    def from_thread():
        try:
            schedule()
        except RuntimeError as e:
            return e
        return None

    async def main():
        return await asyncio.to_thread(from_thread)

    err = loop.run_until_complete(main())
    assert isinstance(err, RuntimeError)
    assert "thread" in str(err).lower() or "current one" in str(err)


def test_debug_mode_call_soon_threadsafe_from_other_thread_is_fine(loop):
    loop.set_debug(True)
    fut = loop.create_future()

    async def main():
        t = threading.Thread(target=loop.call_soon_threadsafe, args=(fut.set_result, "ok"))
        t.start()
        try:
            return await fut
        finally:
            t.join()

    assert loop.run_until_complete(main()) == "ok"


@pytest.mark.oxloop_only("stock asyncio checks call_soon's callback only in debug mode")
def test_call_soon_with_coroutine_object_always_raises(loop):
    loop.set_debug(False)
    coro = answer()
    try:
        with pytest.raises(TypeError):
            loop.call_soon(coro)
    finally:
        coro.close()


@pytest.mark.parametrize("method", ["call_soon", "call_later", "call_at", "call_soon_threadsafe"])
@pytest.mark.parametrize("kind", ["coroutine object", "coroutine function", "non-callable"])
def test_debug_mode_rejects_bad_callbacks(loop, method, kind):
    loop.set_debug(True)
    coro = answer()
    callback = {"coroutine object": coro, "coroutine function": answer, "non-callable": 42}[kind]
    schedule = {
        "call_soon": lambda: loop.call_soon(callback),
        "call_later": lambda: loop.call_later(10, callback),
        "call_at": lambda: loop.call_at(loop.time() + 10, callback),
        "call_soon_threadsafe": lambda: loop.call_soon_threadsafe(callback),
    }[method]
    try:
        with pytest.raises(TypeError):
            schedule()
    finally:
        coro.close()
