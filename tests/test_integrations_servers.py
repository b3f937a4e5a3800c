"""The README's "Using it with ..." server commands, each run as written and sent a real request.

The applications in examples/servers/ answer with the class of the loop serving the request, so
each test checks the loop the server really ran on, in whichever process answered (hypercorn's
and gunicorn's workers are child processes). Not parametrised over loops: the point of each
command is the loop it selects. Every server is bound to 127.0.0.1 and stopped after its test.
"""

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("hypercorn")
pytest.importorskip("aiohttp")
pytest.importorskip("gunicorn")
pytest.importorskip("uvicorn_worker")

APPS = Path(__file__).resolve().parent.parent / "examples" / "servers"
BIN = Path(sys.executable).parent  # uvicorn, hypercorn and gunicorn are this venv's scripts
OXLOOP = "oxloop.loop.Loop"
FOREIGN_LOOP_WARNING = "OXLOOP is set, but this program runs its event loop on"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serving(command: str, port: int, env: dict | None = None):
    """Run `command` (the README's, with the port filled in) from examples/servers/ and yield
    the body of a GET / once the server answers, then stop it and keep its stderr."""
    args = shlex.split(command)
    if args[0] == "python":
        args[0] = sys.executable
    environment = {name: value for name, value in os.environ.items() if name != "OXLOOP"}
    environment.update(env or {}, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.Popen(
        args,
        cwd=APPS,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # so the whole group (gunicorn's workers too) can be stopped
    )
    result = Served()
    try:
        result.body = get(port, proc)
        yield result
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            result.stderr = proc.communicate(timeout=15)[1]
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            result.stderr = proc.communicate()[1]


class Served:
    body = ""
    stderr = ""


def get(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                return response.read().decode()
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}:\n{proc.stderr.read()}")
            if time.monotonic() > deadline:
                pytest.fail("server did not answer in time")
            time.sleep(0.1)


def test_uvicorn_loop_option():
    port = free_port()
    with serving(f"uvicorn asgi_app:app --loop oxloop:new_event_loop --port {port}", port) as s:
        assert s.body == OXLOOP


def test_uvicorn_run_loop_argument():
    port = free_port()
    command = (
        'python -c "import uvicorn; '
        f"uvicorn.run('asgi_app:app', port={port}, loop='oxloop:new_event_loop')\""
    )
    with serving(command, port) as s:
        assert s.body == OXLOOP


def test_python_m_oxloop_uvicorn_serves_on_the_loop_uvicorn_picks_and_says_so():
    # uvicorn's default --loop auto makes a uvloop (or asyncio SelectorEventLoop) loop itself:
    # the policy is never asked, and the foreign-loop warning says so.
    port = free_port()
    with serving(f"python -m oxloop -m uvicorn asgi_app:app --port {port}", port) as s:
        assert s.body != OXLOOP
    assert FOREIGN_LOOP_WARNING in s.stderr
    assert "--loop oxloop:new_event_loop" in s.stderr


@pytest.mark.parametrize("worker", ["OxloopUvicornWorker", "LegacyOxloopUvicornWorker"])
def test_uvicorn_worker_under_gunicorn(worker):
    # OxloopUvicornWorker: the uvicorn-worker package's worker; Legacy...: uvicorn.workers'.
    port = free_port()
    command = f"gunicorn asgi_app:app -k gunicorn_workers.{worker} -b 127.0.0.1:{port}"
    with serving(command, port) as s:
        assert s.body == OXLOOP


def test_hypercorn_workers_in_child_processes_run_on_oxloop():
    # hypercorn serves from a worker it starts with multiprocessing's spawn: a new interpreter,
    # which only OXLOOP=1 (set by python -m oxloop, read at start-up) puts on oxloop.
    port = free_port()
    command = f"python -m oxloop -m hypercorn asgi_app:app --bind 127.0.0.1:{port}"
    with serving(command, port) as s:
        assert s.body == OXLOOP


def test_hypercorn_with_the_environment_variable():
    port = free_port()
    command = f"hypercorn asgi_app:app --bind 127.0.0.1:{port}"
    with serving(command, port, env={"OXLOOP": "1"}) as s:
        assert s.body == OXLOOP


def test_aiohttp_run_app_loop_argument():
    port = free_port()
    with serving(f"python aiohttp_app.py --port {port}", port) as s:
        assert s.body == OXLOOP


def test_aiohttp_web_module_under_python_m_oxloop():
    port = free_port()
    command = f"python -m oxloop -m aiohttp.web -H 127.0.0.1 -P {port} aiohttp_app:init_func"
    with serving(command, port) as s:
        assert s.body == OXLOOP


def test_aiohttp_gunicorn_worker_with_the_environment_variable():
    port = free_port()
    command = f"gunicorn aiohttp_app:make_app -k aiohttp.GunicornWebWorker -b 127.0.0.1:{port}"
    with serving(command, port, env={"OXLOOP": "1"}) as s:
        assert s.body == OXLOOP
