"""What each Python version added to or changed in the loop API, on both loops, with that
version's semantics: 3.12's `eager_task_factory`, `shutdown_default_executor(timeout)` and
exception handlers run in the failing task's context; 3.13's `create_task(**kwargs)`,
`Server.close_clients()`/`abort_clients()`, `create_server(keep_alive=)`,
`create_unix_server(cleanup_socket=)` and handle reprs without arguments outside debug mode.

A test of an API a version lacks checks that it is absent on both loops there, so each test
asserts something on every version.
"""

import asyncio
import concurrent.futures
import contextvars
import os
import socket
import sys
import tempfile
import threading
import time

import pytest
from nethelpers import RecordingProtocol, run

PY = sys.version_info[:2]


def port_of(server):
    return server.sockets[0].getsockname()[1]


async def returns(value):
    return value


# -- create_task ---------------------------------------------------------------------------------


def test_create_task_passes_extra_keywords_on_313_and_refuses_them_before(loop):
    async def main():
        if PY < (3, 13):
            coro = returns(1)
            with pytest.raises(TypeError, match="unexpected keyword argument 'eager_start'"):
                loop.create_task(coro, eager_start=True)
            coro.close()
            return
        task = loop.create_task(returns(1), eager_start=True, name="eager")
        assert task.done() and task.result() == 1  # ran to its end inside create_task
        assert task.get_name() == "eager"
        lazy = loop.create_task(returns(2), eager_start=False)
        assert not lazy.done()
        assert await lazy == 2

    run(loop, main())


def test_create_task_hands_extra_keywords_to_the_task_factory_on_313(loop):
    seen = []

    def factory(loop, coro, **kwargs):
        seen.append(sorted(kwargs))
        kwargs.pop("flavour", None)
        return asyncio.Task(coro, loop=loop, **kwargs)

    async def main():
        loop.set_task_factory(factory)
        context = contextvars.copy_context()
        if PY >= (3, 13):
            assert await loop.create_task(returns(1), flavour="x", context=context) == 1
        else:
            assert await loop.create_task(returns(1), context=context) == 1
        assert await loop.create_task(returns(2)) == 2

    run(loop, main())
    if PY >= (3, 14):
        assert seen == [["context", "flavour"], []]
    elif PY >= (3, 13):
        assert seen == [["context", "flavour"], []]
    else:
        assert seen == [["context"], []]


@pytest.mark.oxloop_only(
    "3.13's create_task calls set_name(None) after a custom factory: every such task is "
    "named 'None' on stock asyncio 3.13",
    since=(3, 13),
    before=(3, 14),
)
def test_a_task_from_a_custom_factory_keeps_its_default_name(loop):
    async def main():
        loop.set_task_factory(lambda loop, coro, **kw: asyncio.Task(coro, loop=loop, **kw))
        task = loop.create_task(returns(1))
        assert task.get_name().startswith("Task-")
        named = loop.create_task(returns(2), name="named")
        assert named.get_name() == "named"
        await asyncio.gather(task, named)

    run(loop, main())


def test_eager_task_factory_runs_a_task_to_its_first_suspension_at_creation(loop):
    if PY < (3, 12):
        assert not hasattr(asyncio, "eager_task_factory")
        return
    order = []

    async def step(name):
        order.append(f"{name} starts")
        await asyncio.sleep(0)
        order.append(f"{name} resumes")
        return name

    async def main():
        loop.set_task_factory(asyncio.eager_task_factory)
        done_at_once = asyncio.create_task(returns("instant"))
        assert done_at_once.done() and done_at_once.result() == "instant"
        task = asyncio.create_task(step("a"))
        order.append("created")
        assert asyncio.current_task() is not task
        assert await task == "a"
        assert task in asyncio.all_tasks() or task.done()

    run(loop, main())
    assert order == ["a starts", "created", "a resumes"]


# -- exception handler context, executor shutdown -------------------------------------------------


def test_exception_handler_runs_in_the_failing_tasks_context_on_312(loop):
    var = contextvars.ContextVar("var", default="loop")
    seen = []

    def handler(loop, context):
        seen.append(var.get())

    async def fails():
        var.set("task")
        raise ZeroDivisionError

    async def main():
        loop.set_exception_handler(handler)
        task = loop.create_task(fails())
        await asyncio.sleep(0.01)
        del task  # never retrieved: reported to the handler when collected

    run(loop, main())
    import gc

    gc.collect()
    assert seen == (["task"] if PY >= (3, 12) else ["loop"])


def test_exception_handler_runs_in_a_failing_callbacks_context_on_312(loop):
    var = contextvars.ContextVar("var", default="loop")
    seen = []
    context = contextvars.copy_context()
    context.run(var.set, "callback")

    def fail():
        raise ZeroDivisionError

    async def main():
        loop.set_exception_handler(lambda loop, ctx: seen.append(var.get()))
        loop.call_soon(fail, context=context)
        await asyncio.sleep(0.01)

    run(loop, main())
    assert seen == (["callback"] if PY >= (3, 12) else ["loop"])


def test_shutdown_default_executor_with_a_timeout_warns_and_returns(loop):
    release = threading.Event()

    async def main():
        loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(1))
        loop.run_in_executor(None, release.wait, 5)
        await asyncio.sleep(0.01)
        started = time.monotonic()
        with pytest.warns(RuntimeWarning, match="within 0.1 seconds"):
            await loop.shutdown_default_executor(timeout=0.1)
        assert time.monotonic() - started < 2

    if PY < (3, 12):
        pytest.skip("shutdown_default_executor(timeout) is new in 3.12")  # asyncio 3.11 lacks it
    try:
        run(loop, main())
    finally:
        release.set()


