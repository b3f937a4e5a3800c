"""oxloop's diagnostics mode: the common asyncio pitfalls reported while they happen.

Switch it on with any of::

    oxloop.run(main(), diagnostics=True)
    loop = oxloop.new_event_loop(diagnostics=True)        # or diagnostics=Settings(...)
    OXLOOP_DIAGNOSTICS=1 python app.py                     # every oxloop loop made in it
    python -m oxloop --diagnose app.py                     # the same, plus a summary at exit

What it reports (the `Report` subclasses in `oxloop.diagnostics.reports`): a callback or task step
blocking the loop (with the loop thread's stack, while it still blocks), forgotten awaits,
exceptions lost in tasks, swallowed cancellations, tasks pending at shutdown, task floods; and it
adds timer lateness, time blocked and task counts to ``loop.stats()``. Reports go to the
``oxloop.diagnostics`` logger, to ``Settings.hook``, to a JSON-lines file and to OpenTelemetry,
as configured.

Off (the default), none of this exists: no thread, no task factory, no hooks, and none of the
modules below but `switch` is even imported.

Modules: `switch` (the environment variable), `settings`, `session` (the per-loop `Diagnostics`,
the session summary, `attach`), `reports` (the report types), `sinks` (where reports go),
`blocking` (the watchdog's Python side), `task_guard` (the task reports), `unawaited` (forgotten
awaits), `task_tree` (await stacks and `dump_tasks`, which work on any loop, diagnostics or not).

The task-based parts work on stock asyncio loops too, through `attach(loop)`; blocking and
timer lateness need oxloop's core.
"""

from __future__ import annotations

import importlib
from typing import Any

# The public names, imported from their modules on first use (PEP 562), so that an oxloop loop
# with diagnostics off never loads them.
_HOME = {
    "Settings": "settings",
    "resolve": "settings",
    "Diagnostics": "session",
    "attach": "session",
    "session_summary": "session",
    "print_summary_at_exit": "session",
    "dump_tasks": "task_tree",
    "logger": "sinks",
    **dict.fromkeys(
        [
            "Report",
            "BlockingReport",
            "ForgottenAwaitReport",
            "LostExceptionReport",
            "SwallowedCancellationReport",
            "PendingTasksReport",
            "TaskFloodReport",
            "TaskSnapshot",
            "Frame",
        ],
        "reports",
    ),
}


# `resolve` and `print_summary_at_exit` are for oxloop's own loop and command line.
__all__ = [name for name in _HOME if name not in ("resolve", "print_summary_at_exit")]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
