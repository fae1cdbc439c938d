"""Pipeline wiring without Docker: rows, verdicts, error rows, interrupts, the header check."""

from __future__ import annotations

import http.server
import json
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from orchestration import pipeline
from orchestration.collect import Signals, collect_file
from orchestration.config import RunConfig
from orchestration.errors import Interrupted, StackError, UsageError
from orchestration.load import LoadResult
from orchestration.report import VersionResult
from orchestration.versions import target_for_version


def _signals(new_calls: int, counter_lines: int = 0) -> Signals:
    return Signals(
        new_calls_total=new_calls,
        counter_lines=counter_lines,
        instance_starts=3,
        instance_closes=2,
        no_instance_errors=1,
        rpc_closed_errors=1,
        plugin_server_starts=1,
        plugin_server_exits=0,
        lines=10,
    )


def _config(tmp_path: Path, *versions: str) -> RunConfig:
    return RunConfig(
        run_id="test-run",
        targets=tuple(target_for_version(v) for v in versions),
        results_root=tmp_path,
        sim=True,
    )


def test_row_counts_only_the_load() -> None:
    config_row = VersionResult(
        version="3.4.1.0",
        image="i",
        simulated=True,
        status="ok",
        error=None,
        expected="affected",
        verdict="error",
        matches_changelog=None,
    )
    load = LoadResult(requests=1000, failures=0, rps=500.0, p50_ms=3.0, p95_ms=9.0, duration_s=2.0)
    measurement = pipeline.Measurement(_signals(5), _signals(2005), load, plugin_counter=2005)
    row = pipeline.row_from(config_row, measurement)
    assert row.new_calls_during_load == 2000
    assert row.new_calls_per_request == 2.0
    assert row.new_calls_before_load == 5
    assert row.verdict == "churn"
    assert row.matches_changelog is True
    assert row.plugin_counter == 2005


def test_no_request_is_never_stable() -> None:
    base = pipeline._base_row(target_for_version("3.4.1.0"), _config(Path("/nowhere")), Path("/x"))
    load = LoadResult(requests=0, failures=0, rps=0.0, p50_ms=0.0, p95_ms=0.0, duration_s=0.0)
    row = pipeline.row_from(base, pipeline.Measurement(_signals(5), _signals(5), load))
    assert row.verdict == "error"
    assert row.status == "error"
    assert "no request completed" in (row.error or "")


@pytest.mark.parametrize(
    ("label", "folder"),
    [("3.4.1.0", "3.4.1.0"), ("kong/kong-gateway:3.7.1.0", "kong_kong-gateway_3.7.1.0")],
)
def test_folder_names_are_safe(label: str, folder: str) -> None:
    assert pipeline.folder_name(label) == folder


def test_a_failing_version_becomes_an_error_row_and_the_rest_still_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, "3.4.0.0", "3.4.1.0", "3.6.0.0")

    def fake_spec(target: object, *_: object) -> object:
        if getattr(target, "label", "") == "3.4.1.0":
            raise StackError("image kong/kong-gateway:3.4.1.0 not available")
        raise StackError("other failure")

    monkeypatch.setattr(pipeline, "_stack_spec", fake_spec)
    run = pipeline.run_matrix(config)
    assert [r.status for r in run.versions] == ["error", "error", "error"]
    assert "not available" in (run.versions[1].error or "")
    saved = json.loads((config.run_dir / "results.json").read_text())
    assert len(saved["versions"]) == 3
    assert (tmp_path / "latest").resolve() == config.run_dir.resolve()


def test_interrupt_keeps_finished_rows_and_marks_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, "3.4.0.0", "3.4.1.0", "3.6.0.0")
    finished = replace(
        pipeline._base_row(config.targets[0], config, tmp_path),
        verdict="stable",
        new_calls_per_request=0.0,
    )

    def fake_measure(target: object, _config: RunConfig, *_cancel: object) -> VersionResult:
        if getattr(target, "label", "") == "3.4.0.0":
            return finished
        raise Interrupted(15)

    monkeypatch.setattr(pipeline, "measure_version", fake_measure)
    with pytest.raises(Interrupted) as raised:
        pipeline.run_matrix(config)
    assert raised.value.exit_code == 143
    saved = json.loads((config.run_dir / "results.json").read_text())
    assert [v["status"] for v in saved["versions"]] == ["ok", "interrupted", "interrupted"]
    assert "interrupted" in (config.run_dir / "summary.md").read_text()


def test_a_run_never_overwrites_another(tmp_path: Path) -> None:
    config = _config(tmp_path, "3.4.0.0")
    config.run_dir.mkdir(parents=True)
    (config.run_dir / "results.json").write_text("{}")
    with pytest.raises(UsageError, match="already exists: a run never overwrites another"):
        pipeline.run_matrix(config)
    with pytest.raises(UsageError, match="already exists"):
        pipeline.run_ui(config, web_port=8089)
    assert (config.run_dir / "results.json").read_text() == "{}"
    assert sorted(p.name for p in config.run_dir.iterdir()) == ["results.json"]


@pytest.fixture
def counter_server() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            if self.path == "/hello":
                self.send_header("X-Example-Message", "New() calls: 2007")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_plugin_counter_is_read_from_the_header(counter_server: str) -> None:
    assert pipeline.read_plugin_counter(counter_server) == 2007
    assert pipeline.read_plugin_counter(counter_server, path="/other") is None


