"""Pipeline wiring without Docker: rows, verdicts, error rows, interrupts, the header check."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from orchestration import pipeline, report, scenarios
from orchestration.collect import Signals
from orchestration.config import RunConfig
from orchestration.errors import Interrupted, StackError, UsageError
from orchestration.load import LoadResult
from orchestration.report import PhaseResult, VersionResult
from orchestration.resources import Summary
from orchestration.scenarios import Outcome, phase
from orchestration.versions import target_for_image, target_for_version
from orchestration.world import Cancel, VersionWorld, folder_name


def _signals(new_calls: int, counter_lines: int = 0) -> Signals:
    return Signals(
        new_calls_total=new_calls,
        counter_lines=counter_lines,
        instance_starts=3,
        instance_closes=2,
        no_instance_errors=1,
        rpc_closed_errors=1,
        plugin_server_starts=1,
        plugin_server_exits=0,
        lines=10,
    )


def _outcome(
    first: Signals, last: Signals, load: LoadResult, plugin_counter: int | None = None
) -> Outcome:
    return Outcome((phase("load", "the load", first, last, load),), first, last, plugin_counter)


def _config(tmp_path: Path, *versions: str) -> RunConfig:
    return RunConfig(
        run_id="test-run",
        targets=tuple(target_for_version(v) for v in versions),
        results_root=tmp_path,
        sim=True,
    )


def test_row_counts_only_the_load() -> None:
    config_row = VersionResult(
        version="3.4.1.0",
        image="i",
        simulated=True,
        status="ok",
        error=None,
        expected="affected",
        verdict="error",
        matches_changelog=None,
    )
    load = LoadResult(requests=1000, failures=0, rps=500.0, p50_ms=3.0, p95_ms=9.0, duration_s=2.0)
    outcome = _outcome(_signals(5), _signals(2005), load, plugin_counter=2005)
    row = pipeline.row_from(config_row, outcome)
    assert row.new_calls_during_load == 2000
    assert row.new_calls_per_request == 2.0
    assert row.new_calls_before_load == 5
    assert row.verdict == "churn"
    assert row.matches_changelog is True
    assert row.plugin_counter == 2005


def test_no_request_is_never_stable() -> None:
    job = pipeline.Job(target_for_version("3.4.1.0"))
    base = pipeline._base_row(job, _config(Path("/nowhere")), Path("/x"))
    load = LoadResult(requests=0, failures=0, rps=0.0, p50_ms=0.0, p95_ms=0.0, duration_s=0.0)
    row = pipeline.row_from(base, _outcome(_signals(5), _signals(5), load))
    assert row.verdict == "error"
    assert row.status == "error"
    assert "no request completed" in (row.error or "")


@pytest.mark.parametrize(
    ("label", "folder"),
    [("3.4.1.0", "3.4.1.0"), ("kong/kong-gateway:3.7.1.0", "kong_kong-gateway_3.7.1.0")],
)
def test_folder_names_are_safe(label: str, folder: str) -> None:
    assert folder_name(label) == folder


def test_a_failing_version_becomes_an_error_row_and_the_rest_still_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, "3.4.0.0", "3.4.1.0", "3.6.0.0")

    def fake_spec(world: VersionWorld) -> object:
        if world.label == "3.4.1.0":
            raise StackError("image kong/kong-gateway:3.4.1.0 not available")
        raise StackError("other failure")

    monkeypatch.setattr(VersionWorld, "_stack_spec", fake_spec)
    run = pipeline.run_matrix(config)
    assert [r.status for r in run.versions] == ["error", "error", "error"]
    assert "not available" in (run.versions[1].error or "")
    saved = json.loads((config.run_dir / "results.json").read_text())
    assert len(saved["versions"]) == 3
    assert (tmp_path / "latest").resolve() == config.run_dir.resolve()


def test_interrupt_keeps_finished_rows_and_marks_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, "3.4.0.0", "3.4.1.0", "3.6.0.0")
    finished = replace(
        pipeline._base_row(pipeline.Job(config.targets[0]), config, tmp_path),
        verdict="stable",
        new_calls_per_request=0.0,
    )

    def fake_measure(
        job: pipeline.Job, _config: RunConfig, *_cancel: object, **_engine: object
    ) -> VersionResult:
        if job.target.label == "3.4.0.0":
            return finished
        raise Interrupted(15)

    monkeypatch.setattr(pipeline, "measure_job", fake_measure)
    with pytest.raises(Interrupted) as raised:
        pipeline.run_matrix(config)
    assert raised.value.exit_code == 143
    saved = json.loads((config.run_dir / "results.json").read_text())
    assert [v["status"] for v in saved["versions"]] == ["ok", "interrupted", "interrupted"]
    assert "interrupted" in (config.run_dir / "summary.md").read_text()


def test_a_run_never_overwrites_another(tmp_path: Path) -> None:
    config = _config(tmp_path, "3.4.0.0")
    config.run_dir.mkdir(parents=True)
    (config.run_dir / "results.json").write_text("{}")
    with pytest.raises(UsageError, match="already exists: a run never overwrites another"):
        pipeline.run_matrix(config)
    with pytest.raises(UsageError, match="already exists"):
        pipeline.run_ui(config)
    assert (config.run_dir / "results.json").read_text() == "{}"
    assert sorted(p.name for p in config.run_dir.iterdir()) == ["results.json"]


@pytest.mark.parametrize(
    ("failures", "verdict"),
    [(0, "churn"), (400, "churn"), (501, "error"), (1000, "error")],
)
def test_a_load_that_mostly_failed_gets_no_verdict(failures: int, verdict: str) -> None:
    """Found by the chaos soak: Kong killed, every request failed, 0 New() read as `stable`."""
    job = pipeline.Job(target_for_version("3.4.1.0"))
    base = pipeline._base_row(job, _config(Path("/nowhere")), Path("/x"))
    load = LoadResult(1000, failures, rps=500.0, p50_ms=3.0, p95_ms=9.0, duration_s=2.0)
    served = 1000 - failures
    row = pipeline.row_from(base, _outcome(_signals(5), _signals(5 + 2 * served), load))

    assert row.verdict == verdict
    assert (row.status == "error") is (verdict == "error")
    if verdict == "churn":
        assert row.new_calls_per_request == 2.0  # over the requests the plugin served
    else:
        assert f"{failures} of 1000 requests failed" in (row.error or "")


def test_a_parallel_worker_that_raises_stops_the_run_and_keeps_what_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = replace(_config(tmp_path, "3.4.0.0", "3.4.1.0", "3.6.0.0"), parallel=2)
    finished = replace(pipeline._base_row(pipeline.Job(config.targets[0]), config, tmp_path))

    def measure(
        job: pipeline.Job, _config: RunConfig, *_cancel: object, **_engine: object
    ) -> VersionResult:
        if job.target.label == "3.4.1.0":
            raise RuntimeError("a bug of ours")
        return replace(finished, version=job.target.label)

    monkeypatch.setattr(pipeline, "measure_job", measure)
    with pytest.raises(RuntimeError, match="a bug of ours"):
        pipeline.run_matrix(config)
    saved = {
        v["version"]: v
        for v in json.loads((config.run_dir / "results.json").read_text())["versions"]
    }
    assert saved["3.4.0.0"]["status"] == "ok"
    assert saved["3.4.1.0"]["status"] == "error"
    assert "unexpected error (RuntimeError('a bug of ours'))" in saved["3.4.1.0"]["error"]
    assert set(saved) == {"3.4.0.0", "3.4.1.0", "3.6.0.0"}  # none is missing from the table


def test_a_load_that_fell_short_is_an_error_row_with_what_it_measured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, "3.4.1.0")
    config.run_dir.mkdir(parents=True)
    load = LoadResult(600, 0, rps=500.0, p50_ms=3.0, p95_ms=9.0, duration_s=2.0)
    short = Outcome(
        (phase("load", "the load", _signals(5), _signals(1205), load),),
        _signals(5),
        _signals(1205),
        shortfall="only 600 of 1000 requests completed",
    )
    monkeypatch.setattr(
        scenarios, "get", lambda name: scenarios.Scenario(name, "test", lambda _session: short)
    )

    row = pipeline.measure_job(pipeline.Job(config.targets[0]), config)

    assert (row.status, row.verdict) == ("error", "error")
    assert row.error == "only 600 of 1000 requests completed"
    assert row.requests == 600 and row.new_calls_during_load == 1200  # what it measured stays


def _phase(name: str, load: LoadResult, new_calls: int, counted: bool = True) -> PhaseResult:
    return PhaseResult(
        name, name, load.requests, load.failures, new_calls, None, load.rps, load.p50_ms,
        load.p95_ms, counted,
    )  # fmt: skip


def test_several_counted_phases_make_one_row_with_the_worst_latency() -> None:
    """Requests, failures and New() add up over the counted phases only; latency is the worst
    phase's; every phase and finding is kept."""
    first, last = _signals(5), replace(_signals(705), instance_closes=40, plugin_server_exits=1)
    phases = (
        _phase("a", LoadResult(200, 0, 400.0, 2.0, 8.0, 1.0), 100),
        _phase("change", LoadResult(999, 999, 1.0, 900.0, 990.0, 1.0), 500, counted=False),
        _phase("b", LoadResult(100, 10, 300.0, 5.0, 6.0, 1.0), 5),
        _phase("c", LoadResult(100, 0, 350.0, 3.0, None, 1.0), None),  # type: ignore[arg-type]
    )
    outcome = Outcome(phases, first, last, 705, findings=("stale-config",))
    base = pipeline._base_row(
        pipeline.Job(target_for_version("3.6.0.0")), _config(Path("/nowhere")), Path("/x")
    )
    row = pipeline.row_from(base, outcome)
    assert (row.requests, row.failures, row.new_calls_during_load) == (400, 10, 105)
    assert row.new_calls_per_request == round(105 / 390, 4) == 0.2692
    assert (row.verdict, row.matches_changelog, row.status) == ("inconclusive", False, "ok")
    assert (row.rps, row.p50_ms, row.p95_ms) == (300.0, 5.0, 8.0)
    assert (row.new_calls_total, row.new_calls_before_load) == (705, 5)
    assert (row.instance_starts, row.instance_closes, row.no_instance_errors) == (3, 40, 1)
    assert (row.rpc_closed_errors, row.plugin_server_starts, row.plugin_server_exits) == (1, 1, 1)
    assert (row.phases, row.plugin_counter) == (phases, 705)
    assert row.findings == ("stale-config", "small-sample")  # 390 through the plugin, 4 workers


