"""Pipeline wiring without Docker: scheduling, error rows, interrupts, the results files, early
verdict lines (a row's own figures: test_rows.py)."""

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
from outcomes import config_for, load_outcome, signals

from orchestration import drawing, pipeline, rows, run_files, scenarios
from orchestration.config import RunConfig
from orchestration.errors import Interrupted, StackError, UsageError
from orchestration.load import LoadResult
from orchestration.report import Row, RunResult
from orchestration.scenarios import Outcome, phase
from orchestration.versions import target_for_version
from orchestration.world import Cancel, VersionWorld, folder_name


@pytest.mark.parametrize(
    ("label", "folder"),
    [("3.4.1.0", "3.4.1.0"), ("kong/kong-gateway:3.7.1.0", "kong_kong-gateway_3.7.1.0")],
)
def test_folder_names_are_safe(label: str, folder: str) -> None:
    assert folder_name(label) == folder


def test_a_failing_version_becomes_an_error_row_and_the_rest_still_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = config_for(tmp_path, "3.4.0.0", "3.4.1.0", "3.6.0.0")

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
    config = config_for(tmp_path, "3.4.0.0", "3.4.1.0", "3.6.0.0")
    finished = replace(
        rows.base_row(pipeline.Job(config.targets[0]), config, tmp_path),
        verdict="stable",
        new_calls_per_request=0.0,
    )

    def fake_measure(
        job: pipeline.Job, _config: RunConfig, *_cancel: object, **_engine: object
    ) -> Row:
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
    config = config_for(tmp_path, "3.4.0.0")
    config.run_dir.mkdir(parents=True)
    (config.run_dir / "results.json").write_text("{}")
    with pytest.raises(UsageError, match="already exists: a run never overwrites another"):
        pipeline.run_matrix(config)
    with pytest.raises(UsageError, match="already exists"):
        pipeline.run_ui(config)
    assert (config.run_dir / "results.json").read_text() == "{}"
    assert sorted(p.name for p in config.run_dir.iterdir()) == ["results.json"]


def test_a_parallel_worker_that_raises_stops_the_run_and_keeps_what_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = replace(config_for(tmp_path, "3.4.0.0", "3.4.1.0", "3.6.0.0"), parallel=2)
    finished = replace(rows.base_row(pipeline.Job(config.targets[0]), config, tmp_path))

    def measure(job: pipeline.Job, _config: RunConfig, *_cancel: object, **_engine: object) -> Row:
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
    config = config_for(tmp_path, "3.4.1.0")
    config.run_dir.mkdir(parents=True)
    load = LoadResult(600, 0, rps=500.0, p50_ms=3.0, p95_ms=9.0, duration_s=2.0)
    short = Outcome(
        (phase("load", "the load", signals(5), signals(1205), load),),
        signals(5),
        signals(1205),
        shortfall="only 600 of 1000 requests completed",
    )
    monkeypatch.setattr(
        scenarios, "get", lambda name: scenarios.Scenario(name, "test", lambda _session: short)
    )

    row = pipeline.measure_job(pipeline.Job(config.targets[0]), config)

    assert (row.status, row.verdict) == ("error", "error")
    assert row.error == "only 600 of 1000 requests completed"
    assert row.requests == 600 and row.new_calls_during_load == 1200  # what it measured stays


def test_jobs_are_every_target_by_every_scenario_targets_first(tmp_path: Path) -> None:
    config = replace(config_for(tmp_path, "3.4.0.0", "3.4.1.0"), scenarios=("steady", "reload"))
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


def test_a_plugin_other_than_the_default_gets_a_folder_and_a_row_label_of_its_own(
    tmp_path: Path,
) -> None:
    from orchestration.plugins import resolve_plugins

    config = config_for(tmp_path, "3.4.1.0")
    config = replace(
        config,
        plugins=("go", "python"),
        plugin_sources=resolve_plugins(("go", "python"), config.repo_root),
        scenarios=("steady", "idle"),
    )
    jobs = pipeline.jobs_of(config)
    assert [job.folder for job in jobs] == [
        "3.4.1.0",
        "3.4.1.0-idle",
        "3.4.1.0-python",
        "3.4.1.0-python-idle",
    ]
    (python,) = resolve_plugins(("python",), config.repo_root)
    row = rows.base_row(
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
    return load_outcome(signals(0), signals(new_calls), load)


def _run_showing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, early: Outcome | None, final: Outcome
) -> tuple[list[str], list[Row]]:
    events: list[str] = []
    shown: list[Row] = []

    def announce(row: Row) -> None:
        events.append(f"verdict {row.verdict} {row.new_calls_per_request}")
        shown.append(row)

    scenario = _scripted_scenario(events, early, final)
    monkeypatch.setattr(scenarios, "get", lambda _name: scenario)
    pipeline.run_matrix(config_for(tmp_path, "3.4.1.0"), announce=announce)
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
    config = config_for(tmp_path, "3.4.1.0")
    early: list[Outcome] = []
    session = scenarios.Session(config.targets[0], config, tmp_path, on_verdict=early.append)

    scenarios.announce_early(session, "the load", signals(0), signals(1500), _SentLoad(sent))  # type: ignore[arg-type]

    assert bool(early) is shown
    if early:
        (load_phase,) = early[0].phases
        assert (load_phase.requests, load_phase.failures, load_phase.new_calls) == (1000, 2, 1500)


def test_the_page_import_starts_once_the_verdict_is_on_the_screen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    monkeypatch.setattr(drawing, "preload_page_drawing", lambda: events.append("page import"))
    scenario = _scripted_scenario(events, _churn(1500), _churn(1500))
    monkeypatch.setattr(scenarios, "get", lambda _name: scenario)

    pipeline.run_matrix(
        config_for(tmp_path, "3.4.1.0"),
        announce=lambda row: events.append(f"verdict {row.verdict}"),
    )

    assert events[:3] == ["verdict churn", "page import", "teardown"]


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
        on_verdict: Callable[[Row], None] | None = None,
        load_turn: Callable[[], None] | None = None,
        **_engine: object,
    ) -> Row:
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
            rows.base_row(job, self.config, self.config.run_dir / job.folder),
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
    config = config_for(tmp_path, "3.4.0.0", "3.4.1.0", "3.6.0.0")
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
    config = config_for(tmp_path, "3.4.0.0", "3.4.1.0", "3.6.0.0")
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


def test_the_results_files_are_written_once_per_change_and_never_for_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two rows, three writes: the empty run at the start (a run SIGKILLed before its first row
    is still a run folder: the chaos soak's `report` read failed without it), then one per row,
    none at the end for rows already written (it was four: empty, a row, a row, the same)."""
    written: list[int] = []
    write_run = run_files.write_run

    def counting(run_dir: Path, run: RunResult) -> None:
        written.append(len(run.versions))
        write_run(run_dir, run)

    monkeypatch.setattr(run_files, "write_run", counting)
    monkeypatch.setattr(scenarios, "get", lambda _name: _scripted_scenario([], None, _churn(1500)))
    config = config_for(tmp_path, "3.4.1.0", "3.6.0.0")

    run = pipeline.run_matrix(config)

    assert written == [0, 1, 2]
    assert run_files.load_run(config.run_dir).versions == run.versions
    assert (tmp_path / "latest").resolve() == config.run_dir.resolve()
