"""Refleak runner: loop workloads run again and again in one process under a debug CPython
(`--with-pydebug`), counting the references (`sys.gettotalrefcount()`) and memory blocks
(`sys.getallocatedblocks()`) and open fds each run leaves behind, as CPython's
`python -m test -R` does.

Run by scripts/refleak.sh (which builds the interpreter and the virtualenv). Each workload runs
on stock asyncio and on oxloop: a fresh loop per run, closed at the end of the run. The first
`--warmup` runs fill caches (interned strings, type caches, free lists, lazily imported modules)
and are not counted; each later run's growth is printed. A workload leaks when every counted run
grew (CPython's rule: a steady leak grows every time, noise comes and goes); the exit status is
1 if any workload leaks on any loop.

    python scripts/refleak.py                         # everything, both loops
    python scripts/refleak.py --loop oxloop tcp tls   # some workloads on oxloop only
    python scripts/refleak.py --loop all              # and on oxloop with its diagnostics on
"""

import argparse
import asyncio
import gc
import logging
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the tests' helpers: certificates, the fuzzer's World

import oxloop  # noqa: E402
import oxloop.diagnostics  # noqa: E402

LOOPS = {
    "asyncio": asyncio.new_event_loop,
    "oxloop": oxloop.new_event_loop,
    # the diagnostics on (watchdog thread, task bookkeeping, coroutine origins); reports, which
    # the exception handler workload makes on purpose, go nowhere
    "oxloop-diagnostics": lambda: oxloop.new_event_loop(
        diagnostics=oxloop.diagnostics.Settings(log=False, summary_at_close=False)
    ),
}
WORKLOADS = {}


def workload(func):
    WORKLOADS[func.__name__] = func
    return func


def run(loop, coro):
    return loop.run_until_complete(asyncio.wait_for(coro, 30))


# -- the workloads: each gets a fresh loop and leaves nothing running ------------------------


@workload
def callbacks(loop):
    done = []
    for i in range(500):
        loop.call_soon(done.append, i)
        loop.call_soon(done.append, i, context=None)
        loop.call_soon(lambda: None).cancel()
    thread = threading.Thread(target=lambda: [loop.call_soon_threadsafe(done.append, 0)] * 50)
    thread.start()
    thread.join()
    run(loop, asyncio.sleep(0))
    assert len(done) >= 1000


@workload
def timers(loop):
    fired = []
    handles = [loop.call_later(0.001 * (i % 3), fired.append, i) for i in range(300)]
    for i in range(300):
        far = loop.call_at(loop.time() + 3600 + i, fired.append, i)
        far.cancel()
        far.cancel()
    handles[0].cancel()
    loop.call_later(float("nan"), fired.append, "nan")
    run(loop, asyncio.sleep(0.01))
    run(loop, asyncio.sleep(0))
    assert len(fired) == 300


@workload
def tasks(loop):
    async def child(i):
        await asyncio.sleep(0)
        if i % 3 == 0:
            raise ValueError(i)
        return i

    async def sleeper():
        await asyncio.sleep(3600)

    async def main():
        results = await asyncio.gather(*(child(i) for i in range(200)), return_exceptions=True)
        assert len(results) == 200
        sleepers = [asyncio.ensure_future(sleeper()) for _ in range(50)]
        await asyncio.sleep(0)
        for task in sleepers:
            task.cancel()
        await asyncio.gather(*sleepers, return_exceptions=True)
        named = loop.create_task(child(1), name="named")
        assert await named == 1
        future = loop.create_future()
        loop.call_soon(future.set_exception, RuntimeError("x"))
        try:
            await future
        except RuntimeError:
            pass
        async with asyncio.TaskGroup() as group:
            for i in range(1, 20, 3):
                group.create_task(child(i))

    run(loop, main())


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def stream_echo(server, connect):
    async with server:
        for _ in range(20):
            reader, writer = await connect()
            writer.write(b"ping" * 100)
            await writer.drain()
            assert await reader.readexactly(400) == b"ping" * 100
            writer.close()
            await writer.wait_closed()


