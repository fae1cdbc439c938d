from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import fields, replace
from pathlib import Path

import pytest

from orchestration import report, run_files
from orchestration.errors import UsageError
from orchestration.report import Row, RunResult


def _row(**changes: object) -> Row:
    row = Row(
        version="3.4.1.0",
        image="kong/kong-gateway:3.4.1.0",
        simulated=True,
        status="ok",
        error=None,
        expected="affected",
        verdict="churn",
        matches_changelog=True,
        requests=1000,
        failures=0,
        new_calls_total=2003,
        new_calls_before_load=3,
        new_calls_during_load=2000,
        new_calls_per_request=2.0,
    )
    return replace(row, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("per_request", "verdict"),
    [
        (0.0, "stable"),
        (0.01, "stable"),
        (0.011, "inconclusive"),
        (0.49, "inconclusive"),
        (0.5, "churn"),
        (1.855, "churn"),
    ],
)
def test_verdict_thresholds(per_request: float, verdict: str) -> None:
    assert report.verdict_for(per_request) == verdict


@pytest.mark.parametrize(
    ("expected", "verdict", "agrees"),
    [
        ("affected", "churn", True),
        ("affected", "stable", False),
        ("fixed", "stable", True),
        ("baseline", "churn", False),
        ("unknown", "churn", None),
        ("fixed", "error", None),
    ],
)
def test_matches_changelog(expected: str, verdict: str, agrees: bool | None) -> None:
    assert report.matches_changelog(expected, verdict) is agrees


def test_table_keeps_versions_as_written_and_marks_simulation() -> None:
    table = report.render_table(
        [_row(version="3.10.0.0"), _row(version="3.4.0.0", simulated=False)]
    )
    assert "| 3.10.0.0 " in table
    assert "| 3.4.0.0 " in table
    assert "| yes " in table and "| no " in table
    assert table.splitlines()[1].startswith("|--")


def test_run_files_round_trip_and_latest_link(tmp_path: Path) -> None:
    run_dir = tmp_path / "run-1"
    run = RunResult(
        "run-1",
        "0.1.0",
        {"requests": 1000},
        (_row(), _row(version="3.4.0.0", verdict="error", status="error", error="boom")),
    )
    run_files.write_run(run_dir, run)
    run_files.point_latest(tmp_path, run_dir)
    data = json.loads((run_dir / "results.json").read_text())
    assert data["run_id"] == "run-1"
    assert data["versions"][0]["new_calls_per_request"] == 2.0
    assert run_files.load_run(tmp_path / "latest") == run
    summary = (run_dir / "summary.md").read_text()
    assert "SIMULATED" in summary and "boom" in summary
    csv_lines = (run_dir / "results.csv").read_text().splitlines()
    assert csv_lines[0].startswith("version,image,simulated,status")
    assert len(csv_lines) == 3
    assert not list(run_dir.glob(".*.tmp")), "no temp files left behind"


def test_load_run_explains_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"no results\.json"):
        run_files.load_run(tmp_path)
    (tmp_path / "results.json").write_text('{"run_id": ')
    with pytest.raises(UsageError, match="not valid JSON"):
        run_files.load_run(tmp_path)


