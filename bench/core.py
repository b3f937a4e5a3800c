"""Core event-loop benchmarks: oxloop against stock asyncio and uvloop, in one run.

Every measurement runs in a fresh process (``python bench/core.py --worker LOOP ROW``), so no
loop inherits another's heap, caches or imports. The parent interleaves the loops: each round
runs every row on every loop (the loop order rotates from round to round), and the table
reports per row the median time per operation over the rounds, its spread (min-max), and the
ratio to uvloop (uvloop time / loop time, so >1 means faster than uvloop).

    python bench/core.py                       # 5 rounds, all rows, all loops
    python bench/core.py --rounds 9 --rows call_soon,timers --json bench/results/run.json
    python bench/core.py --quick               # smoke run: tiny sizes, 1 round
    python bench/core.py --loops oxloop,oxloop-diag --rows call_soon   # cost of diagnostics

See bench/README.md for what each row measures and how to read the ratios.
"""

import argparse
import asyncio
import gc
import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import common  # bench/common.py: loops, worker processes, options, statistics, the report
from common import ALL_LOOPS, EXTRA_LOOPS

# ---------------------------------------------------------------------------------------------
# Workloads. Each takes (loop, n), runs n operations on the loop and returns the elapsed
# nanoseconds of the timed part. They run inside the worker process only.
# ---------------------------------------------------------------------------------------------


def _noop(*args):
    pass


async def _noop_coro():
    pass


CALL_SOON_BATCH = 1_000


def _bench_call_soon(loop, n, two_args):
    """Run n no-op callbacks queued with call_soon(cb), or call_soon(cb, 1, 2) with two_args.

    A scheduler callback queues a batch of 1000, then re-queues itself, until n are queued; then
    the loop stops. Batching keeps the ready queue a realistic size (one loop iteration per
    batch): queueing a million at once measures the allocator and the GC, not the loop.
    """
    left = n

    def schedule():
        nonlocal left
        call_soon = loop.call_soon
        batch = min(left, CALL_SOON_BATCH)
        left -= batch
        if two_args:
            for _ in range(batch):
                call_soon(_noop, 1, 2)
        else:
            for _ in range(batch):
                call_soon(_noop)
        call_soon(schedule if left else loop.stop)

    loop.call_soon(schedule)
    t0 = time.perf_counter_ns()
    loop.run_forever()
    return time.perf_counter_ns() - t0


def bench_call_soon(loop, n):
    return _bench_call_soon(loop, n, False)


def bench_call_soon_2args(loop, n):
    return _bench_call_soon(loop, n, True)


TIMER_BATCH = 100_000


