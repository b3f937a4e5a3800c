"""`python -m oxloop script.py [args]` and `python -m oxloop -m module [args]`.

These tests are not parametrised over loops: `python -m oxloop` is oxloop's own command line,
and the point is that the program it runs gets oxloop loops. Each test runs the command in a
subprocess on a tiny program written to tmp_path and checks what the program saw: the loop
class, sys.argv, sys.path[0], __name__, and that its exit status reaches the shell.
"""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# Prints, as one JSON line, what the program sees when run under `python -m oxloop`.
REPORTER = textwrap.dedent(
    """\
    import asyncio, json, sys

    async def main():
        return type(asyncio.get_running_loop()).__module__

    loop_module = asyncio.run(main())
    policy_loop = asyncio.new_event_loop()
    print(json.dumps({
        "loop_module": loop_module,
        "new_event_loop_module": type(policy_loop).__module__,
        "argv": sys.argv,
        "path0": sys.path[0],
        "name": __name__,
    }))
    policy_loop.close()
    """
)


def run_oxloop(*args, cwd):
    """Run `python -m oxloop ARGS` with the oxloop this test process imports."""
    oxloop_root = str(Path(importlib.util.find_spec("oxloop").origin).resolve().parent.parent)
    pythonpath = os.pathsep.join(filter(None, [oxloop_root, os.environ.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "oxloop", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=dict(os.environ, PYTHONPATH=pythonpath),
    )


def report(proc):
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_script_runs_on_oxloop(tmp_path):
    script_dir = tmp_path / "scripts"
    script_dir.mkdir()
    (script_dir / "report.py").write_text(REPORTER)
    proc = run_oxloop("scripts/report.py", "arg1", "--flag", "-m", cwd=tmp_path)
    seen = report(proc)
    assert seen["loop_module"].startswith("oxloop"), seen
    assert seen["new_event_loop_module"].startswith("oxloop"), seen
    assert seen["argv"] == ["scripts/report.py", "arg1", "--flag", "-m"]
    assert seen["path0"] == str(script_dir.resolve())
    assert seen["name"] == "__main__"


def test_module_runs_on_oxloop(tmp_path):
    (tmp_path / "reportmod.py").write_text(REPORTER)
    proc = run_oxloop("-m", "reportmod", "arg1", "--flag", cwd=tmp_path)
    seen = report(proc)
    assert seen["loop_module"].startswith("oxloop"), seen
    assert seen["new_event_loop_module"].startswith("oxloop"), seen
    assert seen["argv"] == [str(tmp_path / "reportmod.py"), "arg1", "--flag"]
    assert seen["name"] == "__main__"


@pytest.mark.parametrize(
    ("code", "status", "stderr"),
    [("0", 0, ""), ("3", 3, ""), ("'fatal: bad input'", 1, "fatal: bad input")],
)
@pytest.mark.parametrize("as_module", [False, True], ids=["script", "module"])
def test_system_exit_propagates(tmp_path, code, status, stderr, as_module):
    program = f"import asyncio\n\nasync def main():\n    raise SystemExit({code})\n\n"
    (tmp_path / "quitter.py").write_text(program + "asyncio.run(main())\n")
    args = ("-m", "quitter") if as_module else ("quitter.py",)
    proc = run_oxloop(*args, cwd=tmp_path)
    assert proc.returncode == status, proc.stderr
    assert stderr in proc.stderr


def test_uncaught_exception_exits_1(tmp_path):
    (tmp_path / "boom.py").write_text("raise ValueError('boom')\n")
    proc = run_oxloop("boom.py", cwd=tmp_path)
    assert proc.returncode == 1
    assert "ValueError: boom" in proc.stderr


@pytest.mark.parametrize("args", [(), ("--help",), ("-h",), ("-m",), ("--no-such-option",)])
def test_usage_errors_exit_2(tmp_path, args):
    proc = run_oxloop(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert "usage: python -m oxloop" in proc.stderr
    assert proc.stdout == ""


def test_missing_script_exits_2(tmp_path):
    proc = run_oxloop("missing.py", cwd=tmp_path)
    assert proc.returncode == 2
    assert "missing.py" in proc.stderr


def test_missing_module_exits_1(tmp_path):
    proc = run_oxloop("-m", "no_such_module_xyz", cwd=tmp_path)
    assert proc.returncode == 1
    assert "No module named no_such_module_xyz" in proc.stderr
