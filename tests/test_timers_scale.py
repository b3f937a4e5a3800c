"""Timers at scale: 100k call_later/call_at handles.

Covers: cancelling 100k timers means none runs and the loop lets go of their callbacks and
arguments (at the latest after one loop iteration; stock asyncio already drops them in
cancel()), 100k timers scheduled in shuffled order fire in deadline order, and cancelling half of
them leaves exactly the other half firing, still in order.
"""

import asyncio
import gc
import random
import weakref

import pytest

pytestmark = pytest.mark.timeout(120)

N = 100_000


class Probe:
    """A callable (and argument) object we can hold weak references to."""

    def __init__(self, calls):
        self.calls = calls

    def __call__(self, *args):
        self.calls.append(self)


def run_one_iteration(loop):
    loop.call_soon(loop.stop)
    loop.run_forever()


def run_for(loop, seconds):
    loop.call_later(seconds, loop.stop)
    loop.run_forever()


def alive(refs):
    gc.collect()
    return sum(r() is not None for r in refs)


@pytest.mark.parametrize("keep_handles", [False, True], ids=["handles dropped", "handles kept"])
def test_cancelled_timers_never_run_and_are_released(loop, keep_handles):
    rng = random.Random(1)
    calls = []
    handles, callback_refs, arg_refs = [], [], []
    for _ in range(N):
        cb, arg = Probe(calls), Probe(calls)
        handles.append(loop.call_later(rng.uniform(0, 0.05), cb, arg))
        callback_refs.append(weakref.ref(cb))
        arg_refs.append(weakref.ref(arg))
    del cb, arg
    for h in handles:
        h.cancel()
    assert all(h.cancelled() for h in handles)
    if not keep_handles:
        del handles, h

    run_one_iteration(loop)
    assert alive(callback_refs) == 0
    assert alive(arg_refs) == 0
    run_for(loop, 0.1)  # well past every deadline
    assert calls == []


def test_increasing_deadlines_fire_in_order(loop):
    fired = []
    done = loop.create_future()
    base = loop.time() + 0.05
    order = list(range(N))
    random.Random(2).shuffle(order)  # scheduled out of order; deadlines decide

    def cb(i):
        fired.append(i)
        if len(fired) == N:
            done.set_result(None)

    for i in order:
        loop.call_at(base + i * 1e-6, cb, i)
    loop.run_until_complete(asyncio.wait_for(done, 60))
    assert fired == list(range(N))


def test_increasing_call_later_delays_fire_in_order(loop):
    fired = []
    for i in range(N):
        loop.call_later(0.02 + i * 1e-6, fired.append, i)
    run_for(loop, 0.02 + N * 1e-6 + 0.1)
    assert fired == list(range(N))


def test_cancelling_half_leaves_other_half_in_order(loop):
    rng = random.Random(3)
    fired = []
    base = loop.time() + 0.05
    order = list(range(N))
    rng.shuffle(order)
    handles = {i: loop.call_at(base + i * 1e-6, fired.append, i) for i in order}
    cancelled = set(rng.sample(range(N), N // 2))
    for i in cancelled:
        handles[i].cancel()

    run_for(loop, 0.05 + N * 1e-6 + 0.1)
    expected = [i for i in range(N) if i not in cancelled]
    assert len(fired) == N - N // 2
    assert fired == expected
    assert all(not handles[i].cancelled() for i in expected)


@pytest.mark.parametrize("method", ["call_later", "call_at"])
def test_a_nan_deadline_runs_in_the_next_iteration(loop, method):
    """call_later(nan) runs in the next iteration, as on asyncio (oxloop sorted NaN after
    infinity and never ran it)."""
    ran = []
    handle = getattr(loop, method)(float("nan"), ran.append, "nan")
    assert handle.when() != handle.when()  # still NaN, as asyncio reports it
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert ran == ["nan"]
