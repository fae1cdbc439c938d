"""The report page: one self-contained HTML file with a run's tables and charts (or two runs').

`report.html` sits next to `summary.md` and shows the same rows, plus New() per request by
version (log scale, the churn and stable bands shaded, simulated rows hatched and labelled),
latency by version, each scenario's phases and the plugin server's memory over time from the
version folders' `resources*.csv`. Nothing on the page is fetched: the style is inline, the
charts are SVG drawn by matplotlib with their text kept as text (`svg.fonttype: none`, so no
font file is needed and every version label can be searched for), and a Content-Security-Policy
forbids any request. It opens on an air-gapped laptop and can be attached to a bug report.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # never a GUI backend: runs happen on servers and in CI

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import NullLocator

from orchestration import report, run_files
from orchestration.report import Row, RunResult

PAGE_NAME = "report.html"
# A zero New()/req has no place on a log scale: it is drawn at this floor and labelled "0".
PER_REQUEST_FLOOR = report.STABLE_AT / 10
SERIES_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#8172b3")
CHURN_COLOUR, STABLE_COLOUR = "#d62728", "#2ca02c"
SIMULATED_HATCH = "///"
_SVG_METADATA: dict[str, Any] = {"Creator": None, "Date": None, "Format": None, "Type": None}
_DRAWING = threading.Lock()  # rcParams are process-wide: one chart at a time

Key = tuple[str, str, str]  # (version, plugin, scenario)
Category = tuple[Key, int]  # a key and which of its rows (a merged run may hold two)


@dataclass(frozen=True)
class Series:
    """One run on the page; `run_dir` is where its version folders (resources.csv) are."""

    name: str
    run: RunResult
    run_dir: Path | None = None


def key_of(row: Row) -> Key:
    return (row.version, row.plugin, row.scenario)


def label_of(key: Key) -> str:
    """`3.4.1.0`, `3.4.1.0 python`, or `3.6.0.0 reload` for a scenario other than steady."""
    return " ".join(report.label_parts(*key))


# --- charts ---------------------------------------------------------------------------------


def _categories(series: Sequence[Series]) -> list[Category]:
    found: list[Category] = []
    for one in series:
        seen: dict[Key, int] = {}
        for row in one.run.versions:
            key = key_of(row)
            seen[key] = seen.get(key, -1) + 1
            if (key, seen[key]) not in found:
                found.append((key, seen[key]))
    return found


def _row_at(one: Series, category: Category) -> Row | None:
    key, occurrence = category
    rows = [row for row in one.run.versions if key_of(row) == key]
    return rows[occurrence] if occurrence < len(rows) else None


def _tick_label(series: Sequence[Series], category: Category) -> str:
    key, occurrence = category
    lines = report.label_parts(*key)
    if occurrence:
        lines.append(f"(row {occurrence + 1})")
    if any((row := _row_at(one, category)) is not None and row.simulated for one in series):
        lines.append("simulated")
    return "\n".join(lines)


def _new_figure(categories: int) -> tuple[Figure, Axes]:
    figure = Figure(figsize=(max(6.5, 1.0 * categories + 2.5), 3.8), layout="constrained")
    return figure, figure.add_subplot()


def _svg(figure: Figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata=_SVG_METADATA)
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # no XML prolog or DOCTYPE inside HTML


def _bar_slots(series_count: int, per_series: int) -> tuple[float, list[list[float]]]:
    """Bar width and x offsets: for each series, `per_series` bars side by side."""
    width = 0.8 / (series_count * per_series)
    offsets = [
        [-0.4 + width * (s * per_series + b + 0.5) for b in range(per_series)]
        for s in range(series_count)
    ]
    return width, offsets


def _per_request_chart(series: Sequence[Series], categories: list[Category]) -> str:
    figure, axes = _new_figure(len(categories))
    values = [
        row.new_calls_per_request
        for one in series
        for category in categories
        if (row := _row_at(one, category)) is not None and row.new_calls_per_request is not None
    ]
    bottom, top = PER_REQUEST_FLOOR / 2, max([report.CHURN_AT * 6, *(v * 4 for v in values)])
    axes.set_yscale("log")
    axes.yaxis.set_minor_locator(NullLocator())  # decades are enough, and much cheaper to draw
    axes.set_ylim(bottom, top)
    axes.axhspan(report.CHURN_AT, top, color=CHURN_COLOUR, alpha=0.1, linewidth=0)
    axes.axhspan(bottom, report.STABLE_AT, color=STABLE_COLOUR, alpha=0.1, linewidth=0)
    axes.axhline(PER_REQUEST_FLOOR, color="#999999", linewidth=0.6, linestyle=":")
    width, offsets = _bar_slots(len(series), 1)
    for index, one in enumerate(series):
        for position, category in enumerate(categories):
            row = _row_at(one, category)
            if row is None:
                continue
            x = position + offsets[index][0]
            value = row.new_calls_per_request
            if value is None:  # an errored or interrupted row has no figure: say so in its slot
                axes.text(x, bottom * 1.4, row.verdict, rotation=90, ha="center", fontsize=7)
                continue
            height = max(value, PER_REQUEST_FLOOR)
            axes.bar(
                x,
                height - bottom,
                bottom=bottom,
                width=width * 0.9,
                color=SERIES_COLOURS[index % len(SERIES_COLOURS)],
                hatch=SIMULATED_HATCH if row.simulated else None,
                edgecolor="#222222" if row.simulated else "none",
                linewidth=0.4,
            )
            axes.text(x, height * 1.2, f"{value:.3g}", ha="center", va="bottom", fontsize=7)
    axes.set_xticks(range(len(categories)), [_tick_label(series, c) for c in categories])
    axes.set_xlim(-0.6, len(categories) - 0.4)
    axes.set_ylabel("New() calls per request (log)")
    handles = [
        Patch(color=CHURN_COLOUR, alpha=0.2, label=f"churn >= {report.CHURN_AT}"),
        Patch(color=STABLE_COLOUR, alpha=0.2, label=f"stable <= {report.STABLE_AT}"),
        Patch(facecolor="white", edgecolor="#999999", label=f"0 drawn at {PER_REQUEST_FLOOR:g}"),
    ]
    handles += _series_and_simulation_handles(series)
    axes.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    return _svg(figure)


def _series_and_simulation_handles(series: Sequence[Series]) -> list[Patch]:
    handles: list[Patch] = []
    if len(series) > 1:
        handles += [
            Patch(color=SERIES_COLOURS[i % len(SERIES_COLOURS)], label=one.name)
            for i, one in enumerate(series)
        ]
    if any(row.simulated for one in series for row in one.run.versions):
        handles.append(
            Patch(
                facecolor="white",
                edgecolor="#222222",
                hatch=SIMULATED_HATCH,
                label="simulated (kong-sim, not Kong)",
            )
        )
    return handles


def _latency_chart(series: Sequence[Series], categories: list[Category]) -> str:
    figure, axes = _new_figure(len(categories))
    width, offsets = _bar_slots(len(series), 2)
    for index, one in enumerate(series):
        colour = SERIES_COLOURS[index % len(SERIES_COLOURS)]
        for position, category in enumerate(categories):
            row = _row_at(one, category)
            if row is None:
                continue
            for slot, (value, alpha) in enumerate(((row.p50_ms, 0.45), (row.p95_ms, 1.0))):
                if value is None:
                    continue
                axes.bar(
                    position + offsets[index][slot],
                    value,
                    width=width * 0.9,
                    color=colour,
                    alpha=alpha,
                    hatch=SIMULATED_HATCH if row.simulated else None,
                    edgecolor="#222222" if row.simulated else "none",
                    linewidth=0.4,
                )
    axes.set_xticks(range(len(categories)), [_tick_label(series, c) for c in categories])
    axes.set_xlim(-0.6, len(categories) - 0.4)
    axes.set_ylabel("latency, ms")
    handles = [
        Patch(color="#666666", alpha=0.45, label="p50 (pale)"),
        Patch(color="#666666", label="p95"),
        *_series_and_simulation_handles(series),
    ]
    axes.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    return _svg(figure)


@dataclass(frozen=True)
class MemoryTrace:
    label: str
    seconds: tuple[float, ...]
    server_mb: tuple[float, ...]


def read_resources(path: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(seconds, server RSS in MB) from a resources.csv; unreadable rows are left out."""
    seconds: list[float] = []
    megabytes: list[float] = []
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            for line in csv.DictReader(handle):
                try:
                    t_s, rss_kb = float(line["t_s"]), float(line["server_rss_kb"])
                except (KeyError, TypeError, ValueError):
                    continue
                seconds.append(t_s)
                megabytes.append(rss_kb / 1024)
    except OSError:
        return (), ()
    return tuple(seconds), tuple(megabytes)


