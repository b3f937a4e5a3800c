"""Run CPython's own asyncio tests (Lib/test/test_asyncio) on stock asyncio or on oxloop.

Usage::

    python tests/cpython/run_suite.py --loop asyncio|oxloop [--json out.json] [--jobs N]
                                      [--no-shims] [--loop-classes] [--exclude PATTERN]...
                                      [modules or test ids...]
    python tests/cpython/run_suite.py --loop oxloop --loop-classes -j 2 network

A positional argument is a module of ``test.test_asyncio`` (``test_tasks``) or a dotted name
inside one (``test_tasks.CTask_CFuture_Tests``, ``test_locks.LockTests.test_repr``). Without
any, the modules in ``DEFAULT_MODULES`` run: the ones that concern only what the core loop
builds. ``default`` stands for those, ``network`` for the modules of ``NETWORK_MODULES``.
``--exclude`` leaves out the tests whose id matches an fnmatch pattern (they are not collected,
so they are absent from the JSON). The tests come from the interpreter's own stdlib ``test``
package, so they match the running Python (3.11 here).

How ``--loop oxloop`` reaches every loop under test
    In the child process, before the test module is imported:

    * ``asyncio.set_event_loop_policy()`` installs a subclass of ``oxloop.EventLoopPolicy``
      whose ``new_event_loop()`` returns what ``oxloop.EventLoopPolicy().new_event_loop()``
      (that is, ``oxloop.new_event_loop()``) returns. So
      ``asyncio.new_event_loop()``, ``asyncio.get_event_loop()``, ``asyncio.run()``,
      ``asyncio.Runner()`` and ``unittest.IsolatedAsyncioTestCase`` all get oxloop loops.
    * ``asyncio.DefaultEventLoopPolicy`` is replaced by that same class. Every module's
      ``tearDownModule`` (and several tests) call ``asyncio.set_event_loop_policy(None)``, after
      which asyncio re-creates the policy from ``asyncio.DefaultEventLoopPolicy``; tests that
      build ``asyncio.DefaultEventLoopPolicy()`` themselves get oxloop too.

    ``--loop asyncio`` goes through exactly the same machinery with asyncio's own default policy
    and loop class, so the two runs differ only in the loop.

Shims (``--no-shims`` turns them off)
    * ``test_runners.BaseTest.new_loop`` builds a ``BaseEventLoop`` with a mocked selector; the
      shim returns a loop-under-test instead (its ``shutdown_asyncgens`` wrapped to record the
      call, which the module's ``tearDown`` checks).
    * ``test_pep492.BaseTest.setUp`` likewise: a loop-under-test instead of a mocked
      ``BaseEventLoop``.
    * ``test_utils.TestCase.close_loop`` reads the private ``loop._default_executor``; for a
      loop without that attribute the shim calls ``shutdown_default_executor()`` and
      ``close()`` instead.

Selector-loop test classes (``--loop-classes``)
    The networking modules (``NETWORK_MODULES``: transports, servers, UDP, Unix sockets, TLS,
    sendfile, ``sock_*``, pipes, subprocesses) hold their tests in mixins that several classes
    run, each on a loop it builds itself through ``create_event_loop()`` / ``new_loop()`` /
    ``setUp`` (``asyncio.SelectorEventLoop(selectors.EpollSelector())`` and the like). Without
    the option those classes are "foreign" (and test_events runs only its loop-independent
    classes, ``MODULE_CLASSES``). With it, in the child, after the module is imported:

    * one class per mixin (``LOOP_CLASSES``: ``EPollEventLoopTests`` of test_events,
      test_sock_lowlevel and test_sendfile, ``SelectorStartServerTests`` of test_server,
      ``BufferedProtocolSelectorTests`` of test_buffered_proto,
      ``SelectorEventLoopUnixSocketTests`` of test_unix_events) gets its loop-making method
      replaced by one that returns a loop under test, made by the same factory as the
      installed policy's ``new_event_loop()``;
    * the other selector variants of the same mixin (``PollEventLoopTests``,
      ``SelectEventLoopTests``, ``KqueueEventLoopTests``: ``LOOP_CLASS_DUPLICATES``) are
      dropped, so the same tests don't run three times on the same loop;
    * test_events runs all its remaining classes (``MODULE_CLASSES`` no longer applies).

    So with ``--loop asyncio`` these tests run on asyncio's ``_UnixSelectorEventLoop`` (the
    oracle, with its default epoll selector) and with ``--loop oxloop`` on oxloop. Classes that
    test a selector loop's internals through mocks (``SelectorEventLoopSignalTests``, the pipe
    transport tests on a mocked loop and the child watcher tests of test_unix_events) are left
    as they are: foreign. Most other networking classes (test_ssl, test_streams, the
    test_subprocess watcher classes...) already make their loops through the policy.

Which tests concern the loop under test
    Tests built on ``test_utils.TestLoop`` (a mock-clock loop built on ``BaseEventLoop``) or that
    construct ``BaseEventLoop``/``SelectorEventLoop`` themselves do not exercise the loop under
    test. The child counts, per test, the loops made by the policy ("under-test") and all other
    ``BaseEventLoop`` instances ("foreign"), and classifies the test as ``under-test`` (made at
    least one loop through the policy), ``foreign`` (only other loops) or ``no-loop``. The
    summary shows the passes of the ``under-test`` + ``no-loop`` tests separately.

Not hanging
    Each module runs in its own child process. ``faulthandler.dump_traceback_later`` ends the
    child if one test runs longer than ``--test-timeout``; the parent then records that test as
    ``timeout`` (``crash`` if the child died another way, e.g. a segfault), and restarts the
    module after it (at most 10 times). The whole module has a wall-clock limit
    (``--module-timeout``) and the whole run may have one (``--total-timeout``); tests not reached
    by then are ``not-run``. ``--jobs`` runs that many modules at once.

Outcomes: pass, fail, error, skip, xfail, xpass, timeout, crash, not-run. Test ids are
``module.Class.test`` (the ``test.test_asyncio.`` prefix dropped). ``--json`` writes::

    {"loop", "oxloop_file", "python", "shims", "loop_classes", "wall_time",
     "modules": {module: {"status", "duration", "restarts", "counts", "log_tail"}},
     "tests": {id: {"outcome", "kind", "loops", "foreign_loops", "duration", "summary",
                    "detail"}}}

where ``loops``/``foreign_loops`` are the classes of the loops the test made through the policy
/ by other means, ``summary`` the exception line (or skip reason) and ``detail`` the traceback.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import faulthandler
import fnmatch
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import unittest

PACKAGE = "test.test_asyncio"

# Modules of Lib/test/test_asyncio (3.11) that concern only what the core loop builds.
# (There is no test_sleep in 3.11; test_context is a single decimal-context-in-tasks test.)
DEFAULT_MODULES = [
    "test_tasks",
    "test_futures",
    "test_futures2",
    "test_locks",
    "test_queues",
    "test_timeouts",
    "test_taskgroups",
    "test_runners",
    "test_pep492",
    "test_events",
    "test_context",
    "test_waitfor",
    "test_threads",
]

# Modules of which only some classes run without --loop-classes. test_events: the
# loop-independent classes; EventLoopTestsMixin/SubprocessTestsMixin (sockets, pipes,
# subprocesses on SelectorEventLoop) and TestServer (create_server) run with --loop-classes.
MODULE_CLASSES = {
    "test_events": {
        "HandleTests",
        "TimerTests",
        "AbstractEventLoopTests",
        "PolicyTests",
        "TestPyGetEventLoop",
        "TestCGetEventLoop",
        "TestAbstractServer",
    },
}

# The networking modules: they test transports, servers, sockets, TLS, sendfile, pipes and
# subprocesses. Their selector-loop classes only concern the loop under test with --loop-classes.
NETWORK_MODULES = [
    "test_events",
    "test_sock_lowlevel",
    "test_sendfile",
    "test_buffered_proto",
    "test_server",
    "test_ssl",
    "test_sslproto",
    "test_streams",
    "test_subprocess",
    "test_unix_events",
    "test_protocols",
    "test_transports",
]

# --loop-classes: test classes that build a selector loop themselves, {module: {class: method}};
# the method (create_event_loop, new_loop or setUp) is replaced by one that makes a loop under
# test. One class per mixin: the variants of the same mixin on other selectors are dropped
# (LOOP_CLASS_DUPLICATES) rather than run three times on the same loop.
LOOP_CLASSES = {
    "test_events": {"EPollEventLoopTests": "create_event_loop"},
    "test_sock_lowlevel": {"EPollEventLoopTests": "create_event_loop"},
    "test_sendfile": {"EPollEventLoopTests": "create_event_loop"},
    "test_buffered_proto": {"BufferedProtocolSelectorTests": "new_loop"},
    "test_sslproto": {"SelectorStartTLSTests": "new_loop"},
    "test_server": {"SelectorStartServerTests": "new_loop"},
    "test_unix_events": {"SelectorEventLoopUnixSocketTests": "setUp"},
}
LOOP_CLASS_DUPLICATES = {
    module: {"KqueueEventLoopTests", "PollEventLoopTests", "SelectEventLoopTests"}
    for module in ("test_events", "test_sock_lowlevel", "test_sendfile")
}

OUTCOMES = ["pass", "fail", "error", "skip", "xfail", "xpass", "timeout", "crash", "not-run"]
DETAIL_CHARS = 6000


def short_id(test_id: str) -> str:
    prefix = PACKAGE + "."
    return test_id[len(prefix) :] if test_id.startswith(prefix) else test_id


# ----------------------------------------------------------------------------------------------
# Child side: runs one module in this process.
# ----------------------------------------------------------------------------------------------


class LoopTracker:
    """Counts the loops made through the policy and all other BaseEventLoop instances."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self.under_test: list[str] = []
        self.foreign: list[str] = []

    def wrap_factory(self, factory):
        def tracked_factory():
            self._local.in_factory = getattr(self._local, "in_factory", 0) + 1
            try:
                loop = factory()
            finally:
                self._local.in_factory -= 1
            with self._lock:
                self.under_test.append(f"{type(loop).__module__}.{type(loop).__qualname__}")
            return loop

        return tracked_factory

    def note_base_loop(self, loop) -> None:
        if getattr(self._local, "in_factory", 0):
            return
        with self._lock:
            self.foreign.append(type(loop).__name__)

    def take(self) -> tuple[list[str], list[str]]:
        """The loops made since the last call: (policy loop types, other loop types)."""
        with self._lock:
            made = self.under_test, self.foreign
            self.under_test, self.foreign = [], []
        return made


