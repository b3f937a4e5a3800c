"""Callbacks and timers: call_soon / call_later / call_at, Handle and TimerHandle, loop.time(),
contextvars, and the exception handler API.

Covers: FIFO order, the "callbacks scheduled during an iteration run in the next iteration" rule,
arguments, cancellation, timer ordering and `when()`, the loop clock, `context=` and the default
context copy (for callbacks and tasks), exceptions raised by callbacks (exception handler, the
next callback still runs, KeyboardInterrupt/SystemExit propagate), and call_exception_handler /
default_exception_handler / get_exception_handler / set_exception_handler.
"""

import asyncio
import contextvars
import gc
import logging
import re
import time
import weakref
from unittest import mock

import pytest

pytestmark = pytest.mark.timeout(30)

VAR = contextvars.ContextVar("VAR", default="unset")


needs_get_context = pytest.mark.oxloop_only(
    "Handle.get_context() exists in stock asyncio only from 3.12", before=(3, 12)
)


def run_one_round(loop):
    """Run the loop until a stop() scheduled now has run (everything ready now runs first)."""
    loop.call_soon(loop.stop)
    loop.run_forever()


# --- call_soon ---------------------------------------------------------------------------


def test_call_soon_runs_in_fifo_order(loop):
    calls = []
    for i in range(100):
        loop.call_soon(calls.append, i)
    run_one_round(loop)
    assert calls == list(range(100))


def test_call_soon_passes_positional_args(loop):
    calls = []
    loop.call_soon(lambda *a: calls.append(a), 1, "two", None)
    run_one_round(loop)
    assert calls == [(1, "two", None)]


def test_call_soon_rejects_keyword_args_other_than_context(loop):
    with pytest.raises(TypeError):
        loop.call_soon(print, x=1)


def test_callback_scheduled_during_iteration_runs_after_already_ready_ones(loop):
    calls = []

    def third():
        calls.append("third")
        loop.stop()

    def first():
        calls.append("first")
        loop.call_soon(third)

    loop.call_soon(first)
    loop.call_soon(calls.append, "second")
    loop.run_forever()
    assert calls == ["first", "second", "third"]


def test_callback_scheduled_during_iteration_waits_for_next_iteration(loop):
    # stop() inside an iteration lets that iteration finish, then run_forever returns. A callback
    # scheduled during the iteration belongs to the next one, so it must not have run yet.
    calls = []

    def second():
        calls.append("second")
        loop.stop()

    def first():
        calls.append("first")
        loop.call_soon(second)
        loop.stop()

    loop.call_soon(first)
    loop.run_forever()
    assert calls == ["first"]
    loop.run_forever()  # `second` runs in this run's first iteration, and stops it
    assert calls == ["first", "second"]


def test_stop_from_a_later_callback_still_defers_new_callbacks(loop):
    calls = []

    def first():
        calls.append("first")
        loop.call_soon(calls.append, "scheduled-by-first")

    def second():
        calls.append("second")
        loop.stop()

    loop.call_soon(first)
    loop.call_soon(second)
    loop.run_forever()
    assert calls == ["first", "second"]
    run_one_round(loop)
    assert calls == ["first", "second", "scheduled-by-first"]


# --- Handle.cancel -------------------------------------------------------------------------


def test_handle_cancel_and_cancelled(loop):
    h = loop.call_soon(lambda: None)
    assert not h.cancelled()
    h.cancel()
    assert h.cancelled()
    h.cancel()  # idempotent
    assert h.cancelled()


@pytest.mark.parametrize("method", ["call_soon", "call_later"])
def test_handles_can_be_weakly_referenced(loop, method):
    # asyncio's handles have a __weakref__ slot, and code keeps them in weak mappings.
    handle = (
        loop.call_soon(lambda: None) if method == "call_soon" else loop.call_later(1, lambda: None)
    )
    handles = weakref.WeakValueDictionary()
    handles["h"] = handle
    assert handles["h"] is handle
    handle.cancel()
    run_one_round(loop)
    del handle
    gc.collect()
    assert "h" not in handles


def test_cancel_before_run_means_never_runs(loop):
    calls = []
    loop.call_soon(calls.append, 1)
    h = loop.call_soon(calls.append, 2)
    loop.call_soon(calls.append, 3)
    h.cancel()
    run_one_round(loop)
    run_one_round(loop)
    assert calls == [1, 3]


def test_cancel_from_a_callback_in_the_same_iteration(loop):
    calls = []
    handles = {}

    def canceller():
        calls.append("canceller")
        handles["victim"].cancel()

    loop.call_soon(canceller)
    handles["victim"] = loop.call_soon(calls.append, "victim")
    run_one_round(loop)
    assert calls == ["canceller"]