def test_write_atomic_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    run_files.write_atomic(target, "old")
    run_files.write_atomic(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_matches_changelog_counts_inconclusive_as_a_disagreement() -> None:
    assert report.matches_changelog("affected", "inconclusive") is False
    assert report.matches_changelog("fixed", "inconclusive") is False


def test_summary_shows_each_scenarios_phases_as_a_table() -> None:
    phases = (
        report.PhaseResult(
            "warm", "before the change", 1000, 0, 0, 0.0, 500.0, 2.0, 4.5, ran_on=1000
        ),
        report.PhaseResult(
            "change", "three changes", 300, 2, 150, 0.5, 90.0, 3.0, 12.0, False, {"new_calls": 7}
        ),
    )
    run = RunResult("r", "0.1.0", {}, (_row(scenario="reload", phases=phases),))
    summary = report.render_summary(run)
    section = summary.split("## 3.4.1.0, reload: before the change\n\n", 1)[1]
    assert section.split("\n\n", 1)[0].splitlines() == [
        "| phase   | counted   | requests   | failures   | ran on   | New()   | New()/req   "
        "| req/s   | p50 ms   | p95 ms   | new calls   |",
        "|---------|-----------|------------|------------|----------|---------|-------------"
        "|---------|----------|----------|-------------|",
        "| warm    | yes       | 1000       | 0          | 1000     | 0       | 0.000       "
        "| 500     | 2.000    | 4.500    | -           |",
        "| change  | no        | 300        | 2          | -        | 150     | 0.500       "
        "| 90      | 3.000    | 12       | 7           |",
    ]


def test_config_json_is_indented_for_people(tmp_path: Path) -> None:
    run_files.write_config(tmp_path, {"requests": 1000, "targets": ["3.4.1.0"]})
    assert (tmp_path / "config.json").read_text() == (
        '{\n  "requests": 1000,\n  "targets": [\n    "3.4.1.0"\n  ]\n}\n'
    )


def _run_with_phases() -> RunResult:
    phases = (
        report.PhaseResult("warm", "before", 100, 0, 2, 0.02, figures={"seconds": 1.5}),
        report.PhaseResult("change", "the change", 50, 1, counted=False),
    )
    row = _row(scenario="reload", phases=phases, findings=("stale-config", "slow"))
    return RunResult("r", "0.1.0", {"targets": ["3.4.1.0"]}, (row, _row(version="3.4.0.0")))


def test_results_json_round_trips_phases_and_findings() -> None:
    run = _run_with_phases()
    data = json.loads(json.dumps(run.to_dict()))
    assert set(data["versions"][0]) == {f.name for f in fields(Row)}
    assert data["versions"][0]["phases"][1]["name"] == "change"
    assert data["versions"][0]["findings"] == ["stale-config", "slow"]
    assert RunResult.from_dict(data) == run


def test_results_json_from_before_phases_findings_or_config_still_loads() -> None:
    row = _row().to_dict()
    del row["phases"], row["findings"]
    loaded = RunResult.from_dict({"run_id": "r", "tool_version": "0", "versions": [row]})
    assert loaded == RunResult("r", "0", {}, (_row(),))
    assert RunResult.from_dict({"run_id": "r", "tool_version": "0"}) == RunResult("r", "0", {}, ())


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "-"), (True, "yes"), (False, "no"), (9.5, "9.500"), (10.0, "10"), (10.4, "10"),
     (-12.6, "-13"), ((), "-"), (("a", "b"), "a, b"), (7, "7")],
)  # fmt: skip
def test_cells_are_written_for_people(value: object, text: str) -> None:
    assert report._cell(value) == text


def test_the_optional_columns_take_their_places() -> None:
    row = _row(plugin="python", scenario="reload", counted_by="tap")
    headers, _ = report.table_cells([_row(), row])
    plain, _ = report.table_cells([_row()])
    assert headers[:3] == ["version", "plugin", "scenario"]
    assert headers[headers.index("New()/req") - 1] == "counted by"
    assert [h for h in headers if h not in ("plugin", "scenario", "counted by")] == plain


def test_the_summary_names_the_engines_a_run_spread_over() -> None:
    engines = ["unix:///run/a.sock", "unix:///run/b.sock"]
    run = RunResult("r", "0", {"docker_hosts": engines}, (_row(),))
    assert (
        "\nEngines: each version went to the least-loaded of unix:///run/a.sock, "
        "unix:///run/b.sock when it started (the `engine` column).\n\nVerdict:"
    ) in report.render_summary(run)
    assert "Engines:" not in report.render_summary(RunResult("r", "0", {}, (_row(),)))


def test_version_folder_next_to_the_results_first_then_where_recorded(tmp_path: Path) -> None:
    recorded = tmp_path / "old" / "3.4.1.0"
    moved = tmp_path / "moved"
    row = _row(results_dir=str(recorded))
    assert run_files.version_folder(moved, _row(results_dir=None)) is None
    assert run_files.version_folder(moved, row) is None  # neither exists
    recorded.mkdir(parents=True)
    assert run_files.version_folder(moved, row) == recorded
    assert run_files.version_folder(None, row) == recorded
    (moved / "3.4.1.0").mkdir(parents=True)
    assert run_files.version_folder(moved, row) == moved / "3.4.1.0"


