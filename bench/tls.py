"""TLS benchmarks: oxloop (its Rust TLS layer, and asyncio's Python one behind OXLOOP_TLS=stdlib)
against stock asyncio and uvloop, in one run.

Both ends of every connection run on the loop under test, in one process: a TLS echo server
and the clients that load it (so each row pays for the loop's TLS twice, once per end), as the
TLS rows of issue 13 were measured. Certificates are made at run time with `trustme` (a CA and a
`localhost` certificate; ECDSA P-256, so the handshake row measures the loop more than RSA).
Every measurement runs in a fresh process (``python bench/tls.py --worker LOOP ROW``); the
parent interleaves the loops (the order rotates from round to round) and reports per row the
median over the rounds, its spread (min-max) and the ratio to uvloop (>1 is faster).

    python bench/tls.py                          # 5 rounds, all rows, all loops
    python bench/tls.py --rows streams_1k --loops uvloop,oxloop,oxloop-stdlib --rounds 3
    python bench/tls.py --quick                  # smoke run: short windows, 1 round

Loops: asyncio, uvloop, oxloop (native TLS) and oxloop-stdlib (oxloop's loop with asyncio's
`sslproto`, the path before the Rust layer). See bench/README.md ("TLS").
"""

import argparse
import asyncio
import datetime
import json
import os
import platform
import ssl
import sys
import time
from dataclasses import dataclass

import core  # bench/core.py: spawning workers, statistics, machine description

ALL_LOOPS = ("asyncio", "uvloop", "oxloop", "oxloop-stdlib")
CONNS = 32  # concurrent echo connections
HANDSHAKE_CONNS = 8  # concurrent connect-handshake-close clients
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Row:
    size: int  # echo message size; 0 for the handshake row
    server: str  # "streams" or "protocol"
    target: float  # oxloop's ratio to uvloop (issue 13)
    what: str


ROWS = {
    "streams_1k": Row(
        1024, "streams", 1.5, "TLS echo of 1 KiB, streams both ends (write/drain/readexactly)"
    ),
    "protocol_1k": Row(
        1024, "protocol", 1.6, "TLS echo of 1 KiB, protocol server (data_received -> write)"
    ),
    "streams_64k": Row(64 * 1024, "streams", 1.2, "TLS echo of 64 KiB, streams both ends"),
    "handshakes": Row(0, "streams", 1.1, "TLS connect + handshake + close, 8 clients at once"),
}


# ---------------------------------------------------------------------------------------------
# Worker side: one process, one loop, one row.
# ---------------------------------------------------------------------------------------------


def make_loop(name):
    if name == "oxloop-stdlib":
        loop = core.make_loop("oxloop")
        loop.tls_implementation = "stdlib"
        return loop
    return core.make_loop(name)


def contexts():
    import trustme

    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def echo_handler(reader, writer):
    try:
        while data := await reader.read(256 * 1024):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    writer.close()


async def start_server(loop, row, server_ctx):
    if row.server == "protocol":
        return await loop.create_server(EchoProtocol, HOST, 0, ssl=server_ctx)
    return await asyncio.start_server(echo_handler, HOST, 0, ssl=server_ctx, limit=1 << 20)


async def measure(row, warmup, duration):
    """Operations per second of the row over `duration` seconds, after `warmup` seconds."""
    loop = asyncio.get_running_loop()
    server_ctx, client_ctx = contexts()
    server = await start_server(loop, row, server_ctx)
    port = server.sockets[0].getsockname()[1]
    done = [0]
    running = True

    async def open_client():
        return await asyncio.open_connection(
            HOST, port, ssl=client_ctx, server_hostname="localhost", limit=1 << 20
        )

    async def echo_client():
        reader, writer = await open_client()
        message = b"x" * row.size
        while running:
            writer.write(message)
            await writer.drain()
            await reader.readexactly(row.size)
            done[0] += 1
        writer.close()
        await writer.wait_closed()

    async def handshake_client():
        while running:
            _, writer = await open_client()
            writer.close()
            await writer.wait_closed()
            done[0] += 1

    client, conns = (handshake_client, HANDSHAKE_CONNS) if row.size == 0 else (echo_client, CONNS)
    tasks = [asyncio.ensure_future(client()) for _ in range(conns)]
    await asyncio.sleep(warmup)
    start, t0, cpu0 = done[0], time.perf_counter(), time.process_time()
    await asyncio.sleep(duration)
    ops, elapsed = done[0] - start, time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    running = False
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    server.close()
    await server.wait_closed()
    return {
        "ops_per_s": ops / elapsed,
        "cpu_us_per_op": cpu / max(ops, 1) * 1e6,
        "ops": ops,
        "elapsed_s": elapsed,
    }


