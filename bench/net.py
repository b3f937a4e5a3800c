"""Networking benchmarks: oxloop against stock asyncio and uvloop, and a Rust ceiling server.

Every measurement starts one server process (``python bench/net_servers.py LOOP KIND 0``, or the
Rust ``echo-ceiling`` server), pinned to CPU 0, and loads it from outside with the Rust load
generator (``bench/loadgen``) or ``wrk``, pinned to CPU 1. The parent interleaves the loops:
each round measures every row on every loop (the loop order rotates from round to round), and
the table reports per row the median over the rounds, its spread (min-max), and the ratio to
uvloop (>1 means better than uvloop).

    cargo build --release --manifest-path bench/loadgen/Cargo.toml    # once: the load generator
    python bench/net.py                        # 5 rounds, all rows, all loops
    python bench/net.py --rows sock_1k,protocol_1k --loops uvloop,oxloop --json bench/results/n.json
    python bench/net.py --quick                # smoke run: short windows, small sizes, 1 round

See bench/README.md ("Networking") for what each row measures and the targets.
"""

import dataclasses
import functools
import importlib.metadata
import importlib.util
import json
import os
import re
import resource
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile

import common  # bench/common.py: loops, options, interleaving, statistics, the report

BENCH = os.path.dirname(os.path.abspath(__file__))
SERVERS = os.path.join(BENCH, "net_servers.py")
LOADGEN_BIN = os.path.join(BENCH, "loadgen", "target", "release")
LOADGEN = os.path.join(LOADGEN_BIN, "loadgen")
CEILING = os.path.join(LOADGEN_BIN, "echo-ceiling")
BUILD_LOADGEN = "cargo build --release --manifest-path bench/loadgen/Cargo.toml"

ALL_LOOPS = (*common.ALL_LOOPS, "ceiling")
HOST = "127.0.0.1"
SERVER_CPU, CLIENT_CPU = 0, 1
CONNS = 32  # concurrent connections of the echo and HTTP load
START_TIMEOUT = 30  # seconds for a server to say it is listening
STALL_TIMEOUT = 10  # seconds without progress before the load generator gives up
BULK_TIMEOUT = 300  # seconds for a whole bulk measurement


@dataclasses.dataclass(frozen=True)
class Sizes:
    warmup: float  # echo: seconds of load before the measured window
    duration: float  # echo: seconds in the measured window
    bulk_bytes: int  # bulk: bytes in the measured transfer (after a 1/16 warm-up transfer)
    http_warmup: int  # http: seconds of wrk before the measured run (wrk takes whole seconds)
    http_duration: int  # http: seconds of the measured wrk run
    idle_conns: int  # rss: idle connections opened after the baseline


FULL = Sizes(
    warmup=1.0, duration=3.0, bulk_bytes=2 << 30, http_warmup=1, http_duration=3, idle_conns=4000
)
QUICK = Sizes(
    warmup=0.2, duration=0.5, bulk_bytes=64 << 20, http_warmup=0, http_duration=1, idle_conns=200
)


@dataclasses.dataclass(frozen=True)
class Row:
    name: str
    kind: str  # the net_servers.py server KIND
    workload: str  # echo, bulk, http or rss: how the server is loaded and what is measured
    size: int  # echo: message size in bytes
    target: float | None  # oxloop's ratio to uvloop; None: the ceiling server's ratio
    unit: str
    what: str  # one line for the table legend

    @property
    def lower_is_better(self):
        return self.workload == "rss"

    @property
    def ceiling_key(self):
        """The ceiling server's workload for this row (shared by rows that load it the same)."""
        if self.workload == "echo":
            return f"echo {self.size}"
        return "bulk" if self.workload == "bulk" else None


