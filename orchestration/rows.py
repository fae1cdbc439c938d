"""A job's row: from what its scenario measured (an `Outcome`) to the `Row` written.

Pure: no Docker, no files, no clock. What a version folder says (why the plugin did not run,
its own non-2xx answers, what the failed requests were) comes in through `FolderEvidence`,
read only when the row needs it; the pipeline schedules the jobs and writes the rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from orchestration import evidence, report, scenarios
from orchestration.config import RunConfig
from orchestration.errors import signal_name
from orchestration.plugins import PluginSource, default_plugin
from orchestration.report import PhaseResult, Row
from orchestration.scenarios import Outcome
from orchestration.versions import Target
from orchestration.world import folder_name


@dataclass(frozen=True)
class Job:
    """One row of a run: a target measured by a scenario, with a plugin."""

    target: Target
    scenario: str = scenarios.DEFAULT
    plugin: PluginSource = field(default_factory=default_plugin)

    @property
    def folder(self) -> str:
        """`3.4.1.0` for the default scenario and plugin (as before either), else with them:
        `3.4.1.0-reload`, `3.4.1.0-python`, `3.4.1.0-python-reload`."""
        parts = report.label_parts(self.target.label, self.plugin.label, self.scenario)
        return folder_name("-".join(parts))


class FolderEvidence(Protocol):
    """What a job's version folder says (evidence.Folder reads it)."""

    def hints(self, said: str) -> list[str]: ...
    def plugin_answers(self) -> str | None: ...
    def failure_causes(self) -> str | None: ...


def base_row(job: Job, config: RunConfig, version_dir: Path, engine: str | None = None) -> Row:
    """The job's row before anything is measured: which job, where, on which engine (its
    --docker-host; None: the docker CLI's own)."""
    target = job.target
    return Row(
        version=target.label,
        image=target.image,
        simulated=config.sim,
        status="ok",
        error=None,
        expected=target.expected,
        verdict="error",
        matches_changelog=None,
        workers=config.workers,
        results_dir=str(version_dir),
        scenario=job.scenario,
        plugin=job.plugin.label,
        engine=engine,
    )


def finished_row(base: Row, outcome: Outcome, folder: FolderEvidence) -> Row:
    """The row a job writes: `row_from`, then what the folder says, a load that fell short (an
    error with what it measured) and a web UI session ended by a signal (`interrupted`, its load
    counted)."""
    row = row_from(base, outcome)
    if outcome.shortfall:
        row = replace(row, status="error", verdict="error", error=outcome.shortfall)
    elif outcome.stopped_by is None:
        row = with_hints(row, folder)
    if outcome.stopped_by is not None:
        row = replace(
            row,
            status="interrupted",
            error=f"stopped by {signal_name(outcome.stopped_by)}, as a web UI session "
            "ends: the load until then is counted",
        )
    return replace(
        row,
        plugin_answers=folder.plugin_answers(),
        failure_causes=folder.failure_causes() if row.failures else None,
    )


def error_row(base: Row, error: str, folder: FolderEvidence | None) -> Row:
    """A job that failed before its verdict; `folder` None: nothing in it is news about the
    plugin (Kong died)."""
    row = replace(base, status="error", error=error)
    return row if folder is None else with_hints(row, folder)


def interrupted_row(base: Row, signal_number: int) -> Row:
    """A job a signal stopped (or kept from starting): its stack was torn down."""
    return replace(
        base,
        status="interrupted",
        verdict="interrupted",
        error=f"interrupted by {signal_name(signal_number)}; its stack was torn down",
    )


def unfinished_row(base: Row, bug: Exception) -> Row:
    """A job the run never finished because of an error of ours."""
    return replace(
        base,
        status="error",
        error=f"not measured: the run stopped on an unexpected error ({bug!r}); every stack was "
        "torn down",
    )


