"""Typed results, the verdict, and what is derived from them: the tables and the CSV.

A run's rows (`Row`, `RunResult`) are the source of truth; `results.json` is their serialised
form (run_files.py writes and reads the run folder), and every table, the CSV and the exit code
are derived from them, never the other way round.
"""

from __future__ import annotations

import csv
import io
import textwrap
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from tabulate import tabulate

Status = Literal["ok", "error", "interrupted"]
Verdict = Literal[
    "churn", "stable", "inconclusive", "did-not-run", "partial", "error", "interrupted"
]

CHURN_AT = 0.5  # New() calls per request at or above which a version churns
STABLE_AT = 0.01  # ... at or below which it reuses its instances
# A verdict from fewer requests through the plugin than this many per nginx worker is marked
# `small-sample` (docs/sample-size.md). The churn side needs few: an affected release starts an
# instance on every event, >= 1 New() per request (1.0-1.8 measured), twice CHURN_AT. The stable
# side sets the minimum: a release that reuses its instances can still start one per worker
# during the load (a worker the warm-up missed, 3.7+'s rebuild after a change), so it reads up to
# workers / requests; that stays at or below STABLE_AT from 1 / STABLE_AT = 100 requests per
# worker (400 with the default 4), where fewer could read `inconclusive` or, below 2 per worker,
# `churn`.
MIN_REQUESTS_PER_WORKER = round(1 / STABLE_AT)
SMALL_SAMPLE = "small-sample"

_EXPECTED_VERDICT = {"affected": "churn", "baseline": "stable", "fixed": "stable"}


@dataclass(frozen=True)
class PhaseResult:
    """One named phase of a scenario: what its load did to the plugin's instances.

    `counted`: the phase is part of the steady load the verdict is made from (a phase around a
    config change or a killed server reports its own figures instead). `figures` holds what is
    particular to the scenario (seconds to recover, New() per change, ...), by name.
    """

    name: str
    about: str
    requests: int | None = None
    failures: int | None = None
    new_calls: int | None = None
    new_calls_per_request: float | None = None
    rps: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    counted: bool = True
    figures: dict[str, Any] = field(default_factory=dict)
    ran_on: int | None = None  # requests the plugin ran on (orchestration/evidence.py)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PhaseResult:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class Row:
    """One (version, plugin, scenario) measurement; counts are None where the run stopped short."""

    version: str
    image: str
    simulated: bool
    status: Status
    error: str | None
    expected: str
    verdict: Verdict
    matches_changelog: bool | None
    requests: int | None = None
    failures: int | None = None
    ran_on: int | None = None  # of the requests, those the plugin ran on (evidence.py)
    plugin_answers: str | None = None  # its own non-2xx answers, e.g. "401 x1000"
    failure_causes: str | None = None  # what the failures were, e.g. "5xx x3, transport x2"
    new_calls_total: int | None = None
    new_calls_before_load: int | None = None
    new_calls_during_load: int | None = None
    new_calls_per_request: float | None = None
    instance_starts: int | None = None
    instance_closes: int | None = None
    no_instance_errors: int | None = None
    rpc_closed_errors: int | None = None
    plugin_server_starts: int | None = None
    plugin_server_exits: int | None = None
    plugin_counter: int | None = None  # the plugin's own New() count after the load (header)
    rps: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    duration_s: float | None = None
    workers: int | None = None
    results_dir: str | None = None
    server_peak_rss_mb: float | None = None  # the plugin server's, from resources.csv
    server_rss_growth_per_10k_mb: float | None = None
    leak: bool | None = None
    scenario: str = "steady"
    plugin: str = "go"  # the built-in's name, or the user's plugin folder's
    # what counted the instances the verdict is made from: "tap" (kpm-tap, any plugin) or
    # "plugin" (the built-in plugin's own New() count)
    counted_by: str = "plugin"
    phases: tuple[PhaseResult, ...] = ()
    findings: tuple[str, ...] = ()  # what the scenario found beyond the verdict, e.g. stale-config
    engine: str | None = None  # the --docker-host engine that ran it (None: the default engine)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["phases"] = [asdict(phase) for phase in self.phases]
        data["findings"] = list(self.findings)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Row:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["phases"] = tuple(PhaseResult.from_dict(p) for p in data.get("phases") or ())
        values["findings"] = tuple(data.get("findings") or ())
        return cls(**values)