def test_no_latency_figure_is_none_not_zero() -> None:
    load = LoadResult(100, 0, 300.0, 2.0, 3.0, 1.0)
    phases = (replace(_phase("a", load, 1), rps=None, p50_ms=None, p95_ms=None),)
    row = pipeline.row_from(
        pipeline._base_row(pipeline.Job(target_for_version("3.6.0.0")), _config(Path("/n")),
                           Path("/x")),
        Outcome(phases, _signals(5), _signals(6), None),
    )  # fmt: skip
    assert (row.rps, row.p50_ms, row.p95_ms) == (None, None, None)
    assert row.verdict == "stable"


@pytest.mark.parametrize(
    ("requests", "failures", "why"),
    [
        (0, 0, "no request completed, so nothing was measured"),
        (1000, 500, None),  # half through the plugin is still a measurement
        (1000, 501, "501 of 1000 requests failed (see Locust's report in the version folder): "
                    "too few went through the plugin to measure it"),
        (3, 2, "2 of 3 requests failed (see Locust's report in the version folder): "
               "too few went through the plugin to measure it"),
    ],
)  # fmt: skip
def test_what_counts_as_unmeasured(requests: int, failures: int, why: str | None) -> None:
    assert pipeline._unmeasured(requests, failures) == why


def test_an_unmeasured_row_says_so_and_has_no_verdict() -> None:
    load = LoadResult(1000, 1000, 0.0, 0.0, 0.0, 1.0)
    row = pipeline.row_from(
        pipeline._base_row(pipeline.Job(target_for_version("3.4.1.0")), _config(Path("/n")),
                           Path("/x")),
        _outcome(_signals(5), _signals(5), load),
    )  # fmt: skip
    assert (row.status, row.verdict, row.matches_changelog) == ("error", "error", None)
    assert row.error == pipeline._unmeasured(1000, 1000)
    assert (row.requests, row.failures, row.new_calls_per_request) == (1000, 1000, 0.0)


