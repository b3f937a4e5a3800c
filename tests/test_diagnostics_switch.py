"""Switching diagnostics on and off, their settings, and where reports go (logging, a hook, a
JSON-lines file, OpenTelemetry), plus ``python -m oxloop --diagnose``.

The sink tests provoke a forgotten await or a lost exception, which work on both loops, and run
on both (stock asyncio through `oxloop.diagnostics.attach`). Switch tests are about oxloop's own
``diagnostics=`` argument and environment variable and are oxloop-only for that reason.
"""

import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import subprocess
import sys
import textwrap
import types
import warnings
from pathlib import Path

import pytest

import oxloop
from oxloop import diagnostics
from oxloop.diagnostics import session as diagnostics_session

OXLOOP_ONLY = pytest.mark.oxloop_only("diagnostics= and OXLOOP_DIAGNOSTICS are oxloop's switches")


def make_loop(loop_name, settings):
    if loop_name == "oxloop":
        return oxloop.new_event_loop(diagnostics=settings)
    loop = asyncio.new_event_loop()
    diagnostics.attach(loop, settings)
    return loop


async def fetch_page():
    await asyncio.sleep(0)


async def forget_an_await():
    fetch_page()  # <- forgotten
    await asyncio.sleep(0)


async def fail():
    raise KeyError("missing")


async def lose_an_exception():
    asyncio.create_task(fail())
    for _ in range(3):
        await asyncio.sleep(0)


def run_on(loop, coro):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the "never awaited" warning
            loop.run_until_complete(coro)
    finally:
        loop.close()


FORGOTTEN_LINE = next(
    i + 1
    for i, text in enumerate(Path(__file__).read_text().splitlines())
    if text.rstrip().endswith("# <- forgotten")
)


# -- switch ------------------------------------------------------------------------------------


@OXLOOP_ONLY
def test_off_by_default(loop_name, monkeypatch):
    monkeypatch.delenv("OXLOOP_DIAGNOSTICS", raising=False)
    loop = oxloop.new_event_loop()
    try:
        assert loop._diagnostics is None
        assert loop.get_task_factory() is None
        loop.run_until_complete(asyncio.sleep(0))
        assert "timer_lateness" not in loop.stats()
        assert "tasks_live" not in loop.stats()
    finally:
        loop.close()


def test_off_means_the_diagnostics_machinery_is_not_even_imported():
    code = (
        "import asyncio, sys, oxloop\n"
        "oxloop.run(asyncio.sleep(0))\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('oxloop.diagnostics.'))\n"
        "print(','.join(loaded), sys.get_coroutine_origin_tracking_depth())\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OXLOOP_DIAGNOSTICS")}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert proc.returncode == 0, proc.stderr
    # Only the environment switch and dump_tasks()'s task tree (which any loop can use).
    assert proc.stdout.split() == [
        "oxloop.diagnostics.reports,oxloop.diagnostics.switch,oxloop.diagnostics.task_tree",
        "0",
    ]


@OXLOOP_ONLY
@pytest.mark.parametrize(
    ("value", "on"), [("1", True), ("yes", True), ("0", False), ("off", False), ("", False)]
)
def test_environment_variable_switches_it(loop_name, monkeypatch, value, on):
    monkeypatch.setenv("OXLOOP_DIAGNOSTICS", value)
    loop = oxloop.new_event_loop()
    try:
        assert (loop._diagnostics is not None) is on
    finally:
        loop.close()


@OXLOOP_ONLY
def test_environment_sets_thresholds_and_argument_overrides_it(loop_name, monkeypatch):
    monkeypatch.setenv("OXLOOP_DIAGNOSTICS", "1")
    monkeypatch.setenv("OXLOOP_DIAGNOSTICS_BLOCKING", "0.25")
    monkeypatch.setenv("OXLOOP_DIAGNOSTICS_TASK_LIMIT", "123")
    loop = oxloop.new_event_loop()
    off = oxloop.new_event_loop(diagnostics=False)
    try:
        assert loop._diagnostics.settings.blocking_threshold == 0.25
        assert loop._diagnostics.settings.task_soft_limit == 123
        assert off._diagnostics is None
    finally:
        loop.close()
        off.close()