def test_cancelled_timer_never_runs(loop):
    calls = []
    h = loop.call_later(0.01, calls.append, "cancelled")
    loop.call_later(0.02, calls.append, "kept")
    h.cancel()
    assert h.cancelled()
    loop.call_later(0.05, loop.stop)
    loop.run_forever()
    assert calls == ["kept"]


# --- call_later / call_at -------------------------------------------------------------------


def test_call_later_runs_in_deadline_order(loop):
    calls = []
    loop.call_later(0.03, calls.append, "c")
    loop.call_later(0.01, calls.append, "a")
    loop.call_later(0.02, calls.append, "b")
    loop.call_later(0.05, loop.stop)
    loop.run_forever()
    assert calls == ["a", "b", "c"]


def test_call_at_runs_in_deadline_order(loop):
    calls = []
    now = loop.time()
    for delay in (0.04, 0.0, 0.03, 0.01, 0.02):
        loop.call_at(now + delay, calls.append, delay)
    loop.call_at(now + 0.06, loop.stop)
    loop.run_forever()
    assert calls == [0.0, 0.01, 0.02, 0.03, 0.04]


def test_call_later_same_delay_runs_in_scheduling_order(loop):
    calls = []
    for i in range(200):
        loop.call_later(0.01, calls.append, i)
    loop.call_later(0.05, loop.stop)
    loop.run_forever()
    assert calls == list(range(200))


def test_call_at_two_equal_deadlines_run_in_scheduling_order(loop):
    calls = []
    when = loop.time() + 0.01
    loop.call_at(when, calls.append, "first")
    loop.call_at(when, calls.append, "second")
    loop.call_at(when + 0.02, loop.stop)
    loop.run_forever()
    assert calls == ["first", "second"]


@pytest.mark.oxloop_only("asyncio's timer heap is not stable: 3+ equal deadlines run in any order")
def test_call_at_many_equal_deadlines_run_in_scheduling_order(loop):
    calls = []
    when = loop.time() + 0.01
    for i in range(50):
        loop.call_at(when, calls.append, i)
    loop.call_at(when + 0.02, loop.stop)
    loop.run_forever()
    assert calls == list(range(50))


def test_call_later_with_args_and_negative_delay(loop):
    calls = []
    loop.call_later(-1, calls.append, "negative delay runs asap")
    loop.call_later(0.05, loop.stop)
    loop.run_forever()
    assert calls == ["negative delay runs asap"]


def test_timer_does_not_fire_before_its_deadline(loop):
    fired = []
    h = loop.call_later(0.05, lambda: fired.append(loop.time()))
    loop.call_later(0.1, loop.stop)
    loop.run_forever()
    assert len(fired) == 1
    assert fired[0] >= h.when() - 0.001


def test_call_later_when_is_time_plus_delay(loop):
    before = loop.time()
    h = loop.call_later(10, lambda: None)
    after = loop.time()
    assert before + 10 <= h.when() <= after + 10 + 0.001
    h.cancel()


def test_call_at_when_is_exact(loop):
    when = loop.time() + 12.345678
    h = loop.call_at(when, lambda: None)
    assert h.when() == when
    h.cancel()


def test_loop_time_is_monotonic_clock(loop):
    t0 = time.monotonic()
    lt = loop.time()
    t1 = time.monotonic()
    assert t0 - 0.001 <= lt <= t1 + 0.001


def test_loop_time_inside_callback_is_monotonic_clock(loop):
    seen = []

    def cb():
        t0 = time.monotonic()
        lt = loop.time()
        t1 = time.monotonic()
        seen.append((t0, lt, t1))

    loop.call_later(0.02, cb)
    loop.call_later(0.03, loop.stop)
    loop.run_forever()
    ((t0, lt, t1),) = seen
    assert t0 - 0.001 <= lt <= t1 + 0.001


def test_patched_loop_time_schedules_and_expires_timers(loop):
    # aiohttp's keep-alive tests patch loop.time to jump past a deadline instead of waiting.
    start = loop.time()
    fired = []

    async def main():
        with mock.patch.object(loop, "time", return_value=start):
            h = loop.call_later(1000, fired.append, "later")
            assert h.when() == start + 1000
            loop.call_at(start + 500, fired.append, "at")
            await asyncio.sleep(0)
            assert fired == []
            loop.time.return_value = start + 1000
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            assert fired == ["at", "later"]
        # Unpatched, the loop is back on the monotonic clock.
        t0 = time.monotonic()
        h = loop.call_later(10, lambda: None)
        assert t0 + 10 <= h.when() <= time.monotonic() + 10 + 0.001
        h.cancel()

    loop.run_until_complete(main())