def test_jobs_are_every_target_by_every_scenario_targets_first(tmp_path: Path) -> None:
    config = replace(_config(tmp_path, "3.4.0.0", "3.4.1.0"), scenarios=("steady", "reload"))
    jobs = pipeline.jobs_of(config)
    assert [(job.target.label, job.scenario) for job in jobs] == [
        ("3.4.0.0", "steady"),
        ("3.4.0.0", "reload"),
        ("3.4.1.0", "steady"),
        ("3.4.1.0", "reload"),
    ]
    assert [job.folder for job in jobs] == [
        "3.4.0.0", "3.4.0.0-reload", "3.4.1.0", "3.4.1.0-reload"
    ]  # fmt: skip


def test_an_image_jobs_folder_is_a_safe_name() -> None:
    job = pipeline.Job(target_for_image("kong/kong-gateway:3.7.2.0"), "reload")
    assert job.folder == "kong_kong-gateway_3.7.2.0-reload"


def test_one_request_through_the_plugin_is_enough_for_a_verdict() -> None:
    load = LoadResult(1, 0, rps=1.0, p50_ms=1.0, p95_ms=1.0, duration_s=1.0)
    row = pipeline.row_from(
        pipeline._base_row(pipeline.Job(target_for_version("3.4.1.0")), _config(Path("/n")),
                           Path("/x")),
        _outcome(_signals(5), _signals(7), load),
    )  # fmt: skip
    assert (row.new_calls_per_request, row.verdict, row.status) == (2.0, "churn", "ok")
    assert row.findings == ("small-sample",)  # ... and it says how little it rests on


