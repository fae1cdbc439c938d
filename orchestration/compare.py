"""Two runs side by side: per (version, plugin, scenario), what changed and whether it got worse.

A change is flagged when the verdict changed, when New() per request rose by more than an
absolute threshold (a relative one would flag 0 -> 0.001), or when the p95 latency or the plugin
server's peak memory rose by more than a relative one. A flagged worsening is a regression: a
verdict that moved towards churn (or to no verdict at all) or any figure that rose past its
threshold. Rows only one run has are listed, never regressions.
"""

from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tabulate import tabulate

from orchestration.errors import UsageError
from orchestration.report import Row, RunResult
from orchestration.run_files import load_run

DEFAULT_NEW_ABSOLUTE = 0.05  # New() per request
DEFAULT_P95_RELATIVE = 0.25
DEFAULT_RSS_RELATIVE = 0.25
# How bad a verdict is: a move to a higher rank is a worsening.
_VERDICT_RANK = {
    "stable": 0,
    "inconclusive": 1,
    "churn": 2,
    "partial": 3,
    "did-not-run": 3,
    "error": 3,
    "interrupted": 3,
}

Key = tuple[str, str, str]  # (version, plugin, scenario)


@dataclass(frozen=True)
class Thresholds:
    new_per_request: float = DEFAULT_NEW_ABSOLUTE  # absolute rise
    p95: float = DEFAULT_P95_RELATIVE  # relative rise (0.25 = +25 %)
    rss: float = DEFAULT_RSS_RELATIVE  # relative rise


@dataclass(frozen=True)
class Change:
    what: str  # verdict, new_calls_per_request, p95_ms, server_peak_rss_mb, presence
    text: str
    regression: bool


@dataclass(frozen=True)
class Figures:
    verdict: str
    new_calls_per_request: float | None
    p95_ms: float | None
    server_peak_rss_mb: float | None
    simulated: bool

    @classmethod
    def of(cls, row: Row) -> Figures:
        return cls(
            row.verdict,
            row.new_calls_per_request,
            row.p95_ms,
            row.server_peak_rss_mb,
            row.simulated,
        )


@dataclass(frozen=True)
class RowComparison:
    version: str
    plugin: str
    scenario: str
    old: Figures | None
    new: Figures | None
    changes: tuple[Change, ...]

    @property
    def regression(self) -> bool:
        return any(change.regression for change in self.changes)


@dataclass(frozen=True)
class Comparison:
    old: RunResult
    new: RunResult
    old_path: Path
    new_path: Path
    thresholds: Thresholds
    rows: tuple[RowComparison, ...]

    @property
    def regressions(self) -> int:
        return sum(1 for row in self.rows if row.regression)

    def to_dict(self) -> dict[str, Any]:
        return {
            "old": {"run_id": self.old.run_id, "path": str(self.old_path)},
            "new": {"run_id": self.new.run_id, "path": str(self.new_path)},
            "thresholds": asdict(self.thresholds),
            "regressions": self.regressions,
            "rows": [
                {
                    "version": row.version,
                    "plugin": row.plugin,
                    "scenario": row.scenario,
                    "old": None if row.old is None else asdict(row.old),
                    "new": None if row.new is None else asdict(row.new),
                    "regression": row.regression,
                    "changes": [asdict(change) for change in row.changes],
                }
                for row in self.rows
            ],
        }


def load_side(path: Path, side: str) -> RunResult:
    """A run folder or a results.json, with an error that says what to pass."""
    if not path.exists():
        raise UsageError(
            f"{side} {path} does not exist: pass a run folder (results/<run-id>, e.g. "
            "results/latest) or its results.json"
        )
    return load_run(path)


def run_dir_of(path: Path) -> Path:
    return path if path.is_dir() else path.parent


def _first_by_key(run: RunResult) -> dict[Key, Row]:
    """Each (version, plugin, scenario)'s first row: a merged run may hold two (flagged there)."""
    rows: dict[Key, Row] = {}
    for row in run.versions:
        rows.setdefault((row.version, row.plugin, row.scenario), row)
    return rows


def compare(
    old: RunResult, new: RunResult, thresholds: Thresholds, old_path: Path, new_path: Path
) -> Comparison:
    old_rows, new_rows = _first_by_key(old), _first_by_key(new)
    keys = list(old_rows) + [key for key in new_rows if key not in old_rows]
    rows = []
    for key in keys:
        before, after = old_rows.get(key), new_rows.get(key)
        rows.append(
            RowComparison(
                *key,
                None if before is None else Figures.of(before),
                None if after is None else Figures.of(after),
                tuple(_changes(before, after, thresholds)),
            )
        )
    return Comparison(old, new, old_path, new_path, thresholds, tuple(rows))


