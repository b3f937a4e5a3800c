"""anyio on oxloop: `anyio.run()` with oxloop's loop factory, and anyio's root-task lookup.

anyio recognises the task a loop runs through `run_until_complete()` by the done callback it
carries: asyncio's own `_run_until_complete_cb`, or any callback from the module `uvloop.loop`.
Its worker threads for `to_thread.run_sync()` live as long as that root task; where it finds
none, each calling task counts as a root and its worker thread is stopped when that task ends.
"""

import asyncio
import threading

import pytest

import oxloop

anyio = pytest.importorskip("anyio")


def test_anyio_run_with_oxloop_loop_factory_serves_a_request():
    async def main():
        async def echo(stream):
            async with stream:
                await stream.send(await stream.receive())

        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, echo)
            with anyio.fail_after(10):
                async with await anyio.connect_tcp("127.0.0.1", port) as client:
                    await client.send(b"ping")
                    reply = await client.receive()
            tg.cancel_scope.cancel()
        return reply, type(asyncio.get_running_loop())

    reply, loop_class = anyio.run(
        main, backend="asyncio", backend_options={"loop_factory": oxloop.new_event_loop}
    )
    assert reply == b"ping"
    assert loop_class is oxloop.Loop


def test_to_thread_reuses_one_worker_across_tasks_of_a_runner(loop_factory):
    # Failed on oxloop while run_until_complete() used a done callback of its own: anyio took
    # each task for a root and started a new thread for each.
    async def in_a_task():
        return await anyio.to_thread.run_sync(threading.get_ident)

    async def main():
        first = await asyncio.create_task(in_a_task())
        second = await asyncio.create_task(in_a_task())
        return first, second

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        first, second = runner.run(main())
    assert first == second