@pytest.mark.parametrize(
    ("requests", "failures", "workers", "small"),
    [(400, 0, 4, False), (399, 0, 4, True), (410, 11, 4, True), (100, 0, 1, False),
     (799, 0, 8, True), (800, 0, 8, False)],
)  # fmt: skip
def test_a_verdict_from_fewer_than_100_requests_per_worker_is_a_small_sample(
    requests: int, failures: int, workers: int, small: bool
) -> None:
    load = LoadResult(requests, failures, rps=1.0, p50_ms=1.0, p95_ms=1.0, duration_s=1.0)
    config = replace(_config(Path("/n")), workers=workers)
    base = pipeline._base_row(pipeline.Job(target_for_version("3.6.0.0")), config, Path("/x"))
    row = pipeline.row_from(base, _outcome(_signals(5), _signals(5), load))
    assert row.verdict == "stable"
    assert row.findings == (("small-sample",) if small else ())


def test_the_row_carries_the_plugin_servers_memory() -> None:
    load = LoadResult(100, 0, rps=1.0, p50_ms=1.0, p95_ms=1.0, duration_s=1.0)
    outcome = replace(
        _outcome(_signals(5), _signals(5), load),
        resources=(Summary(40.0, 0.5, False), Summary(55.0, None, True)),
    )
    row = pipeline.row_from(
        pipeline._base_row(pipeline.Job(target_for_version("3.6.0.0")), _config(Path("/n")),
                           Path("/x")),
        outcome,
    )  # fmt: skip
    assert (row.server_peak_rss_mb, row.server_rss_growth_per_10k_mb, row.leak) == (55.0, 0.5, True)


def _tapped(new_calls: int, tap_starts: int, counter_lines: int, ran_on: int = 0) -> Signals:
    return replace(
        _signals(new_calls, counter_lines),
        tap_starts=1,
        tap_instance_starts=tap_starts,
        tap_ran_on=ran_on,
    )


LOAD_1000 = LoadResult(requests=1000, failures=0, rps=500.0, p50_ms=3.0, p95_ms=9.0, duration_s=2)


def test_the_tap_counts_the_verdict_and_the_plugin_cross_checks_it() -> None:
    base = pipeline._base_row(
        pipeline.Job(target_for_version("3.4.1.0")), _config(Path("/n")), Path("/x")
    )
    agreeing = _outcome(_tapped(5, 4, 9, 9), _tapped(1805, 1804, 1009, 1009), LOAD_1000)
    row = pipeline.row_from(base, agreeing)
    assert (row.counted_by, row.new_calls_per_request, row.findings) == ("tap", 1.8, ())
    (load,) = row.phases
    assert load.figures == {"tap_instance_starts": 1800, "plugin_new_calls": 1800}
    # the tap saw 10 starts the plugin's counter did not: the row says so
    disagreeing = _outcome(_tapped(5, 4, 9, 9), _tapped(1805, 1814, 1009, 1009), LOAD_1000)
    row = pipeline.row_from(base, disagreeing)
    assert (row.new_calls_per_request, row.findings) == (1.81, ("tap-disagrees",))


