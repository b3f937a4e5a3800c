"""One side of the differential fuzzer (`test_fuzz_loop.py`): a loop and everything a random
program made on it, with a trace of what the program could observe.

Not a test module. The fuzzer makes one `World` on stock asyncio and one on oxloop, applies the
same operation to both and compares their traces. An operation's observable result is recorded
as a line in `trace`: what a call returned or the type of what it raised, which callbacks ran in
which order, what protocols were told, and what reached the exception handler. Everything
recorded names objects by the program's own indices (fd numbers, reprs and addresses differ
between the two loops and are never recorded).

Both worlds live in one process, so what the process holds once for everyone is swapped per
world: `signals_owned(world)` gives the world's loop its own signal wakeup fd and handlers for
the duration of one operation. Work of other threads (executor jobs, the executor's shutdown)
is waited for, with a bound, until it has reached the loop (`call_soon_threadsafe`) before an
operation returns, so that what a loop iteration finds never depends on a thread's timing.
"""

import asyncio
import contextlib
import gc
import inspect
import os
import signal
import socket
import sys
import threading
import warnings

FATAL = (KeyboardInterrupt, SystemExit)

# A bound on every wait for another thread or for a loop to finish something; reaching it fails
# the program with a message saying what never happened (no wait is meant to come near it).
WAIT_LIMIT = 10.0

# The signals programs raise: the process's handlers of these (and its wakeup fd) are swapped
# per world. Other signal numbers reach add_signal_handler only to be refused.
FUZZED_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)


def outcome(call):
    """`call()`'s result as a trace line: 'ok' or the name of the exception type it raised."""
    try:
        call()
    except BaseException as exc:  # noqa: BLE001 - every exception is an observable result
        return type(exc).__name__
    return "ok"


class BadFileno:
    """An object whose fileno() raises."""

    def __init__(self, exc):
        self.exc = exc

    def fileno(self):
        raise self.exc


class TracingProtocol(asyncio.Protocol):
    """Records every protocol callback; `raises` maps a method name to what it raises."""

    def __init__(self, world, name, raises, close_in_made, keep_open_on_eof):
        self.world = world
        self.name = name
        self.raises = raises
        self.close_in_made = close_in_made
        self.keep_open_on_eof = keep_open_on_eof
        self.transport = None

    def _event(self, method, detail=""):
        self.world.trace.append(f"{self.name}.{method}{detail}")
        exc = self.raises.get(method)
        if exc is not None:
            raise exc("from " + method)

    def connection_made(self, transport):
        self.transport = transport
        if self.close_in_made:
            transport.close()
        self._event("connection_made")

    def data_received(self, data):
        self._event("data_received", f"({len(data)})")

    def eof_received(self):
        self._event("eof_received")
        return self.keep_open_on_eof

    def connection_lost(self, exc):
        self._event("connection_lost", f"({type(exc).__name__})")

    def pause_writing(self):
        self._event("pause_writing")

    def resume_writing(self):
        self._event("resume_writing")


class Accepted(asyncio.Protocol):
    """A server's side of a connection: kept by the world so that `finish` closes it (left to
    the garbage collector, stock asyncio's transport fails in `__del__` on 3.13)."""

    def __init__(self, world):
        world.accepted.append(self)
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport


