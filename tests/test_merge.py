"""merge: a matrix split across machines or CI jobs merges into the table one run prints."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from runs import REPO, cli, sim_run, write_folder

from orchestration import merge, report
from orchestration.report import Row
from orchestration.run_files import load_run

TIMING_HEADERS = {"req/s", "p95 ms"}


def _table_without_timing(rows: tuple[Row, ...]) -> list[list[str]]:
    headers, cells = report.table_cells(rows)
    keep = [i for i, header in enumerate(headers) if header not in TIMING_HEADERS]
    return [[headers[i] for i in keep]] + [[row[i] for i in keep] for row in cells]


def _split(tmp_path: Path) -> tuple[Path, Path]:
    """The simulated matrix as two CI jobs would leave it: disjoint versions, own run ids."""
    rows = sim_run().versions
    first = {"3.4.0.0", "3.6.0.0", "3.7.1.0"}
    one = write_folder(tmp_path / "job-1", "run-job-1", [r for r in rows if r.version in first])
    two = write_folder(tmp_path / "job-2", "run-job-2", [r for r in rows if r.version not in first])
    return one, two


def test_a_split_matrix_merges_into_the_full_runs_table(tmp_path: Path) -> None:
    one, two = _split(tmp_path)
    merged, run_dir = merge.merge(merge.find_sources([two, one]), tmp_path / "merged")
    assert _table_without_timing(merged.versions) == _table_without_timing(sim_run().versions)
    assert report.render_table(merged.versions) == report.render_table(sim_run().versions)
    for name in ("results.json", "results.csv", "summary.md", "report.html", "config.json"):
        assert (run_dir / name).is_file(), name
    assert load_run(run_dir) == merged
    assert (tmp_path / "merged" / "latest").resolve() == run_dir


def test_config_names_the_sources_and_folders_come_along(tmp_path: Path) -> None:
    one, two = _split(tmp_path)
    _, run_dir = merge.merge(merge.find_sources([one, two]), tmp_path / "merged")
    config = json.loads((run_dir / "config.json").read_text())
    assert [s["run_id"] for s in config["merged_from"]] == ["run-job-1", "run-job-2"]
    assert config["conflicts"] == [] and config["settings_differ"] == {}
    for row in load_run(run_dir).versions:
        assert row.results_dir is not None and Path(row.results_dir).parent == run_dir
        assert (Path(row.results_dir) / "kong.log").is_file()
        assert (Path(row.results_dir) / "resources.csv").is_file()
    page = (run_dir / "report.html").read_text()
    assert 'id="chart-memory"' in page  # resources.csv found in the merged folder


def test_collect_works_on_the_merged_folder(tmp_path: Path) -> None:
    one, two = _split(tmp_path)
    _, run_dir = merge.merge(merge.find_sources([one, two]), tmp_path / "merged")
    done = subprocess.run(
        [sys.executable, "-m", "orchestration", "collect", str(run_dir), "--json"],
        env={"PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)) == len(sim_run().versions)


def test_conflicting_rows_are_both_kept_and_flagged(tmp_path: Path) -> None:
    rows = sim_run().versions
    one = write_folder(tmp_path / "a", "run-a", rows[:4])
    two = write_folder(tmp_path / "b", "run-b", rows[2:6])  # rows 2 and 3 measured twice
    merged, run_dir = merge.merge(merge.find_sources([one, two]), tmp_path / "merged")
    assert len(merged.versions) == 8
    twice = [r for r in merged.versions if any(f.startswith("conflict:") for f in r.findings)]
    assert [(r.version, r.scenario, r.findings) for r in twice] == [
        ("3.4.1.0", "steady", ("conflict: run-a",)),
        ("3.4.1.0", "steady", ("conflict: run-b",)),
        ("3.4.1.0", "kill-server", ("conflict: run-a",)),
        ("3.4.1.0", "kill-server", ("conflict: run-b",)),
    ]
    assert len({r.results_dir for r in twice}) == 4  # each keeps its own folder
    assert json.loads((run_dir / "config.json").read_text())["conflicts"] == [
        "3.4.1.0",
        "3.4.1.0 kill-server",
    ]
    assert "conflict: run-b" in (run_dir / "summary.md").read_text()


def test_ci_artifact_folders_are_searched_and_latest_links_skipped(tmp_path: Path) -> None:
    one, two = _split(tmp_path)
    artifact = tmp_path / "artifacts" / "results-3.4.1.0" / "results"
    artifact.mkdir(parents=True)
    two.rename(artifact / "run-job-2")
    (artifact / "latest").symlink_to("run-job-2")
    sources = merge.find_sources([one, tmp_path / "artifacts"])
    assert [s.run.run_id for s in sources] == ["run-job-1", "run-job-2"]


def test_cli_merge_and_its_bad_input(tmp_path: Path) -> None:
    one, two = _split(tmp_path)
    done = cli(["merge", str(one), str(two), "--results", "out"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "| 3.4.1.0 " in done.stdout and "Merged 2 runs, 10 rows" in done.stderr
    assert (tmp_path / "out" / "latest" / "report.html").is_file()

    missing = cli(["merge", str(one), "nope"], tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: nope does not exist: pass run folders")
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = cli(["merge", str(empty)], tmp_path)
    assert nothing.returncode == 2 and "holds no results.json" in nothing.stderr
    twice = cli(["merge", str(one), str(one / "results.json")], tmp_path)
    assert twice.returncode == 2 and "named twice" in twice.stderr


def test_different_settings_are_noted(tmp_path: Path) -> None:
    one, two = _split(tmp_path)
    data = json.loads((two / "results.json").read_text())
    data["config"]["requests"] = 9000
    (two / "results.json").write_text(json.dumps(data))
    done = cli(["merge", str(one), str(two), "--results", "out"], tmp_path)
    assert done.returncode == 0
    assert "different settings: requests 4000 vs 9000" in done.stderr


@pytest.mark.docker
@pytest.mark.timeout(900)
def test_two_sim_runs_merge_into_the_table_of_one(tmp_path: Path) -> None:
    """For real: --sim on 3.4.0.0, then on 3.4.1.0, merged, against one run of both."""

    def run(*versions: str) -> Path:
        root = tmp_path / "-".join(versions)
        done = cli(
            ["matrix", "--sim", "--requests", "300", *versions, "--results", str(root)], tmp_path
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return root / "latest"

    full = load_run(run("3.4.0.0", "3.4.1.0"))
    first, second = run("3.4.0.0"), run("3.4.1.0")
    merged, _ = merge.merge(merge.find_sources([second, first]), tmp_path / "merged")
    # Measured counts differ from run to run; what a run decides must not.
    decided = (
        "version",
        "scenario",
        "simulated",
        "verdict",
        "expected",
        "matches_changelog",
        "requests",
    )

    def decisions(rows: tuple[Row, ...]) -> list[tuple[object, ...]]:
        return [tuple(getattr(row, name) for name in decided) for row in rows]

    assert decisions(merged.versions) == decisions(full.versions)
