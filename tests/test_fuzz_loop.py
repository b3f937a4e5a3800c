"""The differential fuzzer: the same random program on stock asyncio and on oxloop, with the
same observable results required of both.

A Hypothesis `RuleBasedStateMachine` draws operations over the loop API (callbacks and timers
with infinite, huge and negative delays, cancels, stop/close/re-entry from callbacks,
exceptions and BaseExceptions from callbacks and protocol methods, fd watches on bad, closed
and reused fds, `sock_*` calls on closed, half-closed, non-socket and wrong-type sockets,
transports in every state, servers, calls from other threads, the default executor (jobs that
return, raise or call the loop back; its shutdown; use after shutdown or close), signal
handlers (added, removed, raising, bad signal numbers, signals sent to the process), garbage
collection) and applies each to one `fuzzworld.World` per loop; after every step the two
traces must be equal.
A crash, a hang (every wait is bounded and fails with a message; pytest-timeout as a last
resort), or a difference in what was called, returned or raised fails the test, and Hypothesis
shrinks it to a short program.

CI runs a bounded number of examples. `OXLOOP_FUZZ_LONG=<seconds>` runs fresh examples for
that long and prints how many operations ran clean (the README's number).
"""

import math
import os
import signal
import sys
import time

import pytest
from fuzzworld import FUZZED_SIGNALS, World, finalisers_checked, signals_owned
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import oxloop

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

# Delays due at once or never within a program: timers fire in the same iteration on both loops.
# NaN and -inf are left out: asyncio's heap orders timers of equal deadlines (every -inf one)
# by heap position, oxloop in the order they were made; test_timers_scale.py checks that a NaN
# timer alone runs in the next iteration.
DELAYS = st.sampled_from([0, 0.0, -1, -1e9, math.inf, 1e9, 2**63, 10**400, "x", None])
ACTIONS = st.one_of(
    st.tuples(st.just("record"), st.integers(0, 9)),
    st.tuples(st.just("raise"), st.sampled_from([ValueError, KeyboardInterrupt, SystemExit])),
    st.tuples(st.just("cancel"), st.integers(0, 20)),
    st.tuples(st.sampled_from(["stop", "close", "reenter", "soon", "gc"]), st.just(0)),
)
FDS = st.sampled_from(
    [
        "pair",
        "pair_obj",
        "closed",
        "fileno_oserror",
        "fileno_valueerror",
        -1,
        2**31 - 1,
        2**40,
        -(2**40),
        1.5,
        "text",
        None,
    ]
)
WRITES = st.sampled_from(
    [b"", b"abc", bytearray(b"xyz"), memoryview(b"mv"), "text", 7, None, "big"]
)
TRANSPORT_CALLS = st.one_of(
    st.tuples(st.just("write"), WRITES),
    st.tuples(st.just("writelines"), st.sampled_from([[b"a", b"b"], [b"a", "b"], "ab", []])),
    st.tuples(
        st.sampled_from(
            [
                "close",
                "abort",
                "write_eof",
                "pause_reading",
                "resume_reading",
                "is_closing",
                "is_reading",
                "get_write_buffer_size",
                "can_write_eof",
            ]
        ),
        st.none(),
    ),
    st.tuples(
        st.just("set_write_buffer_limits"),
        st.sampled_from([(0, 0), (10, 5), (5, 10), (-1, None), (None, -1), (1 << 16, None)]),
    ),
)
PROTOCOL_METHODS = [
    "connection_made",
    "data_received",
    "eof_received",
    "connection_lost",
    "pause_writing",
    "resume_writing",
]
SIGNAL_NUMBERS = st.sampled_from(
    [signal.SIGUSR1, signal.SIGUSR2, signal.SIGKILL, 0, -1, 32, 65, 2**40, 1.5, "x", None]
)
HANDLERS = st.sampled_from(["record", "raise", "raise_base", "coroutine", "not_callable"])
EXECUTOR_JOBS = st.sampled_from(["return", "raise", "raise_base", "threadsafe", "not_callable"])
RAISES = st.dictionaries(
    st.sampled_from(PROTOCOL_METHODS),
    st.sampled_from([ValueError, KeyboardInterrupt, SystemExit]),
    max_size=2,
)


def run_on(world, method, *args):
    """Applies an operation to `world`. Once the traces are no longer compared (an fd closed
    behind the loop's back), stock asyncio's selector may raise from anywhere (its stale
    registration): that is not oxloop's to answer for. oxloop must still not raise."""
    try:
        with signals_owned(world):
            getattr(world, method)(*args)
    except Exception:
        if world.compared is None or isinstance(world.loop, oxloop.Loop):
            raise


OPERATIONS = [0]  # operations applied to both loops, for the long mode's report