def test_subclass_time_override_drives_timers(loop_factory):
    probe = loop_factory()
    base = type(probe)
    probe.close()
    offset = [0.0]

    class ShiftedClock(base):
        def time(self):
            return super().time() + offset[0]

    loop = ShiftedClock()
    try:
        fired = []
        loop.call_later(1000, fired.append, "later")
        loop.call_soon(offset.__setitem__, 0, 1000.0)
        loop.call_later(0.05, loop.stop)
        loop.run_forever()
        assert fired == ["later"]
    finally:
        loop.close()


# --- contextvars ---------------------------------------------------------------------------


@needs_get_context
def test_handle_get_context_returns_given_context(loop):
    ctx = contextvars.copy_context()
    h = loop.call_soon(lambda: None, context=ctx)
    assert h.get_context() is ctx
    th = loop.call_later(1, lambda: None, context=ctx)
    assert th.get_context() is ctx
    th.cancel()


def test_callback_runs_in_given_context(loop):
    ctx = contextvars.Context()
    ctx.run(VAR.set, "in ctx")
    seen = []

    def cb():
        seen.append(VAR.get())
        VAR.set("changed inside")

    loop.call_soon(cb, context=ctx)
    loop.call_later(0.001, cb, context=ctx)
    loop.call_later(0.02, loop.stop)
    loop.run_forever()
    assert seen == ["in ctx", "changed inside"]
    assert ctx[VAR] == "changed inside"
    assert VAR.get() == "unset"


def test_default_context_is_a_copy_taken_at_call_soon_time(loop):
    seen = []

    def cb():
        seen.append(VAR.get())
        VAR.set("set inside callback")

    token = VAR.set("before")
    try:
        loop.call_soon(cb)
        VAR.set("after")
        loop.call_soon(cb)
        run_one_round(loop)
        assert seen == ["before", "after"]  # each saw its own copy, untouched by the other
        assert VAR.get() == "after"  # the callbacks' changes did not leak out
    finally:
        VAR.reset(token)


@needs_get_context
def test_handle_get_context_default_is_copy_taken_at_call_soon_time(loop):
    token = VAR.set("before")
    try:
        h = loop.call_soon(VAR.set, "set inside callback")
        assert h.get_context()[VAR] == "before"
        VAR.set("after")
        assert h.get_context()[VAR] == "before"
        run_one_round(loop)
        assert h.get_context()[VAR] == "set inside callback"
        assert VAR.get() == "after"
    finally:
        VAR.reset(token)


def test_call_later_default_context_is_a_copy_taken_at_scheduling_time(loop):
    seen = []
    token = VAR.set("at call_later")
    try:
        loop.call_later(0.001, lambda: seen.append(VAR.get()))
        VAR.set("later")
        loop.call_later(0.02, loop.stop)
        loop.run_forever()
    finally:
        VAR.reset(token)
    assert seen == ["at call_later"]


def test_task_with_context_argument_runs_in_that_context(loop):
    ctx = contextvars.Context()
    ctx.run(VAR.set, "task ctx")

    async def child():
        before = VAR.get()
        VAR.set("set by task")
        await asyncio.sleep(0)
        return before, VAR.get()

    async def main():
        return await loop.create_task(child(), context=ctx)

    assert loop.run_until_complete(main()) == ("task ctx", "set by task")
    assert ctx[VAR] == "set by task"


def test_task_default_context_is_copy_and_changes_do_not_leak(loop):
    async def child():
        seen = VAR.get()
        VAR.set("child change")
        return seen

    async def main():
        VAR.set("parent value")
        task = asyncio.create_task(child())
        VAR.set("parent changed after create_task")
        seen = await task
        return seen, VAR.get()

    assert loop.run_until_complete(main()) == ("parent value", "parent changed after create_task")


# --- memory: cycles through handles and their contexts ----------------------------------


class Request:
    """Stands for an object of the user's that holds a handle and is also in the handle's
    context (kept in a context variable when the callback was scheduled): a reference cycle
    through the handle's context copy."""


def _request_in_a_cycle(schedule):
    """Makes a Request in a context variable, lets `schedule()` give it a handle (in a copy
    of that context), and returns a weak reference to it once nothing else holds it."""
    holder = {}

    def scope():
        request = Request()
        VAR.set(request)
        request.handle = schedule()
        holder["ref"] = weakref.ref(request)

    contextvars.copy_context().run(scope)
    return holder["ref"]