def test_bad_settings_rejected():
    with pytest.raises(ValueError, match="blocking_threshold"):
        diagnostics.Settings(blocking_threshold=0)
    with pytest.raises(ValueError, match="task_soft_limit"):
        diagnostics.Settings(task_soft_limit=0)
    with pytest.raises(TypeError, match="diagnostics must be"):
        oxloop.new_event_loop(diagnostics="yes")


def test_unwritable_jsonl_path_fails_the_loop_creation_cleanly(tmp_path):
    settings = diagnostics.Settings(jsonl_path=tmp_path / "no-such-dir" / "r.jsonl")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "unclosed event loop" left behind
        with pytest.raises(FileNotFoundError):
            oxloop.new_event_loop(diagnostics=settings)


def test_attach_refuses_oxloop_loops():
    loop = oxloop.new_event_loop(diagnostics=False)
    try:
        with pytest.raises(TypeError, match="at creation"):
            diagnostics.attach(loop)
    finally:
        loop.close()


# -- sinks -------------------------------------------------------------------------------------


def test_logging_sink_one_line_then_location_then_details(loop_name, caplog):
    settings = diagnostics.Settings(opentelemetry=False, summary_at_close=False)
    with caplog.at_level(logging.WARNING, logger="oxloop.diagnostics"):
        run_on(make_loop(loop_name, settings), forget_an_await())
    [record] = [r for r in caplog.records if r.name == "oxloop.diagnostics"]
    assert record.levelno == logging.WARNING
    lines = record.getMessage().splitlines()
    assert lines[0] == "oxloop: coroutine fetch_page() was never awaited, so it never ran"
    assert lines[1] == f"  created at {__file__}:{FORGOTTEN_LINE} in forget_an_await"
    assert lines[2].startswith("  fix: ")


def test_summary_logged_when_the_loop_closes(loop_name, caplog):
    settings = diagnostics.Settings(opentelemetry=False)
    with caplog.at_level(logging.WARNING, logger="oxloop.diagnostics"):
        run_on(make_loop(loop_name, settings), forget_an_await())
    summary = caplog.records[-1].getMessage()
    assert summary.startswith("oxloop diagnostics summary for loop")
    assert "forgotten awaits: 1" in summary


def test_jsonl_sink_writes_one_object_per_report(loop_name, tmp_path):
    path = tmp_path / "reports.jsonl"
    settings = diagnostics.Settings(log=False, opentelemetry=False, jsonl_path=path)
    run_on(make_loop(loop_name, settings), forget_an_await())
    run_on(make_loop(loop_name, settings), lose_an_exception())
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["kind"] for r in records] == ["forgotten_await", "lost_exception"]
    forgotten, lost = records
    assert forgotten["coroutine"] == "fetch_page"
    assert forgotten["location"]["lineno"] == FORGOTTEN_LINE
    assert lost["exception"]["type"] == "KeyError"
    assert "Traceback" in lost["exception"]["traceback"]
    assert lost["task"]["coroutine"] == "fail"


def test_a_failing_sink_is_logged_and_the_others_still_run(loop_name, caplog):
    got = []

    def broken(report):
        raise RuntimeError("sink down")

    settings = diagnostics.Settings(hook=broken, opentelemetry=False, summary_at_close=False)
    loop = make_loop(loop_name, settings)
    loop_diag = diagnostics_session._BY_LOOP[loop]
    loop_diag._sinks._sinks.append(got.append)
    with caplog.at_level(logging.WARNING, logger="oxloop.diagnostics"):
        run_on(loop, forget_an_await())
    assert [r.kind for r in got] == ["forgotten_await"]
    assert any("failed on a report" in r.getMessage() for r in caplog.records)


def test_opentelemetry_absent_is_fine(loop_name, monkeypatch):
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # makes the import fail
    got = []
    loop = make_loop(loop_name, diagnostics.Settings(hook=got.append, log=False))
    assert not diagnostics_session._BY_LOOP[loop].opentelemetry
    run_on(loop, lose_an_exception())
    assert [r.kind for r in got] == ["lost_exception"]


