"""Helpers for the fault tests (test_faults_*.py): running a scenario in a child process.

Not a test module (imported as `from faulthelpers import ...`, like nethelpers). A fault that
could abort the interpreter (fds exhausted under the loop, `fork()` under a running loop,
`SIGINT` in the poller) runs in a child Python, so one abort fails one test instead of killing
pytest. The child gets `PRELUDE` (the loop chosen by name, fd accounting that needs no free fd,
fd exhaustion) before the scenario's own code, and hands its findings back as one JSON line.
"""

import json
import os
import subprocess
import sys
import textwrap

PRELUDE = '''
import asyncio, errno, gc, json, os, resource, socket, sys
LOOP_NAME = sys.argv[1]
if LOOP_NAME == "oxloop":
    import oxloop
    new_loop = oxloop.new_event_loop
else:
    new_loop = asyncio.new_event_loop
_SCAN = 4096

def open_fds():
    """The fds open now (fstat needs no free fd, unlike listing /proc/self/fd)."""
    found = []
    for fd in range(_SCAN):
        try:
            os.fstat(fd)
        except OSError:
            continue
        found.append(fd)
    return found

def exhaust(free=0):
    """Lower RLIMIT_NOFILE near the fds in use and fill it, leaving `free` fds; returns the
    fillers for release()."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(open_fds()) + 32, hard))
    fillers = []
    while True:
        try:
            fillers.append(os.open("/dev/null", os.O_RDONLY))
        except OSError as exc:
            assert exc.errno == errno.EMFILE, exc
            break
    for _ in range(free):
        os.close(fillers.pop())
    return fillers

def release(fillers):
    for fd in fillers:
        os.close(fd)
    fillers.clear()

def error(exc):
    """How an exception is compared between the loops: its type and errno."""
    return [type(exc).__name__, getattr(exc, "errno", None)]

def report(value):
    print("REPORT " + json.dumps(value), flush=True)
'''


def run_child(body, loop_name, timeout=40):
    """Run `body` (after PRELUDE) in a child Python on the loop named `loop_name`, require it to
    exit normally (no abort, no Rust panic), and return what it passed to `report()`."""
    code = PRELUDE + textwrap.dedent(body)
    env = dict(os.environ, PYTHONDEVMODE="", PYTHONASYNCIODEBUG="")
    proc = subprocess.run(
        [sys.executable, "-c", code, loop_name],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    assert proc.returncode == 0, f"child exited with {proc.returncode}:\n{proc.stderr}"
    assert "panicked" not in proc.stderr and "PanicException" not in proc.stderr, proc.stderr
    reports = [line for line in proc.stdout.splitlines() if line.startswith("REPORT ")]
    assert len(reports) == 1, (proc.stdout, proc.stderr)
    return json.loads(reports[0][len("REPORT ") :])