@pytest.mark.parametrize("kind", ["call_soon", "call_later", "call_at"])
def test_cycle_through_a_handle_that_ran_is_collected(loop, kind):
    if kind == "call_soon":
        ref = _request_in_a_cycle(lambda: loop.call_soon(lambda: None))
    elif kind == "call_later":
        ref = _request_in_a_cycle(lambda: loop.call_later(0, lambda: None))
    else:
        ref = _request_in_a_cycle(lambda: loop.call_at(loop.time(), lambda: None))
    loop.run_until_complete(asyncio.sleep(0.01))
    gc.collect()
    assert ref() is None


@pytest.mark.parametrize("kind", ["call_soon", "call_later"])
def test_cycle_through_a_cancelled_handle_is_collected(loop, kind):
    def schedule():
        if kind == "call_soon":
            handle = loop.call_soon(lambda: None)
        else:
            handle = loop.call_later(3600, lambda: None)
        handle.cancel()
        return handle

    ref = _request_in_a_cycle(schedule)
    loop.run_until_complete(asyncio.sleep(0))  # the loop drops the cancelled entries
    gc.collect()
    assert ref() is None


def test_cycle_through_a_handle_pending_when_the_loop_closed_is_collected(loop):
    ref = _request_in_a_cycle(lambda: loop.call_later(3600, lambda: None))
    loop.close()
    gc.collect()
    assert ref() is None


def test_collections_while_callbacks_are_pending_keep_them_intact(loop):
    """Deep queues of callbacks with copied contexts, with the collector running between
    and inside them: every callback runs once, in its own context."""
    seen = []

    def cb(i):
        seen.append((i, VAR.get()))
        if i % 97 == 0:
            gc.collect()

    for i in range(3000):
        token = VAR.set(i)
        try:
            (loop.call_soon if i % 2 else lambda f, a: loop.call_later(0, f, a))(cb, i)
        finally:
            VAR.reset(token)
        if i % 500 == 0:
            gc.collect()
    loop.run_until_complete(asyncio.sleep(0.02))
    assert sorted(seen) == [(i, i) for i in range(3000)]


# --- exceptions in callbacks ------------------------------------------------------------------


def test_callback_exception_goes_to_exception_handler_and_next_callback_runs(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append((lp, ctx)))
    exc = ValueError("boom")
    calls = []

    def bad():
        raise exc

    handle = loop.call_soon(bad)
    loop.call_soon(calls.append, "next")
    run_one_round(loop)

    assert calls == ["next"]
    assert len(contexts) == 1
    lp, ctx = contexts[0]
    assert lp is loop
    assert ctx["message"].startswith("Exception in callback")
    assert ctx["exception"] is exc
    assert ctx["handle"] is handle


