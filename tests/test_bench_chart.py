"""bench/chart.py draws a PNG from the JSON of a bench/core.py run (a quick run of two rows here,
on asyncio, uvloop and oxloop). Skipped where matplotlib (the bench extra) is not installed."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.mark.timeout(300)
def test_chart_from_a_quick_core_run(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("uvloop")
    results = tmp_path / "core.json"
    subprocess.run(
        [sys.executable, BENCH / "core.py", "--quick", "--rows", "call_soon,timers"]
        + ["--loops", "asyncio,uvloop,oxloop", "--json", results],
        check=True,
        capture_output=True,
        timeout=240,
    )
    png = tmp_path / "chart.png"
    proc = subprocess.run(
        [sys.executable, BENCH / "chart.py", results, "-o", png],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "(2 rows)" in proc.stdout
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_rows_of_several_reports_are_labelled_by_report():
    # net.py and tls.py both have a streams_1k row: the chart must tell them apart.
    sys.path.insert(0, str(BENCH))
    try:
        import chart
    finally:
        sys.path.remove(str(BENCH))
    row = {"ratio_to_uvloop": {"oxloop": 1.5, "asyncio": 0.5}}
    reports = {"net": {"rows": {"streams_1k": row}}, "tls": {"rows": {"streams_1k": row}}}
    labels = [label for label, _ in chart.ratios(reports)]
    assert labels == ["net: streams_1k", "tls: streams_1k"]
    assert [label for label, _ in chart.ratios({"core": reports["net"]})] == ["streams_1k"]
