"""The pipeline: for each target, build -> up -> wait -> load -> collect -> down, then report.

Each version's outcome becomes a row, whatever happens: a failure is an `error` row with the
reason, an interrupt an `interrupted` row, and the results files are rewritten after every row so
nothing already measured is lost.

Interrupts: in the main thread Ctrl-C arrives as KeyboardInterrupt wherever the run is, and every
`Stack` tears itself down on the way out. With `--parallel`, worker threads never see signals: the
main thread sets a shared `Cancel`, stops the builds and Locust processes the workers wait on, and
waits (signals held) until every worker has torn its stack down.
"""

from __future__ import annotations

import logging
import re
import signal
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path

from python_on_whales import DockerException

from orchestration import report
from orchestration.collect import Signals, collect_file, collect_lines
from orchestration.config import RunConfig
from orchestration.errors import (
    ImageUnavailable,
    Interrupted,
    MatrixError,
    ReadyTimeout,
    StackError,
    UsageError,
    signal_name,
)
from orchestration.load import LoadResult, LoadShortfall, parse_stats_csv, run_load, run_web_ui
from orchestration.report import RunResult, VersionResult
from orchestration.sim import build_sim_images
from orchestration.stack import (
    Stack,
    StackSpec,
    plugin_image_tag,
    project_name_for,
    signal_descendants,
    signals_held,
)
from orchestration.versions import Target

LOGGER = logging.getLogger(__name__)

LOG_SETTLE_S = 15.0  # how long to wait for Docker to deliver the load's last log lines
LOG_POLL_S = 0.25


COUNTER_HEADER = "X-Example-Message"
# Loopback only, and never through an HTTP proxy a user may have configured.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_COUNTER_RE = re.compile(r"New\(\) calls: (\d+)")


class Cancel:
    """A run-wide stop flag that worker threads check between stages."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal_number = signal.SIGINT.value

    def set(self, signal_number: int) -> None:
        self.signal_number = signal_number
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def raise_if_set(self) -> None:
        if self._event.is_set():
            raise Interrupted(self.signal_number)


NEVER_CANCELLED = Cancel()


@dataclass(frozen=True)
class Measurement:
    before: Signals
    after: Signals
    load: LoadResult
    plugin_counter: int | None = None  # the plugin's own count, read from its response header
    shortfall: str | None = None  # set when the load ended before every request was sent


def folder_name(label: str) -> str:
    """A file-system-safe name for a target (image references hold '/' and ':')."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", label)


def _base_row(target: Target, config: RunConfig, version_dir: Path) -> VersionResult:
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
    )


def _stack_spec(target: Target, config: RunConfig, version_dir: Path) -> StackSpec:
    LOGGER.info("%s: preparing images", target.label)
    kong_image, go_image = target.image, config.go_image
    if config.sim:
        if target.version is None:
            raise MatrixError(
                f"--sim needs a Kong version to stand in for, and {target.label!r} names none"
            )
        images = build_sim_images(target.version, repo_root=config.repo_root)
        kong_image, go_image = images.kong_image, images.go_image
    return StackSpec(
        version=target.label,
        kong_image=kong_image,
        go_image=go_image,
        image_tag=plugin_image_tag(
            folder_name(target.label),
            sim=config.sim,
            repo_root=config.repo_root,
            base_images=(kong_image, go_image),
        ),
        workers=config.workers,
        project_name=project_name_for(config.run_id, target.label),
        run_id=config.run_id,
        env_file=version_dir / "compose.env",
    )


def _wait_for_counter_lines(stack: Stack, expected_lines: int) -> None:
    """Docker delivers logs a little late: wait (bounded) until each served request's line is in."""
    deadline = time.monotonic() + LOG_SETTLE_S
    while time.monotonic() < deadline:
        if collect_lines(stack.log_text().splitlines()).counter_lines >= expected_lines:
            return
        time.sleep(LOG_POLL_S)


def read_plugin_counter(proxy_url: str, path: str = "/hello") -> int | None:
    """One request after the load: the plugin reports its own New() count in a header.

    Its Access phase logs the same number, so this cross-checks the collector against the
    plugin itself. None when the header is missing or unreadable.
    """
    try:
        with _DIRECT.open(proxy_url + path, timeout=10) as response:
            header = response.headers.get(COUNTER_HEADER) or ""
    except OSError:
        return None
    match = _COUNTER_RE.search(header)
    return int(match.group(1)) if match else None