# -- servers (3.13) ------------------------------------------------------------------------------


class Accepted(asyncio.Protocol):
    def __init__(self, sink):
        self.sink = sink

    def connection_made(self, transport):
        self.sink.append(transport)


async def server_with_clients(loop, count):
    accepted = []
    server = await loop.create_server(lambda: Accepted(accepted), "127.0.0.1", 0)
    clients = [
        await loop.create_connection(RecordingProtocol, "127.0.0.1", port_of(server))
        for _ in range(count)
    ]
    while len(accepted) < count:
        await asyncio.sleep(0.001)
    return server, clients, accepted


@pytest.mark.parametrize("how", ["close_clients", "abort_clients"])
def test_server_close_clients_and_abort_clients_reach_every_connection(loop, how):
    async def main():
        server, clients, accepted = await server_with_clients(loop, 3)
        if PY < (3, 13):
            assert not hasattr(server, how)
            server.close()
            for transport, _ in clients:
                transport.close()
            return
        server.close()
        getattr(server, how)()
        assert all(t.is_closing() for t in accepted)
        for _, proto in clients:
            await asyncio.wait_for(proto.lost, 5)  # the server side went away
        await asyncio.wait_for(server.wait_closed(), 5)
        for transport, _ in clients:
            transport.close()

    run(loop, main())


def test_server_wait_closed_waits_for_its_connections_on_313(loop):
    async def main():
        server, clients, accepted = await server_with_clients(loop, 1)
        server.close()
        waiting = asyncio.ensure_future(server.wait_closed())
        await asyncio.sleep(0.05)
        # 3.12.1+ waits for the accepted connections too; 3.11 returned at once.
        assert waiting.done() == (PY < (3, 12))
        accepted[0].close()
        await asyncio.wait_for(waiting, 5)
        clients[0][0].close()

    run(loop, main())


def test_create_server_keep_alive_sets_so_keepalive_on_313(loop):
    async def main():
        if PY < (3, 13):
            with pytest.raises(TypeError):
                await loop.create_server(asyncio.Protocol, "127.0.0.1", 0, keep_alive=True)
            return
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0, keep_alive=True)
        sock = server.sockets[0]
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0
        server.close()

    run(loop, main())


def test_unix_server_removes_its_socket_file_when_closed_on_313(loop):
    async def main():
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "server.sock")
            server = await loop.create_unix_server(asyncio.Protocol, path)
            assert os.path.exists(path)
            server.close()
            await server.wait_closed()
            # 3.13 cleans the file up (cleanup_socket=True); before, it stayed.
            assert os.path.exists(path) == (PY < (3, 13))
            if PY >= (3, 13):
                kept = await loop.create_unix_server(asyncio.Protocol, path, cleanup_socket=False)
                kept.close()
                await kept.wait_closed()
                assert os.path.exists(path)

    run(loop, main())


# -- handles -------------------------------------------------------------------------------------


def callback_with_args(*args):
    pass


@pytest.mark.parametrize("debug", [False, True], ids=["nodebug", "debug"])
def test_handle_repr_shows_arguments_only_in_debug_mode_on_313(loop, debug):
    loop.set_debug(debug)
    handle = loop.call_soon(callback_with_args, "secret")
    timer = loop.call_later(10, callback_with_args, "secret")
    shown = PY < (3, 13) or debug
    for h in (handle, timer):
        assert ("callback_with_args('secret')" in repr(h)) == shown, repr(h)
        assert "callback_with_args(" in repr(h)
    handle.cancel()
    timer.cancel()


# -- dump_tasks and 3.14's call graph ------------------------------------------------------------


def test_dump_tasks_links_tasks_that_the_call_graph_says_are_awaited(loop, monkeypatch):
    """On 3.14+ `asyncio.capture_call_graph` knows who awaits a task even where no frame shows it;
    dump_tasks() adds those links. Before 3.14 the function is absent, so it is stood in for
    here by one that reports `worker` as awaited by `boss` (a link no frame reveals)."""
    import oxloop

    gate = asyncio.Event()

    async def worker():
        await gate.wait()

    async def boss():
        await gate.wait()

    async def main():
        boss_task = asyncio.create_task(boss(), name="boss")
        worker_task = asyncio.create_task(worker(), name="worker")
        await asyncio.sleep(0)

        class Graph:
            def __init__(self, future, awaited_by=()):
                self.future, self.awaited_by, self.call_stack = future, awaited_by, ()

        def capture(future, *, depth=1, limit=None):
            return Graph(future, (Graph(boss_task),) if future is worker_task else ())

        if not hasattr(asyncio, "capture_call_graph"):
            monkeypatch.setattr(asyncio, "capture_call_graph", capture, raising=False)
            text = oxloop.dump_tasks()
            lines = text.splitlines()
            boss_line = next(i for i, line in enumerate(lines) if "'boss'" in line)
            assert "'worker'" in lines[boss_line + 1] and "└─" in lines[boss_line + 1], text
        gate.set()
        await asyncio.gather(boss_task, worker_task)

    run(loop, main())
