"""The pipeline: for each target, build -> up -> wait -> load -> collect -> down, then report.

Each version's outcome becomes a row, whatever happens: a failure is an `error` row with the
reason, an interrupt an `interrupted` row, and the results files are rewritten after every row so
nothing already measured is lost.
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from orchestration import report
from orchestration.collect import Signals, collect_file, collect_lines
from orchestration.config import RunConfig
from orchestration.errors import Interrupted, MatrixError, ReadyTimeout
from orchestration.load import LoadResult, LoadShortfall, parse_stats_csv, run_load, run_web_ui
from orchestration.report import RunResult, VersionResult
from orchestration.sim import build_sim_images
from orchestration.stack import Stack, StackSpec, plugin_image_tag, project_name_for
from orchestration.versions import Target

LOG_SETTLE_S = 15.0  # how long to wait for Docker to deliver the load's last log lines
LOG_POLL_S = 0.25


COUNTER_HEADER = "X-Example-Message"
# Loopback only, and never through an HTTP proxy a user may have configured.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_COUNTER_RE = re.compile(r"New\(\) calls: (\d+)")


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


def _measure(stack: Stack, config: RunConfig, version_dir: Path) -> Measurement:
    stack.wait_ready(config.ready_timeout_s)
    before = collect_lines(stack.log_text().splitlines())
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
    plugin_counter = read_plugin_counter(stack.proxy_url)
    served = load.requests - load.failures + (plugin_counter is not None)
    _wait_for_counter_lines(stack, before.counter_lines + served)
    return Measurement(before, before, load, plugin_counter, shortfall)


def row_from(base: VersionResult, measurement: Measurement) -> VersionResult:
    before, after, load = measurement.before, measurement.after, measurement.load
    during = after.new_calls_total - before.new_calls_total
    per_request = during / load.requests if load.requests else 0.0
    verdict = report.verdict_for(per_request)
    return replace(
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


def _error_text(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    if isinstance(error, ReadyTimeout) and error.last_log_lines:
        text += " | last log lines: " + " / ".join(line.strip() for line in error.last_log_lines)
    return text


def measure_version(target: Target, config: RunConfig) -> VersionResult:
    """Measure one target. Failures become an error row; interrupts propagate as Interrupted."""
    version_dir = config.run_dir / folder_name(target.label)
    version_dir.mkdir(parents=True, exist_ok=True)
    base = _base_row(target, config, version_dir)
    started = time.monotonic()
    log_path = version_dir / "kong.log"
    try:
        with Stack(_stack_spec(target, config, version_dir), keep=config.keep) as stack:
            try:
                measurement = _measure(stack, config, version_dir)
            finally:
                stack.save_logs(log_path)
        # The saved log is the record: count from it, so results and kong.log always agree.
        row = row_from(base, replace(measurement, after=collect_file(log_path)))
        if measurement.shortfall:
            row = replace(row, status="error", verdict="error", error=measurement.shortfall)
    except MatrixError as error:
        if isinstance(error, Interrupted):
            raise
        row = replace(base, status="error", error=_error_text(error))
    return replace(row, duration_s=round(time.monotonic() - started, 1))


def interrupted_row(target: Target, config: RunConfig, signal_number: int) -> VersionResult:
    version_dir = config.run_dir / folder_name(target.label)
    return replace(
        _base_row(target, config, version_dir),
        status="interrupted",
        verdict="interrupted",
        error=f"interrupted by signal {signal_number}; the stack was torn down",
    )


def run_matrix(
    config: RunConfig, announce: Callable[[VersionResult], None] = lambda _row: None
) -> RunResult:
    """Measure every target, writing the results after each one. Returns the finished run."""
    config.run_dir.mkdir(parents=True, exist_ok=False)
    report.write_config(config.run_dir, config.to_dict())
    rows: dict[int, VersionResult] = {}

    def publish() -> RunResult:
        ordered = tuple(rows[i] for i in sorted(rows))
        run = RunResult(config.run_id, config.tool_version, config.to_dict(), ordered)
        report.write_run(config.run_dir, run)
        report.point_latest(config.results_root, config.run_dir)
        return run

    def measure(index: int) -> None:
        rows[index] = measure_version(config.targets[index], config)
        announce(rows[index])
        publish()

    publish()
    try:
        if config.parallel > 1:
            with ThreadPoolExecutor(max_workers=config.parallel) as pool:
                list(pool.map(measure, range(len(config.targets))))
        else:
            for index in range(len(config.targets)):
                measure(index)
    except (Interrupted, KeyboardInterrupt) as stop:
        signal_number = stop.signal_number if isinstance(stop, Interrupted) else 2
        for index, target in enumerate(config.targets):
            rows.setdefault(index, interrupted_row(target, config, signal_number))
        publish()
        raise Interrupted(signal_number) from None
    return publish()


def run_ui(config: RunConfig, web_port: int) -> RunResult:
    """Bring one target up, serve Locust's web UI until Ctrl-C, then collect and tear down."""
    target = config.targets[0]
    config.run_dir.mkdir(parents=True, exist_ok=False)
    report.write_config(config.run_dir, config.to_dict())
    version_dir = config.run_dir / folder_name(target.label)
    version_dir.mkdir(parents=True)
    base = _base_row(target, config, version_dir)
    log_path = version_dir / "kong.log"
    with Stack(_stack_spec(target, config, version_dir), keep=config.keep) as stack:
        try:
            stack.wait_ready(config.ready_timeout_s)
            before = collect_lines(stack.log_text().splitlines())
            run_web_ui(
                stack.proxy_url,
                out_dir=version_dir,
                web_port=web_port,
                users=config.users,
                spawn_rate=config.spawn_rate,
            )
        finally:
            stack.save_logs(log_path)
    load = parse_stats_csv(version_dir / "locust_stats.csv")
    row = row_from(base, Measurement(before, collect_file(log_path), load))
    run = RunResult(config.run_id, config.tool_version, config.to_dict(), (row,))
    report.write_run(config.run_dir, run)
    report.point_latest(config.results_root, config.run_dir)
    return run
