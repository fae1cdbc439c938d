"""Tests for orchestration/load.py and locustfiles/hello.py against a tiny loopback HTTP server."""

from __future__ import annotations

import csv
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from orchestration import load
from orchestration.errors import Interrupted, LoadError, UsageError
from orchestration.load import (
    HeadlessLocust,
    LoadResult,
    LoadShortfall,
    parse_stats_json,
    run_web_ui,
)

FIXTURES = Path(__file__).parent / "fixtures"
HEADER = "X-Example-Message"


def run_load(host_url: str, *, cancel: threading.Event | None = None, **options: Any) -> LoadResult:
    """A headless load as a world runs one: Locust started (`options` are HeadlessLocust's),
    then handed its target; the load's final stats."""
    with HeadlessLocust(**options) as locust:
        return locust.run(host_url, cancel=cancel)


def aggregated_row(path: Path) -> dict[str, str]:
    """The "Aggregated" row of a Locust `<prefix>_stats.csv`: Locust's own sums, to check ours."""
    with path.open(newline="", encoding="utf-8") as stats:
        return next(row for row in csv.DictReader(stats) if row["Name"] == "Aggregated")


@dataclass
class HelloServer:
    """A threaded /hello server on 127.0.0.1 that counts the requests it answered."""

    send_header: bool = True
    delay_s: float = 0.0
    status: int = 200
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def count(self) -> None:
        with self.lock:
            self.requests += 1


def handler_for(server: HelloServer) -> type[http.server.BaseHTTPRequestHandler]:
    class HelloHandler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            time.sleep(server.delay_s)
            body = b"hello"
            self.send_response(server.status if self.path == "/hello" else 404)
            if server.send_header:
                self.send_header(HEADER, "New() has been called 1 times")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            server.count()

        def log_message(self, format: str, *args: object) -> None:
            pass

    return HelloHandler


@pytest.fixture
def serve() -> Iterator[Callable[..., HelloServer]]:
    """Start servers on demand; all are shut down after the test."""
    running: list[http.server.ThreadingHTTPServer] = []

    def start(send_header: bool = True, delay_s: float = 0.0, status: int = 200) -> HelloServer:
        state = HelloServer(send_header=send_header, delay_s=delay_s, status=status)
        http.server.ThreadingHTTPServer.request_queue_size = 256  # 50 users connect at once
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_for(state))
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        running.append(httpd)
        state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
        return state

    yield start
    for httpd in running:
        httpd.shutdown()
        httpd.server_close()


def processes_mentioning(marker: str) -> list[int]:
    """Pids of live (non-zombie) processes whose command line contains `marker`, from /proc.

    Our out_dir is in every Locust command line (its --csv), workers included.
    """
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue  # exited while we looked
        if marker in cmdline and state != "Z":
            found.append(int(proc.name))
    return found


def test_processes_mentioning_finds_a_live_process(tmp_path: Path) -> None:
    marker = str(tmp_path / "marker")
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", marker]) as sleeper:
        try:
            # Right after fork the child still shows the parent's command line until it execs.
            deadline = time.monotonic() + 10
            while not processes_mentioning(marker) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert processes_mentioning(marker) == [sleeper.pid]
        finally:
            sleeper.kill()
    assert processes_mentioning(marker) == []


@pytest.mark.parametrize(("requests", "users"), [(200, 50), (7, 20)])
def test_sends_exactly_the_requested_count(
    serve: Callable[..., HelloServer], tmp_path: Path, requests: int, users: int
) -> None:
    server = serve()

    result = run_load(
        server.url, requests=requests, users=users, spawn_rate=100, out_dir=tmp_path, timeout_s=60
    )

    assert server.requests == requests
    assert result.requests == requests
    assert result.failures == 0
    assert result.rps is not None and result.rps > 0
    assert result.duration_s == pytest.approx(requests / result.rps)
    assert (tmp_path / "locust.html").stat().st_size > 0
    assert (tmp_path / "locust_stats.csv").is_file()


def test_exact_count_holds_across_worker_processes(
    serve: Callable[..., HelloServer], tmp_path: Path
) -> None:
    server = serve()

    result = run_load(
        server.url,
        requests=101,
        users=10,
        spawn_rate=100,
        out_dir=tmp_path,
        timeout_s=60,
        processes=2,
    )

    assert server.requests == 101
    assert result.requests == 101
    assert not processes_mentioning(str(tmp_path))


