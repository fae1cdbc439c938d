"""The pipeline: for each target, build -> up -> wait -> load -> collect -> down, then report.

Each version's outcome becomes a row, whatever happens: a failure is an `error` row with the
reason, an interrupt an `interrupted` row, and the results files are rewritten after every row so
nothing already measured is lost.

Overlap: Locust is started first and imports itself while the stack is built and comes up; it is
handed the proxy URL once Kong is ready. Kong's log is followed into kong.log from the moment the
stack is up and counted as it arrives (`LogCounts`), so the counts before the load and the wait for
the load's last lines never read the whole log again.

Interrupts: in the main thread Ctrl-C arrives as KeyboardInterrupt wherever the run is, and every
`Stack` tears itself down on the way out. With `--parallel`, worker threads never see signals: the
main thread sets a shared `Cancel`, which a running load notices on its own, stops the builds the
workers wait on, and waits (signals held) until every worker has torn its stack down.
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
from orchestration.collect import Collector, Signals, collect_file
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
from orchestration.load import HeadlessLocust, LoadResult, LoadShortfall, run_web_ui
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


WARM_UP_PER_WORKER = 10
WARM_UP_PATH = "/hello?kpm-probe=warm-up"

COUNTER_HEADER = "X-Example-Message"
# The route, marked so the probe stands out in the access log.
COUNTER_PROBE_PATH = "/hello?kpm-probe=plugin-counter"
# Loopback only, and never through an HTTP proxy a user may have configured.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_COUNTER_RE = re.compile(r"New\(\) calls: (\d+)")


class Cancel(threading.Event):
    """A run-wide stop flag that worker threads check between stages; it names the signal.

    A `threading.Event`, so a running load (`HeadlessLocust.run`) can watch it too.
    """

    def __init__(self) -> None:
        super().__init__()
        self.signal_number = signal.SIGINT.value

    def set(self, signal_number: int = signal.SIGINT.value) -> None:
        self.signal_number = signal_number
        super().set()

    def raise_if_set(self) -> None:
        if self.is_set():
            raise Interrupted(self.signal_number)


class LogCounts:
    """Kong's log counted as the stack follows it; callers wait until the counts reach a point."""

    def __init__(self) -> None:
        self._collector = Collector()
        self._changed = threading.Condition()

    def feed(self, lines: bytes) -> None:
        """A block of whole log lines (called from the stack's log-following thread)."""
        with self._changed:
            self._collector.feed_block(lines)
            self._changed.notify_all()

    def signals(self) -> Signals:
        with self._changed:
            return self._collector.signals()

    def wait_until(self, reached: Callable[[Signals], bool], timeout_s: float) -> Signals:
        """The counts once `reached` holds for them, or after `timeout_s` as they are then."""
        with self._changed:
            self._changed.wait_for(lambda: reached(self._collector.signals()), timeout_s)
            return self._collector.signals()

    def wait_for_counter(self, value: int, timeout_s: float) -> bool:
        """Whether, within `timeout_s`, the last counter line in the log showed `value`.

        Call it after the plugin answered a request alone (no other request in flight) with
        `value` in its header: that request's counter line is then the last one Kong writes.
        (Its value may also have been seen before, by a server that has since restarted: only
        the last line says the log has caught up.)
        """
        with self._changed:
            return self._changed.wait_for(
                lambda: self._collector.latest_counter() == value, timeout_s
            )


NEVER_CANCELLED = Cancel()


@dataclass(frozen=True)
class Measurement:
    before: Signals
    after: Signals
    load: LoadResult
    plugin_counter: int | None = None  # the plugin's own count, read from its response header
    shortfall: str | None = None  # set when the load ended before every request was sent
    stopped_by: int | None = None  # the signal that ended a web UI session's load


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


def _log_before_load(counts: LogCounts, ready_counter: int | None) -> Signals:
    """The log's counts before the load: they must include the readiness probe's own line.

    The probe that found Kong ready went through the plugin, which logged one counter line with
    the count its header reported; Docker delivers it a moment later.
    """
    if ready_counter is None:  # the header held no count: any counter line will do
        in_time = counts.wait_until(lambda s: s.counter_lines >= 1, LOG_SETTLE_S).counter_lines > 0
    else:
        in_time = counts.wait_for_counter(ready_counter, LOG_SETTLE_S)
    before = counts.signals()
    if not in_time:
        LOGGER.warning(
            "Kong's log showed no counter line for the readiness request within %.0fs; "
            "counting the log as it is (%d lines)",
            LOG_SETTLE_S,
            before.lines,
        )
    return before