class World:
    """A loop under test and the objects a fuzzed program made on it."""

    def __init__(self, factory, debug):
        self.loop = factory()
        self.loop.set_debug(debug)
        self.loop.set_exception_handler(self._handler)
        self.trace = []
        self.handles = []
        self.pairs = []  # (ours, peer) socket pairs, for fd watches and sock_* calls
        self.conns = []  # (transport, protocol, peer socket)
        self.servers = []
        self.accepted = []  # Accepted protocols of the servers' connections
        self.tasks = []
        self.compared = None  # the length of trace compared, once comparing stopped
        self.handled = []
        self.executor_jobs = 0
        self.shutdowns = []  # shutdown_default_executor() tasks
        # The process-wide signal state this world's loop sees: its wakeup fd and the handlers
        # of FUZZED_SIGNALS (see signals_owned).
        self.signal_state = (-1, {sig: signal.SIG_DFL for sig in FUZZED_SIGNALS})
        # call_soon_threadsafe() calls that reached the loop, counted so that an operation can
        # wait until a thread's work has landed (see await_threadsafe_calls).
        self.threadsafe_calls = 0
        self.threadsafe_landed = threading.Condition()
        real_call_soon_threadsafe = self.loop.call_soon_threadsafe

        def counted_call_soon_threadsafe(*args, **kwargs):
            try:
                return real_call_soon_threadsafe(*args, **kwargs)
            finally:
                with self.threadsafe_landed:
                    self.threadsafe_calls += 1
                    self.threadsafe_landed.notify_all()

        self.loop.call_soon_threadsafe = counted_call_soon_threadsafe

    def _handler(self, loop, context):
        exc = context.get("exception")
        self.handled.append(context)  # kept whole for a failure's report
        if isinstance(exc, AssertionError) and context["message"].startswith("Error on transport"):
            # Stock asyncio in debug mode: a plain connection accepted just before server.close()
            # fails in its accept task. oxloop makes no such task (a documented deviation).
            return
        coro = getattr(context.get("task"), "get_coro", lambda: None)()
        if getattr(coro, "__qualname__", "").endswith("._accept_connection2"):
            # Stock asyncio's accept task, pending when the program closed the loop, destroyed
            # (the same deviation: oxloop has no such task).
            return
        self.trace.append(f"handler({type(exc).__name__ if exc is not None else None})")

    # -- callbacks ------------------------------------------------------------------------

    def action(self, kind, arg):
        """The callback for `kind`: what it does when it runs, recorded in the trace."""

        def callback():
            self.trace.append(f"cb:{kind}:{arg}")
            if kind == "raise":
                raise arg("from a callback")
            if kind == "cancel" and arg < len(self.handles):
                self.handles[arg].cancel()
            elif kind == "stop":
                self.loop.stop()
            elif kind == "close":
                self.trace.append("close:" + outcome(self.loop.close))
            elif kind == "reenter":
                coro = asyncio.sleep(0)
                self.trace.append("reenter:" + outcome(lambda: self.loop.run_until_complete(coro)))
                coro.close()
            elif kind == "soon":
                self.loop.call_soon(self.trace.append, f"cb:nested:{arg}")
            elif kind == "gc":
                gc.collect()

        return callback

    def schedule(self, how, delay, kind, arg):
        callback = self.action(kind, arg)
        loop = self.loop

        def call():
            if how == "soon":
                handle = loop.call_soon(callback)
            elif how == "later":
                handle = loop.call_later(delay, callback)
            elif how == "at":
                # A non-number reaches call_at as it is only through call_later's sum, which
                # fails first: asyncio queues call_at("x") and fails in its next iteration,
                # oxloop raises TypeError at once (a documented deviation).
                handle = loop.call_at(loop.time() + delay, callback)
            else:  # from another thread, joined before anything else happens
                result = []
                thread = threading.Thread(
                    target=lambda: result.append(
                        outcome(lambda: loop.call_soon_threadsafe(callback))
                    )
                )
                thread.start()
                thread.join()
                if result != ["ok"]:
                    raise RuntimeError(result[0])
                return
            self.handles.append(handle)

        self.trace.append(f"schedule:{outcome(call)}")

    def cancel(self, index):
        if self.handles:
            handle = self.handles[index % len(self.handles)]
            handle.cancel()
            self.trace.append(f"cancelled:{handle.cancelled()}")

    def run_once(self):
        """One loop iteration (stop() queued first, as asyncio's own tests step a loop)."""
        if self.loop.is_closed():
            self.trace.append("run:" + outcome(self.loop.run_forever))
            return
        self.loop.call_soon(self.loop.stop)
        self.trace.append("run:" + outcome(self.loop.run_forever))

    def close_loop(self):
        """`loop.close()` between iterations: what the program does next meets a closed loop."""
        self.trace.append("loop.close:" + outcome(self.loop.close))

    # -- fds --------------------------------------------------------------------------------

    def new_pair(self):
        ours, peer = socket.socketpair()
        ours.setblocking(False)
        peer.setblocking(False)
        self.pairs.append((ours, peer))

    def fd_arg(self, spec):
        """The fd-like object `spec` names, in this world."""
        if spec == "pair":
            return self.pairs[-1][0].fileno() if self.pairs else -1
        if spec == "pair_obj":
            return self.pairs[-1][0] if self.pairs else BadFileno(ValueError)
        if spec == "closed":  # a number no fd has now (both worlds share one fd table)
            sock = socket.socket()
            number = sock.fileno()
            sock.close()
            return number
        if spec == "fileno_oserror":
            return BadFileno(OSError)
        if spec == "fileno_valueerror":
            return BadFileno(ValueError)
        return spec  # a number or a non-fd object as it is

    def watch(self, method, spec):
        fd = self.fd_arg(spec)
        reader = getattr(self.loop, method)
        if method.startswith("add"):
            self.trace.append(f"{method}:{outcome(lambda: reader(fd, self.trace.append, method))}")
        else:
            result = []
            self.trace.append(f"{method}:{outcome(lambda: result.append(reader(fd)))}{result}")

    def observed(self):
        """The part of the trace the other world must match."""
        return self.trace if self.compared is None else self.trace[: self.compared]

    def close_pair_behind_the_loop(self):
        """Closes our end of the last pair while the loop may still watch it.

        From here on the traces are no longer compared: stock asyncio's selector keeps the dead
        registration (its later calls on that number fail or hang, a documented difference),
        and the two worlds, sharing one process, reuse each other's fd numbers. The program
        goes on, so oxloop must still neither crash nor hang.
        """
        if self.pairs:
            ours, peer = self.pairs.pop()
            ours.close()
            peer.close()
            if self.compared is None:
                self.compared = len(self.trace)

    def peer_send(self, size):
        if self.pairs:
            self.trace.append("peer_send:" + outcome(lambda: self.pairs[-1][1].send(b"x" * size)))

    # -- sock_* -------------------------------------------------------------------------------

    def sock_call(self, op, target):
        if target == "pair":
            if not self.pairs:
                return
            sock = self.pairs[-1][0]
        elif target == "closed":
            sock = socket.socket()
            sock.setblocking(False)  # a blocking one would only meet a documented deviation
            sock.close()
        elif target == "not_a_socket":
            sock = object()
        elif target == "half_closed":  # both directions shut down: reads see EOF, sends EPIPE
            sock, peer = socket.socketpair()
            sock.setblocking(False)
            peer.setblocking(False)
            peer.shutdown(socket.SHUT_WR)
            sock.shutdown(socket.SHUT_WR)
            self.pairs.append((sock, peer))
        else:  # a UDP socket: a stream operation on it fails as on asyncio
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            self.pairs.append((sock, sock))
        coro_fn = {
            "recv": lambda: self.loop.sock_recv(sock, 10),
            "recv_into": lambda: self.loop.sock_recv_into(sock, bytearray(10)),
            "sendall": lambda: self.loop.sock_sendall(sock, b"data"),
            "accept": lambda: self.loop.sock_accept(sock),
            "connect": lambda: self.loop.sock_connect(sock, ("127.0.0.1", 9)),
        }[op]
        made = []
        self.trace.append(f"sock_{op}({target}):{outcome(lambda: made.append(coro_fn()))}")
        if made:
            tasks = []
            self.trace.append(
                "create_task:" + outcome(lambda: tasks.append(self.loop.create_task(made[0])))
            )
            if not tasks:
                made[0].close()  # the loop is closed: no task will ever await it
                return
            task = tasks[0]
            index = len(self.tasks)
            task.add_done_callback(lambda t: self.trace.append(f"task{index}:{task_result(t)}"))
            self.tasks.append(task)

    # -- transports and servers -------------------------------------------------------------

    def open_connection(self, raises, close_in_made, keep_open_on_eof):
        ours, peer = socket.socketpair()
        peer.setblocking(False)
        name = f"c{len(self.conns)}"
        protocol = TracingProtocol(self, name, raises, close_in_made, keep_open_on_eof)
        made = []

        def connect():
            coro = self.loop.create_connection(lambda: protocol, sock=ours)
            try:
                made.append(self.loop.run_until_complete(coro)[0])
            finally:
                coro.close()

        self.trace.append(f"connect:{outcome(connect)}")
        if made:
            self.conns.append((made[0], protocol, peer))
        else:
            ours.close()
            peer.close()

    def transport_call(self, index, method, arg):
        if not self.conns:
            return
        transport, _, _ = self.conns[index % len(self.conns)]
        if method == "writelines" and arg and transport.is_closing():
            # Stock asyncio 3.12+ fails with TypeError here (its `_write_ready` is None once
            # the transport is lost); oxloop ignores it, as write() after close.
            return
        call = getattr(transport, method)
        result = []
        if arg == "big":
            arg = b"z" * (1 << 20)
        args = () if arg is None else (arg,) if method != "set_write_buffer_limits" else arg
        self.trace.append(f"{method}:{outcome(lambda: result.append(call(*args)))}{result}")

    def peer_call(self, index, what):
        if not self.conns:
            return
        _, _, peer = self.conns[index % len(self.conns)]
        if what == "send":
            self.trace.append("peer.send:" + outcome(lambda: peer.send(b"y" * 100)))
        elif what == "shutdown":
            self.trace.append("peer.shutdown:" + outcome(lambda: peer.shutdown(socket.SHUT_WR)))
        elif what == "recv":
            got = []
            self.trace.append("peer.recv:" + outcome(lambda: got.append(len(peer.recv(1 << 22)))))
            self.trace.append(f"peer.got:{got}")
        else:
            peer.close()

    def server_call(self, what):
        loop = self.loop
        if what == "create" or not self.servers:
            coro = loop.create_server(lambda: Accepted(self), "127.0.0.1", 0)
            got = []
            self.trace.append(
                "server:" + outcome(lambda: got.append(loop.run_until_complete(coro)))
            )
            coro.close()
            self.servers.extend(got)
            return
        server = self.servers[-1]
        if what == "close":
            self.trace.append("server.close:" + outcome(server.close))
        elif what == "is_serving":
            self.trace.append(f"server.is_serving:{server.is_serving()}")
        elif what == "wait_closed":
            task = []
            coro = server.wait_closed()
            self.trace.append(
                "server.wait_closed:" + outcome(lambda: task.append(loop.create_task(coro)))
            )
            if task:
                self.tasks.append(task[0])
            else:
                coro.close()  # the loop is closed: no task will ever await it
        elif what == "connect":
            if server.sockets:
                client = socket.socket()
                client.setblocking(False)
                client.connect_ex(server.sockets[0].getsockname())
                self.pairs.append((client, client))

    # -- waiting, bounded ---------------------------------------------------------------------

    def await_threadsafe_calls(self, count, what):
        """Waits until `count` call_soon_threadsafe() calls in all have reached the loop."""
        with self.threadsafe_landed:
            landed = self.threadsafe_landed.wait_for(
                lambda: self.threadsafe_calls >= count, timeout=WAIT_LIMIT
            )
        if not landed:
            raise AssertionError(
                f"{what}: its call_soon_threadsafe() never reached the loop within "
                f"{WAIT_LIMIT} s ({self.loop!r})"
            )

    def run_bounded(self, awaitable, what):
        """`loop.run_until_complete(awaitable)`, failing with a message rather than hanging: a
        timer stops the loop after WAIT_LIMIT seconds."""
        loop = self.loop
        if loop.is_closed() or loop.is_running():
            return loop.run_until_complete(awaitable)  # raises RuntimeError at once
        fired = []

        def limit_reached():
            fired.append(True)
            loop.stop()

        guard = loop.call_later(WAIT_LIMIT, limit_reached)
        try:
            return loop.run_until_complete(awaitable)
        finally:
            guard.cancel()
            if fired:
                raise AssertionError(f"{what}: not done within {WAIT_LIMIT} s ({loop!r})")

    # -- the default executor -------------------------------------------------------------

    def executor_function(self, kind, index):
        """What an executor job runs: returns, raises, or calls the loop back from its thread."""
        if kind == "not_callable":
            return 42
        loop = self.loop

        def job():
            if kind == "raise":
                raise ValueError("from an executor job")
            if kind == "raise_base":
                raise KeyboardInterrupt("from an executor job")
            if kind == "threadsafe":
                loop.call_soon_threadsafe(self.trace.append, f"executor{index}.callback")
            return index

        return job

    def executor_call(self, kind, wait):
        """`run_in_executor(None, ...)`; returns once the job's result has reached the loop
        (then, if `wait`, runs the loop until the future is done)."""
        loop = self.loop
        index = self.executor_jobs
        self.executor_jobs += 1
        func = self.executor_function(kind, index)
        before = self.threadsafe_calls
        made = []
        self.trace.append(
            f"executor{index}:" + outcome(lambda: made.append(loop.run_in_executor(None, func)))
        )
        if not made:
            return
        future = made[0]
        future.add_done_callback(lambda f: self.trace.append(f"executor{index}:{task_result(f)}"))
        self.tasks.append(future)
        landings = 2 if kind == "threadsafe" else 1
        self.await_threadsafe_calls(before + landings, f"executor job {index} ({kind})")
        if wait and kind != "raise_base":
            # A future ending in KeyboardInterrupt never stops stock asyncio's
            # run_until_complete (its done callback takes it for a task's exception, which
            # would have left the loop already); oxloop stops (a tested deviation).
            self.trace.append(
                f"executor{index}.wait:"
                + outcome(lambda: self.run_bounded(future, f"executor job {index}"))
            )

    def executor_shutdown(self):
        """`shutdown_default_executor()` as a task, run until its thread has started (its first
        step, after the callbacks queued before it) and its result has reached the loop."""
        loop = self.loop
        coro = loop.shutdown_default_executor()
        made = []
        self.trace.append(
            "executor.shutdown:" + outcome(lambda: made.append(loop.create_task(coro)))
        )
        if not made:
            coro.close()
            return
        task = made[0]
        task.add_done_callback(lambda t: self.trace.append(f"executor.shutdown:{task_result(t)}"))
        # Not in self.tasks: cancelled by finish() after its thread's result has landed, stock
        # asyncio 3.11 would then fail to set that result (InvalidStateError; 3.12+ checks).
        self.shutdowns.append(task)
        before = self.threadsafe_calls
        # Callbacks ahead of the task's first step may raise KeyboardInterrupt or SystemExit out
        # of an iteration; each run consumes at least one of them.
        for _ in range(100):
            if inspect.getcoroutinestate(coro) != inspect.CORO_CREATED or loop.is_closed():
                break
            self.run_once()
        else:
            raise AssertionError("shutdown_default_executor(): its task never started")
        if inspect.getcoroutinestate(coro) == inspect.CORO_SUSPENDED:
            self.await_threadsafe_calls(before + 1, "shutdown_default_executor()")

    # -- signals --------------------------------------------------------------------------

    def signal_callback(self, kind, sig):
        """A signal handler of `kind`: records its call, and raises or is no callable at all."""
        if kind == "not_callable":
            return 42
        if kind == "coroutine":

            async def handler():
                pass

            return handler

        def handler():
            self.trace.append(f"signal:{sig}:{kind}")
            if kind == "raise":
                raise ValueError("from a signal handler")
            if kind == "raise_base":
                raise KeyboardInterrupt("from a signal handler")

        return handler

    def signal_add(self, sig, kind):
        callback = self.signal_callback(kind, sig)
        self.trace.append(
            f"add_signal_handler({sig!r}):"
            + outcome(lambda: self.loop.add_signal_handler(sig, callback))
        )

    def signal_remove(self, sig):
        result = []
        self.trace.append(
            f"remove_signal_handler({sig!r}):"
            + outcome(lambda: result.append(self.loop.remove_signal_handler(sig)))
            + f"{result}"
        )

    def signal_raise(self, sig, how):
        """Sends `sig` to this process (to the main thread, at once) when the loop handles it:
        its handler runs in the loop iterations after this. Without a handler the signal would
        end the process, so that is recorded instead."""
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            self.trace.append(f"raise({sig}):no handler")
            return
        # One iteration first: wake-ups still queued (an executor job's) would otherwise
        # share the iteration that reads the signal, in an order only the kernel knows.
        self.run_once()
        if how == "kill":
            os.kill(os.getpid(), sig)
        else:
            signal.raise_signal(sig)
        self.trace.append(f"raise({sig}):sent")

    # -- the end --------------------------------------------------------------------------

    def finish(self):
        """Closes everything; the trace gets what closing observed."""
        loop = self.loop
        if not loop.is_closed() and not loop.is_running():
            # Connections accepted lately reach their protocol first: stock asyncio takes three
            # iterations from accept() to connection_made(), oxloop one (a documented deviation).
            for _ in range(4):
                self.run_once()
            for transport, _, _ in self.conns:
                transport.abort()
            for accepted in self.accepted:
                if accepted.transport is not None:
                    accepted.transport.abort()
            for server in self.servers:
                server.close()
            for task in self.tasks:
                task.cancel()
            for _ in range(3):
                self.run_once()
        self.trace.append("close:" + outcome(loop.close))
        for transport, _, peer in self.conns:
            peer.close()
            sock = transport.get_extra_info("socket")
            if sock is not None and sock.fileno() >= 0:
                self.trace.append("transport socket left open")
        for ours, peer in self.pairs:
            ours.close()
            peer.close()