def test_timer_callback_exception_goes_to_exception_handler(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    calls = []

    def bad():
        raise KeyError("timer")

    loop.call_later(0.001, bad)
    loop.call_later(0.002, calls.append, "after")
    loop.call_later(0.03, loop.stop)
    loop.run_forever()
    assert calls == ["after"]
    assert [type(c["exception"]) for c in contexts] == [KeyError]
    assert contexts[0]["message"].startswith("Exception in callback")


@pytest.mark.parametrize("debug", [False, True], ids=["normal", "debug"])
@pytest.mark.parametrize("method", ["call_soon", "call_later"])
def test_callback_exception_message_names_the_callback(loop, debug, method):
    # Debug mode keeps the callback through the run for the slow-callback report: it must
    # still be there when the error report is made after it.
    loop.set_debug(debug)
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    def zero_error():
        loop.stop()
        raise ZeroDivisionError("division by zero")

    if method == "call_soon":
        loop.call_soon(zero_error)
    else:
        loop.call_later(0.001, zero_error)
    loop.run_forever()
    assert len(contexts) == 1
    assert re.search(r"Exception in callback .*zero_error", contexts[0]["message"])


@pytest.mark.default_exception_handler("the path without a handler set")
def test_callback_exception_without_handler_is_logged(loop, caplog):
    def bad():
        raise ZeroDivisionError("logged")

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_soon(bad)
        run_one_round(loop)
    records = [r for r in caplog.records if r.name == "asyncio"]
    assert len(records) == 1
    assert records[0].getMessage().startswith("Exception in callback")
    assert isinstance(records[0].exc_info[1], ZeroDivisionError)


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exceptions_propagate_out_of_run_forever(loop, exc_type):
    calls = []

    def bad():
        raise exc_type()

    loop.call_soon(bad)
    loop.call_soon(calls.append, "after")
    with pytest.raises(exc_type):
        loop.run_forever()
    assert not loop.is_running()
    # The loop is usable again, and the callback after the raising one was not lost.
    run_one_round(loop)
    assert calls == ["after"]
    assert loop.run_until_complete(asyncio.sleep(0, "again")) == "again"


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exceptions_propagate_out_of_run_until_complete(loop, exc_type):
    def bad():
        raise exc_type()

    fut = loop.create_future()
    loop.call_soon(bad)
    with pytest.raises(exc_type):
        loop.run_until_complete(fut)
    assert not loop.is_running()
    loop.call_soon(fut.set_result, 7)
    assert loop.run_until_complete(fut) == 7


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exception_in_callback_does_not_reach_exception_handler(loop, exc_type):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    def bad():
        raise exc_type()

    loop.call_soon(bad)
    with pytest.raises(exc_type):
        run_one_round(loop)
    assert contexts == []


# --- exception handler API -------------------------------------------------------------------


@pytest.mark.default_exception_handler("checks that a new loop has no handler")
def test_get_exception_handler(loop):
    assert loop.get_exception_handler() is None

    def handler(lp, ctx):
        pass

    loop.set_exception_handler(handler)
    assert loop.get_exception_handler() is handler
    loop.set_exception_handler(None)
    assert loop.get_exception_handler() is None


@pytest.mark.default_exception_handler("checks the handler stays unset")
@pytest.mark.parametrize("bad", [1, "handler", object()])
def test_set_exception_handler_non_callable_raises_type_error(loop, bad):
    with pytest.raises(TypeError):
        loop.set_exception_handler(bad)
    assert loop.get_exception_handler() is None


def test_call_exception_handler_calls_custom_handler(loop):
    seen = []
    loop.set_exception_handler(lambda lp, ctx: seen.append((lp, ctx)))
    context = {"message": "custom", "exception": RuntimeError("x")}
    loop.call_exception_handler(context)
    assert len(seen) == 1
    assert seen[0][0] is loop
    assert seen[0][1]["message"] == "custom"
    assert seen[0][1]["exception"] is context["exception"]


def test_exception_handler_that_raises_falls_back_to_default_handler(loop, caplog):
    err = RuntimeError("handler broke")

    def handler(lp, ctx):
        raise err

    loop.set_exception_handler(handler)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_exception_handler({"message": "original problem"})
    records = [r for r in caplog.records if r.name == "asyncio"]
    assert len(records) == 1
    assert records[0].levelno == logging.ERROR
    assert "Unhandled error in exception handler" in records[0].getMessage()
    assert "original problem" in records[0].getMessage()
    assert records[0].exc_info[1] is err


@pytest.mark.default_exception_handler("the path without a handler set")
def test_call_exception_handler_without_handler_logs(loop, caplog):
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_exception_handler({"message": "something went wrong"})
    records = [r for r in caplog.records if r.name == "asyncio"]
    assert len(records) == 1
    assert records[0].levelno == logging.ERROR
    assert records[0].getMessage().startswith("something went wrong")


def test_default_exception_handler_logs_message_and_exception(loop, caplog):
    exc = ValueError("the exception")
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.default_exception_handler({"message": "default handler msg", "exception": exc})
    records = [r for r in caplog.records if r.name == "asyncio"]
    assert len(records) == 1
    assert records[0].levelno == logging.ERROR
    assert records[0].getMessage().startswith("default handler msg")
    assert records[0].exc_info[1] is exc


def test_default_exception_handler_without_message(loop, caplog):
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.default_exception_handler({})
    records = [r for r in caplog.records if r.name == "asyncio"]
    assert len(records) == 1
    assert records[0].getMessage().startswith("Unhandled exception in event loop")


def test_custom_handler_can_delegate_to_default(loop, caplog):
    def handler(lp, ctx):
        lp.default_exception_handler(ctx)

    loop.set_exception_handler(handler)

    def bad():
        raise OSError("delegated")

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_soon(bad)
        run_one_round(loop)
    records = [r for r in caplog.records if r.name == "asyncio"]
    assert len(records) == 1
    assert records[0].getMessage().startswith("Exception in callback")
    assert isinstance(records[0].exc_info[1], OSError)


@pytest.mark.oxloop_only("asyncio queues the timer; its next iteration fails comparing deadlines")
@pytest.mark.parametrize("when", ["x", None, b"1"])
def test_call_at_a_deadline_that_is_not_a_number_raises_type_error(loop, when):
    with pytest.raises(TypeError):
        loop.call_at(when, lambda: None)
    ran = []
    loop.call_soon(ran.append, 1)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert ran == [1]
