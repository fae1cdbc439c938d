"""The pipeline: schedule (target, scenario) pairs, turn each outcome into a row, write results.

Each pair's outcome becomes a row, whatever happens: a failure is an `error` row with the reason,
an interrupt an `interrupted` row, and the results files are rewritten after every row so nothing
already measured is lost. What a scenario does with a version lives in orchestration/scenarios/;
one version's running world (stack, live log counts, plugin probe, Locust) in world.py.

Scheduling: `--parallel K` runs K jobs at once; otherwise one after another, pipelined: a job
starts (images, compose up, readiness) once the one before has its verdict, while that one's stack
goes down, and its load waits until the one before has ended. A single job (and `--keep`) runs in
the main thread.

Interrupts: in the main thread Ctrl-C arrives as KeyboardInterrupt wherever the run is, and every
world tears itself down on the way out. Worker threads (`--parallel`, pipelined) never see
signals: the main thread sets the `Cancel` of every job not past its load, which a running load or
readiness wait notices on its own, stops the builds the workers wait on, and waits (signals held)
until every worker has torn its stack down; a job already going down finishes and keeps its row.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from python_on_whales import DockerException

from orchestration import evidence, progress, pulls, report, scenarios
from orchestration.config import RunConfig
from orchestration.engine import Engine
from orchestration.engines import EnginePool
from orchestration.errors import (
    ImageUnavailable,
    Interrupted,
    KongDied,
    MatrixError,
    ReadyTimeout,
    StackError,
    UsageError,
    signal_name,
)
from orchestration.plugins import (
    DEFAULT_PLUGIN,
    PluginSource,
    default_plugin,
    registry_bases,
    resolve_plugins,
)
from orchestration.processes import signals_held, stop_descendants
from orchestration.report import PhaseResult, RunResult, VersionResult
from orchestration.scenarios import Outcome, Session
from orchestration.versions import Target
from orchestration.world import NEVER_CANCELLED, Cancel, folder_name

LOGGER = logging.getLogger(__name__)


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
        parts = [self.target.label]
        if self.plugin.label != DEFAULT_PLUGIN:
            parts.append(self.plugin.label)
        if self.scenario != scenarios.DEFAULT:
            parts.append(self.scenario)
        return folder_name("-".join(parts))


def jobs_of(config: RunConfig) -> tuple[Job, ...]:
    """Every (target, plugin, scenario) of the run, targets first, in the order given."""
    sources = resolve_plugins(config.plugins, config.repo_root)
    return tuple(
        Job(target, name, source)
        for target in config.targets
        for source in sources
        for name in config.scenarios
    )


def _base_row(job: Job, config: RunConfig, version_dir: Path) -> VersionResult:
    target = job.target
    return VersionResult(
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
        engine=config.docker_host,
    )


def row_from(base: VersionResult, outcome: Outcome) -> VersionResult:
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


def _ran_on(counted: list[PhaseResult]) -> int | None:
    """The requests of the counted phases that the plugin ran on; None if a phase has no count."""
    counts = [phase.ran_on for phase in counted]
    if not counts or None in counts:
        return None
    return sum(count or 0 for count in counts)


def _with_hints(row: VersionResult, version_dir: Path) -> VersionResult:
    """A row without a verdict gets what its folder says about why: the plugin's phases and
    priority as Kong read them, the first crash of its server."""
    if row.status != "error" or not row.error:
        return row
    return replace(row, error="; ".join([row.error, *evidence.hints(version_dir, row.error)]))


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


def _error_text(error: BaseException, version_dir: Path) -> str:
    """The row's one-line error; a failed build's own output is written to build.log beside it."""
    text = str(error) or type(error).__name__
    if isinstance(error, (ReadyTimeout, KongDied)) and error.last_log_lines:
        lines = [line.strip() for line in error.last_log_lines if line.strip()]
        text += " | last log lines: " + " / ".join(lines)
    if isinstance(error, ImageUnavailable) and error.build_output:
        build_log = version_dir / "build.log"
        build_log.write_text("\n".join(error.build_output) + "\n", encoding="utf-8")
        text += f" | build output: {build_log}"
    if (version_dir / "kong.log").is_file():
        text += f" | full log: {version_dir / 'kong.log'}"
    return text


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


def measure_job(
    job: Job,
    config: RunConfig,
    cancel: Cancel = NEVER_CANCELLED,
    on_verdict: Callable[[VersionResult], None] | None = None,
    load_turn: Callable[[], None] | None = None,
    *,
    engine: Engine | None = None,
) -> VersionResult:
    """Run one job on `engine` (None: the default engine). Failures become an error row;
    interrupts propagate as Interrupted.

    `on_verdict` gets the row as soon as a scenario knows its verdict, before its teardown, when
    the scenario says it early (`scenarios.announce_early`): not written anywhere, only shown.
    `load_turn` returns once the job's first load may start (None: at once).
    """
    version_dir = config.run_dir / job.folder
    version_dir.mkdir(parents=True, exist_ok=True)
    base = _base_row(job, config, version_dir)
    started = time.monotonic()
    early = None if on_verdict is None else _early_rows(base, on_verdict)
    try:
        cancel.raise_if_set()
        scenario = scenarios.get(job.scenario)
        engine = engine or Engine()
        session = Session(
            job.target, config, version_dir, cancel, job.plugin, early, load_turn, engine
        )
        outcome = scenario.run(session)
        row = _with_hints(row_from(base, outcome), version_dir)
        row = replace(
            row,
            plugin_answers=evidence.plugin_answers(version_dir),
            failure_causes=evidence.failure_causes(version_dir) if row.failures else None,
        )
        if outcome.shortfall:
            row = replace(row, status="error", verdict="error", error=outcome.shortfall)
        if outcome.stopped_by is not None:
            cancel.set(outcome.stopped_by)
            row = replace(
                row,
                status="interrupted",
                error=f"stopped by {signal_name(outcome.stopped_by)}, as a web UI session "
                "ends: the load until then is counted",
            )
    except (MatrixError, DockerException) as error:
        if isinstance(error, Interrupted):
            raise
        cancel.raise_if_set()  # a failure caused by cancelling (a killed build) is an interrupt
        if isinstance(error, DockerException):  # python-on-whales outside our wrappers
            error = StackError(f"docker failed: {error}")
        row = replace(base, status="error", error=_error_text(error, version_dir))
        if not isinstance(error, KongDied):  # Kong's death is no news about the plugin
            row = _with_hints(row, version_dir)
    return replace(row, duration_s=round(time.monotonic() - started, 1))


def _early_rows(
    base: VersionResult, on_verdict: Callable[[VersionResult], None]
) -> Callable[[Outcome], None]:
    return lambda outcome: on_verdict(row_from(base, outcome))


def says_the_same(shown: VersionResult, row: VersionResult) -> bool:
    """Whether a verdict line shown early already says what the finished row says."""
    return (shown.status, shown.verdict, shown.new_calls_per_request, shown.error) == (
        row.status,
        row.verdict,
        row.new_calls_per_request,
        row.error,
    )


def interrupted_row(job: Job, config: RunConfig, signal_number: int) -> VersionResult:
    return replace(
        _base_row(job, config, config.run_dir / job.folder),
        status="interrupted",
        verdict="interrupted",
        error=f"interrupted by {signal_name(signal_number)}; its stack was torn down",
    )


def create_run_dir(config: RunConfig) -> None:
    """Make the run's folder; an existing one is another run's, and is never written into."""
    config.results_root.mkdir(parents=True, exist_ok=True)
    try:
        config.run_dir.mkdir()
    except FileExistsError:
        raise UsageError(
            f"results folder {config.run_dir} already exists: a run never overwrites another. "
            "Start the run again (it gets a new id) or pass another --results folder"
        ) from None
    except OSError as error:
        raise UsageError(
            f"cannot create the results folder {config.run_dir}: {error.strerror}; "
            "pass a writable --results folder"
        ) from None


def run_matrix(
    config: RunConfig,
    announce: Callable[[VersionResult], None] = lambda _row: None,
    jobs: tuple[Job, ...] | None = None,
) -> RunResult:
    """Run every job (default: each target with each scenario of `config`), writing the results
    after each one. Returns the finished run.

    On SIGINT/SIGTERM: every stack is torn down, finished rows stay, the others are marked
    `interrupted`, the results are written, and `Interrupted` is raised. A row that a signal
    ended with its measurement (a web UI session) is kept as it is.
    """
    create_run_dir(config)
    report.write_config(config.run_dir, config.to_dict())
    rows: dict[int, VersionResult] = {}
    rows_lock = threading.Lock()  # worker threads publish too
    cancel = Cancel()

    def publish() -> RunResult:
        with rows_lock:
            ordered = tuple(rows[i] for i in sorted(rows))
            run = RunResult(config.run_id, config.tool_version, config.to_dict(), ordered)
            report.write_run(config.run_dir, run)
            report.point_latest(config.results_root, config.run_dir)
        return run

    jobs = jobs_of(config) if jobs is None else jobs
    engines = EnginePool(config.docker_hosts)

    def measure(index: int, turn: Turn | None = None) -> None:
        shown: list[VersionResult] = []  # the verdict line shown before the teardown, if any

        def show_early(row: VersionResult) -> None:
            shown.append(row)
            announce(row)
            if turn is not None:  # its load is over: the next version may come up
                turn.load_over.set()
            report.preload_page_drawing()  # now, not sooner: see its docstring

        job_cancel, load_turn = (cancel, None) if turn is None else (turn.cancel, turn.wait)
        with engines.take() as engine:  # the least-loaded --docker-host engine, or the default
            job_config = replace(config, docker_host=engine.host)
            row = measure_job(
                jobs[index], job_config, job_cancel, show_early, load_turn, engine=engine
            )
        with rows_lock:
            rows[index] = row
        if not any(says_the_same(early, row) for early in shown):  # else it is on the screen
            announce(row)
        report.preload_page_drawing()
        publish()
        cancel.raise_if_set()

    publish()
    try:
        shown = all(job.scenario != "ui" for job in jobs)  # the web UI shows its own
        with (
            progress.shown(sys.stderr, enabled=shown),
            pulls.ahead(_pull_ahead(config, jobs)[0], engines.engines[0]),
        ):
            # A cancelled job's row is discarded once every worker has ended: no lock needed.
            _measure_all(config, len(jobs), measure, cancel, lambda index: rows.pop(index, None))
    except (Interrupted, KeyboardInterrupt) as stop:
        signal_number = stop.signal_number if isinstance(stop, Interrupted) else 2
        with signals_held():
            for index, job in enumerate(jobs):
                rows.setdefault(index, interrupted_row(job, config, signal_number))
            publish()
        raise Interrupted(
            signal_number,
            f"interrupted by {signal_name(signal_number)}: every stack was torn down; finished "
            f"versions and the summary are in {config.run_dir}",
        ) from None
    except Exception as bug:  # not a failure of Kong's or Docker's (those are error rows): ours
        with signals_held():
            for index, job in enumerate(jobs):
                rows.setdefault(index, _unfinished_row(job, config, bug))
            publish()
        raise
    return publish()


def registry_images(config: RunConfig, jobs: tuple[Job, ...]) -> list[str]:
    """The registry images a real (not --sim) run of `jobs` builds on, in job order."""
    return [
        image
        for job in jobs
        for image in registry_bases(job.plugin, job.target.image, config.go_image)
    ]


def _pull_ahead(config: RunConfig, jobs: tuple[Job, ...]) -> tuple[list[str], str | None]:
    """The registry images the whole run builds on, and the engine to pull them to: none with
    --sim (built here) or several engines (each version's engine is chosen when it starts)."""
    engines = config.docker_hosts or (config.docker_host,)
    if config.sim or len(engines) > 1:
        return [], None
    return registry_images(config, jobs), engines[0]


class _Measure(Protocol):
    def __call__(self, index: int, turn: Turn | None = None) -> None: ...


def _measure_all(
    config: RunConfig,
    count: int,
    measure: _Measure,
    cancel: Cancel,
    discard: Callable[[int], object],
) -> None:
    """`--parallel K`: K at once; else one after another, pipelined (the next version comes up
    while the previous goes down); one job, or --keep (nothing goes down): in this thread."""
    if config.parallel > 1:
        _measure_in_parallel(config.parallel, count, measure, cancel)
    elif count > 1 and not config.keep:
        _measure_pipelined(count, measure, cancel, discard)
    else:
        for index in range(count):
            measure(index)


def _unfinished_row(job: Job, config: RunConfig, bug: Exception) -> VersionResult:
    return replace(
        _base_row(job, config, config.run_dir / job.folder),
        status="error",
        error=f"not measured: the run stopped on an unexpected error ({bug!r}); every stack was "
        "torn down",
    )


def _measure_in_parallel(
    parallel: int, count: int, measure: Callable[[int], None], cancel: Cancel
) -> None:
    """Run `measure` for every job on `parallel` threads; on a signal, cancel them."""
    pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="kpm-version")
    futures: list[Future[None]] = []
    try:
        futures = [pool.submit(measure, index) for index in range(count)]
        # Short waits: the main thread must stay free to take a signal.
        while not all(future.done() for future in futures):
            wait(futures, timeout=0.5, return_when=FIRST_EXCEPTION)
            for future in futures:
                if future.done() and future.exception() is not None:
                    future.result()
    except BaseException as stop:
        signal_number = stop.signal_number if isinstance(stop, Interrupted) else 2
        with signals_held():
            _cancel_workers(pool, futures, cancel, signal_number)
        raise
    finally:
        pool.shutdown(wait=True)


