"""The load stage: Locust on a loopback URL, headless for exactly N requests or with its web UI.

Locust runs as a child process (this environment's Python and Locust) in a process group of its
own, and leaves its reports in `out_dir`:

    locust_stats.json        the final stats we read (Locust's --json-file, written once at exit,
                             by headless runs and the web UI alike)
    locust_stats.csv         Locust rewrites it once a second, so it may miss the last second
    locust_failures.csv, locust_exceptions.csv, locust_stats_history.csv, locust.html
    locust.log               Locust's log (warnings and errors only)
    locust-console.txt       its stdout/stderr: the summary table, tracebacks

A headless run starts before its target is known (`HeadlessLocust`): the child imports Locust at
once, which is most of Locust's start-up, and then waits on its stdin for the target URL; `run`
hands it over and waits for the result. So the caller can start Locust first and bring its target
up meanwhile.

How a headless run ends:
- all N requests completed: a `LoadResult` (failed requests are counted, not raised);
- fewer completed before the `--run-time` bound: `LoadShortfall`, a `LoadError` whose `partial`
  holds the `LoadResult` of what did complete;
- Locust failed, hung past the hard timeout, or wrote no stats: `LoadError` with the exit status and
  the tail of Locust's log;
- the caller's `cancel` event was set: `Interrupted` (see `HeadlessLocust.run`).
Whichever way it ends (Ctrl-C included), Locust and any worker processes are gone afterwards.
"""

from __future__ import annotations

import atexit
import contextlib
import csv
import json
import logging
import math
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from orchestration.errors import EnvironmentProblem, Interrupted, LoadError, UsageError
from orchestration.loopback import LOOPBACK, allowed, is_loopback
from orchestration.processes import signal_group

WEB_UI_HOST = LOOPBACK
CSV_PREFIX = "locust"
STATS_CSV = f"{CSV_PREFIX}_stats.csv"
STATS_JSON_PREFIX = f"{CSV_PREFIX}_stats"
STATS_JSON = f"{STATS_JSON_PREFIX}.json"  # Locust appends ".json" to --json-file
HTML_REPORT = "locust.html"
LOCUST_LOG = "locust.log"
CONSOLE_LOG = "locust-console.txt"
WORKER_LOG = "locust-workers.log"  # the log of the workers started here (--locust-workers)
LOG_LEVEL = "WARNING"
# Beyond --run-time, Locust needs time to start (and fork workers) and to write its reports.
HARD_TIMEOUT_MARGIN_S = 15.0
# How long --processes workers, or --locust-workers started here, may take to connect to their
# master; Locust waits for them before its --run-time starts (so on top of the margin above).
WORKERS_CONNECT_S = 30
# How long Locust gets to write its CSV and HTML after being asked to stop, before SIGKILL.
STOP_GRACE_S = 10.0
LOG_TAIL_LINES = 15
WEB_UI_POLL_S = 0.5
CANCEL_POLL_S = 0.5  # how soon a running load notices that the run was cancelled

PACKAGE_PARENT = Path(__file__).resolve().parent.parent  # where `orchestration` is importable