async def echo_streams(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()
    await writer.wait_closed()


@workload
def tcp(loop):
    async def main():
        server = await asyncio.start_server(echo_streams, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        await stream_echo(server, lambda: asyncio.open_connection("127.0.0.1", port))
        # protocols, and a connection refused
        server = await loop.create_server(Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
            transport.write(b"x" * 100_000)
            transport.abort()
        try:
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        except OSError:
            pass

    run(loop, main())


@workload
def sock_ops(loop):
    async def main():
        for _ in range(20):
            a, b = socket.socketpair()
            with a, b:
                a.setblocking(False)
                b.setblocking(False)
                await loop.sock_sendall(a, b"data" * 1000)
                got = b""
                while len(got) < 4000:
                    got += await loop.sock_recv(b, 65536)
                buf = bytearray(10)
                loop.call_later(0.001, a.send, b"z")
                assert await loop.sock_recv_into(b, buf) == 1
        listener = socket.create_server(("127.0.0.1", 0))
        listener.setblocking(False)
        with listener:
            client = socket.socket()
            client.setblocking(False)
            with client:
                accepted = loop.create_task(loop.sock_accept(listener))
                await loop.sock_connect(client, listener.getsockname())
                conn, _ = await accepted
                conn.close()

    run(loop, main())


@workload
def readers(loop):
    a, b = socket.socketpair()
    with a, b:
        seen = []
        for _ in range(50):
            loop.add_reader(a, lambda: seen.append(a.recv(10)))
            loop.add_writer(b.fileno(), seen.append, "w")
            b.send(b"x")
            run(loop, asyncio.sleep(0))
            loop.remove_reader(a)
            loop.remove_writer(b.fileno())
        try:
            loop.add_reader(2**31 - 1, print)
        except OSError:
            pass
        assert seen


@workload
def udp(loop):
    class Server(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            self.transport.sendto(data, addr)

    class Client(asyncio.DatagramProtocol):
        def __init__(self):
            self.got = loop.create_future()

        def datagram_received(self, data, addr):
            if not self.got.done():
                self.got.set_result(data)

    async def main():
        server, _ = await loop.create_datagram_endpoint(Server, local_addr=("127.0.0.1", 0))
        address = server.get_extra_info("sockname")
        for _ in range(20):
            client, protocol = await loop.create_datagram_endpoint(Client, remote_addr=address)
            client.sendto(b"hello")
            assert await protocol.got == b"hello"
            client.close()
        server.close()
        await asyncio.sleep(0)

    run(loop, main())


@workload
def unix(loop):
    async def main():
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "sock")
            server = await asyncio.start_unix_server(echo_streams, path)
            await stream_echo(server, lambda: asyncio.open_unix_connection(path))

    run(loop, main())


@workload
def pipes_subprocess(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "import sys; sys.stdout.write(sys.stdin.read())",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        out, _ = await proc.communicate(b"through the child")
        assert out == b"through the child"
        r, w = os.pipe()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(r, "rb", 0)
        )
        wtransport, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(w, "wb", 0))
        wtransport.write(b"pipe")
        assert await reader.readexactly(4) == b"pipe"
        wtransport.close()
        assert await reader.read() == b""
        transport.close()
        await asyncio.sleep(0)

    run(loop, main())


TLS = []  # (server context, client context), made once


def tls_contexts():
    if not TLS:
        from tlshelpers import make_tls_files

        with tempfile.TemporaryDirectory(prefix="oxloop-refleak-") as directory:
            files = make_tls_files(Path(directory))
            TLS.append((files.server_context(), files.client_context()))  # loaded: files go
    return TLS[0]


@workload
def tls(loop):
    server_ctx, client_ctx = tls_contexts()

    async def main():
        server = await asyncio.start_server(echo_streams, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        await stream_echo(
            server,
            lambda: asyncio.open_connection(
                "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost"
            ),
        )
        # a handshake that fails: the client does not trust the server
        server = await asyncio.start_server(echo_streams, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        async with server:
            untrusting = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            try:
                await asyncio.open_connection("127.0.0.1", port, ssl=untrusting)
            except ssl.SSLError:
                pass

    run(loop, main())


@workload
def exception_handler(loop):
    def boom():
        raise ValueError("from a callback")

    seen = []
    loop.set_exception_handler(lambda lp, context: seen.append(context))
    for _ in range(50):
        loop.call_soon(boom)
    loop.call_exception_handler({"message": "by hand", "exception": KeyError("k")})

    async def fails():
        raise RuntimeError("never retrieved")

    task = loop.create_task(fails())
    run(loop, asyncio.sleep(0.001))
    del task
    gc.collect()  # the task's "exception was never retrieved" goes to the handler
    loop.set_exception_handler(None)
    loop.call_soon(boom)  # the default handler: logging (silenced below)
    run(loop, asyncio.sleep(0))
    assert len(seen) >= 51


@workload
def signals(loop):
    got = []
    loop.add_signal_handler(signal.SIGUSR1, got.append, "usr1")
    for _ in range(5):
        os.kill(os.getpid(), signal.SIGUSR1)
        run(loop, asyncio.sleep(0.01))
    assert loop.remove_signal_handler(signal.SIGUSR1)
    assert got


@workload
def dns(loop):
    async def main():
        for _ in range(5):
            assert await loop.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)
            await loop.getnameinfo(("127.0.0.1", 80))

    run(loop, main())


@workload
def sendfile(loop):
    async def main():
        server = await asyncio.start_server(echo_streams, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            with tempfile.TemporaryFile() as f:
                f.write(b"file" * 10_000)
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                assert await loop.sendfile(writer.transport, f, 0) == 40_000
                assert await reader.readexactly(40_000) == b"file" * 10_000
                writer.close()
                await writer.wait_closed()

    run(loop, main())


@workload
def executor(loop):
    async def main():
        for i in range(20):
            assert await loop.run_in_executor(None, pow, i, 2) == i * i
        await loop.shutdown_default_executor()

    run(loop, main())


async def sleep_forever():
    await asyncio.sleep(3600)


def unclosed_loops(factory):
    """Loops dropped without close() while something they hold leads back to them: the cycle
    collector must free them (each one's `__del__` warns and closes it)."""
    for _ in range(5):
        loop = factory()
        loop.run_until_complete(loop.create_server(asyncio.Protocol, "127.0.0.1", 0))
        loop.run_until_complete(asyncio.sleep(0, loop.create_task(sleep_forever())))
        loop.call_soon(loop.stop)
        loop.call_later(3600, loop.stop)
        del loop
    gc.collect()


def fuzz_programs(factory):
    """The differential fuzzer's operations (tests/fuzzworld.py) in 20 fixed random programs,
    every fourth in debug mode."""
    from fuzzworld import World

    delays = [0, -1, 1e9, float("inf"), "x", None]
    actions = [("record", 1), ("raise", ValueError), ("cancel", 0), ("soon", 0), ("stop", 0)]
    fds = ["pair", "pair_obj", "closed", "fileno_oserror", -1, 2**31 - 1, 2**40, "text"]
    writes = [b"", b"abc", "text", None, "big"]
    ops = [
        lambda w, r: w.schedule(r.choice(["soon", "later", "at"]), r.choice(delays),
                                *r.choice(actions)),
        lambda w, r: w.cancel(r.randrange(20)),
        lambda w, r: w.run_once(),
        lambda w, r: w.new_pair(),
        lambda w, r: w.watch(r.choice(["add_reader", "add_writer", "remove_reader"]),
                             r.choice(fds)),
        lambda w, r: w.peer_send(r.choice([1, 1000])),
        lambda w, r: w.sock_call(r.choice(["recv", "sendall", "accept", "connect"]),
                                 r.choice(["pair", "closed", "not_a_socket", "udp"])),
        lambda w, r: w.open_connection({}, r.random() < 0.2, r.random() < 0.5),
        lambda w, r: w.transport_call(r.randrange(4), r.choice(["write", "close", "abort"]),
                                      r.choice(writes)),
        lambda w, r: w.peer_call(r.randrange(4), r.choice(["send", "shutdown", "recv"])),
        lambda w, r: w.server_call(r.choice(["create", "close", "wait_closed", "connect"])),
    ]  # fmt: skip
    for seed in range(20):
        rng = random.Random(seed)
        world = World(factory, debug=seed % 4 == 0)
        for _ in range(25):
            try:
                rng.choice(ops)(world, rng)
            except Exception:
                pass  # the fuzzer compares errors; here only what they leave behind counts
        world.finish()


# These take the loop factory, not a loop: see run_workload.
WORKLOADS["unclosed_loops"] = unclosed_loops
WORKLOADS["fuzz_programs"] = fuzz_programs


# -- measuring -----------------------------------------------------------------------------


def run_workload(name, factory):
    if name in ("unclosed_loops", "fuzz_programs"):
        WORKLOADS[name](factory)
        return
    loop = factory()
    try:
        WORKLOADS[name](loop)
    finally:
        loop.close()


def counts():
    """(references, allocated blocks, open fds) once everything collectable is gone."""
    sys._clear_type_cache()
    for _ in range(3):
        gc.collect()
    return sys.gettotalrefcount(), sys.getallocatedblocks(), len(os.listdir("/proc/self/fd"))


def measure(name, factory, warmup, runs):
    """Growth in references, blocks and fds of each counted run."""
    growth = ([0] * runs, [0] * runs, [0] * runs)  # made before counting: no allocation later
    before = None
    for number in range(warmup + runs):
        run_workload(name, factory)
        after = counts()
        if number >= warmup:
            for deltas, now, then in zip(growth, after, before, strict=True):
                deltas[number - warmup] = now - then
        before = after
    return growth


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workloads", nargs="*", choices=[[], *WORKLOADS], default=[])
    parser.add_argument("--loop", choices=[*LOOPS, "both", "all"], default="both")
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--runs", type=int, default=4)
    args = parser.parse_args()
    if not hasattr(sys, "gettotalrefcount"):
        sys.exit("refleak.py needs a debug CPython (--with-pydebug): see scripts/refleak.sh")
    logging.disable(logging.CRITICAL)  # the exception handler workload logs on purpose
    warnings.simplefilter("ignore", ResourceWarning)  # unclosed_loops: on purpose
    loops = {"both": ["asyncio", "oxloop"], "all": list(LOOPS)}.get(args.loop, [args.loop])
    leaked = []
    print(f"{sys.version.split()[0]}, {args.warmup} warm-up runs, {args.runs} counted runs")
    for name in args.workloads or WORKLOADS:
        for loop_name in loops:
            refs, blocks, fds = measure(name, LOOPS[loop_name], args.warmup, args.runs)
            leaks = any(all(d >= 1 for d in deltas) for deltas in (refs, blocks, fds))
            print(
                f"{name:18} {loop_name:8} refs {refs} blocks {blocks} fds {fds}"
                + ("  LEAK" if leaks else "")
            )
            if leaks:
                leaked.append(f"{name}[{loop_name}]")
    if leaked:
        print("leaking:", ", ".join(leaked))
        sys.exit(1)
    print("no leaks")


if __name__ == "__main__":
    main()