def test_response_without_the_plugin_header_is_a_failure(
    serve: Callable[..., HelloServer], tmp_path: Path
) -> None:
    server = serve(send_header=False)

    result = run_load(
        server.url, requests=30, users=10, spawn_rate=100, out_dir=tmp_path, timeout_s=60
    )

    assert server.requests == 30
    assert result.requests == 30
    assert result.failures == 30
    assert load.failure_kinds(tmp_path) == {  # its final failures, not the last 1 s write
        "CatchResponseError('no X-Example-Message header: the plugin did not run')": 30
    }


def test_non_2xx_response_is_a_failure_even_with_the_header(
    serve: Callable[..., HelloServer], tmp_path: Path
) -> None:
    server = serve(status=503)

    result = run_load(
        server.url, requests=5, users=5, spawn_rate=100, out_dir=tmp_path, timeout_s=60
    )

    assert server.requests == 5
    assert (result.requests, result.failures) == (5, 5)


@pytest.mark.parametrize(
    "host_url",
    [
        "http://10.0.0.1:8000",
        "http://example.com/",
        "http://127.0.0.1.example.com:8000",
        "ftp://127.0.0.1/",
        "http://127.0.0.1:notaport",
    ],
)
def test_non_loopback_target_is_refused_before_anything_runs(host_url: str, tmp_path: Path) -> None:
    """The web UI refuses before it starts; a headless Locust, started before its target is
    known, before it sends anything, and it is gone afterwards."""
    headless_dir, out_dir = tmp_path / "headless", tmp_path / "out"

    with pytest.raises(UsageError, match="load target"):
        run_load(host_url, requests=1, users=1, spawn_rate=1, out_dir=headless_dir, timeout_s=5)
    with pytest.raises(UsageError, match="load target"):
        run_web_ui(host_url, out_dir=out_dir)

    assert not out_dir.exists()
    assert not processes_mentioning(str(headless_dir))
    assert not (headless_dir / "locust_stats.json").exists()


@pytest.mark.parametrize("host_url", ["http://localhost:1", "http://[::1]:1", "https://127.0.0.1"])
def test_loopback_targets_are_accepted(host_url: str) -> None:
    load.require_loopback(host_url)


def test_parse_stats_json_sums_the_routes_as_locusts_aggregated_row_does() -> None:
    # A real --json-file: 10 users on two routes, /missing always failing, recorded with --csv
    # too; the users stopped sending a while before the run ended, so the CSV's last periodic
    # write holds the same final stats and its Aggregated row is Locust's own answer.
    path = FIXTURES / "locust_two_routes.json"
    entries = json.loads(path.read_text(encoding="utf-8"))
    first_to_last_s = max(e["last_request_timestamp"] for e in entries) - min(
        e["start_time"] for e in entries
    )

    result = parse_stats_json(path)
    aggregated = aggregated_row(FIXTURES / "locust_two_routes_stats.csv")

    assert [entry["name"] for entry in entries] == ["/missing", "/hello"]
    assert (result.requests, result.failures) == (203, 37)
    assert (result.requests, result.failures) == (
        int(aggregated["Request Count"]),
        int(aggregated["Failure Count"]),
    )
    assert (
        (result.p50_ms, result.p95_ms)
        == (
            float(aggregated["50%"]),
            float(aggregated["95%"]),
        )
        == (58, 71)
    )
    assert result.duration_s == pytest.approx(first_to_last_s)
    assert result.rps == pytest.approx(203 / first_to_last_s)


def test_parse_stats_json_of_a_run_without_requests_reads_no_rate_nor_percentiles(
    tmp_path: Path,
) -> None:
    stats = tmp_path / "locust_stats.json"
    stats.write_text("[]", encoding="utf-8")

    assert parse_stats_json(stats) == LoadResult(0, 0, None, None, None, 0.0)


