"""Every program in examples/pitfalls/ runs and prints the report oxloop makes for its pitfall.

Like tests/test_examples.py, the examples are found by glob and each must have its expected
output registered below, and each is run as a script (``python examples/pitfalls/x.py``, which
uses ``oxloop.run(..., diagnostics=...)``). Unlike there, each pattern is a regular expression
matched against a whole line, because the reports hold absolute paths and measured durations;
the patterns pin what matters: the kind of report, the names and the line numbers.

They run on oxloop only: they show oxloop's diagnostics, and the blocking one needs its core.
"""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

PITFALLS_DIR = Path(__file__).resolve().parent.parent / "examples" / "pitfalls"
PITFALLS = sorted(path.stem for path in PITFALLS_DIR.glob("*.py"))

# Lines each example must print, in this order, as regular expressions for the whole line.
EXPECTED = {
    "blocking_call": [
        r"oxloop: the event loop is blocked: task 'request-1' \(handle_request\(\)\) has been "
        r"running for \d\.\d{3} s \(threshold 0\.1 s\); no other task can run",
        r"  at .*/blocking_call\.py:19 in load_report",
        r"    File \".*/blocking_call\.py\", line 29, in handle_request",
        r"    File \".*/blocking_call\.py\", line 19, in load_report",
        r"      time\.sleep\(0\.3\)  # blocks the whole loop.*",
        r"oxloop: the event loop was blocked for \d\.\d{3} s by task 'request-1' "
        r"\(handle_request\(\)\) \(episode 1, over\)",
        r"got report",
        r"stats: blocked \d\.\d s in 1 episode\(s\); the latest timer ran \d\.\d s late",
    ],
    "dump_tasks": [
        r"4 live tasks on <Loop running=True .*>",
        r"task 'Task-1' \(main\(\)\) at .*/dump_tasks\.py:26 in main",
        r"task 'download-all' \(download_all\(\)\) at .*/dump_tasks\.py:19 in download_all",
        # Python 3.13 stopped counting named tasks in the default names: Task-3 there is Task-2.
        r"   ├─ task 'Task-\d' \(download\(\)\) at .*/dump_tasks\.py:15 in download "
        r"\[download > Event\.wait\]",
        r"   └─ task 'Task-\d' \(download\(\)\) at .*/dump_tasks\.py:15 in download .*",
    ],
    "forgotten_await": [
        r"oxloop: coroutine save_user\(\) was never awaited, so it never ran",
        r"  created at .*/forgotten_await\.py:25 in main",
        r"saved: \['grace'\]",
    ],
    "lost_exception": [
        r"oxloop: task 'Task-2' \(sync_inventory\(\)\) failed with "
        r"ConnectionError\('inventory service unreachable'\) and nobody retrieved the exception",
        r"  task created at .*/lost_exception\.py:23 in main",
        r"  noticed when: the task was garbage-collected",
        r"    File \".*/lost_exception\.py\", line 19, in sync_inventory",
        r"main\(\) finished as if all went well",
    ],
    "pending_at_shutdown": [
        r"main\(\) returns with the audit writer still running",
        r"oxloop: 1 task was still pending at shutdown and had to be cancelled; "
        r"what it was doing may be left half done",
        r"  first one suspended at .*/pending_at_shutdown\.py:17 in write_audit_log",
        r"  task 'Task-2' \(write_audit_log\(\)\), created at .*/pending_at_shutdown\.py:21 "
        r"in main, awaiting:",
    ],
    "swallowed_cancellation": [
        r"oxloop: task 'Task-2' \(flush_buffer\(\)\) was asked to cancel but finished without "
        r"raising CancelledError \(it returned 'flushed anyway'\)",
        r"  suspended at .*/swallowed_cancellation\.py:18 in flush_buffer",
        r"  task created at .*/swallowed_cancellation\.py:24 in main",
        r"cancelled task returned: 'flushed anyway'",
    ],
    "task_flood": [
        r"oxloop: 1001 tasks are alive: over the soft limit of 1000",
        # Python 3.12+ runs a list comprehension in the function's own frame (PEP 709).
        r"  most created at .*/task_flood\.py:21 in main(\.<locals>\.<listcomp>)?",
        r"  high-water mark 1001, 1001 created in total, about \d+ per second recently",
        r"        1000  .*/task_flood\.py:21 in main(\.<locals>\.<listcomp>)?",
        r"processed 2000 items",
    ],
}


def test_pitfall_examples_found():
    assert PITFALLS, f"no examples found in {PITFALLS_DIR}"
    stale = sorted(set(EXPECTED) - set(PITFALLS))
    assert not stale, f"EXPECTED lists examples that no longer exist: {stale}"


def assert_matches_in_order(output, patterns):
    lines = output.splitlines()
    pos = 0
    for pattern in patterns:
        for i in range(pos, len(lines)):
            if re.fullmatch(pattern, lines[i]):
                pos = i + 1
                break
        else:
            pytest.fail(f"no line (in order) matches {pattern!r}; output was:\n{output}")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", PITFALLS)
def test_pitfall_example(name):
    if name not in EXPECTED:
        pytest.fail(f"examples/pitfalls/{name}.py has no expected output: register it in EXPECTED")
    source = (PITFALLS_DIR / f"{name}.py").read_text()
    assert source.startswith('"""'), f"examples/pitfalls/{name}.py needs a docstring"
    oxloop_root = str(Path(importlib.util.find_spec("oxloop").origin).resolve().parent.parent)
    pythonpath = os.pathsep.join(filter(None, [oxloop_root, os.environ.get("PYTHONPATH")]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OXLOOP_DIAGNOSTICS")}
    proc = subprocess.run(
        [sys.executable, str(PITFALLS_DIR / f"{name}.py")],
        capture_output=True,
        text=True,
        timeout=50,
        env=dict(env, PYTHONPATH=pythonpath),
    )
    assert proc.returncode == 0, proc.stderr
    assert_matches_in_order(proc.stdout, EXPECTED[name])