def bench_timers(loop, n):
    """Batches of call_later(random delay) then cancel() on all, then one more loop iteration."""
    rng = random.Random(1234)
    batch = min(n, TIMER_BATCH)
    delays = [rng.uniform(0.1, 10.0) for _ in range(batch)]

    def work():
        call_later = loop.call_later
        handles = [call_later(d, _noop) for d in delays]
        for h in handles:
            h.cancel()
        loop.call_soon(loop.stop)  # one more iteration, in which the loop drops the cancelled

    elapsed = 0
    for _ in range(n // batch):
        loop.call_soon(work)
        t0 = time.perf_counter_ns()
        loop.run_forever()
        elapsed += time.perf_counter_ns() - t0
    return elapsed


def _timed_coro(loop, coro_fn, n):
    t0 = time.perf_counter_ns()
    done = loop.run_until_complete(coro_fn(n))
    elapsed = time.perf_counter_ns() - t0
    if done != n:
        raise AssertionError(f"workload completed {done} operations, expected {n}")
    return elapsed


async def _sleep0(n):
    sleep = asyncio.sleep
    for _ in range(n):
        await sleep(0)
    return n


async def _create_task(n):
    create_task = asyncio.create_task
    for _ in range(n):
        await create_task(_noop_coro())
    return n


GATHER_BATCH = 10_000


async def _gather(n):
    batch = min(n, GATHER_BATCH)
    done = 0
    for _ in range(n // batch):
        results = await asyncio.gather(*[_noop_coro() for _ in range(batch)])
        done += len(results)
    return done


async def _future(n):
    loop = asyncio.get_running_loop()
    create_future = loop.create_future
    call_soon = loop.call_soon
    total = 0
    for _ in range(n):
        fut = create_future()
        call_soon(fut.set_result, 1)
        total += await fut
    return total


@dataclass(frozen=True)
class Row:
    name: str
    run: Callable[[asyncio.AbstractEventLoop, int], int]
    size: int  # operations per measurement (sized for ~0.2-1 s on stock asyncio)
    quick_size: int  # operations per measurement with --quick
    target: float  # oxloop's target ratio to uvloop (uvloop time / oxloop time)
    what: str  # one line for the table legend


ROWS = {
    row.name: row
    for row in (
        Row("call_soon", bench_call_soon, 1_000_000, 10_000, 2.5, "loop.call_soon(cb) + run cb"),
        Row(
            "call_soon_2args",
            bench_call_soon_2args,
            1_000_000,
            10_000,
            2.0,
            "loop.call_soon(cb, 1, 2) + run cb",
        ),
        Row(
            "timers",
            bench_timers,
            4 * TIMER_BATCH,
            10_000,
            5.0,
            "call_later(random) + cancel() + drop, per timer",
        ),
        Row(
            "sleep0",
            lambda loop, n: _timed_coro(loop, _sleep0, n),
            300_000,
            5_000,
            2.2,
            "await asyncio.sleep(0)",
        ),
        Row(
            "create_task",
            lambda loop, n: _timed_coro(loop, _create_task, n),
            150_000,
            5_000,
            1.6,
            "await asyncio.create_task(noop())",
        ),
        Row(
            "gather",
            lambda loop, n: _timed_coro(loop, _gather, n),
            15 * GATHER_BATCH,
            GATHER_BATCH,
            1.3,
            "gather(*10k noop()), per coroutine",
        ),
        Row(
            "future",
            lambda loop, n: _timed_coro(loop, _future, n),
            200_000,
            5_000,
            2.4,
            "create_future + call_soon(set_result) + await",
        ),
    )
}


# ---------------------------------------------------------------------------------------------
# Worker side: one process, one loop, one row.
# ---------------------------------------------------------------------------------------------


def work(loop_name, row_name, n):
    """Warm up on a tenth of the size, then time one full-size run on the same loop."""
    row = ROWS[row_name]
    loop = common.make_loop(loop_name)
    asyncio.set_event_loop(loop)
    try:
        warm = n // 10
        if row_name == "gather":
            warm = min(n, GATHER_BATCH)
        elif row_name == "timers":
            warm = min(n, TIMER_BATCH // 10)
        row.run(loop, max(warm, 1))
        gc.collect()
        elapsed = row.run(loop, n)
        return {"ns_per_op": elapsed / n, "n": n, "elapsed_s": elapsed / 1e9}
    finally:
        asyncio.set_event_loop(None)
        loop.close()


# ---------------------------------------------------------------------------------------------
# Parent side: spawn workers, collect, report.
# ---------------------------------------------------------------------------------------------


def parse_args(argv):
    p = common.parser(
        "Benchmark oxloop against stock asyncio and uvloop (see bench/README.md).",
        loops=ALL_LOOPS,
        rows=ROWS,
        quick_help="tiny sizes for a smoke run",
    )
    p.add_argument("--worker", nargs=2, metavar=("LOOP", "ROW"), help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    return common.check_args(p, args, loops=ALL_LOOPS + EXTRA_LOOPS, rows=ROWS)


def run_parent(args):
    loops, info, notes, failures = common.probe_loops(args.loops)
    errors = [f"{name} is not usable, skipped: {err}" for name, err in failures]

    samples = {row: {loop: [] for loop in loops} for row in args.rows}
    for rnd, row, loop in common.interleaved(loops, args.rows, args.rounds):
        size = ROWS[row].quick_size if args.quick else ROWS[row].size
        got, err = common.spawn(__file__, ["--worker", loop, row, "--size", str(size)])
        if got is None:
            errors.append(f"{row} on {loop}, round {rnd + 1}: {err}")
            print(f"# FAILED {errors[-1]}", file=sys.stderr)
        else:
            samples[row][loop].append(got["ns_per_op"])
            print(
                f"# round {rnd + 1}/{args.rounds} {row:16} {loop:8} {got['ns_per_op']:10.1f} ns/op",
                file=sys.stderr,
            )

    results = {}
    for row in args.rows:
        stats = {
            loop: common.summarize(s) if s else None  # a partly failed cell says so: "(k/N ok)"
            for loop, s in samples[row].items()
        }
        entry = {"target": ROWS[row].target, "loops": stats, "ratio_to_uvloop": {}}
        if stats.get("oxloop") and stats.get("oxloop-diag"):
            # What switching diagnostics on costs: time with them / time without, minus one.
            cost = stats["oxloop-diag"]["median"] / stats["oxloop"]["median"] - 1
            entry["diagnostics_cost"] = cost
        uv = stats.get("uvloop")
        for loop in ("oxloop", "asyncio"):
            if uv and stats.get(loop):
                entry["ratio_to_uvloop"][loop] = uv["median"] / stats[loop]["median"]
        ox_ratio = entry["ratio_to_uvloop"].get("oxloop")
        entry["target_met"] = None if ox_ratio is None else ox_ratio >= ROWS[row].target
        results[row] = entry

    report = {
        "date": common.now(),
        "machine": common.machine(info),
        "rounds": args.rounds,
        "quick": args.quick,
        "loops": loops,
        "notes": notes,
        "errors": errors,
        "rows": results,
    }
    print(render(report, ratios="uvloop" in loops))
    if args.json:
        common.write_json(args.json, report)
    return 1 if errors or not loops else 0


def render(report, ratios):
    m = report["machine"]
    loops = report["loops"]
    out = [
        "## oxloop core benchmarks",
        "",
        f"- date: {report['date']}",
        f"- machine: {m['nproc']} CPUs, {m['cpu']}, {m['platform']}",
        f"- Python {m['python']} ({m['implementation']}), uvloop {m['uvloop'] or 'not available'}",
    ]
    if m["oxloop"]:
        ox = m["oxloop"]
        out.append(f"- oxloop {ox['version'] or '(no version)'}: {ox['loop_class']} ({ox['file']})")
    out.append(
        f"- {report['rounds']} round(s), one process per measurement, loops interleaved"
        + (" (--quick sizes)" if report["quick"] else "")
    )
    out += [f"- note: {n}" for n in report["notes"]]
    out.append("")

    head = ["row"] + [f"{lp} ns/op [min-max]" for lp in loops]
    diag_cost = "oxloop" in loops and "oxloop-diag" in loops
    if diag_cost:
        head.append("diagnostics cost")
    if ratios:
        head += [f"{lp} vs uvloop" for lp in ("oxloop", "asyncio") if lp in loops]
        if "oxloop" in loops:
            head += ["target", "met"]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|")
    for row, entry in report["rows"].items():
        cells = [row] + [common.fmt_cell(entry["loops"].get(lp), report["rounds"]) for lp in loops]
        if diag_cost:
            cost = entry.get("diagnostics_cost")
            cells.append("n/a" if cost is None else f"{cost * 100:+.1f}%")
        if ratios:
            for lp in ("oxloop", "asyncio"):
                if lp in loops:
                    r = entry["ratio_to_uvloop"].get(lp)
                    cells.append("n/a" if r is None else f"{r:.2f}x")
            if "oxloop" in loops:
                met = entry["target_met"]
                cells.append(f">= {entry['target']}x")
                cells.append("n/a" if met is None else ("yes" if met else "NO"))
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    if ratios:
        out.append("Ratios are uvloop time / loop time: above 1.00x is faster than uvloop.")
    if diag_cost:
        out.append("Diagnostics cost: oxloop-diag time / oxloop time - 1 (medians).")
    out += ["", "Rows:"] + [f"- {r}: {ROWS[r].what}" for r in report["rows"]]
    for e in report["errors"]:
        out.append(f"- FAILED: {e}")
    return "\n".join(out)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.worker:
        loop_name, row_name = args.worker
        size = args.size or ROWS[row_name].size
        print(json.dumps(work(loop_name, row_name, size)))
        return 0
    return run_parent(args)


if __name__ == "__main__":
    sys.exit(main())