def test_a_plugin_that_reports_nothing_is_counted_by_the_tap_alone() -> None:
    base = pipeline._base_row(
        pipeline.Job(target_for_version("3.6.0.0")), _config(Path("/n")), Path("/x")
    )
    outcome = _outcome(_tapped(0, 4, 0, 9), _tapped(0, 4, 0, 1010), LOAD_1000)
    row = pipeline.row_from(base, outcome)
    assert (row.counted_by, row.verdict, row.findings) == ("tap", "stable", ())
    assert row.phases[0].figures == {"tap_instance_starts": 0}  # no counter: no cross-check
    assert (row.ran_on, row.phases[0].ran_on) == (1001, 1001)
    churning = _outcome(_tapped(0, 4, 0, 9), _tapped(0, 3670, 0, 1009), LOAD_1000)
    assert pipeline.row_from(base, churning).verdict == "churn"
    untapped = pipeline.row_from(base, _outcome(_signals(5), _signals(5), LOAD_1000))
    assert untapped.counted_by == "plugin"


def test_a_plugin_other_than_the_default_gets_a_folder_and_a_row_label_of_its_own(
    tmp_path: Path,
) -> None:
    from orchestration.plugins import resolve_plugins

    config = replace(
        _config(tmp_path, "3.4.1.0"), plugins=("go", "python"), scenarios=("steady", "idle")
    )
    jobs = pipeline.jobs_of(config)
    assert [job.folder for job in jobs] == [
        "3.4.1.0",
        "3.4.1.0-idle",
        "3.4.1.0-python",
        "3.4.1.0-python-idle",
    ]
    (python,) = resolve_plugins(("python",), config.repo_root)
    row = pipeline._base_row(
        pipeline.Job(target_for_version("3.4.1.0"), plugin=python), config, tmp_path
    )
    assert row.plugin == "python"


def _scripted_scenario(
    events: list[str], early: Outcome | None, final: Outcome
) -> scenarios.Scenario:
    """A scenario that shows `early` (if any) before its teardown, then ends with `final`."""

    def run(session: scenarios.Session) -> Outcome:
        if early is not None and session.on_verdict is not None:
            session.on_verdict(early)
        events.append("teardown")
        return final

    return scenarios.Scenario("steady", "scripted", run)


def _churn(new_calls: int) -> Outcome:
    load = LoadResult(requests=1000, failures=0, rps=500.0, p50_ms=3.0, p95_ms=9.0, duration_s=2.0)
    return _outcome(_signals(0), _signals(new_calls), load)


def _run_showing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, early: Outcome | None, final: Outcome
) -> tuple[list[str], list[VersionResult]]:
    events: list[str] = []
    shown: list[VersionResult] = []

    def announce(row: VersionResult) -> None:
        events.append(f"verdict {row.verdict} {row.new_calls_per_request}")
        shown.append(row)

    scenario = _scripted_scenario(events, early, final)
    monkeypatch.setattr(scenarios, "get", lambda _name: scenario)
    pipeline.run_matrix(_config(tmp_path, "3.4.1.0"), announce=announce)
    return events, shown


def test_the_verdict_is_shown_before_the_teardown_and_not_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events, shown = _run_showing(tmp_path, monkeypatch, _churn(1500), _churn(1500))

    assert events == ["verdict churn 1.5", "teardown"]
    assert shown[0].status == "ok"


def test_a_row_that_reads_otherwise_than_its_early_line_is_shown_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events, _ = _run_showing(tmp_path, monkeypatch, _churn(1500), _churn(1600))

    assert events == ["verdict churn 1.5", "teardown", "verdict churn 1.6"]


def test_without_an_early_verdict_the_row_is_shown_after_the_teardown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events, _ = _run_showing(tmp_path, monkeypatch, None, _churn(1500))

    assert events == ["teardown", "verdict churn 1.5"]


