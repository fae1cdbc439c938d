"""Row derivation without Docker or files: verdicts, counts, findings and the row's label."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from outcomes import LOAD_1000, config_for, load_outcome, signals, tapped

from orchestration import rows
from orchestration.load import LoadResult
from orchestration.report import PhaseResult, Row
from orchestration.resources import Summary
from orchestration.scenarios import Outcome
from orchestration.versions import target_for_image, target_for_version


def test_row_counts_only_the_load() -> None:
    config_row = Row(
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
    outcome = load_outcome(signals(5), signals(2005), load, plugin_counter=2005)
    row = rows.row_from(config_row, outcome)
    assert row.new_calls_during_load == 2000
    assert row.new_calls_per_request == 2.0
    assert row.new_calls_before_load == 5
    assert row.verdict == "churn"
    assert row.matches_changelog is True
    assert row.plugin_counter == 2005


def test_no_request_is_never_stable() -> None:
    job = rows.Job(target_for_version("3.4.1.0"))
    base = rows.base_row(job, config_for(Path("/nowhere")), Path("/x"))
    load = LoadResult(requests=0, failures=0, rps=0.0, p50_ms=0.0, p95_ms=0.0, duration_s=0.0)
    row = rows.row_from(base, load_outcome(signals(5), signals(5), load))
    assert row.verdict == "error"
    assert row.status == "error"
    assert "no request completed" in (row.error or "")


@pytest.mark.parametrize(
    ("failures", "verdict"),
    [(0, "churn"), (400, "churn"), (501, "error"), (1000, "error")],
)
def test_a_load_that_mostly_failed_gets_no_verdict(failures: int, verdict: str) -> None:
    """Found by the chaos soak: Kong killed, every request failed, 0 New() read as `stable`."""
    job = rows.Job(target_for_version("3.4.1.0"))
    base = rows.base_row(job, config_for(Path("/nowhere")), Path("/x"))
    load = LoadResult(1000, failures, rps=500.0, p50_ms=3.0, p95_ms=9.0, duration_s=2.0)
    served = 1000 - failures
    row = rows.row_from(base, load_outcome(signals(5), signals(5 + 2 * served), load))

    assert row.verdict == verdict
    assert (row.status == "error") is (verdict == "error")
    if verdict == "churn":
        assert row.new_calls_per_request == 2.0  # over the requests the plugin served
    else:
        assert f"{failures} of 1000 requests failed" in (row.error or "")


def _phase(name: str, load: LoadResult, new_calls: int, counted: bool = True) -> PhaseResult:
    return PhaseResult(
        name, name, load.requests, load.failures, new_calls, None, load.rps, load.p50_ms,
        load.p95_ms, counted,
    )  # fmt: skip


def test_several_counted_phases_make_one_row_with_the_worst_latency() -> None:
    """Requests, failures and New() add up over the counted phases only; latency is the worst
    phase's; every phase and finding is kept."""
    first, last = signals(5), replace(signals(705), instance_closes=40, plugin_server_exits=1)
    phases = (
        _phase("a", LoadResult(200, 0, 400.0, 2.0, 8.0, 1.0), 100),
        _phase("change", LoadResult(999, 999, 1.0, 900.0, 990.0, 1.0), 500, counted=False),
        _phase("b", LoadResult(100, 10, 300.0, 5.0, 6.0, 1.0), 5),
        _phase("c", LoadResult(100, 0, 350.0, 3.0, None, 1.0), None),  # type: ignore[arg-type]
    )
    outcome = Outcome(phases, first, last, 705, findings=("stale-config",))
    base = rows.base_row(
        rows.Job(target_for_version("3.6.0.0")), config_for(Path("/nowhere")), Path("/x")
    )
    row = rows.row_from(base, outcome)
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
    row = rows.row_from(
        rows.base_row(rows.Job(target_for_version("3.6.0.0")), config_for(Path("/n")),
                           Path("/x")),
        Outcome(phases, signals(5), signals(6), None),
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
    assert rows._unmeasured(requests, failures) == why


def test_an_unmeasured_row_says_so_and_has_no_verdict() -> None:
    load = LoadResult(1000, 1000, 0.0, 0.0, 0.0, 1.0)
    row = rows.row_from(
        rows.base_row(rows.Job(target_for_version("3.4.1.0")), config_for(Path("/n")),
                           Path("/x")),
        load_outcome(signals(5), signals(5), load),
    )  # fmt: skip
    assert (row.status, row.verdict, row.matches_changelog) == ("error", "error", None)
    assert row.error == rows._unmeasured(1000, 1000)
    assert (row.requests, row.failures, row.new_calls_per_request) == (1000, 1000, 0.0)


def test_an_image_jobs_folder_is_a_safe_name() -> None:
    job = rows.Job(target_for_image("kong/kong-gateway:3.7.2.0"), "reload")
    assert job.folder == "kong_kong-gateway_3.7.2.0-reload"


def test_one_request_through_the_plugin_is_enough_for_a_verdict() -> None:
    load = LoadResult(1, 0, rps=1.0, p50_ms=1.0, p95_ms=1.0, duration_s=1.0)
    row = rows.row_from(
        rows.base_row(rows.Job(target_for_version("3.4.1.0")), config_for(Path("/n")),
                           Path("/x")),
        load_outcome(signals(5), signals(7), load),
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
    config = replace(config_for(Path("/n")), workers=workers)
    base = rows.base_row(rows.Job(target_for_version("3.6.0.0")), config, Path("/x"))
    row = rows.row_from(base, load_outcome(signals(5), signals(5), load))
    assert row.verdict == "stable"
    assert row.findings == (("small-sample",) if small else ())


def test_the_row_carries_the_plugin_servers_memory() -> None:
    load = LoadResult(100, 0, rps=1.0, p50_ms=1.0, p95_ms=1.0, duration_s=1.0)
    outcome = replace(
        load_outcome(signals(5), signals(5), load),
        resources=(Summary(40.0, 0.5, False), Summary(55.0, None, True)),
    )
    row = rows.row_from(
        rows.base_row(rows.Job(target_for_version("3.6.0.0")), config_for(Path("/n")),
                           Path("/x")),
        outcome,
    )  # fmt: skip
    assert (row.server_peak_rss_mb, row.server_rss_growth_per_10k_mb, row.leak) == (55.0, 0.5, True)


def test_the_tap_counts_the_verdict_and_the_plugin_cross_checks_it() -> None:
    base = rows.base_row(
        rows.Job(target_for_version("3.4.1.0")), config_for(Path("/n")), Path("/x")
    )
    agreeing = load_outcome(tapped(5, 4, 9, 9), tapped(1805, 1804, 1009, 1009), LOAD_1000)
    row = rows.row_from(base, agreeing)
    assert (row.counted_by, row.new_calls_per_request, row.findings) == ("tap", 1.8, ())
    (load,) = row.phases
    assert load.figures == {"tap_instance_starts": 1800, "plugin_new_calls": 1800}
    # the tap saw 10 starts the plugin's counter did not: the row says so
    disagreeing = load_outcome(tapped(5, 4, 9, 9), tapped(1805, 1814, 1009, 1009), LOAD_1000)
    row = rows.row_from(base, disagreeing)
    assert (row.new_calls_per_request, row.findings) == (1.81, ("tap-disagrees",))


def test_a_plugin_that_reports_nothing_is_counted_by_the_tap_alone() -> None:
    base = rows.base_row(
        rows.Job(target_for_version("3.6.0.0")), config_for(Path("/n")), Path("/x")
    )
    outcome = load_outcome(tapped(0, 4, 0, 9), tapped(0, 4, 0, 1010), LOAD_1000)
    row = rows.row_from(base, outcome)
    assert (row.counted_by, row.verdict, row.findings) == ("tap", "stable", ())
    assert row.phases[0].figures == {"tap_instance_starts": 0}  # no counter: no cross-check
    assert (row.ran_on, row.phases[0].ran_on) == (1001, 1001)
    churning = load_outcome(tapped(0, 4, 0, 9), tapped(0, 3670, 0, 1009), LOAD_1000)
    assert rows.row_from(base, churning).verdict == "churn"
    untapped = rows.row_from(base, load_outcome(signals(5), signals(5), LOAD_1000))
    assert untapped.counted_by == "plugin"


def test_the_tap_and_the_plugin_disagree_only_when_both_counted_a_phase() -> None:
    from orchestration.report import PhaseResult

    def phase(tap: int | None, own: int | None) -> PhaseResult:
        figures = {"tap_instance_starts": tap, "plugin_new_calls": own}
        counted = {name: value for name, value in figures.items() if value is not None}
        return PhaseResult("load", "the load", figures=counted)

    assert rows._disagreement([phase(5, 5), phase(7, 7)]) == ()
    assert rows._disagreement([phase(5, None), phase(None, 9)]) == ()
    assert rows._disagreement([phase(0, 0), phase(3, 4)]) == ("tap-disagrees",)
    assert rows._disagreement([phase(4, 3), phase(2, 2)]) == ("tap-disagrees",)
    assert rows._disagreement([]) == ()


# --- the pipelined sequential matrix ------------------------------------------------------


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
    base = rows.base_row(
        rows.Job(target_for_version("3.4.1.0")), config_for(Path("/n")), Path("/x")
    )
    before = tapped(0, 4 if tap_starts_after else 0, 0, 9)
    outcome = load_outcome(before, tapped(0, tap_starts_after, 0, ran_on_after), LOAD_1000)
    row = rows.row_from(base, outcome)
    assert (row.verdict, row.status, row.error) == (verdict, "error", error)
    assert row.matches_changelog is None
    assert row.ran_on == ran_on_after - 9


def test_a_built_in_ran_on_every_request_that_came_back_with_its_header() -> None:
    base = rows.base_row(
        rows.Job(target_for_version("3.4.1.0")), config_for(Path("/n")), Path("/x")
    )
    load = LoadResult(requests=1000, failures=3, rps=500.0, p50_ms=3.0, p95_ms=9.0, duration_s=2)
    row = rows.row_from(base, load_outcome(signals(5, 9), signals(1805, 1006), load))
    assert (row.ran_on, row.verdict, row.status) == (997, "partial", "error")
    clean = replace(load, failures=0)
    row = rows.row_from(base, load_outcome(signals(5, 9), signals(1805, 1009), clean))
    assert (row.ran_on, row.verdict, row.status) == (1000, "churn", "ok")


class _Folder:
    """A version folder's evidence, recording what the row asked of it."""

    def __init__(self, failures: str | None = "5xx x3") -> None:
        self.asked: list[str] = []
        self._failures = failures

    def hints(self, said: str) -> list[str]:
        self.asked.append(f"hints for {said}")
        return ["its dump was never read"]

    def plugin_answers(self) -> str | None:
        self.asked.append("answers")
        return "401 x3"

    def failure_causes(self) -> str | None:
        self.asked.append("causes")
        return self._failures


def _base() -> Row:
    return rows.base_row(
        rows.Job(target_for_version("3.4.1.0")), config_for(Path("/n")), Path("/x")
    )


def test_a_finished_row_without_a_verdict_says_what_its_folder_says() -> None:
    load = LoadResult(1000, 1000, 0.0, 0.0, 0.0, 1.0)
    folder = _Folder()
    row = rows.finished_row(_base(), load_outcome(signals(5), signals(5), load), folder)
    unmeasured = rows._unmeasured(1000, 1000)
    assert row.error == f"{unmeasured}; its dump was never read"
    assert (row.plugin_answers, row.failure_causes) == ("401 x3", "5xx x3")
    assert folder.asked == [f"hints for {unmeasured}", "answers", "causes"]


def test_a_load_that_fell_short_is_its_error_and_no_hint_is_read() -> None:
    folder = _Folder()
    failed = LoadResult(1000, 1000, 0.0, 0.0, 0.0, 1.0)  # unmeasured too: the shortfall says it
    outcome = replace(load_outcome(signals(5), signals(5), failed), shortfall="only 600 of 1000")
    row = rows.finished_row(_base(), outcome, folder)
    assert (row.status, row.verdict, row.error) == ("error", "error", "only 600 of 1000")
    assert folder.asked == ["answers", "causes"]


def test_a_web_ui_session_a_signal_ended_is_interrupted_with_its_load_counted() -> None:
    outcome = replace(load_outcome(signals(5), signals(1805), LOAD_1000), stopped_by=15)
    row = rows.finished_row(_base(), outcome, _Folder())
    assert (row.status, row.verdict, row.new_calls_per_request) == ("interrupted", "churn", 1.8)
    assert row.error == (
        "stopped by SIGTERM, as a web UI session ends: the load until then is counted"
    )


def test_an_error_row_has_the_folders_hints_unless_kong_died() -> None:
    with_hints = rows.error_row(_base(), "readiness timed out", _Folder())
    assert (with_hints.status, with_hints.verdict) == ("error", "error")
    assert with_hints.error == "readiness timed out; its dump was never read"
    assert rows.error_row(_base(), "Kong died", None).error == "Kong died"


def test_a_base_row_says_which_job_where_and_on_which_engine() -> None:
    from orchestration.plugins import resolve_plugins

    (python,) = resolve_plugins(("python",), config_for(Path("/n")).repo_root)
    config = replace(config_for(Path("/n")), workers=2)
    job = rows.Job(target_for_version("3.6.0.0"), "reload", python)
    row = rows.base_row(job, config, Path("/r/3.6.0.0-python-reload"), "unix:///run/b.sock")
    assert (row.version, row.plugin, row.scenario) == ("3.6.0.0", "python", "reload")
    assert (row.results_dir, row.engine, row.workers) == (
        "/r/3.6.0.0-python-reload",
        "unix:///run/b.sock",
        2,
    )
    assert (row.status, row.verdict, row.error, row.simulated) == ("ok", "error", None, True)


def test_rows_of_jobs_that_never_finished_say_why() -> None:
    assert rows.interrupted_row(_base(), 15).error == (
        "interrupted by SIGTERM; its stack was torn down"
    )
    assert rows.unfinished_row(_base(), RuntimeError("ours")).error == (
        "not measured: the run stopped on an unexpected error (RuntimeError('ours')); every "
        "stack was torn down"
    )


def test_only_an_error_row_gets_hints() -> None:
    interrupted = rows.interrupted_row(_base(), 2)
    assert rows.with_hints(interrupted, _Folder()) == interrupted
    row = rows.finished_row(_base(), load_outcome(signals(5), signals(5), LOAD_1000), _Folder())
    assert (row.failures, row.failure_causes) == (0, None)  # no failure: nothing to ask about


def test_a_row_without_memory_samples_has_no_memory_figures() -> None:
    row = rows.row_from(_base(), load_outcome(signals(5), signals(5), LOAD_1000))
    assert (row.server_peak_rss_mb, row.server_rss_growth_per_10k_mb, row.leak) == (None,) * 3