@dataclass(frozen=True)
class LoadResult:
    """One load run, from Locust's Aggregated stats row.

    A rate or percentile nothing was measured for is None, never a number: no request counted
    has no latency, and one request in no measurable time has no rate.
    """

    requests: int  # completed requests, failures included (Locust's "Request Count")
    failures: int
    rps: float | None
    p50_ms: float | None
    p95_ms: float | None
    duration_s: float  # test start to last request: Locust's Requests/s is requests / this

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True)
class LocustWorkers:
    """Locust's distributed mode: a master that waits for `count` workers, then splits the users
    (and, through the locustfile, the exact request count) over them.

    `local`: the harness starts the workers here, each in a process group of its own; otherwise
    it prints the command to run on other machines and waits for them (at most `wait_s`).
    The master listens on `bind_host` (loopback unless the user asks) at `port` (0: a free one).
    """

    count: int
    local: bool = True
    bind_host: str = WEB_UI_HOST
    port: int = 0
    wait_s: float = WORKERS_CONNECT_S

    def with_port(self) -> LocustWorkers:
        """This, with a free loopback port chosen if none was given."""
        return self if self.port else replace(self, port=free_loopback_port())

    def master_options(self) -> list[str]:
        return [
            *["--master", "--expect-workers", str(self.count)],
            *["--expect-workers-max-wait", str(math.ceil(self.wait_s))],
            *["--master-bind-host", self.bind_host, "--master-bind-port", str(self.port)],
        ]

    def master_host(self) -> str:
        """The address a worker connects to: this machine's name when listening on every
        address, else the address listened on (loopback: reach it through a tunnel)."""
        return socket.gethostname() if self.bind_host in ("0.0.0.0", "::", "*") else self.bind_host

    def worker_command(self, locustfile: Path, out_dir: Path | None = None) -> list[str]:
        """`locust -f LOCUSTFILE --worker --master-host H --master-port P` (with a log in
        `out_dir` for the workers started here)."""
        log = ["--loglevel", LOG_LEVEL, "--logfile", str(out_dir / WORKER_LOG)] if out_dir else []
        return [
            *["locust", "-f", str(locustfile), "--worker"],
            *["--master-host", self.master_host(), "--master-port", str(self.port)],
            *log,
        ]


class LoadShortfall(LoadError):
    """Fewer requests completed than asked (the run hit its time bound); `partial` has what did."""

    def __init__(self, message: str, partial: LoadResult) -> None:
        super().__init__(message)
        self.partial = partial


def default_locustfile() -> Path:
    """`locustfiles/hello.py` of the repository checkout this package lives in."""
    return Path(__file__).resolve().parent.parent / "locustfiles" / "hello.py"


