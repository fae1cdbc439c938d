"""The load stage: Locust on a loopback URL, headless for exactly N requests or with its web UI.

Locust runs as a child process (`sys.executable -m locust`, so it is this environment's Locust) in a
process group of its own, and leaves its reports in `out_dir`:

    locust_stats.json        headless runs: the final stats we read (Locust's --json-file, written
                             once at exit, so no wait for a periodic CSV write is needed)
    locust_stats.csv         the web UI's numbers (its "Aggregated" row); headless, Locust rewrites
                             it once a second, so it may miss the last second of the run
    locust_failures.csv, locust_exceptions.csv, locust_stats_history.csv, locust.html
    locust.log               Locust's log (warnings and errors only)
    locust-console.txt       its stdout/stderr: the summary table, tracebacks

How `run_load` ends:
- all N requests completed: a `LoadResult` (failed requests are counted, not raised);
- fewer completed before the `--run-time` bound: `LoadShortfall`, a `LoadError` whose `partial`
  holds the `LoadResult` of what did complete;
- Locust failed, hung past the hard timeout, or wrote no stats: `LoadError` with the exit status and
  the tail of Locust's log.
Whichever way it ends (Ctrl-C included), Locust and any worker processes are gone afterwards.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from orchestration.errors import EnvironmentProblem, Interrupted, LoadError, UsageError

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
WEB_UI_HOST = "127.0.0.1"
CSV_PREFIX = "locust"
STATS_CSV = f"{CSV_PREFIX}_stats.csv"
STATS_JSON_PREFIX = f"{CSV_PREFIX}_stats"
STATS_JSON = f"{STATS_JSON_PREFIX}.json"  # Locust appends ".json" to --json-file
HTML_REPORT = "locust.html"
LOCUST_LOG = "locust.log"
CONSOLE_LOG = "locust-console.txt"
LOG_LEVEL = "WARNING"
# Beyond --run-time, Locust needs time to start (and fork workers) and to write its reports.
HARD_TIMEOUT_MARGIN_S = 15.0
# How long --processes workers may take to connect to their master (within the margin above).
WORKERS_CONNECT_S = 10
# How long Locust gets to write its CSV and HTML after being asked to stop, before SIGKILL.
STOP_GRACE_S = 10.0
LOG_TAIL_LINES = 15
WEB_UI_POLL_S = 0.5


@dataclass(frozen=True)
class LoadResult:
    """One load run, from Locust's Aggregated stats row."""

    requests: int  # completed requests, failures included (Locust's "Request Count")
    failures: int
    rps: float
    p50_ms: float
    p95_ms: float
    duration_s: float  # test start to last request: Locust's Requests/s is requests / this

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


class LoadShortfall(LoadError):
    """Fewer requests completed than asked (the run hit its time bound); `partial` has what did."""

    def __init__(self, message: str, partial: LoadResult) -> None:
        super().__init__(message)
        self.partial = partial


def default_locustfile() -> Path:
    """`locustfiles/hello.py` of the repository checkout this package lives in."""
    return Path(__file__).resolve().parent.parent / "locustfiles" / "hello.py"


