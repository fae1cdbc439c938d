"""Every scenario end to end on the stand-in, short: the numbers differ where Kong's rules say.

Each runs in-process through the pipeline's `measure_job`, as the CLI does, against kong-sim
with its release families (images/kong-sim/internal/release/releases.json).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from orchestration import pipeline, scenarios
from orchestration.config import SCENARIOS, RunConfig
from orchestration.errors import UsageError
from orchestration.report import PhaseResult, VersionResult
from orchestration.versions import target_for_version


def _config(tmp_path: Path, **changes: object) -> RunConfig:
    config = RunConfig(
        run_id="scenarios",
        targets=(target_for_version("3.4.1.0"),),
        results_root=tmp_path,
        sim=True,
        requests=400,
    )
    config = replace(config, **changes)  # type: ignore[arg-type]
    config.run_dir.mkdir(parents=True, exist_ok=True)
    return config


def _run(tmp_path: Path, version: str, scenario: str, **changes: object) -> VersionResult:
    config = _config(tmp_path, **changes)
    row = pipeline.measure_job(pipeline.Job(target_for_version(version), scenario), config)
    assert row.status == "ok", row.error
    assert row.scenario == scenario
    return row


def _phases(row: VersionResult) -> dict[str, PhaseResult]:
    return {phase.name: phase for phase in row.phases}


def test_every_scenario_name_has_a_module() -> None:
    for name in SCENARIOS:
        assert scenarios.get(name).name == name
    with pytest.raises(UsageError, match="unknown scenario 'nope'"):
        scenarios.get("nope")


@pytest.mark.docker
@pytest.mark.parametrize(
    ("version", "applied", "stale"),
    [
        ("3.6.0.0", "0/40", True),  # reuse by plugin id alone: the change never reaches it
        ("3.7.1.0", "40/40", False),  # Kong PR #12718: seq and plugin id
        ("3.4.1.0", "40/40", False),  # a new instance on every request anyway
    ],
)
def test_reload_shows_which_releases_keep_a_stale_config(
    tmp_path: Path, version: str, applied: str, stale: bool
) -> None:
    row = _run(tmp_path, version, "reload", changes=2)

    changes = [p for p in row.phases if p.name.startswith("change")]
    assert [p.figures["applied"] for p in changes] == [applied, applied]
    assert all(p.figures["under_load"] for p in changes)
    assert ("stale-config" in row.findings) is stale
    assert all(not p.counted for p in changes) and _phases(row)["steady"].counted
    if version == "3.7.1.0":  # one new instance per worker per change, not per request
        assert [p.new_calls for p in changes] == [4, 4]
        assert row.verdict == "stable"
    if version == "3.4.1.0":
        assert row.verdict == "churn"


@pytest.mark.docker
def test_kill_server_recovers_and_counts_the_restart(tmp_path: Path) -> None:
    row = _run(tmp_path, "3.6.0.0", "kill-server", requests=600)

    kill = _phases(row)["kill and recovery"]
    assert kill.figures["killed"] == 1
    assert kill.figures["restarts"] == 1
    assert kill.figures["recovered_s"] is not None
    assert kill.figures["bypassed"] + kill.figures["errors"] == kill.failures
    assert not kill.counted
    # The recovery's new instances stay out of the counted phases: still stable.
    assert _phases(row)["after recovery"].new_calls == 0
    assert row.verdict == "stable"
    assert row.plugin_server_starts == 2


@pytest.mark.docker
def test_idle_reports_the_burst_after_the_gap_apart(tmp_path: Path) -> None:
    row = _run(tmp_path, "3.6.0.0", "idle", idle=1.0)

    before, after = _phases(row)["before the gap"], _phases(row)["after the gap"]
    assert before.counted and not after.counted
    assert after.figures["idle_s"] == 1.0
    assert (before.requests, after.requests) == (200, 200)
    assert row.requests == 200  # the verdict is the first burst's


@pytest.mark.docker
def test_workers_measures_each_worker_count_in_a_stack_of_its_own(tmp_path: Path) -> None:
    row = _run(tmp_path, "3.4.1.0", "workers", requests=300)

    assert [p.figures["workers"] for p in row.phases] == [1, 2, 4, 8]
    assert all(p.requests == 300 and (p.new_calls_per_request or 0) >= 0.5 for p in row.phases)
    folder = Path(row.results_dir or "")
    assert sorted(f.name for f in folder.glob("kong-w*.log")) == [
        "kong-w1.log", "kong-w2.log", "kong-w4.log", "kong-w8.log"
    ]  # fmt: skip


@pytest.mark.docker
def test_overhead_compares_the_external_plugin_with_lua_interleaved(tmp_path: Path) -> None:
    row = _run(tmp_path, "3.6.0.0", "overhead", requests=600)

    lua = [p for p in row.phases if p.name.startswith("lua")]
    external = [p for p in row.phases if p.name in {"external 1", "external 2", "external 3"}]
    assert len(lua) == len(external) == 3
    assert all(p.new_calls == 0 and not p.counted for p in lua)  # no plugin server on that route
    assert all(p.counted and p.requests == 100 for p in external)
    ratios = _phases(row)["external / lua"].figures
    assert ratios["rps_ratio"] > 0 and ratios["p95_ratio"] > 0


@pytest.mark.docker
def test_soak_runs_for_its_duration_and_samples_memory(tmp_path: Path) -> None:
    row = _run(tmp_path, "3.4.1.0", "soak", duration=5.0)

    (soak,) = row.phases
    assert soak.requests is not None and soak.requests > 100
    assert row.verdict == "churn"
    assert row.server_peak_rss_mb is not None and row.server_peak_rss_mb > 1
    assert row.leak is None  # five seconds: too short to judge
    samples = (Path(row.results_dir or "") / "resources.csv").read_text().splitlines()
    assert len(samples) >= 4  # the header and a row a second