def verdict_for(per_request: float) -> Verdict:
    if per_request >= CHURN_AT:
        return "churn"
    if per_request <= STABLE_AT:
        return "stable"
    return "inconclusive"


def expected_verdict(expected: str) -> str | None:
    """The verdict a changelog status calls for (`affected`: churn); None when it says nothing."""
    return _EXPECTED_VERDICT.get(expected)


def small_sample(served: int, workers: int | None) -> tuple[str, ...]:
    """(`small-sample`,) when `served` requests through the plugin are too few for a verdict to
    stand against one New() per worker (MIN_REQUESTS_PER_WORKER); () otherwise, and for none
    (no verdict: the row is an error)."""
    return (SMALL_SAMPLE,) if 0 < served < MIN_REQUESTS_PER_WORKER * (workers or 1) else ()


def row_label(row: Row) -> str:
    """Which row: `3.4.1.0, plugin go, scenario steady` (a run may hold several per version)."""
    return f"{row.version}, plugin {row.plugin}, scenario {row.scenario}"


def label_parts(version: str, plugin: str, scenario: str) -> list[str]:
    """What tells a row from the others of its version, the default plugin (`go`) and scenario
    (`steady`) left out: `[3.4.1.0]`, `[3.4.1.0, python]`, `[3.6.0.0, python, reload]`. Its
    version folder, the page's labels, merge's keys and the verdict line are made of them."""
    return [version] + [plugin] * (plugin != "go") + [scenario] * (scenario != "steady")


def short_label(row: Row) -> str:
    """`3.4.1.0`, `3.4.1.0 python`, `3.6.0.0 reload`: `label_parts` of a row, spaced."""
    return " ".join(label_parts(row.version, row.plugin, row.scenario))


def matches_changelog(expected: str, verdict: str) -> bool | None:
    """Whether the measurement agrees with what the changelog says; None when it says nothing."""
    wanted = expected_verdict(expected)
    if wanted is None or verdict not in ("churn", "stable", "inconclusive"):
        return None
    return verdict == wanted


@dataclass(frozen=True)
class RunResult:
    run_id: str
    tool_version: str
    config: dict[str, Any]
    versions: tuple[Row, ...]

    @property
    def all_ok(self) -> bool:
        return all(v.status == "ok" for v in self.versions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "tool_version": self.tool_version,
            "config": self.config,
            "versions": [v.to_dict() for v in self.versions],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        return cls(
            run_id=data["run_id"],
            tool_version=data["tool_version"],
            config=data.get("config", {}),
            versions=tuple(Row.from_dict(v) for v in data.get("versions", [])),
        )


# (header, field) pairs of the summary table, in order.
TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("version", "version"),
    ("simulated", "simulated"),
    ("verdict", "verdict"),
    ("changelog", "expected"),
    ("agrees", "matches_changelog"),
    ("requests", "requests"),
    ("failures", "failures"),
    ("ran on", "ran_on"),
    ("New() in load", "new_calls_during_load"),
    ("New()/req", "new_calls_per_request"),
    ("instances started", "instance_starts"),
    ("closed instance", "instance_closes"),
    ("no plugin instance", "no_instance_errors"),
    ("rpc closed", "rpc_closed_errors"),
    ("server starts", "plugin_server_starts"),
    ("server exits", "plugin_server_exits"),
    ("req/s", "rps"),
    ("p95 ms", "p95_ms"),
)
# Shown only when some row has them: a plain steady run's table stays as it was.
SCENARIO_COLUMN = ("scenario", "scenario")
PLUGIN_COLUMN = ("plugin", "plugin")
COUNTED_BY_COLUMN = ("counted by", "counted_by")  # "tap": New()/req is kpm-tap's instance starts
OPTIONAL_COLUMNS: tuple[tuple[str, str], ...] = (
    ("plugin answered", "plugin_answers"),
    ("failed as", "failure_causes"),
    ("server MB", "server_peak_rss_mb"),
    ("MB/10k req", "server_rss_growth_per_10k_mb"),
    ("leak", "leak"),
    ("findings", "findings"),
    ("engine", "engine"),
)
# The columns a person decides on, for the terminal: a one-plugin run fits 100 columns. The full
# set (TABLE_COLUMNS and the optional ones) goes to summary.md, results.csv, the report page and
# `--wide`; both sets format a cell the same way (_cell).
COMPACT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("version", "version"),
    ("verdict", "verdict"),
    ("agrees", "matches_changelog"),
    ("New()/req", "new_calls_per_request"),
    ("ran on", "ran_on"),
    ("failures", "failures"),
    ("req/s", "rps"),
    ("p95 ms", "p95_ms"),
)
SIMULATED_COLUMN = ("simulated", "simulated")
FINDINGS_COLUMN = ("findings", "findings")
ColumnSet = Literal["full", "compact"]
PHASE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("phase", "name"),
    ("counted", "counted"),
    ("requests", "requests"),
    ("failures", "failures"),
    ("ran on", "ran_on"),
    ("New()", "new_calls"),
    ("New()/req", "new_calls_per_request"),
    ("req/s", "rps"),
    ("p50 ms", "p50_ms"),
    ("p95 ms", "p95_ms"),
)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.0f}"
    if isinstance(value, (tuple, list)):
        return ", ".join(str(item) for item in value) or "-"
    return str(value)