class LoopsAgree(RuleBasedStateMachine):
    """Every rule is applied to both worlds; `agree` compares their traces."""

    @initialize(debug=st.booleans())
    def make_worlds(self, debug):
        import asyncio

        self.worlds = [World(asyncio.new_event_loop, debug), World(oxloop.new_event_loop, debug)]
        self.debug = debug

    def apply(self, method, *args):
        OPERATIONS[0] += 1
        for world in self.worlds:
            run_on(world, method, *args)

    @rule(how=st.sampled_from(["soon", "later", "at", "threadsafe"]), delay=DELAYS, act=ACTIONS)
    def schedule(self, how, delay, act):
        self.apply("schedule", how, delay, *act)

    @rule(index=st.integers(0, 20))
    def cancel(self, index):
        self.apply("cancel", index)

    @rule()
    def run_once(self):
        self.apply("run_once")

    # Rarely: every operation after it meets a closed loop.
    @rule(chance=st.integers(0, 3))
    def close_loop(self, chance):
        if chance == 0:
            self.apply("close_loop")

    @rule()
    def new_pair(self):
        self.apply("new_pair")

    @rule(
        method=st.sampled_from(["add_reader", "add_writer", "remove_reader", "remove_writer"]),
        fd=FDS,
    )
    def watch(self, method, fd):
        self.apply("watch", method, fd)

    @rule()
    def close_pair_behind_the_loop(self):
        self.apply("close_pair_behind_the_loop")

    @rule(size=st.sampled_from([1, 1000]))
    def peer_send(self, size):
        self.apply("peer_send", size)

    @rule(
        op=st.sampled_from(["recv", "recv_into", "sendall", "accept", "connect"]),
        sock=st.sampled_from(["pair", "closed", "not_a_socket", "udp", "half_closed"]),
    )
    def sock_call(self, op, sock):
        self.apply("sock_call", op, sock)

    @rule(raises=RAISES, close_in_made=st.booleans(), keep_open=st.booleans())
    def open_connection(self, raises, close_in_made, keep_open):
        self.apply("open_connection", raises, close_in_made, keep_open)

    @rule(index=st.integers(0, 3), call=TRANSPORT_CALLS)
    def transport_call(self, index, call):
        self.apply("transport_call", index, *call)

    @rule(index=st.integers(0, 3), what=st.sampled_from(["send", "shutdown", "recv", "close"]))
    def peer_call(self, index, what):
        self.apply("peer_call", index, what)

    @rule(what=st.sampled_from(["create", "close", "is_serving", "wait_closed", "connect"]))
    def server_call(self, what):
        self.apply("server_call", what)

    @rule(kind=EXECUTOR_JOBS, wait=st.booleans())
    def executor_call(self, kind, wait):
        self.apply("executor_call", kind, wait)

    @rule()
    def executor_shutdown(self):
        self.apply("executor_shutdown")

    @rule(sig=SIGNAL_NUMBERS, kind=HANDLERS)
    def signal_add(self, sig, kind):
        self.apply("signal_add", sig, kind)

    @rule(sig=SIGNAL_NUMBERS)
    def signal_remove(self, sig):
        self.apply("signal_remove", sig)

    @rule(sig=st.sampled_from(FUZZED_SIGNALS), how=st.sampled_from(["kill", "raise_signal"]))
    def signal_raise(self, sig, how):
        self.apply("signal_raise", sig, how)

    @invariant()
    def agree(self):
        asyncio_world, oxloop_world = self.worlds
        assert oxloop_world.observed() == asyncio_world.observed(), (
            asyncio_world.handled,
            oxloop_world.handled,
        )

    def teardown(self):
        for world in self.worlds:
            run_on(world, "finish")
        self.agree()


def fuzz_settings(examples):
    return settings(
        max_examples=examples,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )


@pytest.mark.timeout(300)
def test_asyncio_and_oxloop_agree_on_random_programs():
    LoopsAgree.TestCase.settings = fuzz_settings(150)
    with finalisers_checked():
        LoopsAgree.TestCase().runTest()


@pytest.mark.skipif("OXLOOP_FUZZ_LONG" not in os.environ, reason="long mode: OXLOOP_FUZZ_LONG")
@pytest.mark.timeout(0)
def test_long_fuzz_run():
    budget = float(os.environ["OXLOOP_FUZZ_LONG"])
    deadline = time.monotonic() + budget
    OPERATIONS[0] = 0
    rounds = 0
    while time.monotonic() < deadline:
        LoopsAgree.TestCase.settings = fuzz_settings(100)
        with finalisers_checked():
            LoopsAgree.TestCase().runTest()
        rounds += 1
    print(f"{rounds * 100} programs, {OPERATIONS[0]} operations on both loops", file=sys.stderr)