class _SentLoad:
    def __init__(self, sent: tuple[int, int] | None) -> None:
        self._sent = sent

    def sent(self) -> tuple[int, int] | None:
        return self._sent


@pytest.mark.parametrize(
    ("sent", "shown"), [((1000, 2), True), ((999, 0), False), ((1001, 0), False), (None, False)]
)
def test_an_early_verdict_needs_locusts_counts_and_every_request(
    tmp_path: Path, sent: tuple[int, int] | None, shown: bool
) -> None:
    config = _config(tmp_path, "3.4.1.0")
    early: list[Outcome] = []
    session = scenarios.Session(config.targets[0], config, tmp_path, on_verdict=early.append)

    scenarios.announce_early(session, "the load", _signals(0), _signals(1500), _SentLoad(sent))  # type: ignore[arg-type]

    assert bool(early) is shown
    if early:
        (load_phase,) = early[0].phases
        assert (load_phase.requests, load_phase.failures, load_phase.new_calls) == (1000, 2, 1500)


def test_the_page_import_starts_once_the_verdict_is_on_the_screen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    monkeypatch.setattr(report, "preload_page_drawing", lambda: events.append("page import"))
    scenario = _scripted_scenario(events, _churn(1500), _churn(1500))
    monkeypatch.setattr(scenarios, "get", lambda _name: scenario)

    pipeline.run_matrix(
        _config(tmp_path, "3.4.1.0"), announce=lambda row: events.append(f"verdict {row.verdict}")
    )

    assert events[:3] == ["verdict churn", "page import", "teardown"]


def test_the_tap_and_the_plugin_disagree_only_when_both_counted_a_phase() -> None:
    from orchestration.report import PhaseResult

    def phase(tap: int | None, own: int | None) -> PhaseResult:
        figures = {"tap_instance_starts": tap, "plugin_new_calls": own}
        counted = {name: value for name, value in figures.items() if value is not None}
        return PhaseResult("load", "the load", figures=counted)

    assert pipeline._disagreement([phase(5, 5), phase(7, 7)]) == ()
    assert pipeline._disagreement([phase(5, None), phase(None, 9)]) == ()
    assert pipeline._disagreement([phase(0, 0), phase(3, 4)]) == ("tap-disagrees",)
    assert pipeline._disagreement([phase(4, 3), phase(2, 2)]) == ("tap-disagrees",)
    assert pipeline._disagreement([]) == ()


# --- the pipelined sequential matrix ------------------------------------------------------


class _PipelinedJobs:
    """A fake `measure_job` that records, per version, when it starts, says its verdict, starts
    its load and is down; `teardown_s` is how long its stack takes to go down."""

    def __init__(self, config: RunConfig, teardown_s: float = 0.3) -> None:
        self.config = config
        self.teardown_s = teardown_s
        self.events: list[str] = []
        self.cancels: dict[str, Cancel] = {}
        self.bringing_up = threading.Event()  # the second version is coming up

    def __call__(
        self,
        job: pipeline.Job,
        _config: RunConfig,
        cancel: Cancel,
        on_verdict: Callable[[VersionResult], None] | None = None,
        load_turn: Callable[[], None] | None = None,
        **_engine: object,
    ) -> VersionResult:
        label = job.target.label
        self.cancels[label] = cancel
        self.events.append(f"start {label}")
        if label != self.config.targets[0].label:
            self.bringing_up.set()
        time.sleep(0.1)  # images, compose up, readiness
        cancel.raise_if_set()
        assert load_turn is not None
        load_turn()
        self.events.append(f"load {label}")
        row = replace(
            pipeline._base_row(job, self.config, self.config.run_dir / job.folder),
            verdict="stable",
            new_calls_per_request=0.0,
        )
        assert on_verdict is not None
        on_verdict(row)
        time.sleep(self.teardown_s)  # compose down and counting the saved log
        cancel.raise_if_set()  # as Locust's result does once cancelled
        self.events.append(f"down {label}")
        return row