def _cancel_workers(
    pool: ThreadPoolExecutor, futures: list[Future[None]], cancel: Cancel, signal_number: int
) -> None:
    """Stop the workers: no new version starts, running loads and builds are stopped."""
    cancel.set(signal_number)  # a running load sees it and stops its Locust
    pool.shutdown(wait=False, cancel_futures=True)

    def is_our_build(command: list[str]) -> bool:
        return "build" in command and any(arg.startswith("kpm-") for arg in command)

    stop_descendants(is_our_build)
    # A queued job that shutdown() cancelled never runs, and `wait` would wait for it forever.
    running = [future for future in futures if not future.cancelled()]
    LOGGER.warning("stopping: waiting for %d running version(s) to tear down", len(running))
    wait(running)


@dataclass
class Turn:
    """One job of a pipelined sequential run: its own stop flag, whether its load is over, and
    the job before it, whose end (its stack down, its row written) its first load waits for."""

    previous: Future[None] | None
    cancel: Cancel = field(default_factory=Cancel)
    load_over: threading.Event = field(default_factory=threading.Event)

    def wait(self) -> None:
        """Return once the previous job has ended; raise `Interrupted` if cancelled meanwhile."""
        while self.previous is not None and not self.previous.done():
            self.cancel.raise_if_set()
            wait([self.previous], timeout=TURN_POLL_S)
        self.cancel.raise_if_set()