def run_load(
    host_url: str,
    *,
    requests: int,
    users: int,
    spawn_rate: float,
    out_dir: Path,
    timeout_s: float,
    locustfile: Path | None = None,
    processes: int = 1,
) -> LoadResult:
    """Send exactly `requests` requests to `host_url` with `users` concurrent Locust users.

    `timeout_s` becomes Locust's `--run-time`; the process is killed if it outlives that by
    `HARD_TIMEOUT_MARGIN_S`. `processes` > 1 uses Locust's `--processes` (the locustfile splits the
    count over the workers). See the module docstring for what is raised when.
    """
    require_loopback(host_url)
    require_positive(requests=requests, users=users, spawn_rate=spawn_rate, timeout_s=timeout_s)
    require_positive(processes=processes)
    out_dir = prepare_out_dir(out_dir)
    run_time_s = math.ceil(timeout_s)
    command = [
        *locust_command(host_url, out_dir, locustfile, users, spawn_rate),
        *["--headless", "--only-summary", "--requests", str(requests)],
        *["--json-file", str(out_dir / STATS_JSON_PREFIX)],
        *["--run-time", f"{run_time_s}s", "--exit-code-on-error", "0"],
        *process_options(processes),
    ]
    hard_timeout_s = run_time_s + HARD_TIMEOUT_MARGIN_S
    with locust_process(command, out_dir) as process:
        exit_status = wait_at_most(process, hard_timeout_s)
    if exit_status is None:
        raise LoadError(
            f"Locust did not finish within {hard_timeout_s:.0f}s (--run-time {run_time_s}s plus "
            f"{HARD_TIMEOUT_MARGIN_S:.0f}s) against {host_url} and was killed; "
            f"{log_tail(out_dir)}"
        )
    result = read_result(out_dir, exit_status)
    require_exact_count(result, requests, run_time_s, out_dir)
    return result


def run_web_ui(
    host_url: str,
    *,
    out_dir: Path,
    web_port: int = 8089,
    locustfile: Path | None = None,
    users: int = 50,
    spawn_rate: float = 50,
) -> None:
    """Serve Locust's web UI on 127.0.0.1:`web_port` until Ctrl-C or SIGTERM, or Locust exits.

    A taken port is a `UsageError` (no silent move to another port: the URL you were told is the
    URL it is on). On Ctrl-C/SIGTERM Locust is asked to stop, writes its CSV and HTML to `out_dir`,
    and this returns normally.
    """
    require_loopback(host_url)
    require_positive(users=users, spawn_rate=spawn_rate)
    require_free_port(web_port)
    out_dir = prepare_out_dir(out_dir)
    command = [
        *locust_command(host_url, out_dir, locustfile, users, spawn_rate),
        *["--web-host", WEB_UI_HOST, "--web-port", str(web_port)],
    ]
    print(f"Locust web UI: http://{WEB_UI_HOST}:{web_port}/ (target {host_url}; Ctrl-C to stop)")
    with sigterm_raises_interrupted(), locust_process(command, out_dir) as process:
        try:
            # Short waits, not one blocking waitpid: a signal must be able to end this wait.
            while (exit_status := wait_at_most(process, WEB_UI_POLL_S)) is None:
                pass
        except (KeyboardInterrupt, Interrupted):
            print(f"stopping Locust; its reports are in {out_dir}")
            return
    if exit_status != 0:
        raise LoadError(f"Locust's web UI exited with status {exit_status}; {log_tail(out_dir)}")


def parse_stats_csv(path: Path) -> LoadResult:
    """Read the "Aggregated" row of a Locust `<prefix>_stats.csv`."""
    try:
        with path.open(newline="", encoding="utf-8") as stats_file:
            rows = list(csv.DictReader(stats_file))
    except OSError as error:
        raise LoadError(f"cannot read Locust's stats CSV {path}: {error}") from error
    aggregated = next((row for row in rows if row.get("Name") == "Aggregated"), None)
    if aggregated is None:
        raise LoadError(f"{path} has no 'Aggregated' row: is it a Locust <prefix>_stats.csv?")
    try:
        requests = int(aggregated["Request Count"])
        rps = float(aggregated["Requests/s"])
        return LoadResult(
            requests=requests,
            failures=int(aggregated["Failure Count"]),
            rps=rps,
            p50_ms=milliseconds(aggregated["50%"]),
            p95_ms=milliseconds(aggregated["95%"]),
            duration_s=requests / rps if rps > 0 else 0.0,
        )
    except (KeyError, TypeError, ValueError) as error:
        raise LoadError(f"{path}: unreadable Aggregated row ({error!r}): {aggregated}") from error


