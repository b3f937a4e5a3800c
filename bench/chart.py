"""Draw the benchmark results as one PNG: every row's speed relative to uvloop, for stock
asyncio, uvloop and oxloop side by side (uvloop is 1.0; longer bars are better).

    python bench/core.py --json bench/results/core.json
    python bench/net.py --json bench/results/net.json
    python bench/tls.py --json bench/results/tls.json
    python bench/chart.py bench/results/core.json bench/results/net.json bench/results/tls.json

It reads the ``ratio_to_uvloop`` the scripts put in their JSON, so the chart and the tables
come from the same run. Needs matplotlib (the ``bench`` extra).
"""

import argparse
import json
import os
import sys

LOOPS = ("asyncio", "uvloop", "oxloop")
COLOURS = {"asyncio": "#9e9e9e", "uvloop": "#4c72b0", "oxloop": "#dd8452"}


def ratios(reports: dict[str, dict]) -> list[tuple[str, dict[str, float]]]:
    """(label, {loop: ratio to uvloop}) for every row that has uvloop and oxloop results.

    `reports` maps a report's name (its file's stem: core, net, tls) to its JSON. With more than
    one report each label starts with that name: net.py and tls.py both have a `streams_1k`.
    """
    found = []
    for name, report in reports.items():
        prefix = f"{name}: " if len(reports) > 1 else ""
        for row, entry in report["rows"].items():
            by_loop = dict(entry.get("ratio_to_uvloop", {}))
            if "oxloop" not in by_loop:
                continue
            by_loop["uvloop"] = 1.0
            found.append((prefix + row, {loop: by_loop[loop] for loop in LOOPS if loop in by_loop}))
    return found


def draw(rows: list[tuple[str, dict[str, float]]], title: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    height = 0.26
    fig, ax = plt.subplots(figsize=(9, 0.75 * len(rows) + 1.4))
    for i, loop in enumerate(LOOPS):
        ys = [n + (1 - i) * height for n in range(len(rows))]
        values = [by_loop.get(loop, 0.0) for _, by_loop in rows]
        bars = ax.barh(ys, values, height, label=loop, color=COLOURS[loop])
        ax.bar_label(bars, labels=[f"{v:.2f}x" if v else "" for v in values], fontsize=7, padding=2)
    ax.set_yticks(range(len(rows)), [row for row, _ in rows])
    ax.invert_yaxis()
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xlabel("speed relative to uvloop (higher is better)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", help="JSON files of bench/core.py, net.py, tls.py")
    parser.add_argument("-o", "--output", default="bench/chart.png", help="the PNG to write")
    args = parser.parse_args(argv)
    reports = {}
    for path in args.reports:
        with open(path) as f:
            reports[os.path.splitext(os.path.basename(path))[0]] = json.load(f)
    rows = ratios(reports)
    if not rows:
        print("chart.py: no row has both uvloop and oxloop results", file=sys.stderr)
        return 1
    first = next(iter(reports.values()))
    rounds = ", ".join(f"{name}: {report['rounds']} round(s)" for name, report in reports.items())
    title = (
        f"{first['date'][:10]}, {first['machine']['cpu']}, CPython {first['machine']['python']}, "
        f"uvloop {first['machine']['uvloop']}; {rounds}"
    )
    draw(rows, title, args.output)
    print(f"chart.py: wrote {args.output} ({len(rows)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
