"""Smoke test of the networking benchmark harness, bench/net.py: it measures every fast row.

Not a timed test: it asserts nothing about speed. It builds bench/loadgen (the Rust load
generator and ceiling server) with cargo once per session, then runs the harness with short
windows and small sizes (`--quick`) on stock asyncio and the ceiling server, for every row that
needs nothing but Python and that crate (the `http` row also needs wrk and uvicorn, which CI does
not install), and checks that each server was loaded and measured.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
NET = BENCH / "net.py"
LOADGEN_MANIFEST = BENCH / "loadgen" / "Cargo.toml"
FAST_ROWS = [
    "sock_1k",
    "streams_1k",
    "protocol_1k",
    "sock_64k",
    "streams_64k",
    "protocol_64k",
    "bulk",
    "rss",
]


@pytest.fixture(scope="session")
def loadgen_built():
    """Build the load generator as bench/README.md says (a few seconds once its deps are in)."""
    cargo = shutil.which("cargo")
    if cargo is None:
        pytest.skip("cargo is not installed: cannot build bench/loadgen")
    proc = subprocess.run(
        [cargo, "build", "--release", "--quiet", "--manifest-path", str(LOADGEN_MANIFEST)],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, f"building bench/loadgen failed:\n{proc.stderr}"


@pytest.mark.timeout(400)  # includes the first build of bench/loadgen
def test_quick_run_measures_every_fast_row(loadgen_built, tmp_path):
    out_json = tmp_path / "net.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(NET),
            "--quick",
            "--loops",
            "asyncio,ceiling",
            "--rows",
            ",".join(FAST_ROWS),
            "--json",
            str(out_json),
        ],
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "FAILED" not in proc.stdout
    table_rows = {
        line.split("|")[1].strip() for line in proc.stdout.splitlines() if line.startswith("| ")
    }
    assert set(FAST_ROWS) <= table_rows, proc.stdout

    report = json.loads(out_json.read_text())
    assert report["loops"] == ["asyncio", "ceiling"]
    assert list(report["rows"]) == FAST_ROWS
    for row, entry in report["rows"].items():
        if row == "rss":
            # The growth itself may round to nothing with so few connections: check the readings.
            (run,) = entry["loops"]["asyncio"]["runs"]
            assert run["conns"] > 0 and run["rss_before_kib"] > 0 and run["rss_after_kib"] > 0, run
            assert "ceiling" not in entry["loops"], "the Rust server has no rss row"
            continue
        assert entry["loops"]["asyncio"]["median"] > 0, row
        assert entry["loops"]["ceiling"]["median"] > 0, row
