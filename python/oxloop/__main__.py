"""``python -m oxloop``: run a script or module with oxloop as asyncio's event loop.

    python -m oxloop script.py [args ...]     # like `python script.py [args ...]`
    python -m oxloop -m module [args ...]     # like `python -m module [args ...]`
    python -m oxloop --diagnose script.py     # with oxloop's diagnostics, and a summary at exit

oxloop's policy is installed first, so `asyncio.run()`, `asyncio.Runner()` and
`asyncio.new_event_loop()` in the program create oxloop loops; the program itself needs no
change. ``OXLOOP=1`` is set for the processes it starts (see `oxloop._startup`), and a loop of
another class that the program makes itself is reported with a RuntimeWarning. It runs as
``__main__`` with ``sys.argv`` and ``sys.path[0]`` as Python would set them, and its exit
status (``SystemExit``, an uncaught exception) is the process's.

Options of oxloop itself go before the script or ``-m``; everything after belongs to the program.
"""

import importlib.util
import os
import runpy
import sys
from typing import NamedTuple

from . import _startup

USAGE = """\
usage: python -m oxloop [-h] [--diagnose] script.py [args ...]
       python -m oxloop [-h] [--diagnose] -m module [args ...]

Run a Python script or module with oxloop as the asyncio event loop: asyncio.run(),
asyncio.Runner() and asyncio.new_event_loop() in it create oxloop loops.

options:
  -h, --help   show this message and exit
  -m module    run a library module as a script, like `python -m module`
  --diagnose   switch on oxloop's diagnostics (blocking calls, forgotten awaits, lost
               exceptions, swallowed cancellations, task floods) for every loop the program
               makes, and print a summary to stderr when it ends
"""


class Invocation(NamedTuple):
    """What to run: a script path or a module name, and the program's own arguments."""

    is_module: bool
    target: str
    args: list[str]
    diagnose: bool = False


class UsageError(Exception):
    """The command line is not valid: print usage and exit with status 2."""


def parse_args(argv: list[str]) -> Invocation:
    """Parse `argv` (without the program name): oxloop's options, then the program to run.

    Each option of oxloop's is one branch of the loop below: a flag (``--diagnose``) records
    itself and continues with the next argument; the first argument that is not an option is
    the script, and ``-m`` takes the module name. The rest belongs to the program.
    """
    diagnose = False
    for i, arg in enumerate(argv):
        if arg in ("-h", "--help"):
            raise UsageError()
        if arg == "--diagnose":
            diagnose = True
            continue
        if arg == "-m":
            if i + 1 == len(argv):
                raise UsageError("-m needs a module name")
            return Invocation(True, argv[i + 1], argv[i + 2 :], diagnose)
        if arg.startswith("-m"):  # -mmodule, as Python accepts
            return Invocation(True, arg[2:], argv[i + 1 :], diagnose)
        if arg.startswith("-"):
            raise UsageError(f"unknown option {arg!r}")
        return Invocation(False, arg, argv[i + 1 :], diagnose)
    raise UsageError()


def run_script(path: str, args: list[str]) -> None:
    """Run the file (or directory or zip with a __main__.py) at `path` as ``__main__``."""
    if not os.path.exists(path):
        print(f"python -m oxloop: can't open file {path!r}: no such file", file=sys.stderr)
        sys.exit(2)
    sys.argv = [path, *args]
    if not sys.flags.safe_path:
        if os.path.isfile(path) and not path.endswith(".zip"):
            # As `python script.py`: the script's own directory (symlinks resolved) replaces the
            # current directory that `python -m oxloop` put first on the path.
            sys.path[0] = os.path.dirname(os.path.realpath(path))
        else:
            del sys.path[0]  # run_path puts the directory or zip itself first
    runpy.run_path(path, run_name="__main__")


def run_module(name: str, args: list[str]) -> None:
    """Run module `name` as ``__main__``, as ``python -m name`` would."""
    try:
        found = importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        print(f"python -m oxloop: No module named {name}", file=sys.stderr)
        sys.exit(1)
    sys.argv = [name, *args]  # run_module sets argv[0] to the module's file
    runpy.run_module(name, run_name="__main__", alter_sys=True)


def main(argv: list[str] | None = None) -> None:
    try:
        invocation = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        if exc.args:
            print(f"python -m oxloop: error: {exc.args[0]}", file=sys.stderr)
        print(USAGE, end="", file=sys.stderr)
        sys.exit(2)
    _startup.enable()  # no deprecation warning on 3.14+: the program asked for this command
    if invocation.diagnose:
        # Through the environment, so every loop the program makes (and its child processes
        # running oxloop) is diagnosed; the per-loop summaries give way to one at the end.
        os.environ["OXLOOP_DIAGNOSTICS"] = "1"
        from . import diagnostics

        diagnostics.print_summary_at_exit()
    if invocation.is_module:
        run_module(invocation.target, invocation.args)
    else:
        run_script(invocation.target, invocation.args)


if __name__ == "__main__":
    main()