class HeadlessLocust:
    """A headless Locust for exactly `requests` requests, started before its target is known.

    Use it as a context manager: entering starts Locust, which imports itself and waits. `send`
    gives it the target and returns once every request is done (Locust then still writes its
    reports and exits); `result` waits for that and returns Locust's final stats. `run` is both.
    Between the two, `sent` has Locust's request and failure counts as the last request left them
    (one process only), so a caller can give its verdict before Locust's reports are written.
    Leaving the block, however we leave, stops Locust and its workers.

    `timeout_s` becomes Locust's `--run-time`; the process is killed if it outlives that by
    `HARD_TIMEOUT_MARGIN_S` from the moment `send` started the load. `requests=0` sends for
    `timeout_s` seconds with no count (a soak): whatever completed by then is the result.
    `processes` > 1 uses Locust's `--processes` (the locustfile splits the count over the
    workers).

    Setting the `cancel` event of `send` or `result` (from another thread) stops Locust within
    `CANCEL_POLL_S`, as any other way out does, and raises `Interrupted` with the event's
    `signal_number` attribute if it has one (the pipeline's `Cancel` does), SIGINT otherwise.
    """

    def __init__(
        self,
        *,
        requests: int,
        users: int,
        spawn_rate: float,
        out_dir: Path,
        timeout_s: float,
        locustfile: Path | None = None,
        processes: int = 1,
        path: str | None = None,
        marker_header: str | None = None,
        workers: LocustWorkers | None = None,
    ) -> None:
        require_positive(users=users, spawn_rate=spawn_rate, timeout_s=timeout_s)
        require_positive(processes=processes)
        if workers is not None:
            require_users_for_workers(users, workers.count)
            workers = workers.with_port()
        self.workers = workers
        self.locustfile = (locustfile or default_locustfile()).resolve()
        if requests < 0:
            raise UsageError(f"requests must be 0 (send for timeout_s) or positive, got {requests}")
        self.requests = requests
        self.run_time_s = math.ceil(timeout_s)
        self.hard_timeout_s = self.run_time_s + HARD_TIMEOUT_MARGIN_S
        if workers is not None:  # Locust's --run-time starts once the workers are in
            self.hard_timeout_s += workers.wait_s
        self.out_dir = out_dir.resolve()
        self._options = [
            *locust_options(self.out_dir, locustfile, users, spawn_rate),
            *["--headless", "--only-summary", "--requests", str(requests)],
            *["--json-file", str(self.out_dir / STATS_JSON_PREFIX)],
            *["--run-time", f"{self.run_time_s}s", "--exit-code-on-error", "0"],
            *process_options(processes),
            *(workers.master_options() if workers else []),
            *(["--path", path] if path else []),
            # "": the plugin sets no header of ours, and any 2xx answer counts
            *(["--marker-header", marker_header] if marker_header is not None else []),
        ]
        self._process: subprocess.Popen[bytes] | None = None
        self._workers: list[subprocess.Popen[bytes]] = []  # --locust-workers started here
        self._done: int | None = None  # read end of the child's "requests done" pipe
        self._deadline = 0.0
        self._host_url = ""
        self._result: LoadResult | None = None
        self._single_process = processes == 1
        self.sent: tuple[int, int] | None = None  # (requests, failures) once `send` returned
        self._ran_s: float | None = None  # Locust's run time, from its done line

    def __enter__(self) -> HeadlessLocust:
        prepare_out_dir(self.out_dir)
        self._done, done_writer = os.pipe()
        try:
            command = [
                # gated_locust_main below; "locust" becomes Locust's own argv[0]
                *[sys.executable, "-m", "orchestration.load", f"--done-fd={done_writer}"],
                *["locust", *self._options],
            ]
            self._process = start_locust(command, self.out_dir, gated=True, keep_fd=done_writer)
            self._start_workers()
        except BaseException:
            self._stop()
            raise
        finally:
            os.close(done_writer)  # the child's copy is the one that matters
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop()

    def run(self, host_url: str, *, cancel: threading.Event | None = None) -> LoadResult:
        """`send` and `result`: the load's final stats once Locust has exited."""
        self.send(host_url, cancel=cancel)
        return self.result(cancel=cancel)

    def send(
        self,
        host_url: str,
        *,
        cancel: threading.Event | None = None,
        watch: Callable[[], None] | None = None,
    ) -> None:
        """Start the load on `host_url`; return once Locust's requests are done (or it ended).

        `watch` is called while the load runs (every `CANCEL_POLL_S`): an exception it raises
        (the target died) stops Locust at once and reaches the caller."""
        require_loopback(host_url)
        process = self._require_started()
        self._host_url = host_url
        self._deadline = time.monotonic() + self.hard_timeout_s
        try:
            self._let_go(process, host_url)
            self._wait_until_done(cancel, watch)
        except BaseException:
            self._stop()  # also on Ctrl-C: Locust is stopped before the caller tears down
            raise

    def result(self, *, cancel: threading.Event | None = None) -> LoadResult:
        """Locust's final stats, once it has written its reports and exited (see `send`)."""
        if self._result is None:
            process = self._require_started()
            try:
                remaining = max(0.0, self._deadline - time.monotonic())
                exit_status = wait_unless_cancelled(process, remaining, cancel)
            finally:
                self._stop()
            if exit_status is None:
                raise self._timed_out()
            self._result = read_result(self.out_dir, exit_status, self._ran_s)
        if self.requests:
            require_exact_count(self._result, self.requests, self.run_time_s, self.out_dir)
        return self._result

    def _start_workers(self) -> None:
        """Start the local workers (they connect once the master listens, retrying meanwhile),
        or say what to run on the machines that bring them."""
        workers = self.workers
        if workers is None:
            return
        if not workers.local:
            shown = " ".join(workers.worker_command(Path("locustfiles") / self.locustfile.name))
            print(
                f"Locust master waits up to {workers.wait_s:.0f}s for {workers.count} workers on "
                f"{workers.bind_host}:{workers.port}. On each worker machine, in a checkout of "
                f"kong-plugin-matrix with the same Locust, run:\n    {shown}",
                file=sys.stderr,
                flush=True,
            )
            return
        command = [sys.executable, "-m", *workers.worker_command(self.locustfile, self.out_dir)]
        for index in range(workers.count):
            console = f"locust-worker-{index}-console.txt"
            self._workers.append(start_locust(command, self.out_dir, gated=False, console=console))

    def _require_started(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise LoadError("HeadlessLocust needs a started Locust: use it in a with block")
        return self._process

    def _let_go(self, process: subprocess.Popen[bytes], host_url: str) -> None:
        """Hand Locust its target; it starts the load at once."""
        assert process.stdin is not None
        try:
            process.stdin.write(f"{host_url}\n".encode())
            process.stdin.close()
        except OSError:  # it died while waiting (a broken install, a killed process)
            status = process.wait()
            raise LoadError(
                f"Locust exited with status {status} before the load started; "
                f"{log_tail(self.out_dir)}"
            ) from None

    def _wait_until_done(
        self, cancel: threading.Event | None, watch: Callable[[], None] | None
    ) -> None:
        """Until the child writes to, or closes, its end of the done pipe (bounded)."""
        assert self._done is not None
        while (remaining := self._deadline - time.monotonic()) > 0:
            raise_if_cancelled(cancel)
            if watch is not None:
                watch()
            readable, _, _ = select.select([self._done], [], [], min(CANCEL_POLL_S, remaining))
            if readable:
                line = os.read(self._done, 256)
                self.sent = parse_done_line(line) if self._single_process else None
                self._ran_s = ran_seconds(line)
                return
        raise self._timed_out()

    def _timed_out(self) -> LoadError:
        return LoadError(
            f"Locust did not finish within {self.hard_timeout_s:.0f}s (--run-time "
            f"{self.run_time_s}s plus {HARD_TIMEOUT_MARGIN_S:.0f}s) against {self._host_url} and "
            f"was killed; {log_tail(self.out_dir)}"
        )

    def _stop(self) -> None:
        process, self._process = self._process, None
        done, self._done = self._done, None
        if done is not None:
            os.close(done)
        if process is None:
            return
        if process.stdin is not None and not process.stdin.closed:
            with contextlib.suppress(OSError):
                process.stdin.close()  # an unused gate: Locust leaves without running
        try:
            stop_process_group(process)
        finally:  # the master has told its workers to quit; any that did not are stopped here
            workers, self._workers = self._workers, []
            for worker in workers:
                stop_process_group(worker)


NO_LOAD = LoadResult(requests=0, failures=0, rps=None, p50_ms=None, p95_ms=None, duration_s=0.0)


@dataclass(frozen=True)
class WebUiResult:
    """A web UI session: Locust's final stats, and the signal that ended it (None: Locust
    ended by itself)."""

    load: LoadResult
    stopped_by: int | None


def run_web_ui(
    host_url: str,
    *,
    out_dir: Path,
    web_port: int = 8089,
    locustfile: Path | None = None,
    users: int = 50,
    spawn_rate: float = 50,
) -> WebUiResult:
    """Serve Locust's web UI on 127.0.0.1:`web_port` until Ctrl-C or SIGTERM, or Locust exits.

    A taken port is a `UsageError` (no silent move to another port: the URL you were told is the
    URL it is on). On Ctrl-C/SIGTERM Locust is asked to stop and writes its reports to `out_dir`.
    Returns Locust's final stats (its --json-file, written at exit), not the CSV's last write.
    """
    require_loopback(host_url)
    require_positive(users=users, spawn_rate=spawn_rate)
    require_free_port(web_port)
    out_dir = prepare_out_dir(out_dir.resolve())
    command = [
        *[sys.executable, "-m", "locust", *locust_options(out_dir, locustfile, users, spawn_rate)],
        *["--host", host_url, "--json-file", str(out_dir / STATS_JSON_PREFIX)],
        *["--web-host", WEB_UI_HOST, "--web-port", str(web_port)],
    ]
    print(f"Locust web UI: http://{WEB_UI_HOST}:{web_port}/ (target {host_url}; Ctrl-C to stop)")
    exit_status, stopped_by = None, None
    with sigterm_raises_interrupted(), locust_process(command, out_dir) as process:
        try:
            # Short waits, not one blocking waitpid: a signal must be able to end this wait.
            while (exit_status := wait_at_most(process, WEB_UI_POLL_S)) is None:
                pass
        except (KeyboardInterrupt, Interrupted) as stop:
            stopped_by = stop.signal_number if isinstance(stop, Interrupted) else signal.SIGINT
            print(f"stopping Locust; its reports are in {out_dir}", file=sys.stderr)
    if exit_status not in (None, 0):
        raise LoadError(f"Locust's web UI exited with status {exit_status}; {log_tail(out_dir)}")
    if stopped_by is not None and not (out_dir / STATS_JSON).is_file():
        # Stopped before a test was ever started in the UI: Locust has no stats to write.
        return WebUiResult(NO_LOAD, stopped_by)
    return WebUiResult(read_stats(out_dir), stopped_by)


def parse_stats_json(path: Path) -> LoadResult:
    """Sum the entries of a Locust `--json-file` (its final per-endpoint stats) into one result.

    The percentiles are Locust's own rule over the merged response-time histogram, as for its
    Aggregated row. Requests/s is requests over first to last request of the entries (a headless
    run replaces it with Locust's own run time, `with_run_time`); the CSV counts from the test
    start instead, so it reads a few per cent lower on a one-second run.
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
    timed = timed_requests > 0
    return LoadResult(
        requests=requests,
        failures=sum(int(entry["num_failures"]) for entry in entries),
        # first to last request: one request spans no time, and is no rate
        rps=requests / duration_s if requests > 1 and duration_s > 0 else None,
        p50_ms=float(percentile(histogram, timed_requests, 0.50)) if timed else None,
        p95_ms=float(percentile(histogram, timed_requests, 0.95)) if timed else None,
        duration_s=duration_s,
    )


def with_run_time(result: LoadResult, ran_s: float) -> LoadResult:
    """The rate over the time Locust ran: from its test start (before the first request was
    sent) to its last request, as Locust's own Requests/s counts. The entries' first-to-last
    span leaves out the first request's own time, which is all there is of a tiny load."""
    rps = result.requests / ran_s if result.requests and ran_s > 0 else None
    return replace(result, rps=rps, duration_s=ran_s)


def percentile(histogram: Counter[int], count: int, fraction: float) -> int:
    """Locust's rule: the smallest response time that `fraction` of the requests finished within."""
    allowed_above = count - int(count * fraction)
    seen_from_top = 0
    for response_ms in sorted(histogram, reverse=True):
        seen_from_top += histogram[response_ms]
        if seen_from_top >= allowed_above:
            return response_ms
    return 0


def require_loopback(host_url: str) -> None:
    """This project only ever sends traffic to loopback."""
    try:
        parts = urllib.parse.urlsplit(host_url)
        host = parts.hostname
        parts.port  # noqa: B018 -- raises ValueError on a malformed port
    except ValueError as error:
        raise UsageError(f"load target {host_url!r} is not a valid URL: {error}") from error
    if parts.scheme not in ("http", "https") or not is_loopback(host):
        raise UsageError(
            f"load target {host_url!r} is not an http(s) URL on loopback; load is only ever "
            f"sent to {allowed()}"
        )


def require_positive(**values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise UsageError(f"{name} must be positive, got {value}")


def require_users_for_workers(users: int, workers: int) -> None:
    """Each worker sends its share of the requests with its own users: a worker given no user
    would never send its share, and the count would fall short."""
    if users < workers:
        raise UsageError(
            f"{workers} Locust workers need at least {workers} users (--users), got {users}: "
            "a worker with no user never sends its share of the requests"
        )


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


def locust_options(
    out_dir: Path, locustfile: Path | None, users: int, spawn_rate: float
) -> list[str]:
    """The options headless and web UI runs share: locustfile, users, reports, log in `out_dir`."""
    return [
        *["--locustfile", str((locustfile or default_locustfile()).resolve())],
        *["--users", str(users), "--spawn-rate", str(spawn_rate)],
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


def start_locust(
    command: list[str],
    out_dir: Path,
    *,
    gated: bool,
    keep_fd: int | None = None,
    console: str = CONSOLE_LOG,
) -> subprocess.Popen[bytes]:
    """Start Locust in a process group of its own; `keep_fd` stays open in it.

    `gated`: the command is `gated_locust_main`, whose stdin is a pipe to us and which needs this
    package importable from `out_dir`.
    """
    environment = dict(os.environ)
    if gated:
        search_path = [str(PACKAGE_PARENT), os.environ.get("PYTHONPATH", "")]
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, search_path))
    try:
        with (out_dir / console).open("wb") as console_file:
            return subprocess.Popen(
                command,
                stdin=subprocess.PIPE if gated else subprocess.DEVNULL,
                stdout=console_file,
                stderr=subprocess.STDOUT,
                cwd=out_dir,  # so no locust.conf or pyproject.toml of the caller's cwd applies
                env=environment,
                pass_fds=() if keep_fd is None else (keep_fd,),
                start_new_session=True,  # own group: the terminal's Ctrl-C reaches us, not Locust
            )
    except OSError as error:
        raise EnvironmentProblem(f"cannot start Locust with {command[0]}: {error}") from error


@contextmanager
def locust_process(command: list[str], out_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A running Locust; on leaving, however we leave, its process group is gone."""
    process = start_locust(command, out_dir, gated=False)
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


def wait_at_most(process: subprocess.Popen[bytes], timeout_s: float) -> int | None:
    """The exit status, or None if the process is still running after `timeout_s`."""
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return None


def wait_unless_cancelled(
    process: subprocess.Popen[bytes], timeout_s: float, cancel: threading.Event | None
) -> int | None:
    """The exit status; None after `timeout_s`. Raises `Interrupted` once `cancel` is set."""
    deadline = time.monotonic() + timeout_s
    while True:
        raise_if_cancelled(cancel)
        exit_status = wait_at_most(process, min(CANCEL_POLL_S, deadline - time.monotonic()))
        if exit_status is not None or time.monotonic() >= deadline:
            return exit_status


def raise_if_cancelled(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        # The pipeline's Cancel records which signal stopped the run; a plain Event does not.
        raise Interrupted(getattr(cancel, "signal_number", signal.SIGINT.value))


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


# The child's `done REQUESTS FAILURES [SECONDS]`: SECONDS is Locust's run time, test start to
# last request (an older child wrote no SECONDS).
_DONE_LINE = re.compile(rb"done (\d{1,18}) (\d{1,18})(?: (\d{1,12}(?:\.\d{1,9})?))?\n")


def parse_done_line(line: bytes) -> tuple[int, int] | None:
    """(requests, failures) from the child's `done REQUESTS FAILURES [SECONDS]` line; None if it
    has none (an older child's bare `done`, or a closed pipe: Locust ended without saying)."""
    match = _DONE_LINE.fullmatch(line)
    return (int(match.group(1)), int(match.group(2))) if match else None


def ran_seconds(line: bytes) -> float | None:
    """SECONDS of the child's done line: how long Locust ran; None when it did not say."""
    match = _DONE_LINE.fullmatch(line)
    return float(match.group(3)) if match and match.group(3) else None


def read_result(out_dir: Path, exit_status: int, ran_s: float | None = None) -> LoadResult:
    """Locust's final stats; with `ran_s` (its run time, from the done line) the rate is
    requests over that time."""
    if exit_status != 0:
        raise LoadError(f"Locust exited with status {exit_status}; {log_tail(out_dir)}")
    result = read_stats(out_dir)
    return result if ran_s is None else with_run_time(result, ran_s)


def read_stats(out_dir: Path) -> LoadResult:
    """Locust's final stats in `out_dir` (its --json-file)."""
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


def failure_kinds(out_dir: Path) -> Counter[str]:
    """Locust's failures by message (its locust_failures.csv); empty when there were none."""
    kinds: Counter[str] = Counter()
    try:
        with (out_dir / f"{CSV_PREFIX}_failures.csv").open(newline="", encoding="utf-8") as file:
            for row in csv.DictReader(file):
                kinds[row.get("Error") or "?"] += int(row.get("Occurrences") or 0)
    except (OSError, ValueError):
        return Counter()
    return kinds


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


def gated_locust_main() -> None:
    """The headless Locust child: `python -m orchestration.load --done-fd=N locust OPTIONS`.

    Imports Locust, most of its start-up, before the target is known; then reads the target URL
    from stdin and hands over to Locust's own command line with it (an empty stdin means the
    caller gave up first). When the test stops, every request done, it writes a line to file
    descriptor N with Locust's request and failure counts and run time then (`done 1000 0
    2.061`), so the caller can
    go on, and give its verdict, while Locust writes its reports. Once Locust has run its
    exit handlers (its reports and log are closed by then), the process ends without the
    interpreter's teardown of gevent, Flask and the rest, which takes about 0.07 s.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # until the go, a stop needs no clean-up
    done_fd = int(sys.argv[1].removeprefix("--done-fd="))
    import gevent
    import locust.main
    from locust import events
    from locust.runners import WorkerRunner
    from locust.stats import StatsCSV

    def tell_requests_done(environment: Any, **_kwargs: Any) -> None:
        if not isinstance(environment.runner, WorkerRunner):  # --processes workers: not yet
            total = environment.stats.total
            # Locust's own run time: its test start (before the first request) to last request
            ran_s = max(0.0, (total.last_request_timestamp or total.start_time) - total.start_time)
            line = f"done {total.num_requests} {total.num_failures} {ran_s:.6f}\n"
            with contextlib.suppress(OSError):
                os.write(done_fd, line.encode())

    def write_final_failures(environment: Any, **_kwargs: Any) -> None:
        # Locust rewrites its failures CSV once a second and not at exit, so a load that ends
        # within a second of the last write leaves it without its last failures (failure_kinds).
        prefix = environment.parsed_options.csv_prefix
        if prefix and not isinstance(environment.runner, WorkerRunner):
            rows = StatsCSV(environment, [])
            with Path(f"{prefix}_failures.csv").open("w", newline="", encoding="utf-8") as file:
                writer = csv.writer(file)
                writer.writerow(rows.failures_columns)
                rows._failures_data_rows(writer)

    host_url = sys.stdin.readline().strip()
    if not host_url:
        sys.exit(0)
    # gevent's clock stood still while we waited: without this, timers set now (--run-time
    # among them) would count the wait as already spent.
    gevent.get_hub().loop.update_now()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    events.test_stop.add_listener(tell_requests_done)  # type: ignore[no-untyped-call]
    events.quitting.add_listener(write_final_failures)  # type: ignore[no-untyped-call]
    sys.argv = [*sys.argv[2:], "--host", host_url]
    try:
        locust.main.main()  # type: ignore[no-untyped-call]  # Locust leaves it unannotated
        status: object = 0
    except SystemExit as done:
        status = done.code
    atexit._run_exitfuncs()  # Locust's own: a --processes master reaps its workers there
    if status is not None and not isinstance(status, int):
        print(status, file=sys.stderr)  # what sys.exit("message") would have printed
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status if isinstance(status, int) else int(status is not None))


if __name__ == "__main__":
    gated_locust_main()
