"""The teardown checks (tests/teardown_checks.py) fail the tests they should, and only those.

Runs a small suite with this directory's conftest in a separate pytest process: tests that leak
an fd, leave a task pending, call the exception handler unexpectedly or leave a thread running
must error at teardown, on both loops, with what they left named; tests that declare the
handler calls they make, check them with their own handler, or clean up, must pass.
"""

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

HERE = Path(__file__).resolve().parent

SUITE = """
import asyncio
import socket
import threading
import time

import pytest

KEPT = []


def test_leaks_an_fd(loop):
    KEPT.append(socket.socket())


def test_leaves_a_task_pending(loop):
    loop.create_task(asyncio.sleep(3600))
    loop.run_until_complete(asyncio.sleep(0))


def test_calls_the_handler_unexpectedly(loop):
    loop.call_exception_handler({"message": "nobody looked"})


def test_leaves_a_thread_running(loop):
    threading.Thread(target=time.sleep, args=(4,)).start()


@pytest.mark.exception_handler_expected("the test reports an error on purpose")
def test_declares_the_handler_call(loop):
    loop.call_exception_handler({"message": "expected"})


def test_inspects_the_handler_calls(loop, exception_contexts):
    loop.call_exception_handler({"message": "looked at"})
    assert [c["message"] for c in exception_contexts] == ["looked at"]


def test_cleans_up(loop):
    sock = socket.socket()
    task = loop.create_task(asyncio.sleep(3600))
    loop.run_until_complete(asyncio.sleep(0))
    task.cancel()
    loop.run_until_complete(asyncio.wait([task]))
    sock.close()
"""


@pytest.mark.timeout(120)
def test_teardown_checks_fail_what_leaks_and_pass_what_cleans_up(pytester):
    pytester.makeconftest((HERE / "conftest.py").read_text())
    pytester.makepyfile(
        teardown_checks=(HERE / "teardown_checks.py").read_text(),
        tlshelpers=(HERE / "tlshelpers.py").read_text(),
        nethelpers=(HERE / "nethelpers.py").read_text(),
    )
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=14, errors=8)
    for name, left in [
        ("test_leaks_an_fd", "fd * left open: socket:*"),
        ("test_leaves_a_task_pending", "task left pending: <Task pending*"),
        ("test_calls_the_handler_unexpectedly", "exception handler called: 'nobody looked'*"),
        ("test_leaves_a_thread_running", "thread left running: <Thread*"),
    ]:
        for loop_name in ("asyncio", "oxloop"):
            result.stdout.fnmatch_lines([f"*ERROR at teardown of {name}[[]{loop_name}[]]*"])
        result.stdout.fnmatch_lines([f"*{left}"])