def parse_stats_json(path: Path) -> LoadResult:
    """Sum the entries of a Locust `--json-file` (its final per-endpoint stats) into one result.

    The percentiles are Locust's own rule over the merged response-time histogram, as for its
    Aggregated row. Requests/s is requests over first to last request of the entries; the CSV
    counts from the test start instead, so it reads a few per cent lower on a one-second run.
    """
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise LoadError(f"cannot read Locust's stats JSON {path}: {error}") from error
    try:
        return aggregate_entries(entries)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise LoadError(
            f"{path}: not a Locust --json-file stats list ({error!r}); was it written by Locust?"
        ) from error


def aggregate_entries(entries: list[dict[str, Any]]) -> LoadResult:
    requests = sum(int(entry["num_requests"]) for entry in entries)
    timed_requests = requests - sum(int(entry["num_none_requests"]) for entry in entries)
    histogram: Counter[int] = Counter()
    for entry in entries:
        for response_ms, count in entry["response_times"].items():
            histogram[int(float(response_ms))] += int(count)
    starts = [float(entry["start_time"]) for entry in entries]
    ends = [float(entry["last_request_timestamp"] or 0) for entry in entries]
    duration_s = max(ends) - min(starts) if entries and max(ends) > 0 else 0.0
    return LoadResult(
        requests=requests,
        failures=sum(int(entry["num_failures"]) for entry in entries),
        rps=requests / duration_s if duration_s > 0 else 0.0,
        p50_ms=float(percentile(histogram, timed_requests, 0.50)),
        p95_ms=float(percentile(histogram, timed_requests, 0.95)),
        duration_s=duration_s,
    )


def percentile(histogram: Counter[int], count: int, fraction: float) -> int:
    """Locust's rule: the smallest response time that `fraction` of the requests finished within."""
    allowed_above = count - int(count * fraction)
    seen_from_top = 0
    for response_ms in sorted(histogram, reverse=True):
        seen_from_top += histogram[response_ms]
        if seen_from_top >= allowed_above:
            return response_ms
    return 0


def milliseconds(cell: str) -> float:
    """A percentile cell; Locust writes "N/A" when there were no requests."""
    return 0.0 if cell == "N/A" else float(cell)


def require_loopback(host_url: str) -> None:
    """This project only ever sends traffic to loopback."""
    try:
        parts = urllib.parse.urlsplit(host_url)
        host = parts.hostname
        parts.port  # noqa: B018 -- raises ValueError on a malformed port
    except ValueError as error:
        raise UsageError(f"load target {host_url!r} is not a valid URL: {error}") from error
    if parts.scheme not in ("http", "https") or host not in LOOPBACK_HOSTS:
        raise UsageError(
            f"load target {host_url!r} is not an http(s) URL on loopback; load is only ever "
            f"sent to {', '.join(sorted(LOOPBACK_HOSTS))}"
        )