def row_from(base: Row, outcome: Outcome) -> Row:
    """The row: the verdict from the counted phases' New() calls per request, and every phase.

    With several counted phases, latency is the worst phase's (highest p50 and p95, lowest
    req/s): a figure no phase was worse than.
    """
    counted = [phase for phase in outcome.phases if phase.counted]
    requests = sum(phase.requests or 0 for phase in counted)
    failures = sum(phase.failures or 0 for phase in counted)
    served = requests - failures  # requests that came back through the plugin
    during = sum(phase.new_calls or 0 for phase in counted)
    per_request = during / served if served > 0 else 0.0
    first, last = outcome.first, outcome.last
    tapped = last.tapped
    ran_on = _ran_on(counted)
    # No request through the plugin, no measurement: never call that "stable"; nor when the
    # plugin did not run on every request, or started no instance (evidence.py).
    unmeasured = _unmeasured(requests, failures)
    instances = last.tap_instance_starts if tapped else last.new_calls_total
    unproven = None if unmeasured else evidence.missing_proof(requests, ran_on, instances)
    verdict, error = report.verdict_for(per_request), unmeasured
    if unmeasured:
        verdict = "error"
    elif unproven is not None:
        verdict, error = unproven

    def worst(values: list[float | None], pick: Callable[[list[float]], float]) -> float | None:
        known = [value for value in values if value is not None]
        return pick(known) if known else None

    row = replace(
        base,
        counted_by="tap" if tapped else "plugin",
        verdict=verdict,
        matches_changelog=report.matches_changelog(base.expected, verdict),
        requests=requests,
        failures=failures,
        ran_on=ran_on,
        new_calls_total=last.new_calls_total,
        new_calls_before_load=first.new_calls_total,
        new_calls_during_load=during,
        new_calls_per_request=round(per_request, 4),
        instance_starts=last.instance_starts,
        instance_closes=last.instance_closes,
        no_instance_errors=last.no_instance_errors,
        rpc_closed_errors=last.rpc_closed_errors,
        plugin_server_starts=last.plugin_server_starts,
        plugin_server_exits=last.plugin_server_exits,
        rps=worst([phase.rps for phase in counted], min),
        p50_ms=worst([phase.p50_ms for phase in counted], max),
        p95_ms=worst([phase.p95_ms for phase in counted], max),
        plugin_counter=outcome.plugin_counter,
        phases=outcome.phases,
        findings=outcome.findings
        + _disagreement(counted)
        + report.small_sample(served, base.workers),
        **_resource_fields(outcome),
    )
    if error:
        return replace(row, status="error", error=error)
    return row


def says_the_same(shown: Row, row: Row) -> bool:
    """Whether a verdict line shown early already says what the finished row says."""
    return (shown.status, shown.verdict, shown.new_calls_per_request, shown.error) == (
        row.status,
        row.verdict,
        row.new_calls_per_request,
        row.error,
    )


def with_hints(row: Row, folder: FolderEvidence) -> Row:
    """A row without a verdict gets what its folder says about why: the plugin's phases and
    priority as Kong read them, the first crash of its server."""
    if row.status != "error" or not row.error:
        return row
    return replace(row, error="; ".join([row.error, *folder.hints(row.error)]))


def _ran_on(counted: list[PhaseResult]) -> int | None:
    """The requests of the counted phases that the plugin ran on; None if a phase has no count."""
    counts = [phase.ran_on for phase in counted]
    if not counts or None in counts:
        return None
    return sum(count or 0 for count in counts)


def _disagreement(counted: list[PhaseResult]) -> tuple[str, ...]:
    """`tap-disagrees` when kpm-tap and the plugin itself both counted a phase's instance
    starts (go-pdk and the Python and JS PDKs make one New() per start) and got different
    numbers: one of the two missed something, and the row says so."""
    for phase in counted:
        tap, own = phase.figures.get("tap_instance_starts"), phase.figures.get("plugin_new_calls")
        if tap is not None and own is not None and tap != own:
            return ("tap-disagrees",)
    return ()


def _unmeasured(requests: int, failures: int) -> str | None:
    """Why a load measured nothing, or None: it needs requests, most of them through the plugin.

    A failed request did not run the plugin (or not to the end), so it says nothing about
    instances; a load where most failed (a killed Kong, a dead plugin server) is no
    measurement of the release, whatever its New() count.
    """
    if not requests:
        return "no request completed, so nothing was measured"
    if failures * 2 > requests:
        return (
            f"{failures} of {requests} requests failed (see Locust's report in the version "
            "folder): too few went through the plugin to measure it"
        )
    return None


def _resource_fields(outcome: Outcome) -> dict[str, Any]:
    """The plugin server's memory over the run's worlds: the highest of each figure."""
    summaries = outcome.resources
    growths = [s.server_rss_growth_per_10k_mb for s in summaries]
    leaks = [s.leak for s in summaries if s.leak is not None]
    return {
        "server_peak_rss_mb": max((s.server_peak_rss_mb for s in summaries), default=None),
        "server_rss_growth_per_10k_mb": max((g for g in growths if g is not None), default=None),
        "leak": any(leaks) if leaks else None,
    }
