"""What the benchmark scripts (core.py, net.py, tls.py) share: the loops and how a process makes
one, the worker processes and how they are spawned, the common command-line options, the
interleaved order of the rounds, statistics, the machine description and the JSON file.

Each script keeps what is its own: its rows, its workloads and its tables. Kept in one place so
the three measure, summarize and describe the machine the same way (their reports are compared
side by side in README and in bench/chart.py).
"""

import argparse
import asyncio
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys

ALL_LOOPS = ("asyncio", "uvloop", "oxloop")
# Selectable with --loops in core.py and net.py, not run by default: oxloop with its
# diagnostics mode on.
EXTRA_LOOPS = ("oxloop-diag",)
# Every loop make_loop knows: also oxloop's loop with asyncio's own TLS (`sslproto`, as
# OXLOOP_TLS=stdlib selects), which tls.py compares.
LOOP_NAMES = (*ALL_LOOPS, *EXTRA_LOOPS, "oxloop-stdlib")
WORKER_TIMEOUT = 300  # seconds; a hung loop fails its cell instead of hanging the run


def make_loop(name):
    """A new event loop of the named kind (one of LOOP_NAMES)."""
    if name == "asyncio":
        return asyncio.new_event_loop()
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    if name in ("oxloop", "oxloop-stdlib"):
        import oxloop

        loop = oxloop.new_event_loop(diagnostics=False)
        if name == "oxloop-stdlib":
            loop.tls_implementation = "stdlib"
        return loop
    if name == "oxloop-diag":
        import oxloop
        from oxloop.diagnostics import Settings

        # Everything on; reports would only go to the log, and a benchmark provokes none.
        return oxloop.new_event_loop(diagnostics=Settings(summary_at_close=False))
    raise ValueError(f"unknown loop {name!r}")


def probe(loop_name):
    """Import the loop and make one; return what the report says about it."""
    loop = make_loop(loop_name)
    try:
        cls = type(loop)
        module = sys.modules[loop_name.split("-")[0]]
        return {
            "version": getattr(module, "__version__", None),
            "file": getattr(module, "__file__", None),
            "loop_class": f"{cls.__module__}.{cls.__qualname__}",
        }
    finally:
        loop.close()


def spawn(script, args, timeout=WORKER_TIMEOUT):
    """Run `script` in a child process with `args`; return (its last line as JSON or None, error).

    The child's last line on stdout is its result; on failure, the error is its exit status and
    the last line it wrote to stderr.
    """
    # OXLOOP_DIAGNOSTICS* would switch diagnostics on in the plain oxloop workers too.
    env = {k: v for k, v in os.environ.items() if not k.startswith("OXLOOP_DIAGNOSTICS")}
    env["PYTHONHASHSEED"] = "0"
    try:
        proc = subprocess.run(
            [sys.executable, os.path.abspath(script), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout} s"
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        return None, f"exit {proc.returncode}: {tail}"
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1]), None
    except (IndexError, ValueError):
        return None, f"unreadable worker output: {proc.stdout[-200:]!r}"


def probe_loops(names, skip=()):
    """The loops that can run here: (loops, {loop: probe info}, notes, [(loop, error)]).

    Each loop is probed in a child process (`python bench/common.py --probe LOOP`), which
    imports it and makes one, as a measurement's process will. A missing uvloop is
    a note (the report then gives absolute numbers only); any other loop that cannot run is a
    failure. Names in `skip` (not Python loops) are kept without probing.
    """
    loops, info, notes, failures = [], {}, [], []
    for name in names:
        if name in skip:
            loops.append(name)
            continue
        got, err = spawn(__file__, ["--probe", name])
        if got is not None:
            info[name] = got
            loops.append(name)
        elif name == "uvloop":
            notes.append(
                f"uvloop is not importable ({err}): absolute numbers only, no ratios "
                "(install it with pip install -e '.[bench]')"
            )
            print(f"# {notes[-1]}", file=sys.stderr)
        else:
            failures.append((name, err))
            print(f"# FAILED {name} is not usable, skipped: {err}", file=sys.stderr)
    if "uvloop" not in names:
        notes.append("uvloop not selected: absolute numbers only, no ratios")
    return loops, info, notes, failures


def interleaved(loops, rows, rounds):
    """(round index, row, loop) of every measurement, in the order to make them: each round
    measures every row on every loop, with the loop order rotated by one from round to round,
    so drift in the machine's speed is spread over all loops instead of landing on one."""
    for rnd in range(rounds):
        shift = rnd % len(loops) if loops else 0
        order = loops[shift:] + loops[:shift]
        for row in rows:
            for loop in order:
                yield rnd, row, loop


def parser(description, *, loops, rows, quick_help):
    """The options every script has: --rounds, --loops, --rows, --quick, --json."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--rounds", type=int, help="rounds per row and loop (default 5; 1 with --quick)")
    p.add_argument("--loops", default=",".join(loops), help="comma-separated subset of loops")
    p.add_argument("--rows", default=",".join(rows), help="comma-separated subset of rows")
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    return p


def check_args(p, args, *, loops, rows):
    """Resolve --loops and --rows into lists (in the canonical order), --rounds into a count."""

    def subset(text, allowed, what):
        chosen = [x.strip() for x in text.split(",") if x.strip()]
        unknown = [x for x in chosen if x not in allowed]
        if unknown or not chosen:
            p.error(f"unknown {what} {unknown or text!r}; choose from {','.join(allowed)}")
        return [x for x in allowed if x in chosen]

    args.loops = subset(args.loops, list(loops), "loop(s)")
    args.rows = subset(args.rows, list(rows), "row(s)")
    if args.rounds is None:
        args.rounds = 1 if args.quick else 5
    if args.rounds < 1:
        p.error("--rounds must be >= 1")
    return args


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(info, **extra):
    """The machine and software of the run, as every report has it (plus `extra`)."""
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "uvloop": info.get("uvloop", {}).get("version"),
        "oxloop": info.get("oxloop"),
        **extra,
    }


def now():
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def summarize(samples):
    s = sorted(samples)
    if len(s) >= 4:
        q1, _, q3 = statistics.quantiles(s, n=4)
    else:
        q1, q3 = s[0], s[-1]
    return {
        "median": statistics.median(s),
        "min": s[0],
        "max": s[-1],
        "q1": q1,
        "q3": q3,
        "samples": samples,
    }


def fmt_value(v):
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}"


def fmt_cell(stats, rounds):
    """`median [min-max]`, with how many rounds succeeded if not all; FAILED if none did."""
    if stats is None:
        return "FAILED"
    cell = f"{fmt_value(stats['median'])} [{fmt_value(stats['min'])}-{fmt_value(stats['max'])}]"
    ok = len(stats["samples"])
    return cell if ok == rounds else f"{cell} ({ok}/{rounds} ok)"


def write_json(path, report):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    # The probe run by probe_loops: `common.py --probe LOOP` prints probe(LOOP) as JSON.
    p = argparse.ArgumentParser(description="Probe one event loop (used by the benchmarks).")
    p.add_argument("--probe", metavar="LOOP", choices=LOOP_NAMES, required=True)
    print(json.dumps(probe(p.parse_args().probe)))
