"""The pipeline: schedule the jobs (target, plugin, scenario), write each one's row as it comes.

Each job's outcome becomes a row (rows.py), whatever happens: a failure is an `error` row with
the reason, an interrupt an `interrupted` row, and the results files are rewritten when a row
comes in, so nothing already measured is lost. What a scenario does with a version lives in
orchestration/scenarios/; one version's running world (stack, live log counts, plugin probe,
Locust) in world.py.

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
from typing import Protocol

from python_on_whales import DockerException

from orchestration import drawing, evidence, progress, pulls, rows, run_files, scenarios
from orchestration.config import RunConfig
from orchestration.engine import Engine
from orchestration.engines import EnginePool
from orchestration.errors import (
    Interrupted,
    KongDied,
    MatrixError,
    StackError,
    UsageError,
    signal_name,
)
from orchestration.plugins import registry_bases
from orchestration.processes import signals_held, stop_descendants
from orchestration.report import Row, RunResult
from orchestration.scenarios import Outcome, Session
from orchestration.world import NEVER_CANCELLED, Cancel

LOGGER = logging.getLogger(__name__)

Job = rows.Job  # what the pipeline schedules; its callers make them as pipeline.Job


def jobs_of(config: RunConfig) -> tuple[Job, ...]:
    """Every (target, plugin, scenario) of the run, targets first, in the order given. The
    plugin sources were resolved once, into the configuration, and travel with the jobs."""
    if not config.plugin_sources:
        raise ValueError("RunConfig.plugin_sources is empty: resolve --plugin into it first")
    return tuple(
        Job(target, name, source)
        for target in config.targets
        for source in config.plugin_sources
        for name in config.scenarios
    )


def measure_job(
    job: Job,
    config: RunConfig,
    cancel: Cancel = NEVER_CANCELLED,
    on_verdict: Callable[[Row], None] | None = None,
    load_turn: Callable[[], None] | None = None,
    *,
    engine: Engine | None = None,
) -> Row:
    """Run one job on `engine` (None: the default engine). Failures become an error row;
    interrupts propagate as Interrupted.

    `on_verdict` gets the row as soon as a scenario knows its verdict, before its teardown, when
    the scenario says it early (`scenarios.announce_early`): not written anywhere, only shown.
    `load_turn` returns once the job's first load may start (None: at once).
    """
    version_dir = config.run_dir / job.folder
    version_dir.mkdir(parents=True, exist_ok=True)
    engine = engine or Engine()
    base = rows.base_row(job, config, version_dir, engine.host)
    folder = evidence.Folder(version_dir)
    started = time.monotonic()
    early = None if on_verdict is None else _early_rows(base, on_verdict)
    try:
        cancel.raise_if_set()
        scenario = scenarios.get(job.scenario)
        session = Session(
            job.target, config, version_dir, cancel, job.plugin, early, load_turn, engine
        )
        outcome = scenario.run(session)
        if outcome.stopped_by is not None:  # a web UI session's end stops the run too
            cancel.set(outcome.stopped_by)
        row = rows.finished_row(base, outcome, folder)
    except (MatrixError, DockerException) as error:
        if isinstance(error, Interrupted):
            raise
        cancel.raise_if_set()  # a failure caused by cancelling (a killed build) is an interrupt
        if isinstance(error, DockerException):  # python-on-whales outside our wrappers
            error = StackError(f"docker failed: {error}")
        # Kong's death is no news about the plugin: no hints from its folder
        hints_from = None if isinstance(error, KongDied) else folder
        row = rows.error_row(base, evidence.failure_text(error, version_dir), hints_from)
    return replace(row, duration_s=round(time.monotonic() - started, 1))


def _early_rows(base: Row, on_verdict: Callable[[Row], None]) -> Callable[[Outcome], None]:
    """The early line's row, from the live counts before the teardown (the row written is
    made from the saved log after it, and may read otherwise: then it is shown again)."""
    return lambda outcome: on_verdict(rows.row_from(base, outcome))


def _base_row(job: Job, config: RunConfig) -> Row:
    """A job's row before it ran, in its folder of the run."""
    return rows.base_row(job, config, config.run_dir / job.folder)


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
    announce: Callable[[Row], None] = lambda _row: None,
    jobs: tuple[Job, ...] | None = None,
) -> RunResult:
    """Run every job (default: each target with each scenario of `config`), writing the results
    after each one. Returns the finished run.

    On SIGINT/SIGTERM: every stack is torn down, finished rows stay, the others are marked
    `interrupted`, the results are written, and `Interrupted` is raised. A row that a signal
    ended with its measurement (a web UI session) is kept as it is.
    """
    create_run_dir(config)
    run_files.write_config(config.run_dir, config.to_dict())
    run_files.point_latest(config.results_root, config.run_dir)
    results = RunRows(config)
    # The empty run at once: a run killed before its first row (SIGKILL, which no handler sees)
    # still leaves a run folder that `report` and `collect` read.
    results.write()
    cancel = Cancel()
    jobs = jobs_of(config) if jobs is None else jobs
    engines = EnginePool(config.docker_hosts)

    def measure(index: int, turn: Turn | None = None) -> None:
        shown: list[Row] = []  # the verdict line shown before the teardown, if any

        def show_early(row: Row) -> None:
            shown.append(row)
            announce(row)
            if turn is not None:  # its load is over: the next version may come up
                turn.load_over.set()
            drawing.preload_page_drawing()  # now, not sooner: see its docstring

        job_cancel, load_turn = (cancel, None) if turn is None else (turn.cancel, turn.wait)
        with engines.take() as engine:  # the least-loaded --docker-host engine, or the default
            row = measure_job(jobs[index], config, job_cancel, show_early, load_turn, engine=engine)
        results.put(index, row)
        if not any(rows.says_the_same(early, row) for early in shown):  # else on the screen
            announce(row)
        drawing.preload_page_drawing()
        results.write()
        cancel.raise_if_set()

    try:
        shown = all(job.scenario != "ui" for job in jobs)  # the web UI shows its own
        with (
            progress.shown(sys.stderr, enabled=shown),
            pulls.ahead(_pull_ahead(config, jobs)[0], engines.engines[0]),
        ):
            # A cancelled job's row is discarded once every worker has ended.
            _measure_all(config, len(jobs), measure, cancel, results.discard)
    except (Interrupted, KeyboardInterrupt) as stop:
        signal_number = stop.signal_number if isinstance(stop, Interrupted) else 2
        with signals_held():
            for index, job in enumerate(jobs):
                results.put_if_missing(
                    index, rows.interrupted_row(_base_row(job, config), signal_number)
                )
            results.write()
        raise Interrupted(
            signal_number,
            f"interrupted by {signal_name(signal_number)}: every stack was torn down; finished "
            f"versions and the summary are in {config.run_dir}",
        ) from None
    except Exception as bug:  # not a failure of Kong's or Docker's (those are error rows): ours
        with signals_held():
            for index, job in enumerate(jobs):
                results.put_if_missing(index, rows.unfinished_row(_base_row(job, config), bug))
            results.write()
        raise
    return results.write()