def install_loop(loop_name: str, tracker: LoopTracker):
    """Make every loop the tests create through asyncio's policy a `loop_name` loop.

    Returns the tracked zero-argument loop factory (used by the shims).
    """
    import asyncio
    from asyncio import base_events

    if loop_name == "oxloop":
        import oxloop

        base_policy = oxloop.EventLoopPolicy
        # A private, uninstalled policy makes the loops: its new_event_loop() is
        # oxloop.new_event_loop(), and (unlike calling that by name) it can't come back to the
        # installed policy even if oxloop.new_event_loop is asyncio.new_event_loop (the stub).
        raw_factory = oxloop.EventLoopPolicy().new_event_loop
    else:
        base_policy = asyncio.DefaultEventLoopPolicy
        raw_factory = base_policy._loop_factory  # the loop class itself (_UnixSelectorEventLoop)

    factory = tracker.wrap_factory(raw_factory)

    class AdapterPolicy(base_policy):
        """The loop-under-test policy (installed by tests/cpython/run_suite.py)."""

        _loop_factory = staticmethod(factory)

        def new_event_loop(self):
            return factory()

    AdapterPolicy.__name__ = AdapterPolicy.__qualname__ = f"{loop_name}AdapterPolicy"

    orig_init = base_events.BaseEventLoop.__init__

    def init(self, *args, **kwargs):
        tracker.note_base_loop(self)
        orig_init(self, *args, **kwargs)

    base_events.BaseEventLoop.__init__ = init
    asyncio.DefaultEventLoopPolicy = AdapterPolicy
    asyncio.set_event_loop_policy(AdapterPolicy())
    return factory