TURN_POLL_S = 0.05


def _measure_pipelined(
    count: int,
    measure: Callable[[int, Turn], None],
    cancel: Cancel,
    discard: Callable[[int], object],
) -> None:
    """Measure the jobs one after another, but start each job (images, compose up, readiness)
    as soon as the one before has its verdict, so the next stack comes up while the previous
    goes down. Loads never overlap, nor a load and a teardown: a job's first load waits until
    the job before it has ended (`Turn.wait`). At most two jobs, so two stacks, at once.

    On a signal: a job whose load is not over is cancelled (its row is `interrupted`), a job
    already going down finishes (its row is kept as measured); both stacks are down, and every
    worker thread ended, before this returns. A cancelled job's row is discarded whatever it
    says (the run marks it `interrupted`): a Ctrl-C also reaches the docker commands it waits on,
    and one killed a moment before the job saw its cancel would read as an error row.
    """
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="kpm-version")
    turns: list[Turn] = []
    futures: list[Future[None]] = []
    try:
        for index in range(count):
            turn = Turn(futures[-1] if futures else None)
            with signals_held():  # a signal in between would leave a running job unseen
                turns.append(turn)
                futures.append(pool.submit(measure, index, turn))
            # Short waits: the main thread must stay free to take a signal.
            while not (turn.load_over.is_set() and index < count - 1) and not futures[-1].done():
                turn.load_over.wait(TURN_POLL_S * 4)
                _raise_a_failure(futures)
        while not all(future.done() for future in futures):  # the last teardown, at most two
            wait(futures, timeout=TURN_POLL_S * 4)
        _raise_a_failure(futures)
    except BaseException as stop:
        signal_number = stop.signal_number if isinstance(stop, Interrupted) else 2
        with signals_held():
            stopped = [
                index
                for index, (turn, future) in enumerate(zip(turns, futures, strict=True))
                if not turn.load_over.is_set() and not future.done()
            ]
            for index in stopped:
                turns[index].cancel.set(signal_number)
            _cancel_workers(pool, futures, cancel, signal_number)
            for index in stopped:
                discard(index)
        raise
    finally:
        pool.shutdown(wait=True)


def _raise_a_failure(futures: list[Future[None]]) -> None:
    for future in futures:
        if future.done() and future.exception() is not None:
            future.result()


def run_ui(config: RunConfig) -> RunResult:
    """Bring one target up, serve Locust's web UI until Ctrl-C, count, tear down, write results.

    Ctrl-C (or SIGTERM) is how a web UI session ends: its row holds what the load until then
    measured, marked `interrupted`, the results are written, and `Interrupted` is raised.
    """
    (source, *others) = resolve_plugins(config.plugins, config.repo_root)
    if others:
        raise UsageError("ui serves one plugin at a time: name one --plugin")
    return run_matrix(config, jobs=(Job(config.targets[0], "ui", source),))