def _columns(
    results: tuple[Row, ...] | list[Row], column_set: ColumnSet = "full"
) -> list[tuple[str, str]]:
    if column_set == "compact":
        return _compact_columns(results)
    columns = list(TABLE_COLUMNS)
    if any(r.scenario != "steady" for r in results):
        columns.insert(1, SCENARIO_COLUMN)
    if any(r.plugin != "go" for r in results):
        columns.insert(1, PLUGIN_COLUMN)
    if any(r.counted_by != "plugin" for r in results):
        columns.insert(columns.index(("New()/req", "new_calls_per_request")), COUNTED_BY_COLUMN)
    for header, name in OPTIONAL_COLUMNS:
        if any(getattr(r, name) not in (None, ()) for r in results):
            columns.append((header, name))
    return columns


def _compact_columns(
    results: tuple[Row, ...] | list[Row],
) -> list[tuple[str, str]]:
    """COMPACT_COLUMNS, with plugin and scenario when there is more than one or it is not the
    default, `simulated` when some rows ran on Kong and some on kong-sim, `counted by` when the
    tap counted, and findings when a row has one."""
    columns = list(COMPACT_COLUMNS)
    if len({r.simulated for r in results}) > 1:
        columns.insert(1, SIMULATED_COLUMN)
    if {r.scenario for r in results} - {"steady"} or len({r.scenario for r in results}) > 1:
        columns.insert(1, SCENARIO_COLUMN)
    if {r.plugin for r in results} - {"go"} or len({r.plugin for r in results}) > 1:
        columns.insert(1, PLUGIN_COLUMN)
    if any(r.counted_by != "plugin" for r in results):
        columns.insert(columns.index(("New()/req", "new_calls_per_request")), COUNTED_BY_COLUMN)
    if any(r.findings for r in results):
        columns.append(FINDINGS_COLUMN)
    return columns


def table_cells(
    results: tuple[Row, ...] | list[Row], column_set: ColumnSet = "full"
) -> tuple[list[str], list[list[str]]]:
    """The summary table's headers and pre-formatted cells in a column set (Markdown, the
    terminal and the report page share them, so a row reads the same everywhere)."""
    columns = _columns(results, column_set)
    rows = [[_cell(getattr(r, name)) for _, name in columns] for r in results]
    return [header for header, _ in columns], rows