def test_results_files_are_for_people_and_spreadsheets(tmp_path: Path) -> None:
    run = _run_with_phases()
    run_files.write_run(tmp_path, run)
    assert (tmp_path / "results.json").read_text().startswith('{\n  "run_id": "r",\n  "tool')
    text = (tmp_path / "results.csv").read_bytes().decode()
    assert "\r" not in text
    assert text.splitlines()[0].split(",") == [f.name for f in fields(Row) if f.name != "phases"]
    first = next(csv.DictReader(io.StringIO(text)))
    assert (first["findings"], first["requests"], first["error"]) == (
        "stale-config;slow",
        "1000",
        "",
    )
    assert (first["rps"], first["simulated"]) == ("", "True")


def test_summary_md_in_full() -> None:
    phases = (report.PhaseResult("warm", "three changes", 10, 0, 1, 0.1),)
    run = RunResult(
        "r-1",
        "0.1.0",
        {},
        (
            _row(phases=phases),  # a steady row's one phase is the table's row: no section
            _row(version="3.6.0.0", scenario="reload", phases=phases),
            _row(version="3.4.0.0", verdict="error", status="error", error="boom"),
        ),
    )
    assert (
        report.render_summary(run)
        == "\n".join(
            [
                "# kong-plugin-matrix run r-1",
                "",
                "**SIMULATED**: rows marked `simulated: yes` ran against kong-sim, the offline "
                "stand-in for Kong, not a real Kong image.",
                "",
                report.render_table(run.versions),
                "",
                "## 3.6.0.0, reload: three changes",
                "",
                report.render_phases(run.versions[1]),
                "",
                "## Errors",
                "",
                "- **3.4.0.0, plugin go, scenario steady** (error): boom",
                "",
                "Verdict: `churn` at >= 0.5 New() calls per request during the load, `stable` at "
                "<= 0.01, `inconclusive` between. Tool 0.1.0.",
            ]
        )
        + "\n"
    )
    real = RunResult("r-2", "0.1.0", {}, (_row(simulated=False),))
    assert report.render_summary(real).startswith("# kong-plugin-matrix run r-2\n\n| version ")


def test_columns_appear_only_when_some_row_has_them() -> None:
    steady, _ = report.table_cells([_row()])
    assert steady == [header for header, _ in report.TABLE_COLUMNS]
    mixed, _ = report.table_cells([_row(), _row(scenario="reload", server_peak_rss_mb=3.0)])
    assert mixed[:3] == ["version", "scenario", "simulated"]
    assert mixed[2:] == [*steady[1:], "server MB"]


def test_table_cells_are_printed_as_formatted() -> None:
    table = report.render_table([_row()])
    assert "| 2.000       |" in table  # New()/req as _cell wrote it, not re-parsed as 2


def test_write_atomic_makes_the_folders(tmp_path: Path) -> None:
    run_files.write_atomic(tmp_path / "a" / "b" / "f.json", "x")
    assert (tmp_path / "a" / "b" / "f.json").read_text() == "x"