def _wait_for_the_load_lines(
    counts: LogCounts, plugin_counter: int | None, counter_lines: int
) -> None:
    """Docker delivers logs a little late: wait (bounded) until the load's last lines are in.

    The plugin's counter header, read after every response of the load came back, says how far
    its New() count got; once the log shows that count, the lines that matter are in. (Kong
    writes its debug lines, the counter line among them, without the request they belong to,
    so a line cannot be told apart by its request.) With no header to go by: until
    `counter_lines` counter lines are in, one per request the plugin served.
    """
    if plugin_counter is not None:
        if counts.wait_for_counter(plugin_counter, LOG_SETTLE_S):
            return
        missing = f"the plugin's New() count {plugin_counter}, which its header reported"
    else:
        reached = counts.wait_until(lambda s: s.counter_lines >= counter_lines, LOG_SETTLE_S)
        if reached.counter_lines >= counter_lines:
            return
        missing = f"{counter_lines} counter lines (it has {reached.counter_lines})"
    LOGGER.warning(
        "Kong's log did not show the load's last lines within %.0fs (%s); counting what it holds",
        LOG_SETTLE_S,
        missing,
    )


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


def warm_up(proxy_url: str, workers: int) -> int | None:
    """Send a few requests per nginx worker, each on a new connection, before counting.

    Every worker starts its first plugin instance on its first request; that is start-up, not
    churn. Ten new connections per worker reach every worker with near certainty (Kong spreads
    connections over workers with reuseport), so the load's count holds churn only. Returns
    the plugin's highest counter seen, or None when no response carried it.
    """
    seen = [
        read_plugin_counter(proxy_url, WARM_UP_PATH) for _ in range(WARM_UP_PER_WORKER * workers)
    ]
    counters = [counter for counter in seen if counter is not None]
    return max(counters) if counters else None


def _measure(
    stack: Stack, locust: HeadlessLocust, counts: LogCounts, config: RunConfig, cancel: Cancel
) -> Measurement:
    """Wait for Kong, send the load, and take the stack down once the load's log lines are in.

    Locust writes its reports and exits while the stack goes down.
    """
    label = stack.spec.version
    LOGGER.info("%s: waiting for Kong (at most %.0fs)", label, config.ready_timeout_s)
    ready_counter = stack.wait_ready(config.ready_timeout_s, check=cancel.raise_if_set)
    warmed_counter = warm_up(stack.proxy_url, config.workers)
    before = _log_before_load(counts, max(ready_counter or 0, warmed_counter or 0) or None)
    cancel.raise_if_set()
    LOGGER.info("%s: sending %d requests with %d users", label, config.requests, config.users)
    locust.send(stack.proxy_url, cancel=cancel)
    cancel.raise_if_set()  # a cancelled Locust ends early: that is no measurement
    plugin_counter = read_plugin_counter(stack.proxy_url, COUNTER_PROBE_PATH)
    if plugin_counter is not None:  # Locust writes its reports while the stack goes down
        _wait_for_the_load_lines(counts, plugin_counter, 0)
        stack.close()
        load, shortfall = _load_result(locust, cancel)
    else:  # one counter line per request served, which Locust's count says
        load, shortfall = _load_result(locust, cancel)
        _wait_for_the_load_lines(counts, None, before.counter_lines + load.requests - load.failures)
    return Measurement(before, before, load, plugin_counter, shortfall)