def _measure(stack: Stack, config: RunConfig, version_dir: Path, cancel: Cancel) -> Measurement:
    label = stack.spec.version
    LOGGER.info("%s: waiting for Kong (at most %.0fs)", label, config.ready_timeout_s)
    stack.wait_ready(config.ready_timeout_s, check=cancel.raise_if_set)
    before = collect_lines(stack.log_text().splitlines())
    cancel.raise_if_set()
    LOGGER.info("%s: sending %d requests with %d users", label, config.requests, config.users)
    shortfall = None
    try:
        load = run_load(
            stack.proxy_url,
            requests=config.requests,
            users=config.users,
            spawn_rate=config.spawn_rate,
            out_dir=version_dir,
            timeout_s=config.load_timeout_s,
        )
    except LoadShortfall as error:  # keep what was measured; the row says it fell short
        load, shortfall = error.partial, str(error)
    cancel.raise_if_set()  # a cancelled Locust ends early: that is no measurement
    plugin_counter = read_plugin_counter(stack.proxy_url)
    served = load.requests - load.failures + (plugin_counter is not None)
    _wait_for_counter_lines(stack, before.counter_lines + served)
    return Measurement(before, before, load, plugin_counter, shortfall)


def row_from(base: VersionResult, measurement: Measurement) -> VersionResult:
    before, after, load = measurement.before, measurement.after, measurement.load
    during = after.new_calls_total - before.new_calls_total
    per_request = during / load.requests if load.requests else 0.0
    # No request, no measurement: never call that "stable".
    verdict = report.verdict_for(per_request) if load.requests else "error"
    row = replace(
        base,
        verdict=verdict,
        matches_changelog=report.matches_changelog(base.expected, verdict),
        requests=load.requests,
        failures=load.failures,
        new_calls_total=after.new_calls_total,
        new_calls_before_load=before.new_calls_total,
        new_calls_during_load=during,
        new_calls_per_request=round(per_request, 4),
        instance_starts=after.instance_starts,
        instance_closes=after.instance_closes,
        no_instance_errors=after.no_instance_errors,
        rpc_closed_errors=after.rpc_closed_errors,
        plugin_server_starts=after.plugin_server_starts,
        rps=round(load.rps, 1),
        p50_ms=load.p50_ms,
        p95_ms=load.p95_ms,
        plugin_counter=measurement.plugin_counter,
    )
    if not load.requests:
        return replace(row, status="error", error="no request completed, so nothing was measured")
    return row


def _error_text(error: BaseException, version_dir: Path) -> str:
    """The row's one-line error; a failed build's own output is written to build.log beside it."""
    text = str(error) or type(error).__name__
    if isinstance(error, ReadyTimeout) and error.last_log_lines:
        lines = [line.strip() for line in error.last_log_lines if line.strip()]
        text += " | last log lines: " + " / ".join(lines)
    if isinstance(error, ImageUnavailable) and error.build_output:
        build_log = version_dir / "build.log"
        build_log.write_text("\n".join(error.build_output) + "\n", encoding="utf-8")
        text += f" | build output: {build_log}"
    if (version_dir / "kong.log").is_file():
        text += f" | full log: {version_dir / 'kong.log'}"
    return text


def _require_log(log_path: Path) -> Path:
    if not log_path.is_file():
        raise StackError(f"Kong's log could not be saved to {log_path}; see the warning above")
    return log_path


def _measure_in_stack(
    target: Target, config: RunConfig, version_dir: Path, cancel: Cancel
) -> Measurement:
    log_path = version_dir / "kong.log"
    spec = _stack_spec(target, config, version_dir)
    cancel.raise_if_set()
    # The stack saves its whole log on the way down, however it ends.
    with Stack(spec, keep=config.keep, log_path=log_path) as stack:
        measurement = _measure(stack, config, version_dir, cancel)
    # The saved log is the record: count from it, so results and kong.log always agree.
    return replace(measurement, after=collect_file(_require_log(log_path)))


def measure_version(
    target: Target, config: RunConfig, cancel: Cancel = NEVER_CANCELLED
) -> VersionResult:
    """Measure one target. Failures become an error row; interrupts propagate as Interrupted."""
    version_dir = config.run_dir / folder_name(target.label)
    version_dir.mkdir(parents=True, exist_ok=True)
    base = _base_row(target, config, version_dir)
    started = time.monotonic()
    try:
        cancel.raise_if_set()
        measurement = _measure_in_stack(target, config, version_dir, cancel)
        row = row_from(base, measurement)
        if measurement.shortfall:
            row = replace(row, status="error", verdict="error", error=measurement.shortfall)
    except (MatrixError, DockerException) as error:
        if isinstance(error, Interrupted):
            raise
        cancel.raise_if_set()  # a failure caused by cancelling (a killed build) is an interrupt
        if isinstance(error, DockerException):  # python-on-whales outside our wrappers
            error = StackError(f"docker failed: {error}")
        row = replace(base, status="error", error=_error_text(error, version_dir))
    return replace(row, duration_s=round(time.monotonic() - started, 1))


