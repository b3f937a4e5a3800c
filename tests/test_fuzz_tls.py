"""The TLS differential fuzzer: the same random program of TLS operations on stock asyncio, on
oxloop's Rust TLS layer and on oxloop with asyncio's TLS protocol (`oxloop-stdlib`), with the
same observations required of all three.

A Hypothesis `RuleBasedStateMachine` draws TLS connections of the loop to its own server (a
`Protocol` or a `BufferedProtocol` with a 100-byte buffer, callbacks that may raise), clients
that fail their handshake (a context that trusts no CA; a plain server that never speaks, with
a handshake timeout; one that answers garbage, hangs up or sends a truncated record), plain
clients of a server with a short handshake timeout (silent, garbage instead of a ClientHello,
part of a ClientHello then waiting or EOF), plain connections upgraded with `start_tls` (both
ends, the client writing as soon as its handshake ends, a ClientHello the server's `StreamReader`
already read (gh-142352) or its plain protocol consumed, a closing end, a peer that closed, a
peer that stays plain, two upgrades at once), protocol callbacks raising `ValueError`,
`KeyboardInterrupt` or `SystemExit` (recorded where they leave the loop), calls on either end's
transport (writes of 0 bytes to 1 MiB, `writelines`, `write_eof`, `can_write_eof`, pause/resume
reading, close (twice), `abort`, write buffer limits, `get_extra_info` of every key), and bytes
under the TLS session (a garbage record, a truncated record then EOF, EOF or a shutdown without
close_notify). Each is applied to one `tlsfuzzworld.TLSWorld` per loop; after every step the
worlds' observations must be equal. A crash, a hang (pytest-timeout) or a difference fails the
test with the program that found it (not shrunk: see the long mode).

CI runs a bounded number of examples. `OXLOOP_FUZZ_TLS_LONG=<seconds>` runs fresh examples for
that long and prints how many operations ran clean.
"""

import asyncio
import itertools
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fuzzworld import finalisers_checked
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from tlsfuzzworld import TLSWorld

import oxloop

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

# What a protocol callback raises: an ordinary exception (the transport reports it and closes),
# or KeyboardInterrupt / SystemExit, which leave the loop at once (the world records where and
# runs on). pause_writing/resume_writing are left out: when the kernel's buffer fills is timing.
EXCEPTIONS = st.sampled_from([ValueError, ValueError, KeyboardInterrupt, SystemExit])
CALLBACKS = ["data", "get_buffer", "eof_received", "connection_lost"]
RAISES = st.dictionaries(st.sampled_from(["connection_made", *CALLBACKS]), EXCEPTIONS, max_size=1)
# An upgraded end's connection_made ran on the plain transport, before the program's start_tls.
UPGRADE_RAISES = st.dictionaries(st.sampled_from(CALLBACKS), EXCEPTIONS, max_size=1)
UPGRADES = [
    "ok",
    "early",
    "readahead",
    "late",
    "closing",
    "server_closing",
    "peer_closed",
    "timeout",
    "server_timeout",
    "twice",
]
SIZES = st.sampled_from([0, 1, 1000, 70_000, 1 << 20])
EXTRA_KEYS = [
    "ssl_object",
    "peercert",
    "cipher",
    "compression",
    "sslcontext",
    "socket",
    "peername",
    "sockname",
    "no such key",
]
APP_CALLS = st.one_of(
    st.tuples(st.sampled_from(["write", "writelines"]), SIZES),
    st.tuples(st.just("get_extra_info"), st.sampled_from(EXTRA_KEYS)),
    st.tuples(st.just("start_tls"), st.none()),
    st.tuples(st.just("set_write_buffer_limits"), st.sampled_from([(0, 0), (1 << 16, None)])),
    st.tuples(
        st.sampled_from(
            [
                "close",
                "abort",
                "write_eof",
                "can_write_eof",
                "pause_reading",
                "resume_reading",
                "is_closing",
                "is_reading",
                "get_write_buffer_size",
            ]
        ),
        st.none(),
    ),
)
SIDES = st.sampled_from(["client", "server"])
OPERATIONS = [0]  # operations applied to every loop, for the long mode's report