def test_warm_up_reaches_every_worker_on_new_connections() -> None:
    """Each warm-up request is its own connection: that is what spreads them over workers."""
    ports: list[int] = []
    paths: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive allowed: the client must still reconnect

        def do_GET(self) -> None:
            ports.append(self.client_address[1])
            paths.append(self.path)
            self.send_response(200)
            self.send_header("X-Example-Message", f"New() calls: {len(paths)}")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        highest = pipeline.warm_up(f"http://127.0.0.1:{server.server_address[1]}", workers=3)
    finally:
        server.shutdown()
        server.server_close()
    assert len(paths) == 3 * pipeline.WARM_UP_PER_WORKER
    assert len(set(ports)) == len(ports), "every warm-up request opened a new connection"
    assert all(path == pipeline.WARM_UP_PATH for path in paths)
    assert highest == len(paths)


FIXTURES = Path(__file__).parent / "fixtures"


def _feed_later(counts: pipeline.LogCounts, blocks: list[bytes], pause_s: float = 0.05) -> None:
    """Feed `blocks` from another thread, as the stack's log follower does."""

    def feed() -> None:
        for block in blocks:
            time.sleep(pause_s)
            counts.feed(block)

    threading.Thread(target=feed, daemon=True).start()


def _whole_line_blocks(path: Path, parts: int) -> list[bytes]:
    lines = path.read_bytes().splitlines(keepends=True)
    size = -(-len(lines) // parts)
    return [b"".join(lines[start : start + size]) for start in range(0, len(lines), size)]


def test_log_counts_reach_the_counts_of_the_whole_log() -> None:
    log = FIXTURES / "churn_3.4.1.0.log"
    whole = collect_file(log)
    counts = pipeline.LogCounts()
    _feed_later(counts, _whole_line_blocks(log, 3))

    reached = counts.wait_until(lambda s: s.counter_lines >= whole.counter_lines, timeout_s=10)

    assert whole.counter_lines > 0
    assert reached == whole


def test_log_counts_wait_for_the_plugins_count_in_the_current_server_lifetime() -> None:
    """Debug lines carry no request context (as nginx writes them): the count is what to wait for.
    After a restart (`Starting NAME`) the header's count is the new server's, not the total."""
    counts = pipeline.LogCounts()
    blocks = [
        b"2026/01/01 00:00:00 [debug] 2#0: *1 [kong] handler.lua:1 [example-plugin] "
        b"New() has been called 900 times\n",
        b"2026/01/01 00:00:01 [notice] 1#0: *2 [kong] process.lua:1 Starting example-plugin\n",
        b"2026/01/01 00:00:02 [debug] 2#0: *3 [kong] handler.lua:1 [example-plugin] "
        b"New() has been called 6 times\n",
        b"2026/01/01 00:00:02 [debug] 2#0: *4 [kong] handler.lua:1 [example-plugin] "
        b"New() has been called 7 times\n",
    ]
    _feed_later(counts, blocks)

    assert counts.wait_for_counter(7, timeout_s=10)
    assert counts.signals().lines == 4  # not before the line that showed 7
    assert not counts.wait_for_counter(900, timeout_s=0.2)  # the old server's count is past


def test_log_counts_give_up_after_the_timeout() -> None:
    counts = pipeline.LogCounts()
    counts.feed(b"a line that counts nothing\n")
    started = time.monotonic()

    reached = counts.wait_until(lambda s: s.counter_lines >= 1, timeout_s=0.3)

    assert 0.3 <= time.monotonic() - started < 5
    assert (reached.lines, reached.counter_lines) == (1, 0)


def test_log_before_load_waits_for_the_readiness_probe_line() -> None:
    counts = pipeline.LogCounts()
    counts.feed(b"2026/01/01 00:00:00 [notice] Starting example-plugin\n")
    probe_line = b"[debug] [example-plugin] New() has been called 2 times, request: GET /hello\n"
    _feed_later(counts, [probe_line])

    before = pipeline._log_before_load(counts, ready_counter=2)

    assert (before.counter_lines, before.new_calls_total, before.lines) == (1, 2, 2)


def test_cancel_is_an_event_that_names_its_signal() -> None:
    cancel = pipeline.Cancel()
    cancel.raise_if_set()  # not set: nothing happens

    cancel.set(signal.SIGTERM)

    assert isinstance(cancel, threading.Event)
    assert cancel.wait(0)
    with pytest.raises(Interrupted) as raised:
        cancel.raise_if_set()
    assert raised.value.signal_number == signal.SIGTERM


@pytest.mark.docker
def test_the_load_is_counted_without_any_settle_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Kong writes its debug lines, the plugin's counter line among them, with no request
    context; the wait for the load's last lines must still end at once, without a warning."""
    monkeypatch.setattr(pipeline, "LOG_SETTLE_S", 120.0)  # a settle wait would show as minutes
    config = replace(_config(tmp_path, "3.4.1.0"), requests=300, workers=4)
    config.run_dir.mkdir(parents=True)
    caplog.set_level("WARNING", logger="orchestration")

    row = pipeline.measure_version(config.targets[0], config)

    assert row.status == "ok", row.error
    assert row.verdict == "churn"
    assert row.duration_s is not None and row.duration_s < 60
    assert not [r.message for r in caplog.records if "log" in r.message.lower()]
    log = (config.run_dir / "3.4.1.0" / "kong.log").read_text().splitlines()
    counter_lines = [line for line in log if "New() has been called" in line]
    assert len(counter_lines) >= 300
    assert not [line for line in counter_lines if "request:" in line]  # as nginx writes debug
    assert row.plugin_counter == row.new_calls_total  # the wait ended on the probe's own line