def test_a_failed_write_keeps_the_old_file_and_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "f.json"
    run_files.write_atomic(target, "old")

    def disk_full(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="disk full"):
        run_files.write_atomic(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_the_error_list_names_each_rows_version_plugin_and_scenario() -> None:
    """A run of several plugins or scenarios has several rows per version: `**3.4.1.0**
    (error)` did not say which one failed."""
    rows = (
        _row(status="error", verdict="error", error="743 of 1000 requests failed"),
        _row(plugin="python", scenario="reload", status="error", verdict="error", error="boom"),
    )
    summary = report.render_summary(RunResult("r", "0.1.0", {}, rows))
    assert "- **3.4.1.0, plugin go, scenario steady** (error): 743 of 1000 requests failed\n" in (
        summary
    )
    assert "- **3.4.1.0, plugin python, scenario reload** (error): boom\n" in summary


def test_a_small_sample_is_a_finding_in_the_table_and_the_csv() -> None:
    assert report.MIN_REQUESTS_PER_WORKER == 100  # 1 / STABLE_AT: one New() per worker
    assert report.small_sample(399, 4) == ("small-sample",)
    assert report.small_sample(400, 4) == report.small_sample(100, None) == ()
    assert report.small_sample(0, 4) == ()  # nothing through the plugin: an error, no verdict
    row = _row(requests=5, findings=report.small_sample(5, 4))
    headers, cells = report.table_cells([row])
    assert cells[0][headers.index("findings")] == "small-sample"
    assert "small-sample" in report.render_summary(RunResult("r", "0.1.0", {}, (row,)))
    assert "small-sample" in report.render_csv((row,))


def _widest_one_plugin_rows() -> tuple[Row, ...]:
    """A one-plugin steady run at the widest its cells get: the longest release numbers and
    verdicts, five-digit counts, a finding, an error row."""
    return (
        _row(
            version="3.14.0.13",
            verdict="inconclusive",
            matches_changelog=None,
            requests=30000,
            failures=29999,
            ran_on=30000,
            new_calls_per_request=0.123,
            rps=12345.6,
            p95_ms=12345.0,
            findings=("small-sample",),
        ),
        _row(version="oss-3.9.3", verdict="did-not-run", status="error", error="x " * 90),
        _row(rps=734.2, p95_ms=150.0, ran_on=1000),
    )


def test_the_terminal_table_of_a_one_plugin_run_fits_100_columns() -> None:
    run = RunResult("20261130-214408-495d1d", "0.1.0", {}, _widest_one_plugin_rows())
    shown = report.render_summary(run, "compact")
    assert max(len(line) for line in shown.splitlines()) <= 100, shown
    assert "| 3.14.0.13 | inconclusive | -      | 0.123     | 30000  | 29999    | 12346" in shown
    wide = report.render_summary(run)
    assert wide == report.render_summary(run, "full") and max(map(len, wide.splitlines())) > 150


def test_the_compact_columns_are_the_ones_to_decide_on() -> None:
    headers, _ = report.table_cells([_row(findings=("small-sample",))], "compact")
    assert headers == [
        "version", "verdict", "agrees", "New()/req", "ran on", "failures", "req/s", "p95 ms",
        "findings",
    ]  # fmt: skip
    # plugin when more than one or not the default, scenario likewise, simulated when mixed
    headers, _ = report.table_cells([_row(plugin="python")], "compact")
    assert headers[:3] == ["version", "plugin", "verdict"]
    several = [_row(), _row(scenario="reload", simulated=False)]
    headers, _ = report.table_cells(several, "compact")
    assert headers[:4] == ["version", "scenario", "simulated", "verdict"]


def test_a_row_reads_the_same_in_the_compact_and_the_full_table() -> None:
    rows = _widest_one_plugin_rows()
    full_headers, full = report.table_cells(rows)
    compact_headers, compact = report.table_cells(rows, "compact")
    for full_row, compact_row in zip(full, compact, strict=True):
        by_header = dict(zip(full_headers, full_row, strict=True))
        assert compact_row == [by_header[header] for header in compact_headers]


def test_the_compact_summary_says_where_every_column_is() -> None:
    run = RunResult("r", "0.1.0", {}, (_row(),))
    shown = report.render_summary(run, "compact")
    assert "**SIMULATED**: every row ran against kong-sim" in shown
    assert "`--wide`, or summary.md, results.csv and report.html" in shown
    assert "--wide" not in report.render_summary(run)


def test_report_prints_the_compact_table_and_the_full_one_with_wide(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from orchestration import cli

    run_dir = Path(__file__).parent / "fixtures" / "runs" / "sim-matrix"
    run = run_files.load_run(run_dir)
    cli.main(["report", str(run_dir)])
    assert capsys.readouterr().out == report.render_summary(run, "compact") + "\n"
    cli.main(["report", str(run_dir), "--wide"])
    assert capsys.readouterr().out == report.render_summary(run, "full") + "\n"


@pytest.mark.parametrize(
    ("plugin", "scenario", "parts"),
    [("go", "steady", ["3.4.1.0"]), ("python", "steady", ["3.4.1.0", "python"]),
     ("go", "reload", ["3.4.1.0", "reload"]), ("js", "idle", ["3.4.1.0", "js", "idle"])],
)  # fmt: skip
def test_a_rows_label_leaves_out_the_default_plugin_and_scenario(
    plugin: str, scenario: str, parts: list[str]
) -> None:
    assert report.label_parts("3.4.1.0", plugin, scenario) == parts
    assert report.short_label(_row(plugin=plugin, scenario=scenario)) == " ".join(parts)
