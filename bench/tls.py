"""TLS benchmarks: oxloop (its Rust TLS layer, and asyncio's Python one behind OXLOOP_TLS=stdlib)
against stock asyncio and uvloop, in one run.

The echo and handshake rows run both ends of every connection on the loop under test, in one
process: a TLS echo server and the clients that load it (so each row pays for the loop's TLS
twice, once per end), as the TLS rows of issue 13 were measured; each runs in a fresh process
(``python bench/tls.py --worker LOOP ROW``). The ``https`` row is a server only: uvicorn with a
certificate and key file (``net_servers.py LOOP https``) loaded by ``wrk`` over ``https://``, as
bench/net.py's ``http`` row, the server and wrk pinned to CPUs of their own. Certificates are
made at run time with `trustme` (a CA and a `localhost` certificate; ECDSA P-256, so the
handshake row measures the loop more than RSA). The parent interleaves the loops (the order
rotates from round to round) and reports per row the median over the rounds, its spread
(min-max) and the ratio to uvloop (>1 is faster).

    python bench/tls.py                          # 5 rounds, all rows, all loops
    python bench/tls.py --rows streams_1k --loops uvloop,oxloop,oxloop-stdlib --rounds 3
    python bench/tls.py --quick                  # smoke run: short windows, 1 round

Loops: asyncio, uvloop, oxloop (native TLS) and oxloop-stdlib (oxloop's loop with asyncio's
`sslproto`, the path before the Rust layer). See bench/README.md ("TLS").
"""

import argparse
import asyncio
import json
import os
import ssl
import sys
import tempfile
import time
from dataclasses import dataclass

import common  # bench/common.py: loops, worker processes, options, statistics, the report
import net  # bench/net.py: the server process, wrk and CPU pinning of its http row

ALL_LOOPS = (*common.ALL_LOOPS, "oxloop-stdlib")
CONNS = 32  # concurrent echo connections (and wrk's connections in the https row)
HANDSHAKE_CONNS = 8  # concurrent connect-handshake-close clients
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Row:
    size: int  # echo message size; 0 for the handshake and https rows
    server: str  # "streams", "protocol", or "https" (uvicorn in its own process, under wrk)
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
    "https": Row(
        0,
        "https",
        1.2,
        f"HTTPS requests/s: uvicorn + httptools with a certificate and key file, trivial ASGI "
        f"app, wrk -t1 -c{CONNS} over https:// (keep-alive), server and wrk pinned apart",
    ),
}


# ---------------------------------------------------------------------------------------------
# Worker side: one process, one loop, one row.
# ---------------------------------------------------------------------------------------------


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
    loop = common.make_loop(loop_name)
    asyncio.set_event_loop(loop)
    try:
        warmup, duration = (0.2, 0.5) if quick else (1.0, 3.0)
        return loop.run_until_complete(measure(ROWS[row_name], warmup, duration))
    finally:
        asyncio.set_event_loop(None)
        loop.close()


# ---------------------------------------------------------------------------------------------
# The https row: a server process under wrk, measured from the parent.
# ---------------------------------------------------------------------------------------------


def write_https_files(directory):
    """A `localhost` certificate (its chain) and its key as PEM files: (certfile, keyfile)."""
    import trustme

    cert = trustme.CA().issue_cert("localhost", HOST)
    certfile, keyfile = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    for blob in cert.cert_chain_pems:
        blob.write_to_path(certfile, append=True)
    cert.private_key_pem.write_to_path(keyfile)
    return certfile, keyfile


def process_cpu_s(pid):
    """User + system CPU seconds a process has used so far (from /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_https(loop, files, quick, cpus):
    """One https measurement: requests/s under wrk and the server's CPU time per request."""
    sizes = net.QUICK if quick else net.FULL
    server_cpu, client_cpu = cpus
    argv = [sys.executable, net.SERVERS, loop, "https", "0", *files]
    with net.Server(argv, server_cpu) as server:
        url = f"https://{HOST}:{server.wait_listening()}/"
        if sizes.http_warmup:
            net.run_wrk(server, url, sizes.http_warmup, client_cpu)
        cpu0 = process_cpu_s(server.pid)
        got = net.run_wrk(server, url, sizes.http_duration, client_cpu)
        cpu = process_cpu_s(server.pid) - cpu0
    return {
        "ops_per_s": got["value"],
        "cpu_us_per_op": cpu / got["requests"] * 1e6,
        "ops": got["requests"],
        "p50_us": got["p50_us"],
        "p99_us": got["p99_us"],
    }


# ---------------------------------------------------------------------------------------------
# Parent side.
# ---------------------------------------------------------------------------------------------


def parse_args(argv):
    p = common.parser(
        "TLS benchmarks (see bench/README.md, 'TLS').",
        loops=ALL_LOOPS,
        rows=ROWS,
        quick_help="short windows for a smoke run",
    )
    p.add_argument("--worker", nargs=2, metavar=("LOOP", "ROW"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    return common.check_args(p, args, loops=ALL_LOOPS, rows=ROWS)


def measure_one(loop, row, args, files, cpus):
    """One measurement of `row` on `loop`: (result, None) or (None, why it failed)."""
    if ROWS[row].server != "https":
        return common.spawn(__file__, ["--worker", loop, row] + (["--quick"] if args.quick else []))
    try:
        return measure_https(loop, files, args.quick, cpus), None
    except net.Failed as exc:
        return None, str(exc)


def run_parent(args):
    loops, info, notes, failures = common.probe_loops(args.loops)
    errors = [f"{name} is not usable, skipped: {err}" for name, err in failures]
    rows = list(args.rows)
    cpus = (None, None)
    if "https" in rows:
        missing = net.unavailable_rows(["http"]).get("http")
        cpus = net.server_and_client_cpus()
        if missing:
            rows.remove("https")
            notes.append(f"https skipped: {missing}")
            print(f"# {notes[-1]}", file=sys.stderr)
        elif cpus == (None, None):
            notes.append(f"https not pinned: CPUs {net.SERVER_CPU} and {net.CLIENT_CPU} missing")
    samples = {row: {loop: [] for loop in loops} for row in rows}
    cpu = {row: {loop: [] for loop in loops} for row in rows}
    with tempfile.TemporaryDirectory() as directory:
        files = write_https_files(directory) if "https" in rows else ()
        for rnd, row, loop in common.interleaved(loops, rows, args.rounds):
            got, err = measure_one(loop, row, args, files, cpus)
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
    for row in rows:
        stats = {loop: common.summarize(s) if s else None for loop, s in samples[row].items()}
        uv = stats.get("uvloop")
        ratios = {
            loop: s["median"] / uv["median"]
            for loop, s in stats.items()
            if uv and s and loop != "uvloop"
        }
        cpu_stats = {loop: common.summarize(s) if s else None for loop, s in cpu[row].items()}
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
        "date": common.now(),
        "machine": common.machine(info, pinned=cpus != (None, None)),
        "rounds": args.rounds,
        "quick": args.quick,
        "loops": loops,
        "notes": notes,
        "errors": errors,
        "rows": results,
    }
    print(render(report))
    if args.json:
        common.write_json(args.json, report)
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
    ]
    out += [f"- note: {n}" for n in report["notes"]]
    out.append("")
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
    if args.worker:
        print(json.dumps(work(*args.worker, args.quick)))
        return 0
    return run_parent(args)


if __name__ == "__main__":
    sys.exit(main())
