"""Faults at the process level: `os.fork()` under a running loop, and SIGINT (Ctrl-C) while the
loop runs callbacks or sleeps in its poller. Each scenario runs in a child Python
(faulthelpers.run_child), which must exit normally.

fork: the child sees what stock asyncio shows it (3.12+ forgets the running loop in the child
through `os.register_at_fork`; 3.11 hides it by the pid the running loop was set from), makes a
new loop of its own that works (its own epoll, never the parent's), and the parent's loop goes
on undisturbed. SIGINT: `run_forever()` and `run_until_complete()` raise KeyboardInterrupt out
of a busy loop and out of one idle in its poller with a far timer, and the loop can run again
afterwards; `asyncio.run()` cancelling main is in test_asyncgen_signals.py.
"""

import sys

import pytest
from faulthelpers import run_child

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(sys.platform == "win32", reason="fork and POSIX signals"),
]


FORK_SCENARIO = """
import traceback, warnings

if LOOP_NAME == "oxloop":
    asyncio.set_event_loop_policy(oxloop.EventLoopPolicy())  # get_event_loop() makes oxloops
parent_loop = new_loop()
asyncio.set_event_loop(parent_loop)

async def round_trip():
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    with a, b:
        await loop.sock_sendall(a, b"ping")
        got = await asyncio.wait_for(loop.sock_recv(b, 4), 5)
    await asyncio.sleep(0.01)
    return got.decode()

def in_child(results):
    out = {}
    try:
        try:
            asyncio.get_running_loop()
            out["running_loop"] = "visible"
        except RuntimeError:
            out["running_loop"] = "none"
        out["inherited_is_running"] = parent_loop.is_running()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            current = asyncio.get_event_loop()
        out["get_event_loop"] = "inherited" if current is parent_loop else "new"
        try:
            out["run_it"] = current.run_until_complete(round_trip())
        except RuntimeError as exc:
            out["run_it"] = str(exc)
        lp = new_loop()
        out["new_loop"] = [type(lp).__module__.split(".")[0], lp.run_until_complete(round_trip())]
        lp.close()
        code = 7
    except BaseException:
        out["error"] = traceback.format_exc()
        code = 1
    os.write(results, json.dumps(out).encode())
    os._exit(code)

async def main():
    loop = asyncio.get_running_loop()
    r, w = os.pipe()
    forked = loop.create_future()

    def fork_now():  # in a callback: the loop is running in the parent
        pid = os.fork()
        if pid == 0:
            os.close(r)
            in_child(w)
        forked.set_result(pid)

    loop.call_soon(fork_now)
    pid = await forked
    os.close(w)
    parent_after = await round_trip()  # the parent's loop is undisturbed
    def read_all():
        with os.fdopen(r, "rb") as f:
            return f.read()
    child_out = json.loads(await loop.run_in_executor(None, read_all))
    _, status = await loop.run_in_executor(None, os.waitpid, pid, 0)
    return [child_out, os.waitstatus_to_exitcode(status), parent_after]

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork() with threads
    result = parent_loop.run_until_complete(main())
parent_loop.close()
report(result)
"""


def test_fork_in_a_callback_gives_the_child_asyncio_s_view_and_a_working_new_loop(loop_name):
    child, code, parent_after = run_child(FORK_SCENARIO, loop_name)
    assert "error" not in child, child.get("error")
    assert code == 7
    assert parent_after == "ping"
    assert child["running_loop"] == "none"
    assert child["new_loop"] == [loop_name, "ping"]
    assert child["inherited_is_running"] is True  # a copy of a running loop's state
    if sys.version_info >= (3, 12):
        # asyncio's at-fork hook resets the policy's loop: the child gets a new one, which runs.
        assert child["get_event_loop"] == "new"
        assert child["run_it"] == "ping"
    else:
        # 3.11 hands the child the parent's loop, which says it is running.
        assert child["get_event_loop"] == "inherited"
        assert child["run_it"] == "This event loop is already running"


PREFORK_SCENARIO = """
import threading

loop = new_loop()

async def round_trip(tag):
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    with a, b:
        await loop.sock_sendall(a, tag.encode())
        got = await asyncio.wait_for(loop.sock_recv(b, 10), 5)
    timer = loop.create_future()
    loop.call_later(0.01, timer.set_result, "timer")
    woken = loop.create_future()
    threading.Thread(target=loop.call_soon_threadsafe, args=(woken.set_result, "woken")).start()
    return [got.decode(), await timer, await woken]

before = loop.run_until_complete(round_trip("before"))
pid = os.fork()
if pid == 0:  # a pre-fork worker: runs the loop it inherited, which is not running
    try:
        ok = loop.run_until_complete(round_trip("child")) == ["child", "timer", "woken"]
        loop.close()
        os._exit(7 if ok else 3)
    except BaseException:
        os._exit(1)
_, status = os.waitpid(pid, 0)
after = loop.run_until_complete(round_trip("after"))
loop.close()
report([before, os.waitstatus_to_exitcode(status), after])
"""


def test_loop_made_before_fork_runs_in_the_child_and_in_the_parent_afterwards(loop_name):
    # Both copies share the epoll (or selector) fd and the wakeup fd with the parent, as a
    # stock loop's do: used one after the other, each works.
    before, code, after = run_child(PREFORK_SCENARIO, loop_name)
    assert before == ["before", "timer", "woken"]
    assert code == 7
    assert after == ["after", "timer", "woken"]


SIGINT_SCENARIO = """
import signal, threading, time

# A child started in the background may inherit SIGINT ignored: be an ordinary process.
signal.signal(signal.SIGINT, signal.default_int_handler)
loop = new_loop()

def interrupt_soon(delay):
    threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT)).start()

def interrupted(run):
    try:
        run()
    except KeyboardInterrupt:
        return "KeyboardInterrupt"
    return "returned"

results = {}
ticks = []

# 1. run_forever with callbacks running all the time.
def busy():
    ticks.append(1)
    loop.call_soon(busy)

loop.call_soon(busy)
interrupt_soon(0.1)
results["busy run_forever"] = interrupted(loop.run_forever)
results["busy ticked"] = len(ticks) > 0

# 2. run_forever idle in the poller, the next timer an hour away.
far = loop.call_later(3600, ticks.clear)
interrupt_soon(0.2)
started = time.monotonic()
results["idle run_forever"] = interrupted(loop.run_forever)
results["idle woke before the timer"] = time.monotonic() - started < 30

# 3. run_until_complete of a coroutine sleeping for an hour.
async def sleeper():
    await asyncio.sleep(3600)

task = loop.create_task(sleeper())
interrupt_soon(0.2)
results["idle run_until_complete"] = interrupted(lambda: loop.run_until_complete(task))
results["task pending"] = not task.done()

# The loop runs again afterwards, and its far timer is still there.
task.cancel()
try:
    loop.run_until_complete(task)
except asyncio.CancelledError:
    pass
results["runs again"] = loop.run_until_complete(asyncio.sleep(0.01, "ran"))
results["far timer pending"] = not far.cancelled()
far.cancel()
loop.close()
report(results)
"""


def test_sigint_raises_keyboard_interrupt_from_a_busy_or_idle_loop(loop_name):
    assert run_child(SIGINT_SCENARIO, loop_name) == {
        "busy run_forever": "KeyboardInterrupt",
        "busy ticked": True,
        "idle run_forever": "KeyboardInterrupt",
        "idle woke before the timer": True,
        "idle run_until_complete": "KeyboardInterrupt",
        "task pending": True,
        "runs again": "ran",
        "far timer pending": True,
    }
