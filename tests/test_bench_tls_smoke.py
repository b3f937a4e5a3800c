"""Smoke test of the TLS benchmark, bench/tls.py: one quick round of every row.

Not a timed test: it asserts nothing about speed, only that every row ran on stock asyncio and
on both of oxloop's TLS paths (native, and asyncio's sslproto behind OXLOOP_TLS=stdlib) and
measured something. The `https` row needs wrk, uvicorn and httptools: where one is missing
(CI), the run must say it skipped the row instead.
"""

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TLS_BENCH = Path(__file__).resolve().parent.parent / "bench" / "tls.py"
LOOPS = ["asyncio", "oxloop", "oxloop-stdlib"]
ROWS = ["streams_1k", "protocol_1k", "streams_64k", "handshakes"]
HTTPS_TOOLS = shutil.which("wrk") is not None and all(
    importlib.util.find_spec(module) for module in ("uvicorn", "httptools")
)


@pytest.mark.timeout(200)
def test_quick_run_measures_every_row(tmp_path):
    out_json = tmp_path / "tls.json"
    proc = subprocess.run(
        [sys.executable, str(TLS_BENCH), "--quick", "--loops", ",".join(LOOPS)]
        + ["--json", str(out_json)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "FAILED" not in proc.stdout
    report = json.loads(out_json.read_text())
    assert report["loops"] == LOOPS
    if HTTPS_TOOLS:
        assert list(report["rows"]) == [*ROWS, "https"]
    else:
        assert list(report["rows"]) == ROWS
        assert any(note.startswith("https skipped") for note in report["notes"]), report["notes"]
    for row, entry in report["rows"].items():
        for loop in LOOPS:
            assert entry["loops"][loop]["median"] > 0, (row, loop)
            assert entry["cpu_us_per_op"][loop]["median"] > 0, (row, loop)
