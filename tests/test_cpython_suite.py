"""CPython's own asyncio tests (Lib/test/test_asyncio) on stock asyncio and on oxloop.

tests/cpython/run_suite.py runs CPython's test_asyncio modules on one loop and writes every
test's outcome to JSON. This module runs it for both loops at once (two child processes of
`sys.executable`, with the current environment), on the core-loop modules (DEFAULT_MODULES) and
the networking modules (NETWORK_MODULES: transports, servers, sockets, TLS, sendfile, pipes,
subprocesses) with --loop-classes, so that the networking tests whose classes build a
SelectorEventLoop themselves run on the loop under test too; and checks that

* oxloop passes every test that stock asyncio passes, except the ids listed in
  tests/cpython/known_failures.txt; a test that fails only on oxloop is re-run once on its own
  first, and one that passes then is reported as flaky instead of failing;
* every entry of known_failures.txt still matches a test that fails on oxloop, so the list
  stays honest. Entries marked "[hangs]" are not run on oxloop at all (--exclude) and so are
  not checked.

Tests the adapter classifies "foreign" (they run on test_utils.TestLoop or on a BaseEventLoop
they build themselves, never on the loop under test) are left out of the comparison; a
difference among them is printed, not failed.

The pass counts of both loops are printed (pytest -s) and written to
tests/cpython/last_counts.txt (git-ignored). Each loop runs two modules at once (--jobs 2): one
loop alone takes ~30 s wall, the long pole being test_tasks (~17 s, mostly the tests' own
sleeps), and the networking modules (~25 s in all, test_subprocess and test_ssl the longest)
run beside it; both loops in parallel take 30-35 s on 2 cores.
"""

import collections
import fnmatch
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import oxloop

HERE = Path(__file__).resolve().parent / "cpython"
SUITE = HERE / "run_suite.py"
KNOWN_FAILURES = HERE / "known_failures.txt"
COUNTS_FILE = HERE / "last_counts.txt"

LOOPS = ("asyncio", "oxloop")
MODULES = ("default", "network")  # run_suite.py's DEFAULT_MODULES and NETWORK_MODULES
JOBS = 2  # modules at once per loop
TEST_TIMEOUT = 30  # seconds for one CPython test; the slowest takes ~2.5 s
TOTAL_TIMEOUT = 600  # seconds for all modules on one loop; a normal run takes ~30 s
PASSED = {"pass", "xfail"}
MAX_RERUNS = 40  # more oxloop-only failures than this are not flakiness

pytestmark = pytest.mark.timeout(2 * TOTAL_TIMEOUT + 120)


LEADING_TAG = re.compile(r"\[([^\]]+)\]\s*")
VERSION_TAG = re.compile(r"(>=|<)(\d+)\.(\d+)")


def parse_known_failures(
    path: Path = KNOWN_FAILURES, version: tuple[int, int] = sys.version_info[:2]
) -> dict[str, str]:
    """{pattern: reason} from known_failures.txt, for the entries that apply to `version`.

    A reason may start with tags: "[flaky]", "[hangs]", and version tags "[>=3.13]" or "[<3.13]"
    that limit the entry to the Python versions they allow (they are removed from the reason).
    """
    entries = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        pattern, _, reason = line.replace("\t", " ").partition(" ")
        reason, applies, kept = reason.strip(), True, []
        while tag := LEADING_TAG.match(reason):
            reason = reason[tag.end() :]
            if bound := VERSION_TAG.fullmatch(tag[1]):
                at = (int(bound[2]), int(bound[3]))
                applies &= version >= at if bound[1] == ">=" else version < at
            else:
                kept.append(f"[{tag[1]}] ")  # [flaky], [hangs]
        reason = "".join(kept) + reason if reason else ""
        if not reason:
            raise ValueError(f"{path.name}:{lineno}: {pattern} has no reason")
        if pattern in entries:
            raise ValueError(f"{path.name}:{lineno}: {pattern} is listed twice")
        if applies:
            entries[pattern] = reason
    return entries