def test_pipelined_the_next_version_comes_up_while_the_previous_goes_down_and_loads_never_overlap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, "3.4.0.0", "3.4.1.0", "3.6.0.0")
    jobs = _PipelinedJobs(config)
    monkeypatch.setattr(pipeline, "measure_job", jobs)

    run = pipeline.run_matrix(config)

    assert [row.status for row in run.versions] == ["ok", "ok", "ok"]
    at = {event: index for index, event in enumerate(jobs.events)}
    for previous, following in (("3.4.0.0", "3.4.1.0"), ("3.4.1.0", "3.6.0.0")):
        assert at[f"load {previous}"] < at[f"start {following}"]  # not before its verdict
        assert at[f"start {following}"] < at[f"down {previous}"]  # overlapped: the point
        assert at[f"down {previous}"] < at[f"load {following}"]  # one load, no teardown beside


def test_a_signal_while_a_stack_goes_down_in_the_background_keeps_its_row_and_stops_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, "3.4.0.0", "3.4.1.0", "3.6.0.0")
    jobs = _PipelinedJobs(config, teardown_s=1.0)
    monkeypatch.setattr(pipeline, "measure_job", jobs)

    def sigterm_when_the_next_comes_up() -> None:
        jobs.bringing_up.wait(10)
        os.kill(os.getpid(), signal.SIGTERM)

    def raise_interrupted(number: int, _frame: object) -> None:
        raise Interrupted(number)

    previous = signal.signal(signal.SIGTERM, raise_interrupted)
    try:
        threading.Thread(target=sigterm_when_the_next_comes_up, daemon=True).start()
        with pytest.raises(Interrupted) as raised:
            pipeline.run_matrix(config)
    finally:
        signal.signal(signal.SIGTERM, previous)

    assert raised.value.exit_code == 143
    assert "down 3.4.0.0" in jobs.events  # its teardown ran to the end before the run returned
    assert "load 3.4.1.0" not in jobs.events and "start 3.6.0.0" not in jobs.events
    assert jobs.cancels["3.4.1.0"].is_set() and not jobs.cancels["3.4.0.0"].is_set()
    saved = json.loads((config.run_dir / "results.json").read_text())
    assert [(v["status"], v["verdict"]) for v in saved["versions"]] == [
        ("ok", "stable"),
        ("interrupted", "interrupted"),
        ("interrupted", "interrupted"),
    ]


@pytest.mark.parametrize(
    ("ran_on_after", "tap_starts_after", "verdict", "error"),
    [
        # a plugin Kong never called: no events, no instance; not "stable"
        (9, 4, "did-not-run", "the plugin ran on none of the 1000 requests"),
        # it ran on some requests only: no verdict either way
        (508, 4, "partial", "the plugin ran on 499 of the 1000 requests only"),
        (1008, 3000, "partial", "the plugin ran on 999 of the 1000 requests only"),
        # every request, but not one instance start in the log
        (1009, 0, "did-not-run", "the plugin ran on 1000 of 1000 requests but no instance start "
         "was seen in Kong's log"),
    ],
)  # fmt: skip
def test_no_verdict_without_proof_that_the_plugin_ran(
    ran_on_after: int, tap_starts_after: int, verdict: str, error: str
) -> None:
    base = pipeline._base_row(
        pipeline.Job(target_for_version("3.4.1.0")), _config(Path("/n")), Path("/x")
    )
    before = _tapped(0, 4 if tap_starts_after else 0, 0, 9)
    outcome = _outcome(before, _tapped(0, tap_starts_after, 0, ran_on_after), LOAD_1000)
    row = pipeline.row_from(base, outcome)
    assert (row.verdict, row.status, row.error) == (verdict, "error", error)
    assert row.matches_changelog is None
    assert row.ran_on == ran_on_after - 9


def test_a_built_in_ran_on_every_request_that_came_back_with_its_header() -> None:
    base = pipeline._base_row(
        pipeline.Job(target_for_version("3.4.1.0")), _config(Path("/n")), Path("/x")
    )
    load = LoadResult(requests=1000, failures=3, rps=500.0, p50_ms=3.0, p95_ms=9.0, duration_s=2)
    row = pipeline.row_from(base, _outcome(_signals(5, 9), _signals(1805, 1006), load))
    assert (row.ran_on, row.verdict, row.status) == (997, "partial", "error")
    clean = replace(load, failures=0)
    row = pipeline.row_from(base, _outcome(_signals(5, 9), _signals(1805, 1009), clean))
    assert (row.ran_on, row.verdict, row.status) == (1000, "churn", "ok")
