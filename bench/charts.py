"""One PNG bar chart per benchmark run, from its results JSON.

    .venv/bin/python -m bench.charts [RESULT.json ...] [--out docs/benchmarks]

Without arguments: the newest result of each benchmark in bench/results/. Each chart
goes to <out>/<benchmark>.png (the results file's name without its stamp), one bar per
row of the run with its main rate, each bar labelled with the run's date and machine,
and the run's ratios (with their targets from bench/targets.py) written under the bars.
Every benchmark draws its own chart at the end of a run (`after_run`) unless
BENCH_CHARTS=off (set by the regression guard: a quick run never replaces a chart).

Rows are read generically, so a row added to a benchmark gets its bar: a `rows` (or
`servers`) mapping or list of dicts, the first rate found in each (RATES); messaging's
fan-out rows per configuration and social's echo/fan-out/idle rows per server.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import RESULTS_DIR, ROOT, benchmark_of, load
from bench.targets import Report, of, reader

DOCS_DIR = ROOT / "docs" / "benchmarks"

# The main rate of a row, first found wins, and what its axis says.
RATES: dict[str, str] = {
    "median_requests_per_s": "requests/s (median round)",
    "requests_per_s": "requests/s (median round)",
    "messages_per_s": "messages/s",
    "round_trips_per_s": "round trips/s",
    "deliveries_per_s": "deliveries/s",
    "events_per_s": "events/s",
    "calls_per_s": "calls/s",
    "us_per_request": "µs CPU per request (lower is better)",
    "full_verify_us": "µs per full verify (lower is better)",
    "kib_per_socket": "KiB per idle socket (lower is better)",
    "bytes_per_1000": "bytes per 1,000 refusals (lower is better)",
}
SOCIAL_ROWS = {"echo": "echo", "fanout": "fan-out"}
SUMMARY_RATIOS = {"over_bare": "bare", "over_social": "social", "rate_ratio": ""}
CPU_UNIT = "ms CPU per request: server + its PostgreSQL + Redis (lower is better)"


@dataclass
class Bar:
    label: str
    value: float


@dataclass
class Panel:
    title: str
    unit: str
    bars: list[Bar] = field(default_factory=list)


@dataclass
class Chart:
    name: str
    run: str  # date and machine
    panels: list[Panel]
    ratios: list[str]


def rate_of(row: Any) -> tuple[str, float] | None:
    if not isinstance(row, dict):
        return None
    for key in RATES:
        value = row.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return key, float(value)
    return None


def panel_of(title: str, rows: Iterable[tuple[str, Any]]) -> Panel | None:
    """Bars of the rows that have the panel's rate (the first row's)."""
    panel: Panel | None = None
    for label, row in rows:
        found = rate_of(row)
        if found is None:
            continue
        key, value = found
        if panel is None:
            panel = Panel(title, RATES[key])
        if RATES[key] == panel.unit:
            panel.bars.append(Bar(label, value))
    return panel


def named_rows(rows: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(rows, dict):
        yield from ((str(name), row) for name, row in rows.items())
    elif isinstance(rows, list):
        for row in rows:
            if isinstance(row, dict):
                yield str(row.get("row") or row.get("name") or len(row)), row


def panels_of(report: Report) -> list[Panel]:
    found: list[Panel | None] = []
    configurations = report.get("configurations")
    throughput = report.get("throughput")
    if isinstance(configurations, dict):  # messaging: fan-out rows per server configuration
        fanout = [
            (label, row)
            for config in configurations.values()
            if isinstance(config, dict)
            for label, row in named_rows(config.get("fanout"))
        ]
        found.append(panel_of("send to delivery on every device", fanout))
    if isinstance(throughput, dict):  # social: echo and fan-out rows per server
        for kind, title in SOCIAL_ROWS.items():
            rows = [(server, rows.get(kind)) for server, rows in throughput.items()]
            found.append(panel_of(title, rows))
        found.append(panel_of("idle sockets", named_rows(report.get("idle"))))
    title = str(report.get("benchmark", ""))
    for key in ("rows", "servers"):
        rows = list(named_rows(report.get(key)))
        found.append(panel_of(title, rows))
        # A second panel where rows carry their CPU cost (publications): steadier than
        # rates on a loaded machine.
        costs = Panel("CPU per request", CPU_UNIT)
        for name, row in rows:
            total = reader("cpu_ms_per_request", "total")(row) if isinstance(row, dict) else None
            if total is not None:
                costs.bars.append(Bar(name, total))
        found.append(costs)
    if not any(p is not None and p.bars for p in found):  # one figure for the run (storage floor)
        found.append(panel_of("", [(str(report.get("benchmark", "run")), report)]))
    return [p for p in found if p is not None and p.bars]


def run_label(report: Report) -> str:
    date = str(report.get("date") or report.get("at") or "undated")
    date = date[:16].replace("T", " ") + " UTC" if date != "undated" else date
    machine = report.get("machine") if isinstance(report.get("machine"), dict) else {}
    host, cores = machine.get("hostname", "host ?"), machine.get("nproc", "?")
    return f"{date} · {host} · {cores} cores · Python {machine.get('python', '?')}"


def ratio_lines(name: str, report: Report) -> list[str]:
    lines = []
    for target in of(report.get("benchmark") or report.get("bench") or name):
        value = target.read(report)
        if value is not None:
            lines.append(f"{target.name}: {target.show(value)}  ({target.verdict(value)})")
    ratios = report.get("ratios")
    more = dict(ratios) if isinstance(ratios, dict) else {}
    summary = report.get("summary")  # messaging's and social's ratios, per row
    for key, entry in summary.items() if isinstance(summary, dict) else ():
        for key_of_ratio, over in SUMMARY_RATIOS.items():
            if isinstance(entry, dict) and key_of_ratio in entry:
                more[f"{key} / {over}" if over else key] = entry[key_of_ratio]
    shown = {line.split(":")[0].split(",")[0] for line in lines}
    for key, value in more.items():
        if key not in shown and isinstance(value, int | float):
            lines.append(f"{key}: {value:.2f}x")
    return lines


def chart_of(path: Path, report: Report) -> Chart:
    name = benchmark_of(path) or path.stem
    title = name + (" (quick run)" if (report.get("args") or {}).get("quick") else "")
    return Chart(title, run_label(report), panels_of(report), ratio_lines(name, report))


def draw(chart: Chart, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    from matplotlib import pyplot as plt

    heights = [max(1.0, 0.62 * len(p.bars) + 0.9) for p in chart.panels] or [1.0]
    figure, axes = plt.subplots(
        len(heights), 1, figsize=(10, sum(heights) + 0.35 * len(chart.ratios) + 1.0),
        gridspec_kw={"height_ratios": heights}, squeeze=False,
    )  # fmt: skip
    for axis, panel in zip(axes[:, 0], chart.panels, strict=False):
        labels = [bar.label for bar in panel.bars]
        values = [bar.value for bar in panel.bars]
        axis.barh(labels, values, color="#4c72b0")
        axis.invert_yaxis()  # first row on top, as in the tables
        axis.set_xlabel(panel.unit)
        axis.set_title(panel.title, fontsize=10, loc="left")
        axis.set_xlim(0, max(values) * 2.1)  # room for the labels right of the longest bar
        for index, value in enumerate(values):
            shown = f"{value:,.0f}" if value >= 100 else f"{value:,.3g}"
            axis.text(value, index, f" {shown}\n {chart.run}", va="center", fontsize=7)
    figure.suptitle(f"{chart.name}: {chart.run}", fontsize=11, x=0.01, ha="left")
    if chart.ratios:
        text = "\n".join(chart.ratios)
        figure.text(0.01, 0.01, text, fontsize=8, va="bottom", family="monospace")
    bottom = (0.16 * len(chart.ratios) + 0.25) / figure.get_figheight()
    figure.tight_layout(rect=(0, min(bottom, 0.6), 1, 0.97))
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{chart.name.split(' ')[0]}.png"
    figure.savefig(target, dpi=90)
    plt.close(figure)
    return target


def draw_result(path: Path, out: Path = DOCS_DIR) -> Path | None:
    report = load(path)
    if report is None:
        print(f"{path}: not a results JSON")
        return None
    chart = chart_of(path, report)
    if not chart.panels:
        print(f"{path}: no row with a rate to draw")
        return None
    return draw(chart, out)


def after_run(path: Path) -> None:
    """The chart of a run just written (called by each benchmark at its end)."""
    if os.environ.get("BENCH_CHARTS") == "off":
        return
    try:
        drawn = draw_result(ROOT / path)
    except ImportError:
        print("no chart: matplotlib is missing (pip install -e '.[dev]')")
        return
    if drawn is not None:
        print(f"chart: {drawn.relative_to(ROOT)}")


def newest_results() -> list[Path]:
    by_name: dict[str, Path] = {}
    for path in sorted(RESULTS_DIR.glob("*.json")):  # stamps sort by time
        name = benchmark_of(path)
        if name is not None:  # not a run's file (audit_bench's unstamped audit.json)
            by_name[name] = path
    return list(by_name.values())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.charts", description=__doc__.split("\n")[0]
    )
    parser.add_argument("results", nargs="*", type=Path, help="default: newest of each benchmark")
    parser.add_argument("--out", type=Path, default=DOCS_DIR)
    args = parser.parse_args(argv)
    for path in args.results or newest_results():
        drawn = draw_result(path, args.out)
        if drawn is not None:
            print(f"{path} -> {drawn}")


if __name__ == "__main__":
    main()