def start_suite(loop: str, out_dir: Path, *names: str, tag: str = "") -> tuple:
    json_path = out_dir / f"{loop}{tag}.json"
    log = open(out_dir / f"{loop}{tag}.log", "w")  # closed by finish_suite()
    cmd = [
        sys.executable,
        str(SUITE),
        "--loop",
        loop,
        "--loop-classes",
        "--jobs",
        str(JOBS),
        "--json",
        str(json_path),
        "--test-timeout",
        str(TEST_TIMEOUT),
        "--total-timeout",
        str(TOTAL_TIMEOUT),
    ]
    if loop == "oxloop":
        for pattern, reason in parse_known_failures().items():
            if reason.startswith("[hangs]"):
                cmd += ["--exclude", pattern]
    cmd += names or MODULES
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    return proc, log, json_path


def finish_suite(started: tuple) -> dict:
    proc, log, json_path = started
    try:
        proc.wait(timeout=TOTAL_TIMEOUT + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    output = Path(log.name).read_text()
    assert proc.returncode == 0, f"run_suite.py failed:\n{output}"
    data = json.loads(json_path.read_text())
    data["output"] = output
    return data


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    out_dir = tmp_path_factory.mktemp("cpython_suite")
    t0 = time.monotonic()
    started = {loop: start_suite(loop, out_dir) for loop in LOOPS}
    results = {loop: finish_suite(s) for loop, s in started.items()}
    results["wall_time"] = time.monotonic() - t0
    results["out_dir"] = out_dir
    write_counts(results)
    return results


def counted(record: dict | None) -> bool:
    """Whether a test exercises the loop under test (see run_suite.py's classification)."""
    return record is not None and record["kind"] != "foreign"


def passed(record: dict | None) -> bool:
    return record is not None and record["outcome"] in PASSED


def module_of(test_id: str) -> str:
    return test_id.split(".", 1)[0]


def pass_count(data: dict, module: str | None, only_counted: bool) -> str:
    recs = [
        r
        for t, r in data["tests"].items()
        if (module is None or module_of(t) == module) and (counted(r) or not only_counted)
    ]
    return f"{sum(map(passed, recs))}/{len(recs)}"


def write_counts(results: dict) -> None:
    ref, ox = results["asyncio"], results["oxloop"]
    modules = list(dict.fromkeys([*ref["modules"], *ox["modules"]]))
    width = max(map(len, modules)) + 2
    lines = [
        "CPython test_asyncio, passed/run: all tests, and (ut) the tests that exercise the loop "
        "under test",
        f"{'module':<{width}}{'asyncio':>11}{'oxloop':>11}{'asyncio(ut)':>13}{'oxloop(ut)':>12}"
        f"{'t asyncio':>11}{'t oxloop':>10}  oxloop status",
    ]
    for module in [*modules, None]:
        if module is None:
            name, t_ref, t_ox, status = "TOTAL", ref["wall_time"], ox["wall_time"], ""
        else:
            name = module
            t_ref = ref["modules"].get(module, {}).get("duration", 0.0)
            t_ox = ox["modules"].get(module, {}).get("duration", 0.0)
            status = ox["modules"].get(module, {}).get("status", "missing")
        lines.append(
            f"{name:<{width}}{pass_count(ref, module, False):>11}"
            f"{pass_count(ox, module, False):>11}{pass_count(ref, module, True):>13}"
            f"{pass_count(ox, module, True):>12}{t_ref:>10.1f}s{t_ox:>9.1f}s  {status}"
        )
    loop_classes = collections.Counter(t for r in ox["tests"].values() for t in r.get("loops", []))
    lines += [
        "(ut) = tests that made a loop through the policy, or no loop; the others run only on "
        "test_utils.TestLoop or on a BaseEventLoop the test builds itself",
        f"oxloop from {ox['oxloop_file']}; loop classes made (tests): {dict(loop_classes)}",
        f"both loops in parallel: {results['wall_time']:.1f}s wall",
    ]
    text = "\n".join(lines) + "\n"
    COUNTS_FILE.write_text(text)
    print("\n" + text)


def oxloop_loop_class() -> str:
    loop = oxloop.new_event_loop()
    try:
        return f"{type(loop).__module__}.{type(loop).__qualname__}"
    finally:
        loop.close()


def test_known_failures_file_is_well_formed():
    for minor in range(11, 16):
        parse_known_failures(version=(3, minor))


def test_suite_ran_on_the_right_loops(runs):
    ref, ox = runs["asyncio"], runs["oxloop"]
    bad = {m: i["status"] for m, i in ref["modules"].items() if i["status"] != "ok"}
    assert not bad, f"stock asyncio did not finish these modules: {bad}\n{ref['output']}"
    assert sum(map(passed, ref["tests"].values())) > 1000, ref["output"]
    # The adapter must really have put oxloop under the tests.
    expected = oxloop_loop_class()
    made = {t for r in ox["tests"].values() for t in r.get("loops", [])}
    assert made == {expected}, f"loops made through the policy on oxloop: {made}"
    assert ox["python"] == ref["python"]


def test_oxloop_passes_what_asyncio_passes(runs):
    ref, ox = runs["asyncio"], runs["oxloop"]
    known = parse_known_failures()
    regressions, foreign_diffs = {}, {}
    for test_id, rec in ref["tests"].items():
        if not passed(rec):
            continue
        ox_rec = ox["tests"].get(test_id)
        if passed(ox_rec):
            continue
        if any(fnmatch.fnmatchcase(test_id, p) for p in known):
            continue
        (regressions if counted(rec) else foreign_diffs)[test_id] = ox_rec

    if foreign_diffs:
        print("not counted (foreign loop) but failing on oxloop:", *sorted(foreign_diffs))

    flaky = []
    if regressions and len(regressions) <= MAX_RERUNS:
        rerun = [t for t in regressions if "<" not in t]  # not the module/class fixtures
        if rerun:
            again = finish_suite(start_suite("oxloop", runs["out_dir"], *rerun, tag="-rerun"))
            flaky = sorted(t for t in rerun if passed(again["tests"].get(t)))
        for test_id in flaky:
            del regressions[test_id]
        if flaky:
            print("flaky on oxloop (failed, then passed when re-run):", *flaky, sep="\n  ")

    def describe(test_id, rec):
        if rec is None:
            return f"{test_id}: did not run on oxloop"
        return f"{test_id}: {rec['outcome']}: {rec['summary']}\n{rec['detail'][-2000:]}"

    if regressions:
        pytest.fail(
            f"{len(regressions)} test(s) pass on stock asyncio but not on oxloop and are not in "
            f"{KNOWN_FAILURES.name}:\n\n"
            + "\n\n".join(describe(t, r) for t, r in regressions.items()),
            pytrace=False,
        )


def test_known_failures_still_fail(runs):
    if oxloop_loop_class().startswith("asyncio."):
        pytest.skip("oxloop is a stand-in whose loops are stock asyncio's")
    ref, ox = runs["asyncio"], runs["oxloop"]
    stale = []
    for pattern, reason in parse_known_failures().items():
        if reason.startswith(("[flaky]", "[hangs]")):
            continue
        ids = [
            t
            for t, r in ref["tests"].items()
            if fnmatch.fnmatchcase(t, pattern) and passed(r) and counted(r)
        ]
        if not ids:
            stale.append(f"{pattern}: matches no test that passes on stock asyncio")
        elif all(passed(ox["tests"].get(t)) for t in ids):
            stale.append(f"{pattern}: passes on oxloop now")
    if stale:
        pytest.fail(
            f"stale entries in {KNOWN_FAILURES.name} (delete them):\n" + "\n".join(stale),
            pytrace=False,
        )
