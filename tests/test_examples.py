"""Every program in examples/ runs, on both loops, and prints what it is there to show.

Each example is imported from its path and its `main()` run with
`asyncio.Runner(loop_factory=...).run(main())` (Python 3.11's `asyncio.run` has no
`loop_factory`) on stock asyncio and on oxloop; the key lines it prints
must appear, in order. Each is also run once as a script (`python examples/x.py`, which uses
`oxloop.run`) to prove that works as documented.

The examples are found by glob: a new examples/*.py is tested automatically, and fails until its
expected lines are registered in EXPECTED below.
"""

import asyncio
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
EXAMPLES = sorted(path.stem for path in EXAMPLES_DIR.glob("*.py"))

# Lines each example must print, exactly and in this order (other lines may come between).
EXPECTED = {
    "echo_server": [
        "client 1 got back: ['hello from client 1', 'bye from client 1']",
        "client 2 got back: ['hello from client 2', 'bye from client 2']",
        "client 3 got back: ['hello from client 3', 'bye from client 3']",
        "server closed: True",
    ],
    "as_completed": [
        "completed #1: <data from https://example.com/fast>",
        "completed #2: <data from https://example.com/medium>",
        "completed #3: <data from https://example.com/slow>",
    ],
    "create_task": [
        "task created; main() keeps running",
        "fetching https://example.com/item/1",
        "task done before awaiting: False",
        "task result: <data from https://example.com/item/1>",
        "task done after awaiting: True",
    ],
    "executor_blocking": [
        "got <data from https://example.com/1> (ran on the loop's thread: False)",
        "got <data from https://example.com/2> (ran on the loop's thread: False)",
        "fetches overlapped: True",
        "loop kept running during the blocking calls: True",
    ],
    "futures": [
        "future done: False",
        "future result: the answer",
        "future done: True",
        "future raised: ConnectionError('connection reset')",
        "a Task is a Future: True",
        "task result: <data from https://example.com/>",
    ],
    "gather": [
        # completion order: fastest first ...
        "finished https://example.com/b",
        "finished https://example.com/c",
        "finished https://example.com/a",
        # ... but results in argument order
        "result: <data from https://example.com/a>",
        "result: <data from https://example.com/b>",
        "result: <data from https://example.com/c>",
        "ran concurrently: True",
    ],
    "hello_sleep": ["Hello", "World"],
    "wait_first_completed": [
        "done: 1, pending: 1",
        "first result: <data from https://mirror.example.com/file>",
        "cancelled the rest: True",
    ],
    "wait_for_timeout": [
        "got: <data from https://fast.example.com/>",
        "fetch of https://hung.example.com/ cancelled",
        "Request timed out",
    ],
}


def expected_lines(name):
    if name not in EXPECTED:
        pytest.fail(
            f"examples/{name}.py has no expected output: register the lines it must print in "
            f"EXPECTED in {Path(__file__).name}"
        )
    return EXPECTED[name]


def assert_prints_in_order(output, expected):
    lines = output.splitlines()
    pos = 0
    for want in expected:
        try:
            pos = lines.index(want, pos) + 1
        except ValueError:
            pytest.fail(f"expected line {want!r} (in order) not printed; output was:\n{output}")


def load_example(name):
    path = EXAMPLES_DIR / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_examples_found():
    assert EXAMPLES, f"no examples found in {EXAMPLES_DIR}"


def test_no_stale_expectations():
    stale = sorted(set(EXPECTED) - set(EXAMPLES))
    assert not stale, f"EXPECTED lists examples that no longer exist: {stale}"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("name", EXAMPLES)
def test_example_main(name, loop_factory, capsys):
    expected = expected_lines(name)
    module = load_example(name)
    assert module.__doc__, f"examples/{name}.py needs a docstring saying what it shows"
    assert asyncio.iscoroutinefunction(getattr(module, "main", None)), "needs `async def main()`"
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(module.main())
    assert_prints_in_order(capsys.readouterr().out, expected)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", EXAMPLES)
def test_example_as_script(name):
    """`python examples/x.py` works: the script runs its main() with oxloop.run()."""
    expected = expected_lines(name)
    # The child imports the same oxloop as this process, wherever that was found.
    oxloop_root = str(Path(importlib.util.find_spec("oxloop").origin).resolve().parent.parent)
    pythonpath = os.pathsep.join(filter(None, [oxloop_root, os.environ.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES_DIR / f"{name}.py")],
        capture_output=True,
        text=True,
        timeout=50,
        env=dict(os.environ, PYTHONPATH=pythonpath),
    )
    assert proc.returncode == 0, proc.stderr
    assert_prints_in_order(proc.stdout, expected)