def render_table(results: tuple[Row, ...] | list[Row], column_set: ColumnSet = "full") -> str:
    """The GitHub-format table; every cell is pre-formatted text so versions stay as written.
    The compact set is drawn without padding, to fit a terminal."""
    headers, rows = table_cells(results, column_set)
    if column_set == "compact":
        return render_narrow(headers, rows)
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def render_narrow(headers: list[str], rows: list[list[str]]) -> str:
    """A GitHub-format table as narrow as its cells: no padding beyond the widest cell (tabulate
    adds two to every header) and no closing pipe, which Markdown does not need; that keeps a
    one-plugin run within TERMINAL_WIDTH."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = [headers, ["-" * width for width in widths], *rows]
    return "\n".join(
        ("| " + " | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True))).rstrip()
        for line in lines
    )


def phase_cells(result: Row) -> tuple[list[str], list[list[str]]]:
    """A scenario's phase table: headers and pre-formatted cells, figures included."""
    figure_names = list(dict.fromkeys(k for phase in result.phases for k in phase.figures))
    headers = [header for header, _ in PHASE_COLUMNS] + [k.replace("_", " ") for k in figure_names]
    rows = [
        [_cell(getattr(phase, name)) for _, name in PHASE_COLUMNS]
        + [_cell(phase.figures.get(k)) for k in figure_names]
        for phase in result.phases
    ]
    return headers, rows


def render_phases(result: Row, column_set: ColumnSet = "full") -> str:
    """One row per phase of a scenario, with the figures particular to it."""
    headers, rows = phase_cells(result)
    if column_set == "compact":
        return render_narrow(headers, rows)
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def render_summary(run: RunResult, column_set: ColumnSet = "full") -> str:
    """summary.md (the full column set), or what the terminal shows at the end of a run
    (compact: the columns a person decides on, prose wrapped at TERMINAL_WIDTH, and a pointer to
    the rest)."""
    compact = column_set == "compact"
    lines = [f"# kong-plugin-matrix run {run.run_id}", ""]
    if any(v.simulated for v in run.versions):
        which = (
            "rows marked `simulated: yes` ran"
            if SIMULATED_COLUMN in _columns(run.versions, column_set)
            else "every row ran"
        )
        lines += [
            f"**SIMULATED**: {which} against kong-sim, the offline stand-in for Kong, not a real "
            "Kong image.",
            "",
        ]
    lines += [render_table(run.versions, column_set), ""]
    for result in run.versions:
        if result.scenario != "steady" and result.phases:
            about = result.phases[0].about
            lines += [f"## {result.version}, {result.scenario}: {about}", ""]
            lines += [render_phases(result, column_set), ""]
    errors = [v for v in run.versions if v.error]
    if errors:
        lines += ["## Errors", ""]
        lines += [f"- **{row_label(v)}** ({v.status}): {v.error}" for v in errors]
        lines.append("")
    engines = run.config.get("docker_hosts") or []
    if engines:
        column = "`--wide` shows which" if compact else "the `engine` column"
        lines += [
            f"Engines: each version went to the least-loaded of {', '.join(engines)} when it "
            f"started ({column}).",
            "",
        ]
    lines.append(
        f"Verdict: `churn` at >= {CHURN_AT} New() calls per request during the load, `stable` at "
        f"<= {STABLE_AT}, `inconclusive` between. Tool {run.tool_version}."
    )
    if compact:
        lines.append(
            "Every column: `--wide`, or summary.md, results.csv and report.html in the run's "
            "folder."
        )
        lines = [wrapped for line in lines for wrapped in _wrap_prose(line)]
    return "\n".join(lines) + "\n"


TERMINAL_WIDTH = 100  # the compact summary's prose and a one-plugin run's table fit it


def _wrap_prose(line: str) -> list[str]:
    """A paragraph or list item (`- ...`) folded at TERMINAL_WIDTH; tables (`| ...`), headings
    and blank lines as they are."""
    if len(line) <= TERMINAL_WIDTH or line.startswith(("|", "#")):
        return [line]
    indent = "  " if line.startswith("- ") else ""
    return textwrap.wrap(
        line,
        TERMINAL_WIDTH,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


def render_csv(results: tuple[Row, ...]) -> str:
    buffer = io.StringIO()
    names = [f.name for f in fields(Row) if f.name != "phases"]  # phases: in the JSON
    writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for result in results:
        row = result.to_dict()
        row["findings"] = ";".join(result.findings)
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buffer.getvalue()