class RunRows:
    """A run's rows so far, by job index, and its results files (results.json, .csv, summary.md),
    written when the rows have changed since the last write, never for nothing. Worker threads
    put rows too."""

    def __init__(self, config: RunConfig) -> None:
        self._config = config
        self._rows: dict[int, Row] = {}
        self._written: tuple[Row, ...] | None = None
        self._lock = threading.Lock()

    def put(self, index: int, row: Row) -> None:
        with self._lock:
            self._rows[index] = row

    def put_if_missing(self, index: int, row: Row) -> None:
        with self._lock:
            self._rows.setdefault(index, row)

    def discard(self, index: int) -> None:
        with self._lock:
            self._rows.pop(index, None)

    def write(self) -> RunResult:
        """The run as its rows stand, its files rewritten if the rows changed."""
        config = self._config
        with self._lock:
            ordered = tuple(self._rows[index] for index in sorted(self._rows))
            run = RunResult(config.run_id, config.tool_version, config.to_dict(), ordered)
            if ordered != self._written:
                run_files.write_run(config.run_dir, run)
                self._written = ordered
        return run


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
    if config.sim or len(config.docker_hosts) > 1:
        return [], None
    return registry_images(config, jobs), next(iter(config.docker_hosts), None)


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
    (source, *others) = config.plugin_sources
    if others:
        raise UsageError("ui serves one plugin at a time: name one --plugin")
    return run_matrix(config, jobs=(Job(config.targets[0], "ui", source),))