class FakeSpan:
    def __init__(self, recording):
        self.recording = recording
        self.events = []

    def is_recording(self):
        return self.recording

    def add_event(self, name, attributes):
        self.events.append((name, attributes))


def fake_opentelemetry(monkeypatch, current):
    """A stand-in for `opentelemetry.trace`: the part of its API the sink uses."""
    started = []

    class Tracer:
        @contextlib.contextmanager
        def start_as_current_span(self, name):
            span = FakeSpan(recording=True)
            started.append((name, span))
            yield span

    trace = types.ModuleType("opentelemetry.trace")
    trace.get_current_span = lambda: current
    trace.get_tracer = lambda name: Tracer()
    package = types.ModuleType("opentelemetry")
    package.trace = trace
    monkeypatch.setitem(sys.modules, "opentelemetry", package)
    monkeypatch.setitem(sys.modules, "opentelemetry.trace", trace)
    return started


def test_opentelemetry_event_on_the_current_span(loop_name, monkeypatch):
    current = FakeSpan(recording=True)
    started = fake_opentelemetry(monkeypatch, current)
    loop = make_loop(loop_name, diagnostics.Settings(log=False))
    assert diagnostics_session._BY_LOOP[loop].opentelemetry
    run_on(loop, lose_an_exception())
    [(name, attributes)] = current.events
    assert name == "oxloop.lost_exception"
    assert attributes["exception.type"] == "KeyError"
    assert attributes["code.function"] == "lose_an_exception"
    assert started == []


def test_opentelemetry_event_on_its_own_span_when_none_records(loop_name, monkeypatch):
    started = fake_opentelemetry(monkeypatch, FakeSpan(recording=False))
    run_on(make_loop(loop_name, diagnostics.Settings(log=False)), lose_an_exception())
    [(span_name, span)] = started
    assert span_name == "oxloop.lost_exception"
    assert span.events[0][0] == "oxloop.lost_exception"


# -- python -m oxloop --diagnose ---------------------------------------------------------------

PROGRAM = textwrap.dedent(
    """\
    import asyncio, time

    async def notify():
        pass

    async def main():
        notify()
        time.sleep(0.4)

    asyncio.run(main())
    print("program done")
    """
)


def run_oxloop(*args, cwd):
    oxloop_root = str(Path(importlib.util.find_spec("oxloop").origin).resolve().parent.parent)
    pythonpath = os.pathsep.join(filter(None, [oxloop_root, os.environ.get("PYTHONPATH")]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OXLOOP_DIAGNOSTICS")}
    return subprocess.run(
        [sys.executable, "-m", "oxloop", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=dict(env, PYTHONPATH=pythonpath),
    )


def test_diagnose_flag_reports_and_prints_a_summary_at_exit(tmp_path):
    script = tmp_path / "app.py"
    script.write_text(PROGRAM)
    proc = run_oxloop("--diagnose", str(script), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "program done"
    err = proc.stderr
    assert (
        f"oxloop: coroutine notify() was never awaited, so it never ran\n  created at {script}:7"
        in err
    )
    assert "oxloop: the event loop is blocked: task 'Task-1' (main())" in err
    summary = err[err.index("oxloop diagnostics summary: 1 diagnosed loop(s)") :]
    assert "blocking: 1 episode(s)" in summary
    assert f"{script}:8 in main" in summary
    assert "forgotten awaits: 1" in summary
    assert "oxloop diagnostics summary for loop" not in err  # one summary, at the end


def test_without_the_flag_nothing_is_reported(tmp_path):
    script = tmp_path / "app.py"
    script.write_text(PROGRAM)
    proc = run_oxloop(str(script), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "oxloop:" not in proc.stderr
    assert "summary" not in proc.stderr


def test_unclosed_diagnosed_loop_does_not_hang_or_crash_at_exit():
    """The atexit hook stops the watchdog before the interpreter finalises."""
    code = (
        "import asyncio, oxloop\n"
        "loop = oxloop.new_event_loop(diagnostics=True)\n"
        "loop.run_until_complete(asyncio.sleep(0.01))\n"
        "print('leaving without close')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "leaving without close"