def apply_shims(module_name: str, module, factory) -> None:
    import asyncio

    from test.test_asyncio import utils as test_utils

    orig_close_loop = test_utils.TestCase.close_loop

    def close_loop(loop):
        if hasattr(loop, "_default_executor"):
            return orig_close_loop(loop)
        if not loop.is_closed():
            loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()

    test_utils.TestCase.close_loop = staticmethod(close_loop)

    if module_name == "test_runners":
        shut_down = set()  # ids of loops whose shutdown_asyncgens() ran

        def new_loop(self):
            loop = factory()
            orig_shutdown = loop.shutdown_asyncgens

            async def shutdown_asyncgens():
                shut_down.add(id(loop))
                await orig_shutdown()

            try:
                loop.shutdown_asyncgens = shutdown_asyncgens
            except (AttributeError, TypeError):
                shut_down.add(id(loop))  # can't observe the call on this loop; don't check it
            return loop

        def tear_down(self):
            policy = asyncio.get_event_loop_policy()
            if policy.loop is not None:
                self.assertTrue(policy.loop.is_closed())
                self.assertIn(id(policy.loop), shut_down, "shutdown_asyncgens() was not called")
            asyncio.set_event_loop_policy(None)
            unittest.TestCase.tearDown(self)

        module.BaseTest.new_loop = new_loop
        module.BaseTest.tearDown = tear_down

    elif module_name == "test_pep492":

        def set_up(self):
            test_utils.TestCase.setUp(self)
            self.loop = factory()
            self.set_event_loop(self.loop)

        module.BaseTest.setUp = set_up