def work(loop_name, row_name, quick):
    loop = make_loop(loop_name)
    asyncio.set_event_loop(loop)
    try:
        warmup, duration = (0.2, 0.5) if quick else (1.0, 3.0)
        return loop.run_until_complete(measure(ROWS[row_name], warmup, duration))
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def probe(loop_name):
    return core.probe("oxloop" if loop_name == "oxloop-stdlib" else loop_name)


# ---------------------------------------------------------------------------------------------
# Parent side.
# ---------------------------------------------------------------------------------------------


def spawn(args):
    # core.spawn runs core.py; the workers here are this script.
    saved = core.__file__
    core.__file__ = __file__
    try:
        return core.spawn(args)
    finally:
        core.__file__ = saved


def parse_args(argv):
    p = argparse.ArgumentParser(description="TLS benchmarks (see bench/README.md, 'TLS').")
    p.add_argument("--rounds", type=int, help="rounds per row and loop (default 5; 1 with --quick)")
    p.add_argument("--loops", default=",".join(ALL_LOOPS), help="comma-separated subset of loops")
    p.add_argument("--rows", default=",".join(ROWS), help="comma-separated subset of rows")
    p.add_argument("--quick", action="store_true", help="short windows for a smoke run")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    p.add_argument("--worker", nargs=2, metavar=("LOOP", "ROW"), help=argparse.SUPPRESS)
    p.add_argument("--probe", metavar="LOOP", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    def subset(text, allowed, what):
        chosen = [x.strip() for x in text.split(",") if x.strip()]
        unknown = [x for x in chosen if x not in allowed]
        if unknown or not chosen:
            p.error(f"unknown {what} {unknown or text!r}; choose from {','.join(allowed)}")
        return [x for x in allowed if x in chosen]

    args.loops = subset(args.loops, ALL_LOOPS, "loop(s)")
    args.rows = subset(args.rows, list(ROWS), "row(s)")
    if args.rounds is None:
        args.rounds = 1 if args.quick else 5
    if args.rounds < 1:
        p.error("--rounds must be >= 1")
    return args


def run_parent(args):
    loops, errors, info = [], [], {}
    for name in args.loops:
        got, err = spawn(["--probe", name])
        if got is None:
            errors.append(f"{name} is not usable, skipped: {err}")
            print(f"# FAILED {errors[-1]}", file=sys.stderr)
        else:
            info[name] = got
            loops.append(name)
    samples = {row: {loop: [] for loop in loops} for row in args.rows}
    cpu = {row: {loop: [] for loop in loops} for row in args.rows}
    for rnd in range(args.rounds):
        order = loops[rnd % len(loops) :] + loops[: rnd % len(loops)] if loops else []
        for row in args.rows:
            for loop in order:
                got, err = spawn(["--worker", loop, row] + (["--quick"] if args.quick else []))
                if got is None:
                    errors.append(f"{row} on {loop}, round {rnd + 1}: {err}")
                    print(f"# FAILED {errors[-1]}", file=sys.stderr)
                    continue
                samples[row][loop].append(got["ops_per_s"])
                cpu[row][loop].append(got["cpu_us_per_op"])
                print(
                    f"# round {rnd + 1}/{args.rounds} {row:12} {loop:14} "
                    f"{got['ops_per_s']:10.0f} ops/s {got['cpu_us_per_op']:8.1f} CPU us/op",
                    file=sys.stderr,
                )
    results = {}
    for row in args.rows:
        stats = {loop: core.summarize(s) if s else None for loop, s in samples[row].items()}
        uv = stats.get("uvloop")
        ratios = {
            loop: s["median"] / uv["median"]
            for loop, s in stats.items()
            if uv and s and loop != "uvloop"
        }
        cpu_stats = {loop: core.summarize(s) if s else None for loop, s in cpu[row].items()}
        uv_cpu = cpu_stats.get("uvloop")
        cpu_ratios = {
            loop: uv_cpu["median"] / s["median"]
            for loop, s in cpu_stats.items()
            if uv_cpu and s and loop != "uvloop"
        }
        results[row] = {
            "target": ROWS[row].target,
            "loops": stats,
            "ratio_to_uvloop": ratios,
            "cpu_us_per_op": cpu_stats,
            "cpu_ratio_to_uvloop": cpu_ratios,
        }
    report = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "nproc": os.cpu_count(),
            "cpu": core.cpu_model(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "uvloop": info.get("uvloop", {}).get("version"),
        },
        "rounds": args.rounds,
        "quick": args.quick,
        "loops": loops,
        "errors": errors,
        "rows": results,
    }
    print(render(report))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
    return 1 if errors or not loops else 0