class TLSLoopsAgree(RuleBasedStateMachine):
    """Every rule is applied to the three worlds; `agree` compares what they observed."""

    tls = None  # set by the test before running

    @initialize(debug=st.booleans())
    def make_worlds(self, debug):
        # Each world lives in a thread of its own, so their waits (handshake and shutdown
        # timeouts, settling) overlap; every call on a world is made in its thread.
        self.threads = [ThreadPoolExecutor(1) for _ in range(3)]
        self.program = []  # for a failure's report (programs are not shrunk)
        self.worlds = self.on_each(
            lambda factory, stdlib: TLSWorld(factory, debug, self.tls, stdlib),
            [
                (asyncio.new_event_loop, False),
                (oxloop.new_event_loop, False),
                (oxloop.new_event_loop, True),
            ],
        )

    def on_each(self, call, args_per_world):
        pairs = zip(self.threads, args_per_world, strict=True)
        futures = [thread.submit(call, *args) for thread, args in pairs]
        return [future.result() for future in futures]

    def apply(self, method, *args):
        OPERATIONS[0] += 1
        self.program.append((method, *args))
        self.on_each(lambda world: world.operation(method, *args), [(w,) for w in self.worlds])

    @rule(
        kind=st.sampled_from(
            ["ok", "ok", "ok", "untrusted", "silent", "garbage", "hangup", "truncated"]
        ),
        buffered=st.booleans(),
        client_raises=RAISES,
        server_raises=RAISES,
    )
    def connect(self, kind, buffered, client_raises, server_raises):
        self.apply("connect", kind, buffered, client_raises, server_raises)

    @rule(
        how=st.sampled_from(UPGRADES),
        buffered=st.booleans(),
        client_raises=UPGRADE_RAISES,
        server_raises=UPGRADE_RAISES,
    )
    def upgrade(self, how, buffered, client_raises, server_raises):
        self.apply("upgrade", how, buffered, client_raises, server_raises)

    @rule(how=st.sampled_from(["silent", "garbage", "partial", "partial_eof", "garbage_eof"]))
    def raw_client(self, how):
        self.apply("raw_client", how)

    @rule(index=st.integers(0, 3), side=SIDES, call=APP_CALLS)
    def app_call(self, index, side, call):
        self.apply("app_call", index, side, *call)

    @rule(
        index=st.integers(0, 3),
        side=SIDES,
        how=st.sampled_from(["garbage", "truncated", "eof", "rdwr"]),
    )
    def raw_call(self, index, side, how):
        self.apply("raw_call", index, side, how)

    @invariant()
    def agree(self):
        expected = self.worlds[0].observed()
        for name, world in zip(["oxloop", "oxloop-stdlib"], self.worlds[1:], strict=True):
            assert world.observed() == expected, difference(name, self.program, world, expected)

    def teardown(self):
        try:
            self.on_each(TLSWorld.finish, [(w,) for w in self.worlds])
        finally:
            for thread in self.threads:
                thread.shutdown()


def difference(name, program, world, expected):
    """A failure's report: the program and where the world's observations part from asyncio's."""
    lines = [f"{name} differs from asyncio after:", *map(repr, program)]
    parts = ["trace", "connections", "unpaired"]
    for part, mine, theirs in zip(parts, world.observed(), expected, strict=True):
        for i, (a, b) in enumerate(itertools.zip_longest(mine, theirs)):
            if a != b:
                lines += [f"{part}[{i}]:", f"  {name}: {a!r}", f"  asyncio: {b!r}"]
                break
    return "\n".join(lines)


def fuzz_settings(examples, steps):
    # Without shrinking, a failure is reported at once with the program as drawn: shrinking
    # replays programs whose waits take seconds each, and a difference timing decides would not
    # replay (the report names the program, see `difference`).
    phases = [Phase.explicit, Phase.generate]
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        phases=phases,
    )


@pytest.mark.timeout(300)
def test_asyncio_and_oxloop_agree_on_random_tls_programs(tls):
    TLSLoopsAgree.tls = tls
    TLSLoopsAgree.TestCase.settings = fuzz_settings(12, 10)
    with finalisers_checked():
        TLSLoopsAgree.TestCase().runTest()


@pytest.mark.skipif(
    "OXLOOP_FUZZ_TLS_LONG" not in os.environ, reason="long mode: OXLOOP_FUZZ_TLS_LONG"
)
@pytest.mark.timeout(0)
def test_long_tls_fuzz_run(tls):
    TLSLoopsAgree.tls = tls
    deadline = time.monotonic() + float(os.environ["OXLOOP_FUZZ_TLS_LONG"])
    OPERATIONS[0] = 0
    programs = 0
    while time.monotonic() < deadline:
        TLSLoopsAgree.TestCase.settings = fuzz_settings(20, 20)
        with finalisers_checked():
            TLSLoopsAgree.TestCase().runTest()
        programs += 20
    print(f"{programs} programs, {OPERATIONS[0]} TLS operations on three loops", file=sys.stderr)