def test_one_request_in_the_stats_json_has_a_latency_but_no_rate(tmp_path: Path) -> None:
    # What `--requests 1` left (results of 2026-12-07): first and last request 14 us apart, which
    # read as 71090 req/s; locust_stats.csv, written once a second, still counted 0 requests.
    entry = {
        "name": "/hello", "method": "GET", "last_request_timestamp": 1796677023.8382547,
        "start_time": 1796677023.8382406, "num_requests": 1, "num_none_requests": 0,
        "num_failures": 0, "total_response_time": 9.76, "max_response_time": 9.76,
        "min_response_time": 9.76, "total_content_length": 43, "response_times": {"10": 1},
        "num_reqs_per_sec": {"1796677023": 1}, "num_fail_per_sec": {},
    }  # fmt: skip
    stats = tmp_path / "locust_stats.json"
    stats.write_text(json.dumps([entry]), encoding="utf-8")

    result = parse_stats_json(stats)
    assert (result.requests, result.rps, result.p50_ms, result.p95_ms) == (1, None, 10.0, 10.0)
    timed = load.with_run_time(result, 0.025)  # Locust's test start to that request's end
    assert (timed.rps, timed.duration_s) == (40.0, 0.025)
    assert load.with_run_time(replace(result, requests=0), 0.5).rps is None


def test_parse_stats_json_rejects_what_locust_did_not_write(tmp_path: Path) -> None:
    stats = tmp_path / "locust_stats.json"
    stats.write_text('{"requests": 3}', encoding="utf-8")

    with pytest.raises(LoadError, match="not a Locust --json-file"):
        parse_stats_json(stats)
    with pytest.raises(LoadError, match="cannot read"):
        parse_stats_json(tmp_path / "absent.json")


def test_run_time_bound_gives_the_partial_measurement(
    serve: Callable[..., HelloServer], tmp_path: Path
) -> None:
    server = serve(delay_s=0.2)

    with pytest.raises(LoadShortfall, match="of 1000 requests completed") as raised:
        run_load(server.url, requests=1000, users=4, spawn_rate=100, out_dir=tmp_path, timeout_s=2)

    partial = raised.value.partial
    assert 0 < partial.requests < 1000
    assert partial.requests <= server.requests
    assert not processes_mentioning(str(tmp_path))


def test_hung_locust_is_killed_and_leaves_no_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(load, "HARD_TIMEOUT_MARGIN_S", 1.0)
    monkeypatch.setattr(load, "STOP_GRACE_S", 1.0)
    out_dir = tmp_path / "out"
    hung = tmp_path / "hung.py"
    # Deaf to SIGINT and blocked before Locust's own --run-time can act: only SIGKILL ends it.
    # Its child stands in for --processes workers: the whole process group must go.
    child = f"[sys.executable, '-c', 'import time; time.sleep(300)', {str(out_dir)!r}]"
    hung.write_text(
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        f"subprocess.Popen({child})\n"
        "time.sleep(300)\n",
        encoding="utf-8",
    )
    started = time.monotonic()

    with pytest.raises(LoadError, match="did not finish within 2s"):
        run_load(
            "http://127.0.0.1:9",
            requests=1,
            users=1,
            spawn_rate=1,
            out_dir=out_dir,
            timeout_s=1,
            locustfile=hung,
        )

    assert time.monotonic() - started < 20
    leftovers = processes_mentioning(str(out_dir))
    for pid in leftovers:  # only if run_load failed to: they are this test's own processes
        os.kill(pid, signal.SIGKILL)
    assert not leftovers


def test_ctrl_c_during_the_load_stops_locust_and_keeps_its_reports(
    serve: Callable[..., HelloServer], tmp_path: Path
) -> None:
    server = serve(delay_s=0.05)
    main_thread = threading.main_thread().ident
    assert main_thread is not None
    threading.Timer(3.0, signal.pthread_kill, args=(main_thread, signal.SIGINT)).start()
    started = time.monotonic()

    with pytest.raises(KeyboardInterrupt):
        run_load(
            server.url, requests=10**6, users=5, spawn_rate=100, out_dir=tmp_path, timeout_s=60
        )

    assert time.monotonic() - started < 3 + load.STOP_GRACE_S
    assert not processes_mentioning(str(tmp_path))
    # Locust was stopped as on Ctrl-C: it wrote its final stats on the way out.
    assert 0 < parse_stats_json(tmp_path / "locust_stats.json").requests <= server.requests
    assert int(aggregated_row(tmp_path / "locust_stats.csv")["Request Count"]) > 0


