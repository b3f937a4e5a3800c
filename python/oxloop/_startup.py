"""``OXLOOP=1``: oxloop as asyncio's loop in every Python process that starts with it set.

The package installs ``oxloop_startup.pth`` into site-packages. Python runs its one line at
start-up, and that line imports this module only when ``OXLOOP`` is set to anything but ``""``
or ``"0"``, so other processes pay one environment lookup, and calls `at_interpreter_start()`.

`python -m oxloop` calls `enable()` too. It sets ``OXLOOP=1`` in its own environment because the
policy it installs does not reach child processes: multiprocessing's spawn and forkserver
workers (hypercorn's, for one) and subprocesses are new interpreters, and they pick the setting
up here, at their own start-up.

The policy decides only the loops a program asks asyncio for (`asyncio.run()`,
`asyncio.Runner()`, `asyncio.new_event_loop()`). A program that makes its own loop instead
(uvicorn's ``--loop auto`` takes uvloop when it is installed and asyncio's `SelectorEventLoop`
otherwise; ``uvloop.install()``; a ``loop_factory``) is not on oxloop, and `enable()` makes that
visible: the first time a loop of some other class starts running, a `RuntimeWarning` names it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

from . import _compat, _install
from .loop import Loop

ENVIRONMENT_VARIABLE = "OXLOOP"

_enabled = False
_warned_about: set[type] = set()


def enable() -> None:
    """Make oxloop asyncio's loop in this process and in the processes it starts, and warn
    when a loop of another class runs anyway. Idempotent; main thread only."""
    global _enabled
    if _enabled:
        return
    _install()
    os.environ[ENVIRONMENT_VARIABLE] = "1"
    _compat.wrap_set_running_loop(_warning_on_foreign_loops)
    _enabled = True


def _warning_on_foreign_loops(set_running_loop: Callable[[Any], None]) -> Callable[[Any], None]:
    def watched(loop: Any) -> None:
        if loop is not None and not isinstance(loop, Loop):
            kind = type(loop)
            if kind not in _warned_about:
                _warned_about.add(kind)
                warnings.warn(
                    f"OXLOOP is set, but this program runs its event loop on {kind.__module__}."
                    f"{kind.__qualname__}, which it made itself instead of asking asyncio for "
                    "one, so it is not running on oxloop. Give the program oxloop's loop "
                    "factory where it takes one (uvicorn: --loop oxloop:new_event_loop); "
                    "see oxloop's README, 'Using it with ...'.",
                    RuntimeWarning,
                    stacklevel=2,
                )
        set_running_loop(loop)

    return watched


def at_interpreter_start() -> None:
    """What ``oxloop_startup.pth`` runs when OXLOOP is set."""
    try:
        enable()
    except NotImplementedError as exc:  # Python 3.16+: no policies to install a loop into
        warnings.warn(f"OXLOOP is set and has no effect: {exc}", RuntimeWarning, stacklevel=1)