def _changes(old: Row | None, new: Row | None, thresholds: Thresholds) -> list[Change]:
    if old is None:
        return [Change("presence", "only in NEW", regression=False)]
    if new is None:
        return [Change("presence", "only in OLD", regression=False)]
    changes = []
    if old.verdict != new.verdict:
        worse = _VERDICT_RANK.get(new.verdict, 3) > _VERDICT_RANK.get(old.verdict, 3)
        changes.append(Change("verdict", f"verdict {old.verdict} -> {new.verdict}", worse))
    rise = _absolute_rise(old.new_calls_per_request, new.new_calls_per_request)
    if rise is not None and abs(rise) > thresholds.new_per_request:
        text = f"New()/req {rise:+.3f} (threshold {thresholds.new_per_request:g})"
        changes.append(Change("new_calls_per_request", text, regression=rise > 0))
    for what, label, limit in (
        ("p95_ms", "p95", thresholds.p95),
        ("server_peak_rss_mb", "server memory", thresholds.rss),
    ):
        relative = _relative_rise(getattr(old, what), getattr(new, what))
        if relative is not None and abs(relative) > limit:
            text = f"{label} {relative:+.0%} (threshold {limit:.0%})"
            changes.append(Change(what, text, regression=relative > 0))
    return changes


def _absolute_rise(old: float | None, new: float | None) -> float | None:
    return None if old is None or new is None else new - old


def _relative_rise(old: float | None, new: float | None) -> float | None:
    if old is None or new is None or old <= 0:
        return None
    return (new - old) / old


# --- output ---------------------------------------------------------------------------------

HEADERS = (
    "version",
    "plugin",
    "scenario",
    "verdict OLD",
    "verdict NEW",
    "New()/req OLD",
    "New()/req NEW",
    "p95 ms OLD",
    "p95 ms NEW",
    "server MB OLD",
    "server MB NEW",
    "changes",
)


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.0f}"


def table_cells(comparison: Comparison) -> list[list[str]]:
    cells = []
    for row in comparison.rows:
        old, new = row.old, row.new
        notes = [("REGRESSION: " if c.regression else "") + c.text for c in row.changes]
        cells.append(
            [
                row.version,
                row.plugin,
                row.scenario,
                "-" if old is None else old.verdict,
                "-" if new is None else new.verdict,
                _number(None if old is None else old.new_calls_per_request),
                _number(None if new is None else new.new_calls_per_request),
                _number(None if old is None else old.p95_ms),
                _number(None if new is None else new.p95_ms),
                _number(None if old is None else old.server_peak_rss_mb),
                _number(None if new is None else new.server_peak_rss_mb),
                "; ".join(notes) or "-",
            ]
        )
    return cells


def _verdict_line(comparison: Comparison) -> str:
    count = comparison.regressions
    if not count:
        return "No regression."
    return f"**{count} regression{'s' if count != 1 else ''}** (flagged worsenings)."


def _threshold_text(thresholds: Thresholds) -> str:
    return (
        f"Flagged: a changed verdict, New()/req moved by more than {thresholds.new_per_request:g} "
        f"(absolute), p95 by more than {thresholds.p95:.0%}, server memory by more than "
        f"{thresholds.rss:.0%} (relative)."
    )


def render_markdown(comparison: Comparison) -> str:
    old, new = comparison.old, comparison.new
    lines = [
        f"# kong-plugin-matrix: {old.run_id} (OLD) -> {new.run_id} (NEW)",
        "",
        f"OLD: `{comparison.old_path}`; NEW: `{comparison.new_path}`",
        "",
    ]
    if any(r.simulated for r in (*old.versions, *new.versions)):
        lines += ["**SIMULATED**: some rows ran against kong-sim, not a real Kong image.", ""]
    lines += [
        tabulate(
            table_cells(comparison), headers=HEADERS, tablefmt="github", disable_numparse=True
        ),
        "",
        _threshold_text(comparison.thresholds),
        "",
        _verdict_line(comparison),
    ]
    return "\n".join(lines) + "\n"


def render_json(comparison: Comparison) -> str:
    return json.dumps(comparison.to_dict(), indent=2) + "\n"


def render_html(comparison: Comparison) -> str:
    """The report page with both runs: the comparison first, then charts overlaying them."""
    from orchestration import page  # matplotlib: only when a page is asked for

    rows = table_cells(comparison)
    classes = ["churn" if row.regression else "" for row in comparison.rows]
    section = [
        "<h2>Comparison</h2>",
        page.html_table(HEADERS, rows, classes),
        f"<p>{html.escape(_threshold_text(comparison.thresholds))}</p>",
        f'<p class="flag">{html.escape(_verdict_line(comparison).replace("**", ""))}</p>',
    ]
    series = [
        page.Series("OLD", comparison.old, run_dir_of(comparison.old_path)),
        page.Series("NEW", comparison.new, run_dir_of(comparison.new_path)),
    ]
    title = f"kong-plugin-matrix: {comparison.old.run_id} (OLD) vs {comparison.new.run_id} (NEW)"
    return page.render_page(series, title, sections_first=section)


def parse_threshold(option: str, raw: str, relative: bool) -> float:
    """`0.05`, or for the relative ones also `25%`; negative or unreadable is a UsageError."""
    text = raw.strip()
    try:
        value = float(text[:-1]) / 100 if relative and text.endswith("%") else float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        example = "0.25 or 25%" if relative else "0.05"
        raise UsageError(f"{option} takes a number >= 0 (e.g. {example}), got {raw!r}")
    return value
