"""What the `loop` and `loop_factory` fixtures check when a test ends, on both loops.

A test's loops must not have called the exception handler unless the test says it expects that,
and the test must not leave pending tasks, open fds, running threads or unclosed objects (which
warn when the loop's close or the collector frees them) behind. Unnoticed, each of these is a
leak (or an error nobody looked at) that one of the loops would carry into production; noticed
only by a later test, it is blamed on the wrong one. uvloop's test base class and CPython's
test_asyncio check the same things in their own ways; this is ours.

`Checks` is made before the test runs (it snapshots the process's fds and threads) and adopts
every loop the test makes through the fixtures: it installs a recording exception handler on
each. After the test it reports and cancels pending tasks, closes the loops (recording the
ResourceWarnings of what that frees), collects garbage if an fd is still open, and compares.
Not a test module: conftest.py imports it.
"""

import asyncio
import gc
import os
import threading
import time
import warnings
import weakref

# How long threads started by the test get to finish after its loops are closed: a default
# executor's workers are told to stop by `close()` (shutdown(wait=False)) and need a moment.
THREAD_GRACE = 2.0


def open_fds():
    """{fd: what it points at} for this process. The directory listing's own fd is closed by the
    time it is read back, so it drops out."""
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass
    return fds


def native_threads():
    """{thread id: name} of the process's OS threads that Python's `threading` does not know
    (the Rust core's own threads, such as the diagnostics watchdog)."""
    known = {t.native_id for t in threading.enumerate()}
    threads = {}
    for name in os.listdir("/proc/self/task"):
        tid = int(name)
        if tid in known:
            continue
        try:
            with open(f"/proc/self/task/{name}/comm") as comm:
                threads[tid] = comm.read().strip()
        except OSError:
            pass  # it ended meanwhile
    return threads


class Checks:
    """One test's teardown checks over the loops it made (see the module doc)."""

    def __init__(self, *, handler_expected, consumes_contexts, keep_handler):
        self.handler_expected = handler_expected or consumes_contexts
        self.keep_handler = keep_handler
        self.contexts = []  # every context any of the test's loops gave the recorder
        self.loops = []  # (weakref to the loop, its recorder)
        self.fds = open_fds()
        self.threads = set(threading.enumerate())
        self.native = native_threads()

    def adopt(self, loop):
        """Records `loop`'s exception handler calls and checks it at teardown."""
        recorder = None
        if not self.keep_handler:

            def recorder(lp, context):
                self.contexts.append(context)
                lp.default_exception_handler(context)  # still logged, as without the recorder

            loop.set_exception_handler(recorder)
        self.loops.append((weakref.ref(loop), recorder))
        return loop

    def finish(self):
        """Closes the test's loops and returns what it left behind, one line per problem."""
        problems = []
        unchecked_handler = False
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            for ref, recorder in self.loops:
                loop = ref()
                if loop is None:
                    continue
                problems += self._settle_tasks(loop)
                if loop.is_running():  # in a thread the test started and left running
                    problems.append(f"loop left running: {loop!r}")
                    continue
                if not loop.is_closed():
                    loop.close()  # what only the loop still held is released (and warns) here
                if recorder is not None and loop.get_exception_handler() is not recorder:
                    unchecked_handler = True  # the test put its own handler in: it looks itself
                problems += oxloop_backlog(loop)
                del loop
            asyncio.set_event_loop(None)
            fds = self._fds_left()
            if fds:
                # A full collection costs about a tenth of a second with this suite's heap: only
                # when something is open, to tell cyclic garbage from a leak.
                gc.collect()
                fds = self._fds_left()
        for warning in caught:
            if issubclass(warning.category, ResourceWarning):
                problems.append(f"left to be closed by the collector: {warning.message}")
            else:
                warnings.warn_explicit(
                    warning.message, warning.category, warning.filename, warning.lineno
                )
        if self.contexts and not (self.handler_expected or unchecked_handler):
            problems += [f"exception handler called: {format_context(c)}" for c in self.contexts]
        return problems + fds + self._threads_left()

    def _settle_tasks(self, loop):
        """Reports the loop's pending tasks, then cancels them and lets them finish (if the
        loop is still open) so that their cleanup runs and nothing else is blamed for them."""
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        if not pending:
            return []
        problems = [f"task left pending: {task!r}" for task in pending]
        if loop.is_closed() or loop.is_running():
            return problems
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.wait(pending, timeout=THREAD_GRACE))
        return problems

    def _fds_left(self):
        now = open_fds()
        return [
            f"fd {fd} left open: {target}"
            for fd, target in sorted(now.items())
            if self.fds.get(fd) != target
        ]

    def _threads_left(self):
        deadline = time.monotonic() + THREAD_GRACE
        problems = []
        for thread in threading.enumerate():
            if thread in self.threads or thread.daemon:
                continue
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                problems.append(f"thread left running: {thread!r}")
        while True:
            native = {t: n for t, n in native_threads().items() if t not in self.native}
            if not native or time.monotonic() >= deadline:
                break
            time.sleep(0.01)
        problems += [f"native thread left running: {tid} {name}" for tid, name in native.items()]
        return problems


def oxloop_backlog(loop):
    """An oxloop loop, once closed, holds no callback, timer or fd watch any more."""
    stats = getattr(loop, "stats", None)
    if stats is None:
        return []
    backlog = {key: stats()[key] for key in ("ready", "timers", "fds")}
    if any(backlog.values()):
        return [f"closed oxloop loop still holds {backlog}"]
    return []


def format_context(context):
    exc = context.get("exception")
    shown = {k: v for k, v in context.items() if k not in ("message", "exception")}
    return f"{context.get('message')!r} exception={exc!r} {shown}"