def _echo_rows(size, label):
    targets = {"sock": 2.0, "streams": 1.6, "protocol": 1.15} if size == 1024 else {}
    return [
        Row(
            f"sock_{label}",
            "sock",
            "echo",
            size,
            targets.get("sock"),
            "req/s",
            f"echo of {label.upper()}iB messages: loop.sock_recv + loop.sock_sendall",
        ),
        Row(
            f"streams_{label}",
            "streams",
            "echo",
            size,
            targets.get("streams"),
            "req/s",
            f"echo of {label.upper()}iB messages: start_server, reader.read + write + drain",
        ),
        Row(
            f"protocol_{label}",
            "protocol",
            "echo",
            size,
            targets.get("protocol"),
            "req/s",
            f"echo of {label.upper()}iB messages: Protocol.data_received -> transport.write",
        ),
    ]


ROWS = {
    row.name: row
    for row in (
        *_echo_rows(1024, "1k"),
        *_echo_rows(65536, "64k"),
        Row(
            "bulk",
            "bulk",
            "bulk",
            0,
            1.8,
            "MiB/s",
            "2 GiB (64 MiB with --quick) sent through streams: write + drain of 256 KiB chunks",
        ),
        Row(
            "http",
            "http",
            "http",
            0,
            1.2,
            "req/s",
            f"uvicorn + httptools, trivial ASGI app, wrk -t1 -c{CONNS}",
        ),
        Row(
            "rss",
            "protocol",
            "rss",
            0,
            1.0,
            "KiB/conn",
            "server RSS growth per idle connection (protocol echo server; lower is better)",
        ),
    )
}


class Failed(Exception):
    """A measurement that could not be made; the message says why."""


# ---------------------------------------------------------------------------------------------
# Processes: the server under test and the tools that load it.
# ---------------------------------------------------------------------------------------------


def pinned(cpu):
    """A preexec_fn pinning the child to one CPU (None: no pinning on this machine).

    The harness itself runs no threads, so running Python between fork and exec is safe here.
    """
    return None if cpu is None else functools.partial(os.sched_setaffinity, 0, {cpu})


def last_line(text):
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


class Server:
    """One server process for one measurement, pinned to the server CPU; killed on exit."""

    def __init__(self, argv, cpu):
        self.stderr = tempfile.TemporaryFile(mode="w+")  # a file: a chatty server never blocks
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=self.stderr, text=True, preexec_fn=pinned(cpu)
        )
        self.pid = self.proc.pid

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        self.stderr.close()

    def wait_listening(self):
        """Wait for the server's `listening PORT` line; return the port."""
        ready, _, _ = select.select([self.proc.stdout], [], [], START_TIMEOUT)
        line = self.proc.stdout.readline() if ready else ""
        match = re.fullmatch(r"listening (\d+)\n", line)
        if match:
            return int(match.group(1))
        if not ready:
            raise Failed(f"server: not listening after {START_TIMEOUT} s")
        if line:
            raise Failed(f"server: unexpected output {line!r}")
        self.died()  # its stdout is closed: it is exiting, let it finish before asking why
        raise Failed(f"server: {self.reason()}")

    def reason(self):
        """Why the server stopped: the last line it wrote to stderr, or its exit status."""
        self.stderr.seek(0)
        return last_line(self.stderr.read()) or f"exit status {self.proc.returncode}"

    def died(self):
        """Whether the server is gone (given a moment to finish dying after a failed load)."""
        try:
            self.proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            return False
        return True


def run_tool(server, argv, timeout, cpu=None):
    """Run a load tool against `server`; return its stdout, or raise Failed with the reason.

    When the load fails because the server died, the server's reason is the one reported.
    """
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, preexec_fn=pinned(cpu)
        )
    except subprocess.TimeoutExpired as exc:
        raise Failed(f"{os.path.basename(argv[0])} timed out after {timeout} s") from exc
    if proc.returncode != 0:
        if server.died():
            raise Failed(f"server: {server.reason()}")
        raise Failed(last_line(proc.stderr) or f"{argv[0]} exit status {proc.returncode}")
    return proc.stdout


# ---------------------------------------------------------------------------------------------
# Workloads. Each loads a listening server and returns {"value": ..., other details}.
# ---------------------------------------------------------------------------------------------


def loadgen_argv(mode, port, client_cpu, **options):
    """The loadgen command line; each keyword becomes a `--name value` option."""
    argv = [LOADGEN, mode, "--host", HOST, "--port", str(port), "--timeout", str(STALL_TIMEOUT)]
    if client_cpu is not None:
        options["cpu"] = client_cpu
    for name, value in options.items():
        argv += [f"--{name}", str(value)]
    return argv