def _install_signal_handler(sig, handler):
    """Installs `handler` for `sig` as the loops do (SA_RESTART); returns the previous one."""
    previous = signal.signal(sig, signal.SIG_DFL if handler is None else handler)
    if callable(handler):
        signal.siginterrupt(sig, False)
    return previous


@contextlib.contextmanager
def signals_owned(world):
    """Gives `world`'s loop the process's signal state for the time of one operation.

    The wakeup fd (`signal.set_wakeup_fd`) and a signal's handler belong to the process: with
    two loops in one process the last to add a handler would get every signal, and removing
    the other loop's last handler would take the wakeup fd from both. Each world keeps its own
    copy of that state, installed around each of its operations and saved afterwards, so each
    loop sees the process as if it were alone in it."""
    wakeup, handlers = world.signal_state
    outside = {sig: signal.getsignal(sig) for sig in handlers}
    outside_wakeup = signal.set_wakeup_fd(-1)
    try:  # whatever interrupts the operation (pytest-timeout too), the outside state returns
        signal.set_wakeup_fd(wakeup)
        for sig, handler in handlers.items():
            _install_signal_handler(sig, handler)
        yield
    finally:
        wakeup = signal.set_wakeup_fd(outside_wakeup)
        handlers = {sig: _install_signal_handler(sig, h) for sig, h in outside.items()}
        world.signal_state = (wakeup, handlers)


