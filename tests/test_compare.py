"""compare: what changed between two runs, which changes are regressions, and the exit code."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from runs import cli, sim_run, write_folder

from orchestration import compare
from orchestration.errors import UsageError
from orchestration.report import Row, RunResult


def _steady(run: RunResult) -> dict[str, Row]:
    return {row.version: row for row in run.versions if row.scenario == "steady"}


def _changed(version: str, **changes: object) -> RunResult:
    """The simulated run with the steady row of `version` changed."""
    run = sim_run()
    rows = tuple(
        replace(row, **changes)  # type: ignore[arg-type]
        if (row.version, row.scenario) == (version, "steady")
        else row
        for row in run.versions
    )
    return replace(run, run_id="new-run", versions=rows)


def _compare(new: RunResult, thresholds: compare.Thresholds | None = None) -> compare.Comparison:
    old = sim_run()
    return compare.compare(old, new, thresholds or compare.Thresholds(), Path("old"), Path("new"))


def _changes(comparison: compare.Comparison, version: str) -> dict[str, compare.Change]:
    row = next(r for r in comparison.rows if r.version == version and r.scenario == "steady")
    return {change.what: change for change in row.changes}


def test_the_same_run_twice_has_no_change() -> None:
    comparison = _compare(sim_run())
    assert comparison.regressions == 0
    assert all(not row.changes for row in comparison.rows)
    assert len(comparison.rows) == len(sim_run().versions)


def test_a_fixed_version_that_churns_again_is_a_regression() -> None:
    comparison = _compare(
        _changed("3.6.0.0", verdict="churn", new_calls_per_request=1.8, matches_changelog=False)
    )
    changes = _changes(comparison, "3.6.0.0")
    assert changes["verdict"].regression and "stable -> churn" in changes["verdict"].text
    assert changes["new_calls_per_request"].regression
    assert comparison.regressions == 1


def test_new_per_request_threshold_is_absolute() -> None:
    slightly = _changed("3.6.0.0", new_calls_per_request=0.009)  # 0 -> 0.009: noise
    assert _compare(slightly).regressions == 0
    more = _changed("3.4.1.0", new_calls_per_request=1.798 + 0.06)
    assert _changes(_compare(more), "3.4.1.0")["new_calls_per_request"].regression
    assert _compare(more, compare.Thresholds(new_per_request=0.1)).regressions == 0


@pytest.mark.parametrize(
    ("field", "what"), [("p95_ms", "p95_ms"), ("server_peak_rss_mb", "server_peak_rss_mb")]
)
def test_p95_and_memory_thresholds_are_relative(field: str, what: str) -> None:
    old = _steady(sim_run())["3.4.3.1"]
    base = getattr(old, field)
    within = _changed("3.4.3.1", **{field: base * 1.2})
    assert _compare(within).regressions == 0
    beyond = _changed("3.4.3.1", **{field: base * 1.3})
    change = _changes(_compare(beyond), "3.4.3.1")[what]
    assert change.regression and "+30%" in change.text
    assert _compare(beyond, compare.Thresholds(p95=0.5, rss=0.5)).regressions == 0


def test_improvements_are_flagged_but_not_regressions() -> None:
    better = _changed("3.4.1.0", verdict="stable", new_calls_per_request=0.0, p95_ms=10.0)
    comparison = _compare(better)
    changes = _changes(comparison, "3.4.1.0")
    assert {"verdict", "new_calls_per_request", "p95_ms"} <= set(changes)
    assert not any(change.regression for change in changes.values())
    assert comparison.regressions == 0


def test_a_row_that_errors_now_is_a_regression() -> None:
    broken = _changed("3.4.0.0", verdict="error", status="error", new_calls_per_request=None)
    assert _changes(_compare(broken), "3.4.0.0")["verdict"].regression


def test_rows_only_one_side_has_are_listed_not_regressions() -> None:
    run = sim_run()
    fewer = replace(run, versions=run.versions[2:])
    comparison = compare.compare(run, fewer, compare.Thresholds(), Path("a"), Path("b"))
    only_old = [r for r in comparison.rows if r.new is None]
    assert [r.version for r in only_old] == ["3.4.0.0", "3.4.0.0"]
    assert comparison.regressions == 0


def test_cli_markdown_json_html_and_exit_codes(tmp_path: Path) -> None:
    run = sim_run()
    old = write_folder(tmp_path / "old", "old-run", run.versions)
    worse = _changed("3.4.3.1", p95_ms=400.0)
    new = write_folder(tmp_path / "new", "new-run", worse.versions)

    same = cli(["compare", str(old), str(old / "results.json")], tmp_path)
    assert same.returncode == 0, same.stderr
    assert "No regression." in same.stdout and "| 3.4.1.0 " in same.stdout

    done = cli(["compare", str(old), str(new), "--html", str(tmp_path / "cmp.html")], tmp_path)
    assert done.returncode == 1, done.stderr
    assert "REGRESSION: p95 +" in done.stdout and "1 regression" in done.stdout
    document = (tmp_path / "cmp.html").read_text()
    assert "OLD" in document and "NEW" in document and "REGRESSION" in document
    for row in run.versions:
        assert f">{row.version}<" in document  # every version labelled on the overlaid chart

    as_json = cli(["compare", str(old), str(new), "--json", "--threshold-p95", "1000%"], tmp_path)
    assert as_json.returncode == 0, as_json.stderr  # +876% is within 1000%
    data = json.loads(as_json.stdout)
    assert data["regressions"] == 0 and data["thresholds"]["p95"] == 10.0
    assert data["old"]["run_id"] == "old-run" and len(data["rows"]) == len(run.versions)


def test_cli_bad_input_exits_2_saying_what_to_pass(tmp_path: Path) -> None:
    old = write_folder(tmp_path / "old", "old-run", sim_run().versions)
    missing = cli(["compare", str(old), str(tmp_path / "nope")], tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: NEW ") and "pass a run folder" in missing.stderr
    bad = cli(["compare", str(old), str(old), "--threshold-rss", "lots"], tmp_path)
    assert bad.returncode == 2 and "--threshold-rss takes a number" in bad.stderr
    nowhere = cli(["compare", str(old), str(old), "--html", "no/such/dir/x.html"], tmp_path)
    assert nowhere.returncode == 2 and "does not exist" in nowhere.stderr


@pytest.mark.parametrize(("raw", "value"), [("0.25", 0.25), ("25%", 0.25), ("0", 0.0)])
def test_thresholds_read_fractions_and_percentages(raw: str, value: float) -> None:
    assert compare.parse_threshold("--threshold-p95", raw, relative=True) == value


@pytest.mark.parametrize("raw", ["-1", "nan", "x", "5%"])
def test_bad_thresholds(raw: str) -> None:
    with pytest.raises(UsageError, match="--threshold-new"):
        compare.parse_threshold("--threshold-new", raw, relative=False)