def measure_echo(server, port, row, sizes, client_cpu):
    argv = loadgen_argv(
        "echo",
        port,
        client_cpu,
        conns=CONNS,
        size=row.size,
        warmup=sizes.warmup,
        duration=sizes.duration,
    )
    timeout = sizes.warmup + sizes.duration + STALL_TIMEOUT + 30
    got = json.loads(run_tool(server, argv, timeout))
    lat = got["latency_us"]
    return {
        "value": got["rps"],
        "requests": got["requests"],
        "p50_us": lat["p50"],
        "p99_us": lat["p99"],
        "max_us": lat["max"],
    }


def measure_bulk(server, port, row, sizes, client_cpu):
    argv = loadgen_argv("bulk", port, client_cpu, bytes=sizes.bulk_bytes)
    got = json.loads(run_tool(server, argv, BULK_TIMEOUT))
    return {"value": got["mib_per_s"], "bytes": got["bytes"], "seconds": got["seconds"]}


WRK_UNITS_US = {"us": 1.0, "ms": 1e3, "s": 1e6}


def run_wrk(server, url, seconds, client_cpu):
    """One `wrk -t1 -cCONNS` run of `seconds` against `url`: requests/s and latencies."""
    argv = ["wrk", "-t1", f"-c{CONNS}", "--latency", f"-d{seconds}s", url]
    out = run_tool(server, argv, seconds + 30, client_cpu)
    # wrk exits 0 even when every request failed: its report says so.
    for problem in ("Non-2xx or 3xx responses", "Socket errors"):
        if problem in out:
            if server.died():
                raise Failed(f"server: {server.reason()}")
            raise Failed("wrk: " + next(ln.strip() for ln in out.splitlines() if problem in ln))
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    requests = re.search(r"(\d+) requests in", out)
    if not rps or not requests or float(rps.group(1)) == 0:
        raise Failed(f"wrk: no requests completed: {last_line(out)!r}")
    lat = {
        p: float(v) * WRK_UNITS_US[u]
        for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)$", out, re.M)
    }
    return {
        "value": float(rps.group(1)),
        "requests": int(requests.group(1)),
        "p50_us": lat.get("50"),
        "p99_us": lat.get("99"),
    }


def measure_http(server, port, row, sizes, client_cpu):
    url = f"http://{HOST}:{port}/"
    if sizes.http_warmup:
        run_wrk(server, url, sizes.http_warmup, client_cpu)
    return run_wrk(server, url, sizes.http_duration, client_cpu)


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])  # "VmRSS:    12345 kB"
    raise Failed(f"no VmRSS in /proc/{pid}/status")


def open_echoed(port, n, socks):
    """Open n connections, each echoing one byte: the server has then set each one up fully."""
    for _ in range(n):
        try:
            s = socket.create_connection((HOST, port), timeout=STALL_TIMEOUT)
            socks.append(s)
            s.sendall(b"x")
            if s.recv(1) != b"x":
                raise Failed("rss: the server closed a connection instead of echoing")
        except OSError as exc:
            raise Failed(f"rss: connection {len(socks)}: {exc}") from exc