def render(report):
    m, loops = report["machine"], report["loops"]
    others = [lp for lp in loops if lp != "uvloop"]
    out = [
        "## oxloop TLS benchmarks",
        "",
        f"- date: {report['date']}",
        f"- machine: {m['nproc']} CPUs, {m['cpu']}, {m['platform']}",
        f"- Python {m['python']}, uvloop {m['uvloop'] or 'not available'}",
        f"- {report['rounds']} round(s), one process per measurement, loops interleaved, "
        f"both ends on the loop, {CONNS} echo connections"
        + (" (--quick windows)" if report["quick"] else ""),
        "",
    ]
    head = ["row"] + [f"{lp} ops/s [min-max]" for lp in loops]
    if "uvloop" in loops:
        head += [f"{lp} vs uvloop" for lp in others] + ["target (oxloop)"]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|")
    for row, entry in report["rows"].items():
        cells = [row]
        for lp in loops:
            s = entry["loops"].get(lp)
            cells.append(
                "FAILED" if s is None else f"{s['median']:.0f} [{s['min']:.0f}-{s['max']:.0f}]"
            )
        if "uvloop" in loops:
            for lp in others:
                r = entry["ratio_to_uvloop"].get(lp)
                cells.append("n/a" if r is None else f"{r:.2f}x")
            cells.append(f">= {entry['target']}x")
        out.append("| " + " | ".join(cells) + " |")
    out += ["", "Ratios are loop ops/s / uvloop ops/s: above 1.00x is faster than uvloop.", ""]
    out += render_cpu(report)
    out += ["Rows:"] + [f"- {r}: {ROWS[r].what}" for r in report["rows"]]
    out += [f"- FAILED: {e}" for e in report["errors"]]
    return "\n".join(out)


def render_cpu(report):
    """The process's CPU time per operation over the same windows: steadier than throughput
    on a machine whose other load takes the CPU away from the benchmark now and then."""
    loops = report["loops"]
    others = [lp for lp in loops if lp != "uvloop"]
    head = ["row"] + [f"{lp} CPU us/op" for lp in loops]
    if "uvloop" in loops:
        head += [f"{lp} vs uvloop (CPU)" for lp in others]
    out = ["| " + " | ".join(head) + " |"]
    out.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|")
    for row, entry in report["rows"].items():
        cells = [row]
        for lp in loops:
            s = entry["cpu_us_per_op"].get(lp)
            cells.append("FAILED" if s is None else f"{s['median']:.1f}")
        if "uvloop" in loops:
            for lp in others:
                r = entry["cpu_ratio_to_uvloop"].get(lp)
                cells.append("n/a" if r is None else f"{r:.2f}x")
        out.append("| " + " | ".join(cells) + " |")
    out += ["", "CPU ratios are uvloop CPU time per op / loop CPU time per op (>1: cheaper).", ""]
    return out


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.probe:
        print(json.dumps(probe(args.probe)))
        return 0
    if args.worker:
        print(json.dumps(work(*args.worker, args.quick)))
        return 0
    return run_parent(args)


if __name__ == "__main__":
    sys.exit(main())
