"""Typed results, the verdict, and the files a run writes: JSON first, the rest derived from it.

A run folder holds `results.json` (the source of truth), `results.csv`, `summary.md` (a GitHub
table to paste into a bug report) and `config.json`. Every file is written atomically (temp file
+ rename), so a reader never sees half a file, and the summary is rewritten after each version so
an interrupted run still leaves a readable one.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import textwrap
import threading
import types
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from tabulate import tabulate

from orchestration.errors import UsageError

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


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` so readers see the old file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as temp:
            temp.write(text)
            temp.flush()
            os.fsync(temp.fileno())
        Path(temp_name).replace(path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def write_run(run_dir: Path, run: RunResult) -> None:
    """(Re)write the results files of the run (JSON, CSV, Markdown); safe after each version.

    The report page takes about half a second to draw, so `drawing.finish_run` draws it, once,
    after the table is shown.
    """
    write_atomic(run_dir / "results.json", json.dumps(run.to_dict(), indent=2) + "\n")
    write_atomic(run_dir / "results.csv", render_csv(run.versions))
    write_atomic(run_dir / "summary.md", render_summary(run))


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    write_atomic(run_dir / "config.json", json.dumps(config, indent=2) + "\n")


def point_latest(results_root: Path, run_dir: Path) -> None:
    """Make `results/latest` name the newest run, replacing the link atomically."""
    latest = results_root / "latest"
    # A name no other process or thread uses at the same time; the rename is the atomic step.
    temp = results_root / f".latest.{os.getpid()}.{threading.get_ident()}.tmp"
    temp.unlink(missing_ok=True)
    temp.symlink_to(run_dir.name)
    try:
        temp.replace(latest)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def version_folder(run_dir: Path | None, row: Row) -> Path | None:
    """A row's folder (kong.log, resources.csv): next to its results.json first, since a run
    folder may have been moved, copied or merged since; else where it was recorded."""
    if row.results_dir is None:
        return None
    recorded = Path(row.results_dir)
    if run_dir is not None and (run_dir / recorded.name).is_dir():
        return run_dir / recorded.name
    return recorded if recorded.is_dir() else None


def load_run(path: Path) -> RunResult:
    """Read a run folder (or its results.json), including one left by an interrupted run.

    Anything else (not JSON, a list, a results.json without `run_id` or `versions`, a row
    without its fields or with a field of the wrong kind) is a UsageError that says what is
    wrong and what to pass: those folders come from users, old versions and other tools."""
    file = path / "results.json" if path.is_dir() else path
    what_to_pass = "pass a run folder that run, matrix or merge wrote (results/<run-id>)"
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"no results.json at {file}: {what_to_pass}") from None
    except json.JSONDecodeError as error:
        raise UsageError(f"{file} is not valid JSON ({error}): {what_to_pass}") from None
    except (OSError, UnicodeDecodeError) as error:
        why = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise UsageError(f"cannot read {file} ({why}): {what_to_pass}") from None
    problem = _not_a_run(data)
    if problem is not None:
        raise UsageError(
            f"{file} is not a results.json of kong-plugin-matrix ({problem}): {what_to_pass}"
        )
    return RunResult.from_dict(data)


def _not_a_run(data: object) -> str | None:
    """What makes `data` something other than a run's results.json; None when it is one."""
    if not isinstance(data, dict):
        return f"a JSON {_json_kind(data)}, not an object"
    for name, kind in (("run_id", str), ("tool_version", str), ("versions", list)):
        if name not in data:
            return f"it has no {name!r}"
        if not isinstance(data[name], kind):
            return f"its {name!r} is a JSON {_json_kind(data[name])}"
    if not isinstance(data.get("config", {}), dict):
        return f"its 'config' is a JSON {_json_kind(data['config'])}, not an object"
    for index, row in enumerate(data["versions"]):
        problem = _not_a_record(row, Row)
        for phase in row["phases"] if problem is None and "phases" in row else ():
            problem = problem or _not_a_record(phase, PhaseResult)
        if problem is not None:
            return f"row {index + 1} of 'versions': {problem}"
    return None


def _not_a_record(data: object, kind: type[Any]) -> str | None:
    """What keeps `data` from being read as a `kind` (a dataclass): a missing field without
    a default, or a field of another JSON kind than its type; None when nothing does."""
    if not isinstance(data, dict):
        return f"a JSON {_json_kind(data)}, not an object"
    hints = get_type_hints(kind)
    for each in fields(kind):
        if each.name not in data:
            if each.default is MISSING and each.default_factory is MISSING:
                return f"it has no {each.name!r}"
        elif not _holds(data[each.name], hints[each.name]):
            shown = json.dumps(data[each.name])[:40]
            return f"its {each.name!r} is {shown}, where {_type_text(hints[each.name])} belongs"
    return None


def _holds(value: object, hint: Any) -> bool:
    """Whether a JSON value can stand for a field of type `hint` (a Literal: its kind only)."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_holds(value, arg) for arg in get_args(hint))
    if origin is Literal:
        return any(isinstance(value, type(arg)) for arg in get_args(hint))
    if origin in (tuple, list):
        return isinstance(value, list)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint in (str, bool):
        return isinstance(value, hint)
    return True  # Any


def _type_text(hint: Any) -> str:
    """`int | None`, `str`: a field's type as its annotation reads."""
    return str(hint) if get_origin(hint) else getattr(hint, "__name__", str(hint))


def _json_kind(value: object) -> str:
    kinds = {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}
    return kinds.get(type(value), "number")