def memory_traces(series: Sequence[Series]) -> list[MemoryTrace]:
    traces: list[MemoryTrace] = []
    for one in series:
        prefix = f"{one.name}: " if len(series) > 1 else ""
        for row in one.run.versions:
            folder = run_files.version_folder(one.run_dir, row)
            if folder is None:
                continue
            for path in sorted(folder.glob("resources*.csv")):
                seconds, megabytes = read_resources(path)
                if seconds:
                    extra = path.stem.removeprefix("resources")
                    label = f"{prefix}{label_of(key_of(row))}{extra}"
                    traces.append(MemoryTrace(label, seconds, megabytes))
    return traces


def _memory_chart(traces: list[MemoryTrace]) -> str:
    figure = Figure(figsize=(9.0, 3.6), layout="constrained")
    axes = figure.add_subplot()
    for trace in traces:
        axes.plot(trace.seconds, trace.server_mb, marker="o", markersize=3, label=trace.label)
    axes.set_xlabel("seconds since sampling started")
    axes.set_ylabel("plugin server RSS, MB")
    axes.set_ylim(bottom=0)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    return _svg(figure)


# --- the page -------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; max-width: 1400px; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.15rem; margin-top: 2rem; } h3 { font-size: 1rem; }
table { border-collapse: collapse; font-size: 0.75rem; margin: 0.5rem 0; }
th, td { border: 1px solid #ccc; padding: 0.15rem 0.35rem; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
tr.churn td { background: #fde8e8; } tr.stable td { background: #eaf6ea; }
tr.error td, tr.interrupted td, tr.inconclusive td, tr.did-not-run td, tr.partial td {
  background: #fff4d6;
}
.simulated { background: #fff4d6; border: 1px solid #e0b84c; padding: 0.4rem 0.6rem; }
.chart svg { max-width: 100%; height: auto; }
.wide { overflow-x: auto; }
.flag { color: #b00020; font-weight: bold; }
footer { margin-top: 2rem; font-size: 0.8rem; color: #555; }
"""
# Belt and braces: even a stray reference could not make the page fetch anything.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def html_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], row_classes: Sequence[str] = ()
) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for index, row in enumerate(rows):
        css = row_classes[index] if index < len(row_classes) else ""
        attribute = f' class="{html.escape(css)}"' if css else ""
        cells = "".join(f"<td>{html.escape(cell)}</td>" for cell in row)
        body.append(f"<tr{attribute}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _results_table(one: Series, heading_prefix: str) -> list[str]:
    headers, rows = report.table_cells(one.run.versions)
    classes = [row.verdict for row in one.run.versions]
    return [
        f"<h2>{html.escape(heading_prefix)}Results</h2>",
        f'<div class="wide">{html_table(headers, rows, classes)}</div>',
    ]


def _details(one: Series, heading_prefix: str) -> list[str]:
    """Each scenario's phase table, then the errors."""
    parts = []
    scenario_rows = [row for row in one.run.versions if row.scenario != "steady" and row.phases]
    if scenario_rows:
        parts.append(f"<h2>{html.escape(heading_prefix)}Scenario phases</h2>")
        for row in scenario_rows:
            about = row.phases[0].about
            parts.append(f"<h3>{html.escape(label_of(key_of(row)))}: {html.escape(about)}</h3>")
            parts.append(f'<div class="wide">{html_table(*report.phase_cells(row))}</div>')
    errors = [row for row in one.run.versions if row.error]
    if errors:
        parts.append(f"<h2>{html.escape(heading_prefix)}Errors</h2><ul>")
        parts += [
            f"<li><b>{html.escape(label_of(key_of(r)))}</b> ({r.status}): "
            f"{html.escape(r.error or '')}</li>"
            for r in errors
        ]
        parts.append("</ul>")
    return parts


def _charts(series: Sequence[Series]) -> list[str]:
    categories = _categories(series)
    if not categories:
        return ["<p>No rows yet.</p>"]
    with (
        _DRAWING,
        matplotlib.rc_context(
            {
                "svg.fonttype": "none",
                "svg.hashsalt": "kong-plugin-matrix",
                "font.size": 9,
                "font.family": "sans-serif",
                "axes.spines.top": False,
                "axes.spines.right": False,
            }
        ),
    ):
        per_request = _per_request_chart(series, categories)
        latency = _latency_chart(series, categories)
        traces = memory_traces(series)
        memory = _memory_chart(traces) if traces else ""
    parts = [
        "<h2>New() per request by version</h2>",
        f'<div class="chart" id="chart-new-per-request">{per_request}</div>',
        "<h2>Latency by version (p50, p95)</h2>",
        f'<div class="chart" id="chart-latency">{latency}</div>',
        "<h2>Plugin server memory over time</h2>",
    ]
    if memory:
        parts.append(f'<div class="chart" id="chart-memory">{memory}</div>')
    else:
        parts.append("<p>No <code>resources*.csv</code> samples in the version folders.</p>")
    return parts


def render_page(series: Sequence[Series], title: str, sections_first: Sequence[str] = ()) -> str:
    """The whole page: `sections_first` (HTML, e.g. a comparison), then for one run its table,
    the charts and its phases; for several, the charts overlaying them, then each run's tables."""
    simulated = any(row.simulated for one in series for row in one.run.versions)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if simulated:
        parts.append(
            '<p class="simulated"><b>SIMULATED</b>: rows marked simulated (hatched in the '
            "charts) ran against kong-sim, the offline stand-in for Kong, not a real Kong "
            "image.</p>"
        )
    parts += sections_first
    if len(series) == 1:  # one run: its table first, as in summary.md
        parts += _results_table(series[0], "")
        parts += _charts(series)
        parts += _details(series[0], "")
    else:
        parts += _charts(series)
        for one in series:
            prefix = f"{one.name} ({one.run.run_id}): "
            parts += _results_table(one, prefix) + _details(one, prefix)
    tools = ", ".join(sorted({one.run.tool_version for one in series}))
    parts.append(
        f"<footer>Verdict: churn at &gt;= {report.CHURN_AT} New() calls per request during the "
        f"load, stable at &lt;= {report.STABLE_AT}, inconclusive between. Drawn from "
        f"results.json by kong-plugin-matrix {html.escape(tools)}.</footer></body></html>"
    )
    return "\n".join(parts) + "\n"


def render_run_page(run: RunResult, run_dir: Path | None) -> str:
    return render_page([Series(run.run_id, run, run_dir)], f"kong-plugin-matrix run {run.run_id}")


def write_page(run_dir: Path, run: RunResult) -> Path:
    """Draw `run_dir/report.html` for `run`; returns its path."""
    path = run_dir / PAGE_NAME
    run_files.write_atomic(path, f"{_fingerprint_line(run)}{render_run_page(run, run_dir)}")
    return path


def write_page_if_changed(run_dir: Path, run: RunResult) -> Path:
    """Draw the page unless the one there was drawn from the same results."""
    path = run_dir / PAGE_NAME
    try:
        with path.open(encoding="utf-8") as existing:
            if existing.readline() == _fingerprint_line(run):
                return path
    except OSError:
        pass  # no page yet
    return write_page(run_dir, run)


def _fingerprint_line(run: RunResult) -> str:
    digest = hashlib.sha256(json.dumps(run.to_dict(), sort_keys=True).encode()).hexdigest()
    return f"<!-- kong-plugin-matrix results {digest} -->\n"