def measure_rss(server, port, row, sizes, client_cpu):
    """Server RSS growth per idle connection, after a baseline that has served some already.

    The baseline (a twentieth of the connections, at least 10) makes the server allocate what
    it allocates once (code paths, free lists, the first transports), so the growth after it is
    what each further connection costs. The client sockets live in this process.
    """
    socks = []
    try:
        open_echoed(port, max(sizes.idle_conns // 20, 10), socks)
        before = vm_rss_kib(server.pid)
        open_echoed(port, sizes.idle_conns, socks)
        after = vm_rss_kib(server.pid)
    finally:
        for s in socks:
            s.close()
    return {
        "value": (after - before) / sizes.idle_conns,
        "conns": sizes.idle_conns,
        "rss_before_kib": before,
        "rss_after_kib": after,
    }


WORKLOADS = {"echo": measure_echo, "bulk": measure_bulk, "http": measure_http, "rss": measure_rss}


def measure(loop, row, sizes, cpus):
    """One measurement: a fresh server for `loop`, loaded as `row` says. Raises Failed."""
    server_cpu, client_cpu = cpus
    if loop == "ceiling":
        argv = [CEILING, "--host", HOST, "--port", "0"] + (["--bulk"] if row.kind == "bulk" else [])
    else:
        argv = [sys.executable, SERVERS, loop, row.kind, "0"]
    with Server(argv, server_cpu) as server:
        port = server.wait_listening()
        return WORKLOADS[row.workload](server, port, row, sizes, client_cpu)


# ---------------------------------------------------------------------------------------------
# Parent side: what can run, the interleaved rounds, the report.
# ---------------------------------------------------------------------------------------------


def unavailable_rows(rows):
    """Rows whose tools are missing here: {row: why}. They are skipped, not failed."""
    missing = {}
    if "http" in rows:
        if shutil.which("wrk") is None:
            missing["http"] = "wrk not installed (apt-get install -y wrk)"
        elif not all(importlib.util.find_spec(m) for m in ("uvicorn", "httptools")):
            missing["http"] = "uvicorn/httptools not installed (pip install -e '.[bench]')"
    return missing


def server_and_client_cpus():
    """The CPUs to pin the server and the load to, or (None, None) if this machine lacks them."""
    if {SERVER_CPU, CLIENT_CPU} <= os.sched_getaffinity(0):
        return SERVER_CPU, CLIENT_CPU
    return None, None


def raise_fd_limit(needed):
    """Let this process and the servers it starts hold `needed` descriptors, if allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        limit = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


def tool_versions():
    versions = {}
    for dist in ("uvicorn", "httptools"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    wrk = shutil.which("wrk")
    if wrk:
        # `wrk -v` prints its version line, then usage, and exits 1.
        out = subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout
        versions["wrk"] = out.split("[")[0].removeprefix("wrk").strip() or "unknown"
    else:
        versions["wrk"] = None
    return versions


def parse_args(argv):
    p = common.parser(
        "Networking benchmarks of oxloop, asyncio and uvloop (see bench/README.md).",
        loops=ALL_LOOPS,
        rows=ROWS,
        quick_help="short windows, small sizes: a smoke run",
    )
    p.add_argument("--duration", type=float, help="seconds per echo/http measurement window")
    args = p.parse_args(argv)
    # oxloop-diag (oxloop with diagnostics on) only when asked for: it measures their cost.
    common.check_args(p, args, loops=ALL_LOOPS + common.EXTRA_LOOPS, rows=ROWS)
    args.sizes = QUICK if args.quick else FULL
    if args.duration is not None:
        if args.duration <= 0:
            p.error("--duration must be positive")
        args.sizes = dataclasses.replace(
            args.sizes, duration=args.duration, http_duration=max(1, round(args.duration))
        )
    return args


def run_rounds(loops, rows, args, cpus, errors):
    """Every measurement, interleaved: {(row or ceiling workload, loop): [measurement dicts]}.

    The ceiling server's measurements are keyed by its workload, not the row: rows that load
    it the same way (the three 1 KiB echo rows, say) share one measurement per round.
    """
    samples = {}
    ceiling_done = set()  # (round, ceiling workload) measured so far
    for rnd, row, loop in common.interleaved(loops, rows, args.rounds):
        key = (row.name, loop)
        if loop == "ceiling":
            if row.ceiling_key is None or (rnd, row.ceiling_key) in ceiling_done:
                continue
            ceiling_done.add((rnd, row.ceiling_key))
            key = (row.ceiling_key, loop)
        try:
            got = measure(loop, row, args.sizes, cpus)
        except Failed as exc:
            errors.append((row.name, loop, rnd + 1, str(exc)))
            print(f"# FAILED {row.name} on {loop}, round {rnd + 1}: {exc}", file=sys.stderr)
            continue
        samples.setdefault(key, []).append(got)
        print(
            f"# round {rnd + 1}/{args.rounds} {row.name:12} {loop:8} "
            f"{got['value']:12.1f} {row.unit}",
            file=sys.stderr,
        )
    return samples


def row_results(row, loops, samples):
    """One row of the report: per-loop statistics, ratios to uvloop, target, met."""
    stats = {}
    for loop in loops:
        if loop == "ceiling" and row.ceiling_key is None:
            continue  # no ceiling for this row: its cell says n/a
        runs = samples.get((row.ceiling_key if loop == "ceiling" else row.name, loop))
        stats[loop] = summarize(runs) if runs else None
    entry = {"unit": row.unit, "loops": stats, "ratio_to_uvloop": {}}
    uv = stats.get("uvloop")
    for loop in ("oxloop", "oxloop-diag", "asyncio", "ceiling"):
        if uv and stats.get(loop):
            a, b = uv["median"], stats[loop]["median"]
            entry["ratio_to_uvloop"][loop] = a / b if row.lower_is_better else b / a
    target = row.target if row.target is not None else entry["ratio_to_uvloop"].get("ceiling")
    ox = entry["ratio_to_uvloop"].get("oxloop")
    entry["target"] = target
    entry["target_is_ceiling"] = row.target is None
    entry["target_met"] = None if ox is None or target is None else ox >= target
    return entry


def run_parent(args):
    missing_bins = [b for b in (LOADGEN, CEILING) if not os.access(b, os.X_OK)]
    if missing_bins:
        print(
            f"net.py: {', '.join(missing_bins)} not built; build with: {BUILD_LOADGEN}",
            file=sys.stderr,
        )
        return 2

    loops, info, notes, failures = common.probe_loops(args.loops, skip=("ceiling",))
    errors = [(None, name, None, f"not usable, skipped: {err}") for name, err in failures]
    skipped = unavailable_rows(args.rows)
    for row, why in skipped.items():
        notes.append(f"{row} skipped: {why}")
        print(f"# {notes[-1]}", file=sys.stderr)
    rows = [ROWS[r] for r in args.rows if r not in skipped]
    if any(r.workload == "rss" for r in rows):
        raise_fd_limit(args.sizes.idle_conns * 2 + 1024)
    cpus = server_and_client_cpus()
    if cpus == (None, None):
        notes.append(f"not pinned: CPUs {SERVER_CPU} and {CLIENT_CPU} are not both available")

    samples = run_rounds(loops, rows, args, cpus, errors) if loops else {}
    results = {row.name: row_results(row, loops, samples) for row in rows}
    report = {
        "date": common.now(),
        "machine": common.machine(info, tools=tool_versions(), pinned=cpus != (None, None)),
        "rounds": args.rounds,
        "quick": args.quick,
        "sizes": vars(args.sizes),
        "conns": CONNS,
        "loops": loops,
        "notes": notes,
        "errors": [{"row": r, "loop": lp, "round": n, "reason": why} for r, lp, n, why in errors],
        "rows": results,
    }
    print(render(report, rows))
    if args.json:
        common.write_json(args.json, report)
    return 1 if errors or not loops else 0


def summarize(runs):
    """common.summarize of the values, plus the median latencies and every run's details."""
    stats = common.summarize([r["value"] for r in runs])
    for field in ("p50_us", "p99_us"):
        values = [r[field] for r in runs if r.get(field) is not None]
        if values:
            stats[field] = statistics.median(values)
    stats["runs"] = runs
    return stats


def render(report, rows):
    m = report["machine"]
    loops = report["loops"]
    tools = m["tools"]
    s = report["sizes"]
    ratios = "uvloop" in loops
    out = [
        "## oxloop networking benchmarks",
        "",
        f"- date: {report['date']}",
        f"- machine: {m['nproc']} CPUs, {m['cpu']}, {m['platform']}",
        f"- Python {m['python']} ({m['implementation']}), uvloop {m['uvloop'] or '-'}, "
        f"uvicorn {tools['uvicorn'] or '-'}, httptools {tools['httptools'] or '-'}, "
        f"wrk {tools['wrk'] or '-'}",
    ]
    if m["oxloop"]:
        ox = m["oxloop"]
        out.append(f"- oxloop {ox['version'] or '(no version)'}: {ox['loop_class']} ({ox['file']})")
    pinning = (
        f"server pinned to CPU {SERVER_CPU}, load generator to CPU {CLIENT_CPU}"
        if m["pinned"]
        else "not pinned"
    )
    out.append(
        f"- {report['rounds']} round(s), one server process per measurement, loops interleaved; "
        f"{pinning}; {report['conns']} connections, echo: {s['warmup']:g} s warm-up "
        f"+ {s['duration']:g} s measured" + (" (--quick sizes)" if report["quick"] else "")
    )
    out += [f"- note: {n}" for n in report["notes"]]
    out.append("")

    ratio_loops = [
        lp for lp in ("oxloop", "oxloop-diag", "asyncio", "ceiling") if ratios and lp in loops
    ]
    head = ["row", "unit"] + [f"{lp} [min-max]" for lp in loops]
    head += [f"{lp} vs uvloop" for lp in ratio_loops]
    if ratios:  # the targets are shown even without oxloop: met then says n/a
        head += ["target", "met"]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "|".join("---" if i < 2 else "---:" for i in range(len(head))) + "|")
    for row in rows:
        entry = report["rows"][row.name]
        cells = [row.name, row.unit]
        for lp in loops:
            cells.append(
                common.fmt_cell(entry["loops"][lp], report["rounds"])
                if lp in entry["loops"]
                else "n/a"
            )
        for lp in ratio_loops:
            r = entry["ratio_to_uvloop"].get(lp)
            cells.append("n/a" if r is None else f"{r:.2f}x")
        if ratios:
            target, met = entry["target"], entry["target_met"]
            if target is None:
                cells.append("ceiling's (n/a)")
            else:
                ceiling = " (ceiling's)" if entry["target_is_ceiling"] else ""
                cells.append(f">= {target:.2f}x{ceiling}")
            cells.append("n/a" if met is None else ("yes" if met else "NO"))
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    if ratios:
        out.append(
            "Ratios are loop / uvloop for throughputs, uvloop / loop for KiB per connection: "
            "above 1.00x is better than uvloop."
        )

    if "oxloop" in loops and "oxloop-diag" in loops:
        out += ["", "Diagnostics cost (oxloop with diagnostics on vs off, medians):", ""]
        for row in rows:
            plain = report["rows"][row.name]["loops"].get("oxloop")
            diag = report["rows"][row.name]["loops"].get("oxloop-diag")
            if plain and diag:
                a, b = plain["median"], diag["median"]
                slower = (b / a if row.lower_is_better else a / b) - 1
                out.append(f"- {row.name}: {slower * 100:+.1f}% slower with diagnostics on")

    lat_rows = [r for r in rows if r.workload in ("echo", "http")]
    if lat_rows:
        out += ["", "Latency in µs, p50 / p99 (medians over the rounds):", ""]
        out.append("| row | " + " | ".join(loops) + " |")
        out.append("|---|" + "---:|" * len(loops))
        for row in lat_rows:
            cells = [row.name]
            for lp in loops:
                st = report["rows"][row.name]["loops"].get(lp)
                if st and "p50_us" in st and "p99_us" in st:
                    cells.append(f"{st['p50_us']:.0f} / {st['p99_us']:.0f}")
                else:
                    cells.append("n/a")
            out.append("| " + " | ".join(cells) + " |")

    out += ["", "Rows:"] + [f"- {r.name}: {r.what}" for r in rows]
    # The same failure usually repeats every round: list it once, with its rounds.
    failures = {}
    for e in report["errors"]:
        failures.setdefault((e["row"], e["loop"], e["reason"]), []).append(e["round"])
    for (row, loop, reason), rounds in failures.items():
        where = f"{row} on {loop}" if row else loop
        if rounds[0] is not None:
            where += f" (round {', '.join(map(str, rounds))})"
        out.append(f"- FAILED: {where}: {reason}")
    return "\n".join(out)


def main(argv=None):
    return run_parent(parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