def require_positive(**values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise UsageError(f"{name} must be positive, got {value}")


def require_free_port(port: int) -> None:
    if not 1 <= port <= 65535:
        raise UsageError(f"web port {port} is not a TCP port (1-65535); pick one with --web-port")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # Locust's server sets SO_REUSEADDR too: a port in TIME_WAIT is free for it, so for us.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((WEB_UI_HOST, port))
        except OSError as error:
            raise UsageError(
                f"port {port} on {WEB_UI_HOST} is taken ({error.strerror}); "
                f"choose another one with --web-port"
            ) from error


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((WEB_UI_HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def prepare_out_dir(out_dir: Path) -> Path:
    """Create `out_dir`, and drop stats left by an earlier run so they are never read as ours."""
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / STATS_CSV).unlink(missing_ok=True)
    (out_dir / STATS_JSON).unlink(missing_ok=True)
    return out_dir


def locust_command(
    host_url: str, out_dir: Path, locustfile: Path | None, users: int, spawn_rate: float
) -> list[str]:
    """The options headless and web UI runs share: target, users, reports and log in `out_dir`."""
    return [
        *[sys.executable, "-m", "locust"],
        *["--locustfile", str((locustfile or default_locustfile()).resolve())],
        *["--host", host_url, "--users", str(users), "--spawn-rate", str(spawn_rate)],
        *["--csv", str(out_dir / CSV_PREFIX), "--html", str(out_dir / HTML_REPORT)],
        *["--loglevel", LOG_LEVEL, "--logfile", str(out_dir / LOCUST_LOG)],
    ]


def process_options(processes: int) -> list[str]:
    if processes == 1:
        return []
    # Master and workers talk on loopback only, on a port no parallel run holds; a worker that
    # never connects is Locust's own error, well before our hard timeout.
    port = str(free_loopback_port())
    return [
        *["--processes", str(processes), "--expect-workers-max-wait", str(WORKERS_CONNECT_S)],
        *["--master-bind-host", WEB_UI_HOST, "--master-bind-port", port, "--master-port", port],
    ]


@contextmanager
def locust_process(command: list[str], out_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Start Locust in its own process group; on leaving, however we leave, the group is gone."""
    with (out_dir / CONSOLE_LOG).open("wb") as console:
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                cwd=out_dir,  # so no locust.conf or pyproject.toml of the caller's cwd applies
                start_new_session=True,  # own group: the terminal's Ctrl-C reaches us, not Locust
            )
        except OSError as error:
            raise EnvironmentProblem(
                f"cannot start Locust with {command[0]} -m locust: {error}"
            ) from error
        try:
            yield process
        finally:
            stop_process_group(process)


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGINT first (Locust writes its CSV and HTML), SIGKILL after the grace period."""
    try:
        if process.poll() is None:
            signal_group(process.pid, signal.SIGINT)
            wait_at_most(process, STOP_GRACE_S)
    finally:
        # Also after a clean exit: --processes workers of a master that crashed would survive it.
        signal_group(process.pid, signal.SIGKILL)
        process.wait()


def signal_group(group_id: int, signal_number: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group has already exited
        os.killpg(group_id, signal_number)


def wait_at_most(process: subprocess.Popen[bytes], timeout_s: float) -> int | None:
    """The exit status, or None if the process is still running after `timeout_s`."""
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return None


@contextmanager
def sigterm_raises_interrupted() -> Iterator[None]:
    """Let SIGTERM end a blocking wait like Ctrl-C does, unless someone already handles SIGTERM."""
    in_main_thread = threading.current_thread() is threading.main_thread()
    if not in_main_thread or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def raise_interrupted(signal_number: int, _frame: FrameType | None) -> None:
        raise Interrupted(signal_number)

    signal.signal(signal.SIGTERM, raise_interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def read_result(out_dir: Path, exit_status: int) -> LoadResult:
    if exit_status != 0:
        raise LoadError(f"Locust exited with status {exit_status}; {log_tail(out_dir)}")
    stats_json = out_dir / STATS_JSON
    if not stats_json.is_file():
        raise LoadError(f"Locust exited without writing {stats_json}; {log_tail(out_dir)}")
    return parse_stats_json(stats_json)


def require_exact_count(result: LoadResult, requests: int, run_time_s: int, out_dir: Path) -> None:
    if result.requests < requests:
        raise LoadShortfall(
            f"only {result.requests} of {requests} requests completed ({result.failures} failed) "
            f"within --run-time {run_time_s}s; raise the load timeout or check the target. "
            f"Locust's reports are in {out_dir}",
            partial=result,
        )
    if result.requests > requests:
        raise LoadError(
            f"Locust completed {result.requests} requests, {requests} were asked: the locustfile "
            f"does not honour --requests; its reports are in {out_dir}"
        )


def log_tail(out_dir: Path) -> str:
    """The last lines of Locust's log and console, for error messages."""
    sections = []
    for name in (LOCUST_LOG, CONSOLE_LOG):
        try:
            lines = (out_dir / name).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        if tail := [line for line in lines if line.strip()][-LOG_TAIL_LINES:]:
            sections.append(f"last lines of {out_dir / name}:\n" + "\n".join(tail))
    return "\n".join(sections) if sections else f"Locust left no log in {out_dir}"