def interrupted_row(target: Target, config: RunConfig, signal_number: int) -> VersionResult:
    version_dir = config.run_dir / folder_name(target.label)
    return replace(
        _base_row(target, config, version_dir),
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
    config: RunConfig, announce: Callable[[VersionResult], None] = lambda _row: None
) -> RunResult:
    """Measure every target, writing the results after each one. Returns the finished run.

    On SIGINT/SIGTERM: every stack is torn down, finished rows stay, the others are marked
    `interrupted`, the results are written, and `Interrupted` is raised.
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

    def measure(index: int) -> None:
        row = measure_version(config.targets[index], config, cancel)
        with rows_lock:
            rows[index] = row
        announce(row)
        publish()

    publish()
    try:
        if config.parallel > 1:
            _measure_in_parallel(config, measure, cancel)
        else:
            for index in range(len(config.targets)):
                measure(index)
    except (Interrupted, KeyboardInterrupt) as stop:
        signal_number = stop.signal_number if isinstance(stop, Interrupted) else 2
        with signals_held():
            for index, target in enumerate(config.targets):
                rows.setdefault(index, interrupted_row(target, config, signal_number))
            publish()
        raise Interrupted(
            signal_number,
            f"interrupted by {signal_name(signal_number)}: every stack was torn down; finished "
            f"versions and the summary are in {config.run_dir}",
        ) from None
    return publish()


def _measure_in_parallel(config: RunConfig, measure: Callable[[int], None], cancel: Cancel) -> None:
    """Run `measure` for every target on `config.parallel` threads; on a signal, cancel them."""
    pool = ThreadPoolExecutor(max_workers=config.parallel, thread_name_prefix="kpm-version")
    futures: list[Future[None]] = []
    try:
        futures = [pool.submit(measure, index) for index in range(len(config.targets))]
        # Short waits: the main thread must stay free to take a signal.
        while not all(future.done() for future in futures):
            wait(futures, timeout=0.5, return_when=FIRST_EXCEPTION)
            for future in futures:
                if future.done() and future.exception() is not None:
                    future.result()
    except BaseException as stop:
        signal_number = stop.signal_number if isinstance(stop, Interrupted) else 2
        with signals_held():
            _cancel_workers(config, pool, futures, cancel, signal_number)
        raise
    finally:
        pool.shutdown(wait=True)


def _cancel_workers(
    config: RunConfig,
    pool: ThreadPoolExecutor,
    futures: list[Future[None]],
    cancel: Cancel,
    signal_number: int,
) -> None:
    """Stop the workers: no new version starts, running builds and Locusts are stopped."""
    cancel.set(signal_number)
    pool.shutdown(wait=False, cancel_futures=True)
    run_dir = str(config.run_dir)

    def is_our_locust(command: list[str]) -> bool:
        return "locust" in command and any(arg.startswith(run_dir) for arg in command)

    def is_our_build(command: list[str]) -> bool:
        return "build" in command and any(arg.startswith("kpm-") for arg in command)

    # Locust writes its reports on SIGINT; load.py's own cleanup then removes the group.
    signal_descendants(is_our_locust, signal.SIGINT)
    signal_descendants(is_our_build, signal.SIGTERM)
    LOGGER.warning("stopping: waiting for %d running version(s) to tear down", len(futures))
    wait(futures)


def run_ui(config: RunConfig, web_port: int) -> RunResult:
    """Bring one target up, serve Locust's web UI until Ctrl-C, then collect and tear down."""
    target = config.targets[0]
    create_run_dir(config)
    report.write_config(config.run_dir, config.to_dict())
    version_dir = config.run_dir / folder_name(target.label)
    version_dir.mkdir(parents=True)
    base = _base_row(target, config, version_dir)
    log_path = version_dir / "kong.log"
    spec = _stack_spec(target, config, version_dir)
    try:
        with Stack(spec, keep=config.keep, log_path=log_path) as stack:
            stack.wait_ready(config.ready_timeout_s)
            before = collect_lines(stack.log_text().splitlines())
            run_web_ui(
                stack.proxy_url,
                out_dir=version_dir,
                web_port=web_port,
                users=config.users,
                spawn_rate=config.spawn_rate,
            )
    except DockerException as error:
        raise StackError(f"docker failed: {error}") from error
    load = parse_stats_csv(version_dir / "locust_stats.csv")
    row = row_from(base, Measurement(before, collect_file(_require_log(log_path)), load))
    run = RunResult(config.run_id, config.tool_version, config.to_dict(), (row,))
    report.write_run(config.run_dir, run)
    report.point_latest(config.results_root, config.run_dir)
    return run