def apply_loop_classes(module_name: str, module, factory) -> None:
    """--loop-classes: LOOP_CLASSES' classes make their loops with `factory`."""
    from test.test_asyncio import utils as test_utils

    def make_loop(self):
        return factory()

    def set_up(self):
        test_utils.TestCase.setUp(self)
        self.loop = factory()
        self.set_event_loop(self.loop)

    for class_name, method in LOOP_CLASSES.get(module_name, {}).items():
        cls = getattr(module, class_name, None)
        if cls is not None:
            setattr(cls, method, set_up if method == "setUp" else make_loop)


def iter_tests(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from iter_tests(item)
        else:
            yield item


class RecordingResult(unittest.TestResult):
    """Writes one JSON line per event to `out`, flushed, so a parent sees them after a crash."""

    def __init__(self, out, module_name: str, tracker: LoopTracker, test_timeout: float) -> None:
        super().__init__()
        self.module_name = module_name
        self.out = out
        self.tracker = tracker
        self.test_timeout = test_timeout
        self._current: dict | None = None

    def emit(self, **record) -> None:
        self.out.write(json.dumps(record) + "\n")
        self.out.flush()

    def _note(self, outcome: str, err=None, reason: str | None = None) -> None:
        cur = self._current
        if cur is None:
            return
        rank = {"error": 4, "fail": 3, "xpass": 2, "skip": 1, "xfail": 1, "pass": 0}
        if rank[outcome] >= rank[cur["outcome"]]:
            cur["outcome"] = outcome
        if err is not None:
            text = "".join(traceback.format_exception(*err))
            if cur["detail"]:
                text = cur["detail"] + "\n" + text
            cur["detail"] = text[-DETAIL_CHARS:]
            if not cur["summary"]:
                last = "".join(traceback.format_exception_only(*err[:2])).strip().splitlines()
                cur["summary"] = (last[-1] if last else "")[:300]
        if reason is not None:
            cur["summary"] = str(reason)[:300]

    def startTest(self, test) -> None:
        super().startTest(test)
        tid = short_id(test.id())
        self._current = {"id": tid, "outcome": "pass", "summary": "", "detail": ""}
        self._t0 = time.monotonic()
        self.emit(event="start", id=tid)
        faulthandler.dump_traceback_later(self.test_timeout, exit=True)

    def stopTest(self, test) -> None:
        faulthandler.cancel_dump_traceback_later()
        super().stopTest(test)
        under_test, foreign = self.tracker.take()
        cur = self._current
        self._current = None
        if cur is None:
            return
        kind = "under-test" if under_test else ("foreign" if foreign else "no-loop")
        self.emit(
            event="end",
            kind=kind,
            loops=sorted(set(under_test)),
            foreign_loops=sorted(set(foreign)),
            duration=round(time.monotonic() - self._t0, 3),
            **cur,
        )

    def _fixture_id(self, holder) -> str:
        return f"{self.module_name}.<{str(holder).replace(PACKAGE + '.', '')}>"

    def _fixture_error(self, test, err) -> None:
        # setUpModule/setUpClass/tearDownClass failures come with an _ErrorHolder, outside of
        # startTest/stopTest.
        self.emit(
            event="end",
            id=self._fixture_id(test),
            outcome="error",
            kind="no-loop",
            loops=[],
            foreign_loops=[],
            duration=0.0,
            summary="".join(traceback.format_exception_only(*err[:2])).strip()[-300:],
            detail="".join(traceback.format_exception(*err))[-DETAIL_CHARS:],
        )

    def addError(self, test, err) -> None:
        super().addError(test, err)
        if self._current is None or short_id(test.id()) != self._current["id"]:
            self._fixture_error(test, err)
        else:
            self._note("error", err)

    def addFailure(self, test, err) -> None:
        super().addFailure(test, err)
        self._note("fail", err)

    def addSubTest(self, test, subtest, err) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            self._note("fail" if issubclass(err[0], test.failureException) else "error", err)

    def addSkip(self, test, reason) -> None:
        super().addSkip(test, reason)
        if self._current is None:
            self.emit(
                event="end",
                id=self._fixture_id(test),
                outcome="skip",
                kind="no-loop",
                loops=[],
                foreign_loops=[],
                duration=0.0,
                summary=str(reason)[:300],
                detail="",
            )
        else:
            self._note("skip", reason=reason)

    def addExpectedFailure(self, test, err) -> None:
        super().addExpectedFailure(test, err)
        self._note("xfail", err)

    def addUnexpectedSuccess(self, test) -> None:
        super().addUnexpectedSuccess(test)
        self._note("xpass")


def child_main(args) -> int:
    faulthandler.enable()
    with open(args.results, "a", buffering=1) as out:

        def emit(**record):
            out.write(json.dumps(record) + "\n")
            out.flush()

        tracker = LoopTracker()
        factory = install_loop(args.loop, tracker)

        import importlib

        module_name = args.child
        try:
            module = importlib.import_module(f"{PACKAGE}.{module_name}")
        except unittest.SkipTest as exc:
            emit(event="module-skip", reason=str(exc))
            emit(event="done")
            out.flush()
            os._exit(0)
        if not args.no_shims:
            apply_shims(module_name, module, factory)
        if args.loop_classes:
            apply_loop_classes(module_name, module, factory)

        loader = unittest.TestLoader()
        names = [n for n in (args.names or []) if n != module_name]
        if names:
            suite = loader.loadTestsFromNames([f"{PACKAGE}.{n}" for n in names])
        else:
            suite = loader.loadTestsFromModule(module)
        tests = list(iter_tests(suite))
        if args.loop_classes:
            dropped = LOOP_CLASS_DUPLICATES.get(module_name, set())
            tests = [t for t in tests if type(t).__name__ not in dropped]
        elif not names and module_name in MODULE_CLASSES:
            wanted = MODULE_CLASSES[module_name]
            tests = [t for t in tests if type(t).__name__ in wanted]
        skip = set()
        if args.skip_file and os.path.exists(args.skip_file):
            with open(args.skip_file) as f:
                skip = {line.strip() for line in f if line.strip()}
        if args.exclude:
            tests = [
                t
                for t in tests
                if not any(fnmatch.fnmatchcase(short_id(t.id()), p) for p in args.exclude)
            ]
        if not args.resumed:
            emit(event="collected", ids=[short_id(t.id()) for t in tests])
        tests = [t for t in tests if short_id(t.id()) not in skip]

        result = RecordingResult(out, module_name, tracker, args.test_timeout)
        unittest.TestSuite(tests).run(result)
        emit(event="done")
        out.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    # Don't wait for threads a test may have leaked: everything is recorded.
    os._exit(0)


# ----------------------------------------------------------------------------------------------
# Parent side: one child per module, restarted after a test that hangs or crashes.
# ----------------------------------------------------------------------------------------------

MAX_RESTARTS = 10


def read_events(path: str) -> list[dict]:
    events = []
    with contextlib.suppress(FileNotFoundError), open(path) as f:
        for line in f:
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # a line cut short by a kill
    return events


def tail(path: str, chars: int = DETAIL_CHARS) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()[-chars:]
    except FileNotFoundError:
        return ""


def run_module(module: str, names: list[str], opts, total_deadline: float) -> dict:
    """Run one module in child processes; return {"module": info, "tests": {id: record}}."""
    t0 = time.monotonic()
    deadline = min(t0 + opts.module_timeout, total_deadline)
    tests: dict[str, dict] = {}
    collected: list[str] = []
    status = "ok"
    restarts = 0
    log_tail = ""
    skip_reason = None
    with tempfile.TemporaryDirectory(prefix=f"oxloop-{module}-") as tmp:
        results = os.path.join(tmp, "results.jsonl")
        skip_file = os.path.join(tmp, "skip.txt")
        resumed = False
        while True:
            with open(skip_file, "w") as f:
                f.write("".join(i + "\n" for i in tests))
            log_path = os.path.join(tmp, f"log{restarts}.txt")
            open(results, "w").close()
            cmd = [
                sys.executable,
                os.path.abspath(__file__),
                "--loop",
                opts.loop,
                "--_child",
                module,
                "--_results",
                results,
                "--_skip-file",
                skip_file,
                "--test-timeout",
                str(opts.test_timeout),
            ]
            if opts.no_shims:
                cmd.append("--no-shims")
            if opts.loop_classes:
                cmd.append("--loop-classes")
            for pattern in opts.exclude or []:
                cmd += ["--exclude", pattern]
            if resumed:
                cmd.append("--_resumed")
            cmd += names
            with open(log_path, "w") as log:
                proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                timed_out = False
                try:
                    rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    timed_out = True
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    rc = proc.wait()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # whatever the tests left behind
            log_text = tail(log_path)
            in_progress = None
            done = False
            for ev in read_events(results):
                kind = ev.get("event")
                if kind == "collected":
                    collected = ev["ids"]
                elif kind == "start":
                    in_progress = ev["id"]
                elif kind == "end":
                    rec = {k: v for k, v in ev.items() if k not in ("event", "id")}
                    tests[ev["id"]] = rec
                    if ev["id"] == in_progress:
                        in_progress = None
                elif kind == "module-skip":
                    skip_reason = ev["reason"]
                elif kind == "done":
                    done = True
            if done and not timed_out:
                break
            log_tail = log_text
            if in_progress is None:
                # Died outside any test: import error, module fixture, interpreter crash...
                status = "timeout" if timed_out else f"crash (exit {rc})"
                break
            if timed_out:
                outcome, summary = "timeout", "module/total time limit hit"
            elif "Timeout (" in log_text:
                outcome, summary = "timeout", f"ran longer than {opts.test_timeout:g}s"
            else:
                outcome = "crash"
                summary = f"child died, exit {rc}" + (
                    f" ({signal.Signals(-rc).name})"
                    if rc < 0 and -rc in signal.valid_signals()
                    else ""
                )
            tests[in_progress] = {
                "outcome": outcome,
                "kind": "unknown",
                "loops": [],
                "foreign_loops": [],
                "duration": None,
                "summary": summary,
                "detail": log_text,
            }
            if timed_out:
                status = "timeout"
                break
            restarts += 1
            resumed = True
            if restarts > MAX_RESTARTS:
                status = f"gave up after {MAX_RESTARTS} hung/crashed tests"
                break
    for tid in collected:
        if tid not in tests:
            tests[tid] = {
                "outcome": "not-run",
                "kind": "unknown",
                "loops": [],
                "foreign_loops": [],
                "duration": None,
                "summary": status if status != "ok" else "never started: a fixture failed?",
                "detail": "",
            }
    counts = collections.Counter(rec["outcome"] for rec in tests.values())
    info = {
        "status": status if skip_reason is None else f"skipped: {skip_reason}",
        "duration": round(time.monotonic() - t0, 2),
        "restarts": restarts,
        "counts": {o: counts.get(o, 0) for o in OUTCOMES},
        "log_tail": log_tail if status != "ok" else "",
    }
    return {"module": info, "tests": tests}


def group_args(items: list[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for item in items:
        item = item.removeprefix(PACKAGE + ".").removesuffix(".py")
        module = item.split(".", 1)[0]
        groups.setdefault(module, [])
        if "." in item:
            groups[module].append(item)
    return groups


def summarize(loop: str, modules: dict, tests: dict) -> str:
    header = (
        f"{'module':<16}{'run':>6}{'pass':>6}{'fail':>6}{'error':>6}{'skip':>6}{'other':>6}"
        f"   {'under-test pass/run':>20}{'foreign pass/run':>17}  time  status"
    )
    lines = [f"CPython test_asyncio on loop={loop}", header]
    totals = collections.Counter()
    for module, info in modules.items():
        recs = [r for t, r in tests.items() if t.split(".", 1)[0] == module]
        c = collections.Counter(r["outcome"] for r in recs)
        ut = [r for r in recs if r["kind"] != "foreign"]
        fo = [r for r in recs if r["kind"] == "foreign"]
        row = {
            "run": len(recs),
            "pass": c["pass"],
            "fail": c["fail"],
            "error": c["error"],
            "skip": c["skip"],
            "other": len(recs) - c["pass"] - c["fail"] - c["error"] - c["skip"],
            "ut_pass": sum(r["outcome"] == "pass" for r in ut),
            "ut_run": len(ut),
            "fo_pass": sum(r["outcome"] == "pass" for r in fo),
            "fo_run": len(fo),
        }
        totals.update(row)
        lines.append(
            f"{module:<16}{row['run']:>6}{row['pass']:>6}{row['fail']:>6}{row['error']:>6}"
            f"{row['skip']:>6}{row['other']:>6}   {row['ut_pass']:>9}/{row['ut_run']:<10}"
            f"{row['fo_pass']:>8}/{row['fo_run']:<8}{info['duration']:>6.1f}  {info['status']}"
        )
    lines.append(
        f"{'TOTAL':<16}{totals['run']:>6}{totals['pass']:>6}{totals['fail']:>6}"
        f"{totals['error']:>6}{totals['skip']:>6}{totals['other']:>6}   "
        f"{totals['ut_pass']:>9}/{totals['ut_run']:<10}{totals['fo_pass']:>8}/{totals['fo_run']:<8}"
    )
    lines.append(
        "under-test = made a loop through the policy, or no loop at all; foreign = only "
        "TestLoop/BaseEventLoop/SelectorEventLoop loops built by the test itself"
    )
    made = collections.Counter(t for r in tests.values() for t in r.get("loops", []))
    lines.append(
        "loop classes made through the policy (tests per class): "
        + (", ".join(f"{t} ({n})" for t, n in made.most_common()) or "none")
    )
    return "\n".join(lines)


def parent_main(args) -> int:
    if args.loop == "oxloop":
        probe = subprocess.run(
            [sys.executable, "-c", "import oxloop, sys; sys.stdout.write(oxloop.__file__)"],
            capture_output=True,
            text=True,
        )
        if probe.returncode != 0:
            print("cannot import oxloop:\n" + probe.stderr, file=sys.stderr)
            return 2
        oxloop_file = probe.stdout
    else:
        oxloop_file = None
    items = []
    for item in args.modules or DEFAULT_MODULES:
        aliases = {"default": DEFAULT_MODULES, "network": NETWORK_MODULES}
        items += aliases.get(item, [item])
    groups = group_args(items)
    t0 = time.monotonic()
    total_deadline = t0 + (args.total_timeout or float("inf"))
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {
            module: pool.submit(run_module, module, names, args, total_deadline)
            for module, names in groups.items()
        }
        for m, fut in futures.items():
            fut.add_done_callback(
                lambda f, m=m: print(
                    f"[{args.loop}] {m}: {f.result()['module']['status']} in "
                    f"{f.result()['module']['duration']:.1f}s",
                    file=sys.stderr,
                    flush=True,
                )
            )
        outputs = {m: fut.result() for m, fut in futures.items()}
    modules = {m: out["module"] for m, out in outputs.items()}
    tests = {t: rec for out in outputs.values() for t, rec in out["tests"].items()}
    elapsed = time.monotonic() - t0
    print(summarize(args.loop, modules, tests))
    print(f"wall time: {elapsed:.1f}s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "loop": args.loop,
                    "oxloop_file": oxloop_file,
                    "python": sys.version,
                    "shims": not args.no_shims,
                    "loop_classes": args.loop_classes,
                    "wall_time": round(elapsed, 2),
                    "modules": modules,
                    "tests": dict(sorted(tests.items())),
                },
                f,
                indent=1,
            )
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--loop", choices=["asyncio", "oxloop"], required=True)
    p.add_argument("--json", help="write every test id with its outcome to this file")
    p.add_argument("--jobs", "-j", type=int, default=1, help="modules run in parallel")
    p.add_argument("--test-timeout", type=float, default=60.0, help="seconds per test")
    p.add_argument("--module-timeout", type=float, default=900.0, help="seconds per module")
    p.add_argument("--total-timeout", type=float, help="seconds for the whole run")
    p.add_argument("--no-shims", action="store_true", help="run the modules unmodified")
    p.add_argument(
        "--loop-classes",
        action="store_true",
        help="run the selector-loop test classes of the networking modules on the loop under "
        "test (one class per mixin)",
    )
    p.add_argument(
        "--exclude",
        action="append",
        metavar="PATTERN",
        help="do not run the tests whose id matches this fnmatch pattern (repeatable)",
    )
    p.add_argument(
        "modules",
        nargs="*",
        help="modules or dotted test names; 'default' and 'network' stand for DEFAULT_MODULES "
        "and NETWORK_MODULES (default: DEFAULT_MODULES)",
    )
    p.add_argument("--_child", dest="child", help=argparse.SUPPRESS)
    p.add_argument("--_results", dest="results", help=argparse.SUPPRESS)
    p.add_argument("--_skip-file", dest="skip_file", help=argparse.SUPPRESS)
    p.add_argument("--_resumed", dest="resumed", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        args.names = args.modules
        return child_main(args)
    return parent_main(args)


if __name__ == "__main__":
    sys.exit(main())
