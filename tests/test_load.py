"""Tests for orchestration/load.py and locustfiles/hello.py against a tiny loopback HTTP server."""

from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from orchestration import load
from orchestration.errors import LoadError, UsageError
from orchestration.load import LoadResult, LoadShortfall, parse_stats_csv, run_load, run_web_ui

FIXTURES = Path(__file__).parent / "fixtures"
HEADER = "X-Example-Message"


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
    assert result.rps > 0
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
    out_dir = tmp_path / "out"

    with pytest.raises(UsageError, match="load target"):
        run_load(host_url, requests=1, users=1, spawn_rate=1, out_dir=out_dir, timeout_s=5)
    with pytest.raises(UsageError, match="load target"):
        run_web_ui(host_url, out_dir=out_dir)

    assert not out_dir.exists()


@pytest.mark.parametrize("host_url", ["http://localhost:1", "http://[::1]:1", "https://127.0.0.1"])
def test_loopback_targets_are_accepted(host_url: str) -> None:
    load.require_loopback(host_url)


def test_parse_stats_csv_reads_the_aggregated_row() -> None:
    result = parse_stats_csv(FIXTURES / "locust_stats.csv")

    # Values of the recorded run's ",Aggregated,..." line (1000 requests, 50 users).
    assert result.requests == 1000
    assert result.failures == 0
    assert result.p50_ms == 44.0
    assert result.p95_ms == 53.0
    assert result.rps == pytest.approx(1074.3202036193823)
    assert result.duration_s == pytest.approx(1000 / 1074.3202036193823)
    assert result.to_dict()["requests"] == 1000


def test_parse_stats_csv_without_requests_reads_percentiles_as_zero(tmp_path: Path) -> None:
    header = (FIXTURES / "locust_stats.csv").read_text(encoding="utf-8").splitlines()[0]
    columns = len(header.split(","))
    empty = ["", "Aggregated", "0", "0", "0", "0", "0", "0", "0", "0", "0"]
    empty += ["N/A"] * (columns - len(empty))
    stats = tmp_path / "locust_stats.csv"
    stats.write_text(header + "\n" + ",".join(empty) + "\n", encoding="utf-8")

    assert parse_stats_csv(stats) == LoadResult(0, 0, 0.0, 0.0, 0.0, 0.0)


def test_parse_stats_csv_rejects_a_file_without_aggregated_row(tmp_path: Path) -> None:
    stats = tmp_path / "locust_stats.csv"
    stats.write_text("Type,Name,Request Count\nGET,/hello,3\n", encoding="utf-8")

    with pytest.raises(LoadError, match="Aggregated"):
        parse_stats_csv(stats)
    with pytest.raises(LoadError, match="cannot read"):
        parse_stats_csv(tmp_path / "absent.csv")


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
    serve: Callable[..., HelloServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve(delay_s=0.05)
    real_wait = load.wait_at_most
    calls = []

    def ctrl_c_after_a_while(process: object, timeout_s: float) -> int | None:
        calls.append(timeout_s)
        if len(calls) == 1:  # the load's own wait; the stop's waits are real
            real_wait(process, 3)  # type: ignore[arg-type]
            raise KeyboardInterrupt
        return real_wait(process, timeout_s)  # type: ignore[arg-type]

    monkeypatch.setattr(load, "wait_at_most", ctrl_c_after_a_while)

    with pytest.raises(KeyboardInterrupt):
        run_load(
            server.url, requests=10**6, users=5, spawn_rate=100, out_dir=tmp_path, timeout_s=60
        )

    assert not processes_mentioning(str(tmp_path))
    assert parse_stats_csv(tmp_path / "locust_stats.csv").requests > 0
    assert server.requests > 0


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

    run_web_ui(server.url, out_dir=tmp_path, web_port=port)

    stopper.join(5)
    assert seen_ui.is_set()
    assert time.monotonic() - started < 30
    assert (tmp_path / "locust.html").is_file()
    assert not processes_mentioning(str(tmp_path))
    assert not answers_http(ui_url)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