@contextlib.contextmanager
def finalisers_checked():
    """Runs programs, then collects what they left to the collector (transports of a loop a
    program closed, which nothing can close any more), and fails if a finaliser raised, here
    rather than in some later test. Both loops warn of such transports (ResourceWarning, as
    expected here) and of the coroutines of tasks that never ran (RuntimeWarning). Stock
    asyncio's own finaliser error is let through: on 3.12+ a transport accepted just before
    `server.close()` wakes the closed server's waiters a second time (TypeError from
    `Server._wakeup`)."""
    raised = []
    previous, sys.unraisablehook = sys.unraisablehook, raised.append
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            # Tasks of a loop a program closed before they ran: their coroutines never start.
            warnings.filterwarnings("ignore", "coroutine .* was never awaited", RuntimeWarning)
            yield
            gc.collect()
    finally:
        sys.unraisablehook = previous
    unexpected = [
        (u.object, u.exc_value)
        for u in raised
        if not isinstance(u.exc_value, ResourceWarning)
        and not (
            isinstance(u.exc_value, TypeError)
            and getattr(u.object, "__qualname__", "") == "_SelectorTransport.__del__"
        )
    ]
    assert unexpected == []


def task_result(task):
    if task.cancelled():
        return "cancelled"
    exc = task.exception()
    return "ok" if exc is None else type(exc).__name__