def test_web_ui_refuses_a_taken_port(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        with pytest.raises(UsageError, match=rf"port {port} .*--web-port"):
            run_web_ui("http://127.0.0.1:8000", out_dir=tmp_path / "out", web_port=port)

    assert not (tmp_path / "out").exists()


def answers_http(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_web_ui_serves_on_loopback_and_stops_cleanly_on_a_signal(
    serve: Callable[..., HelloServer], tmp_path: Path, stop_signal: signal.Signals
) -> None:
    server = serve()
    port = load.free_loopback_port()
    ui_url = f"http://127.0.0.1:{port}/"
    main_thread = threading.main_thread().ident
    assert main_thread is not None
    seen_ui = threading.Event()

    def stop_when_up() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if answers_http(ui_url):
                seen_ui.set()
                break
            time.sleep(0.2)
        signal.pthread_kill(main_thread, stop_signal)

    stopper = threading.Thread(target=stop_when_up, daemon=True)
    stopper.start()
    started = time.monotonic()

    session = run_web_ui(server.url, out_dir=tmp_path, web_port=port)

    stopper.join(5)
    assert session.stopped_by == stop_signal
    assert seen_ui.is_set()
    assert time.monotonic() - started < 30
    assert (tmp_path / "locust.html").is_file()
    assert not processes_mentioning(str(tmp_path))
    assert not answers_http(ui_url)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


class NamedCancel(threading.Event):
    """A cancel event that names its signal, as the pipeline's Cancel does."""

    signal_number = signal.SIGTERM.value


@pytest.mark.parametrize(
    ("cancel", "expected_signal"),
    [(threading.Event(), signal.SIGINT), (NamedCancel(), signal.SIGTERM)],
    ids=["plain-event", "named-signal"],
)
def test_cancel_stops_the_load_and_raises_interrupted(
    serve: Callable[..., HelloServer],
    tmp_path: Path,
    cancel: threading.Event,
    expected_signal: signal.Signals,
) -> None:
    server = serve(delay_s=0.01)
    threading.Timer(2.0, cancel.set).start()
    started = time.monotonic()

    with pytest.raises(Interrupted) as raised:
        run_load(
            server.url,
            requests=10**6,
            users=5,
            spawn_rate=100,
            out_dir=tmp_path,
            timeout_s=60,
            cancel=cancel,
        )

    assert raised.value.signal_number == expected_signal
    assert time.monotonic() - started < 2 + load.CANCEL_POLL_S + 5
    assert not processes_mentioning(str(tmp_path))
    # Stopped like on Ctrl-C: Locust wrote its final stats on the way out.
    assert 0 < parse_stats_json(tmp_path / "locust_stats.json").requests <= server.requests


def test_locust_left_before_the_go_sends_nothing_and_leaves_no_process(tmp_path: Path) -> None:
    started = time.monotonic()

    with HeadlessLocust(requests=10, users=1, spawn_rate=1, out_dir=tmp_path, timeout_s=10):
        deadline = time.monotonic() + 5  # until the child has exec'd: its command line is ours
        while not (waiting := processes_mentioning(str(tmp_path))):
            assert time.monotonic() < deadline, "Locust never started"
            time.sleep(0.02)

    assert len(waiting) == 1
    assert not processes_mentioning(str(tmp_path))
    assert time.monotonic() - started < 10
    assert not (tmp_path / "locust_stats.json").exists()


def test_run_time_counts_from_the_go_not_from_the_start(
    serve: Callable[..., HelloServer], tmp_path: Path
) -> None:
    server = serve()
    locust = HeadlessLocust(requests=50, users=5, spawn_rate=100, out_dir=tmp_path, timeout_s=2)

    with locust:
        time.sleep(3)  # longer than --run-time, spent waiting at the gate
        result = locust.run(server.url)

    assert result.requests == server.requests == 50


def test_a_broken_locustfile_is_a_load_error_with_its_traceback(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('this locustfile is broken')\n", encoding="utf-8")

    with pytest.raises(LoadError, match="Locust exited with status") as raised:
        run_load(
            "http://127.0.0.1:9",
            requests=1,
            users=1,
            spawn_rate=1,
            out_dir=tmp_path / "out",
            timeout_s=10,
            locustfile=broken,
        )

    assert "this locustfile is broken" in str(raised.value)
    assert not processes_mentioning(str(tmp_path / "out"))


def post_form(url: str, fields: dict[str, str]) -> dict[str, object]:
    data = urllib.parse.urlencode(fields).encode()
    with urllib.request.urlopen(url, data=data, timeout=5) as response:
        answer: dict[str, object] = json.loads(response.read())
        return answer


def ui_state(ui_url: str) -> str:
    with urllib.request.urlopen(f"{ui_url}stats/requests", timeout=5) as response:
        return str(json.loads(response.read())["state"])


def test_web_ui_returns_locusts_final_count_exactly(
    serve: Callable[..., HelloServer], tmp_path: Path
) -> None:
    """The UI path's count is Locust's final stats: what the server answered, not a CSV write
    from up to a second before Ctrl-C."""
    server = serve()
    port = load.free_loopback_port()
    ui_url = f"http://127.0.0.1:{port}/"
    main_thread = threading.main_thread().ident
    assert main_thread is not None
    swarm: list[dict[str, object]] = []

    def swarm_then_ctrl_c() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not answers_http(ui_url):
            time.sleep(0.2)
        fields = {"user_count": "10", "spawn_rate": "100", "requests": "700"}
        swarm.append(post_form(f"{ui_url}swarm", fields))
        while time.monotonic() < deadline and server.requests < 700:
            time.sleep(0.05)
        while time.monotonic() < deadline and ui_state(ui_url) != "stopped":
            time.sleep(0.2)
        signal.pthread_kill(main_thread, signal.SIGINT)  # at once: no CSV write since the end

    stopper = threading.Thread(target=swarm_then_ctrl_c, daemon=True)
    stopper.start()

    session = run_web_ui(server.url, out_dir=tmp_path, web_port=port, users=10, spawn_rate=100)

    stopper.join(5)
    assert session.stopped_by == signal.SIGINT
    result = session.load
    assert swarm and swarm[0]["success"] is True
    assert result.requests == server.requests == 700
    assert result.failures == 0
    assert not processes_mentioning(str(tmp_path))


# --- Locust's distributed mode (--locust-workers, --locust-remote-workers) -----------------


def test_exact_count_holds_across_local_locust_workers(
    serve: Callable[..., HelloServer], tmp_path: Path
) -> None:
    """101 requests over 3 workers: 34 + 34 + 33, the locustfile's split; one more or one less
    and the count is wrong."""
    server = serve()

    result = run_load(
        server.url,
        requests=101,
        users=9,
        spawn_rate=100,
        out_dir=tmp_path,
        timeout_s=60,
        workers=load.LocustWorkers(3),
    )

    assert server.requests == 101
    assert result.requests == 101
    assert sorted(p.name for p in tmp_path.glob("locust-worker-*-console.txt")) == [
        f"locust-worker-{index}-console.txt" for index in range(3)
    ]
    assert not processes_mentioning(str(tmp_path))


def test_remote_workers_are_waited_for_with_the_command_printed(
    serve: Callable[..., HelloServer], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The test plays the other machines: two workers started by the printed command (on
    loopback), before the master listens; the count holds over them."""
    server = serve()
    workers = load.LocustWorkers(2, local=False, port=load.free_loopback_port(), wait_s=60)
    command = workers.worker_command(load.default_locustfile())
    remote = [
        subprocess.Popen(
            [sys.executable, "-m", *command],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for _ in range(2)
    ]
    try:
        result = run_load(
            server.url,
            requests=57,
            users=4,
            spawn_rate=100,
            out_dir=tmp_path,
            timeout_s=60,
            workers=workers,
        )
        exits = [worker.wait(timeout=30) for worker in remote]  # the master told them to quit
    finally:
        for worker in remote:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()

    assert server.requests == 57
    assert result.requests == 57
    assert exits == [0, 0]
    printed = capfd.readouterr().err
    assert "waits up to 60s for 2 workers on 127.0.0.1" in printed
    assert (
        f"locust -f locustfiles/hello.py --worker --master-host 127.0.0.1 "
        f"--master-port {workers.port}"
    ) in printed


def test_a_worker_with_no_user_is_refused_before_locust_starts(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="at least 4 users"):
        load.HeadlessLocust(
            requests=10,
            users=3,
            spawn_rate=10,
            out_dir=tmp_path,
            timeout_s=10,
            workers=load.LocustWorkers(4),
        )


def test_ctrl_c_stops_the_master_and_every_local_worker(
    serve: Callable[..., HelloServer], tmp_path: Path
) -> None:
    server = serve(delay_s=0.05)
    main_thread = threading.main_thread().ident
    assert main_thread is not None
    threading.Timer(6.0, signal.pthread_kill, args=(main_thread, signal.SIGINT)).start()

    with pytest.raises(KeyboardInterrupt):
        run_load(
            server.url,
            requests=10**6,
            users=4,
            spawn_rate=100,
            out_dir=tmp_path,
            timeout_s=60,
            workers=load.LocustWorkers(2),
        )

    assert server.requests > 0  # the workers were sending
    assert not processes_mentioning(str(tmp_path))


def test_the_master_listens_on_loopback_only_by_default() -> None:
    options = load.LocustWorkers(2, port=5557).master_options()

    assert options[options.index("--master-bind-host") + 1] == "127.0.0.1"
    assert options[options.index("--expect-workers") + 1] == "2"


def test_a_locust_never_used_leaves_no_worker_waiting_for_its_master(tmp_path: Path) -> None:
    """A pre-started Locust whose stack never came up: its master never listened, and workers
    started for it would retry for minutes unless stopped."""
    locust = load.HeadlessLocust(
        requests=10,
        users=2,
        spawn_rate=10,
        out_dir=tmp_path,
        timeout_s=10,
        workers=load.LocustWorkers(2),
    )
    with locust:
        deadline = time.monotonic() + 10
        while len(processes_mentioning(str(tmp_path))) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(processes_mentioning(str(tmp_path))) == 3  # the master and two workers

    assert not processes_mentioning(str(tmp_path))


@pytest.mark.parametrize(("status", "failures"), [(200, 0), (503, 7)])
def test_send_tells_locusts_counts_before_its_reports(
    serve: Callable[..., HelloServer], tmp_path: Path, status: int, failures: int
) -> None:
    server = serve(status=status)
    locust = HeadlessLocust(requests=7, users=3, spawn_rate=100, out_dir=tmp_path, timeout_s=60)

    with locust:
        locust.send(server.url)
        sent = locust.sent
        result = locust.result()

    assert sent == (7, failures)
    assert (result.requests, result.failures) == sent


@pytest.mark.parametrize(
    ("line", "counts"),
    [(b"done 1000 3\n", (1000, 3)), (b"done\n", None), (b"", None), (b"done 1000\n", None),
     (b"done 1000 3 2.061250\n", (1000, 3)), (b"done 1000 3 x\n", None)],
)  # fmt: skip
def test_a_done_line_without_counts_gives_none(line: bytes, counts: tuple[int, int] | None) -> None:
    assert load.parse_done_line(line) == counts


@pytest.mark.parametrize(
    ("line", "seconds"),
    [(b"done 1000 3 2.061250\n", 2.06125), (b"done 1 0 0\n", 0.0), (b"done 1000 3\n", None),
     (b"done\n", None), (b"", None)],
)  # fmt: skip
def test_the_done_line_tells_how_long_locust_ran(line: bytes, seconds: float | None) -> None:
    assert load.ran_seconds(line) == seconds


def test_one_request_is_rated_over_the_time_locust_ran(
    serve: Callable[..., HelloServer], tmp_path: Path
) -> None:
    """`--requests 1` read 29127 req/s: one request spans no time between its own first and last
    timestamps. Over Locust's run time, which holds the 50 ms answer, it is at most 20 req/s."""
    server = serve(delay_s=0.05)

    result = run_load(server.url, requests=1, users=1, spawn_rate=1, out_dir=tmp_path, timeout_s=30)

    assert result.requests == 1
    assert result.rps is not None and 0 < result.rps <= 20
    assert result.duration_s >= 0.05
    assert result.p95_ms is not None and result.p95_ms >= 50