def _load_result(locust: HeadlessLocust, cancel: Cancel) -> tuple[LoadResult, str | None]:
    """Locust's final stats, and why they fall short of the count asked for (or None)."""
    try:
        return locust.result(cancel=cancel), None
    except LoadShortfall as error:  # keep what was measured; the row says it fell short
        return error.partial, str(error)


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
    counts = LogCounts()
    locust = HeadlessLocust(
        requests=config.requests,
        users=config.users,
        spawn_rate=config.spawn_rate,
        out_dir=version_dir,
        timeout_s=config.load_timeout_s,
    )
    with locust:  # Locust starts first and waits; it is gone when this block is left
        spec = _stack_spec(target, config, version_dir)
        cancel.raise_if_set()
        # The stack saves its whole log on the way down, however and whenever it ends.
        with Stack(spec, keep=config.keep, log_path=log_path, on_log=counts.feed) as stack:
            measurement = _measure(stack, locust, counts, config, cancel)
    # The saved log is the record: count from it, so results and kong.log always agree.
    after = collect_file(_require_log(log_path))
    load = measurement.load
    expected_lines = measurement.before.counter_lines + load.requests - load.failures
    if after.counter_lines < expected_lines:
        LOGGER.warning(
            "%s: kong.log has %d counter lines, fewer than the %d its requests should have left",
            target.label,
            after.counter_lines,
            expected_lines,
        )
    return replace(measurement, after=after)


InStack = Callable[[Target, RunConfig, Path, Cancel], Measurement]


def measure_version(
    target: Target,
    config: RunConfig,
    cancel: Cancel = NEVER_CANCELLED,
    in_stack: InStack | None = None,
) -> VersionResult:
    """Measure one target. Failures become an error row; interrupts propagate as Interrupted.

    `in_stack` brings the stack up and measures (default: the headless load of `config`).
    """
    version_dir = config.run_dir / folder_name(target.label)
    version_dir.mkdir(parents=True, exist_ok=True)
    base = _base_row(target, config, version_dir)
    started = time.monotonic()
    try:
        cancel.raise_if_set()
        measurement = (in_stack or _measure_in_stack)(target, config, version_dir, cancel)
        row = row_from(base, measurement)
        if measurement.shortfall:
            row = replace(row, status="error", verdict="error", error=measurement.shortfall)
        if measurement.stopped_by is not None:
            cancel.set(measurement.stopped_by)
            row = replace(
                row,
                status="interrupted",
                error=f"stopped by {signal_name(measurement.stopped_by)}, as a web UI session "
                "ends: the load until then is counted",
            )
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
    config: RunConfig,
    announce: Callable[[VersionResult], None] = lambda _row: None,
    in_stack: InStack | None = None,
) -> RunResult:
    """Measure every target, writing the results after each one. Returns the finished run.

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

    def measure(index: int) -> None:
        row = measure_version(config.targets[index], config, cancel, in_stack)
        with rows_lock:
            rows[index] = row
        announce(row)
        publish()
        cancel.raise_if_set()

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

    signal_descendants(is_our_build, signal.SIGTERM)
    LOGGER.warning("stopping: waiting for %d running version(s) to tear down", len(futures))
    wait(futures)


def run_ui(config: RunConfig, web_port: int) -> RunResult:
    """Bring one target up, serve Locust's web UI until Ctrl-C, count, tear down, write results.

    Ctrl-C (or SIGTERM) is how a web UI session ends: its row holds what the load until then
    measured, marked `interrupted`, the results are written, and `Interrupted` is raised.
    """

    def in_stack(
        target: Target, config: RunConfig, version_dir: Path, cancel: Cancel
    ) -> Measurement:
        return _measure_ui_in_stack(target, config, version_dir, web_port)

    return run_matrix(config, in_stack=in_stack)


def _measure_ui_in_stack(
    target: Target, config: RunConfig, version_dir: Path, web_port: int
) -> Measurement:
    log_path = version_dir / "kong.log"
    counts = LogCounts()
    spec = _stack_spec(target, config, version_dir)
    with Stack(spec, keep=config.keep, log_path=log_path, on_log=counts.feed) as stack:
        ready_counter = stack.wait_ready(config.ready_timeout_s)
        warmed_counter = warm_up(stack.proxy_url, config.workers)
        before = _log_before_load(counts, max(ready_counter or 0, warmed_counter or 0) or None)
        session = run_web_ui(
            stack.proxy_url,
            out_dir=version_dir,
            web_port=web_port,
            users=config.users,
            spawn_rate=config.spawn_rate,
        )
        load = session.load
        plugin_counter = read_plugin_counter(stack.proxy_url, COUNTER_PROBE_PATH)
        lines = before.counter_lines + load.requests - load.failures
        _wait_for_the_load_lines(counts, plugin_counter, lines)
    after = collect_file(_require_log(log_path))
    return Measurement(before, after, load, plugin_counter, stopped_by=session.stopped_by)
