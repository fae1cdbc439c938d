"""One version's world without Docker: live log counts, the plugin probe, warm-up, the wait for
the last lines; and with Docker, a whole steady run that waits for no settle time."""

from __future__ import annotations

import http.server
import json
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import cast

import pytest
from outcomes import config_for as _config

from orchestration import contract, pipeline, world
from orchestration.collect import collect_file
from orchestration.errors import Interrupted
from orchestration.load import LocustWorkers
from orchestration.stack import Stack
from orchestration.world import Cancel, LogCounts, VersionWorld


class _FakeStack:
    def __init__(self, proxy_url: str) -> None:
        self.proxy_url = proxy_url


def _world_at(proxy_url: str, tmp_path: Path, workers: int = 3) -> VersionWorld:
    config = replace(_config(tmp_path, "3.4.1.0"), workers=workers)
    up = VersionWorld(config.targets[0], config, tmp_path)
    up.stack = cast(Stack, _FakeStack(proxy_url))
    return up


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
    assert contract.ask(counter_server, "/hello").counter == 2007
    assert contract.ask(counter_server, "/other").counter is None


def test_warm_up_reaches_every_worker_on_new_connections(tmp_path: Path) -> None:
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
        up = _world_at(f"http://127.0.0.1:{server.server_address[1]}", tmp_path, workers=3)
        highest = up.warm_up()
    finally:
        server.shutdown()
        server.server_close()
    assert len(paths) == 3 * world.WARM_UP_PER_WORKER
    assert len(set(ports)) == len(ports), "every warm-up request opened a new connection"
    assert all(path == "/hello?kpm-probe=warm-up" for path in paths)
    assert highest == len(paths)


FIXTURES = Path(__file__).parent / "fixtures"


def _feed_later(counts: LogCounts, blocks: list[bytes], pause_s: float = 0.05) -> None:
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
    counts = LogCounts()
    _feed_later(counts, _whole_line_blocks(log, 3))

    reached = counts.wait_until(lambda s: s.counter_lines >= whole.counter_lines, timeout_s=10)

    assert whole.counter_lines > 0
    assert reached == whole


def test_log_counts_wait_for_the_plugins_count_in_the_current_server_lifetime() -> None:
    """Debug lines carry no request context (as nginx writes them): the count is what to wait for.
    After a restart (`Starting NAME`) the header's count is the new server's, not the total."""
    counts = LogCounts()
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
    counts = LogCounts()
    counts.feed(b"a line that counts nothing\n")
    started = time.monotonic()

    reached = counts.wait_until(lambda s: s.counter_lines >= 1, timeout_s=0.3)

    assert 0.3 <= time.monotonic() - started < 5
    assert (reached.lines, reached.counter_lines) == (1, 0)


def test_log_before_load_waits_for_the_readiness_probe_line(tmp_path: Path) -> None:
    up = _world_at("http://127.0.0.1:9", tmp_path)
    counts = up.counts
    counts.feed(b"2026/01/01 00:00:00 [notice] Starting example-plugin\n")
    probe_line = b"[debug] [example-plugin] New() has been called 2 times, request: GET /hello\n"
    _feed_later(counts, [probe_line])

    before = up.settle_after(ready_counter=2)

    assert (before.counter_lines, before.new_calls_total, before.lines) == (1, 2, 2)


def test_cancel_is_an_event_that_names_its_signal() -> None:
    cancel = Cancel()
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
    monkeypatch.setattr(world, "LOG_SETTLE_S", 120.0)  # a settle wait would show as minutes
    config = replace(_config(tmp_path, "3.4.1.0"), requests=300, workers=4)
    config.run_dir.mkdir(parents=True)
    caplog.set_level("WARNING", logger="orchestration")

    row = pipeline.measure_job(pipeline.Job(config.targets[0]), config)

    assert row.status == "ok", row.error
    assert row.verdict == "churn"
    assert row.duration_s is not None and row.duration_s < 60
    assert not [r.message for r in caplog.records if "log" in r.message.lower()]
    log = (config.run_dir / "3.4.1.0" / "kong.log").read_text().splitlines()
    counter_lines = [line for line in log if "New() has been called" in line]
    assert len(counter_lines) >= 300
    assert not [line for line in counter_lines if "request:" in line]  # as nginx writes debug
    assert row.plugin_counter == row.new_calls_total  # the wait ended on the probe's own line


def test_locust_workers_follow_the_run_options() -> None:
    config = replace(_config(Path("/tmp")), locust_workers=3, locust_master_port=0)
    remote = replace(config, locust_workers=0, locust_remote_workers=2, load_timeout=90)

    assert world.locust_workers(replace(config, locust_workers=0)) is None
    assert world.locust_workers(config) == LocustWorkers(3, local=True)
    assert world.locust_workers(remote) == LocustWorkers(2, local=False, wait_s=90)


@pytest.mark.docker
def test_a_run_with_local_locust_workers_sends_the_exact_count(tmp_path: Path) -> None:
    from runs import REPO, cli

    done = cli(
        [
            *["run", "3.6.0.0", "--sim", "--requests", "301", "--users", "9"],
            *["--locust-workers", "3", "--results", str(tmp_path)],
        ],
        REPO,
        timeout_s=400,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    row = json.loads((tmp_path / "latest" / "results.json").read_text())["versions"][0]
    assert (row["requests"], row["failures"], row["status"]) == (301, 0, "ok")
    consoles = list((tmp_path / "latest" / "3.6.0.0").glob("locust-worker-*-console.txt"))
    assert len(consoles) == 3
    assert not _processes_mentioning(str(tmp_path))


def _processes_mentioning(marker: str) -> list[int]:
    from test_load import processes_mentioning

    return processes_mentioning(marker)


def test_a_pipelined_worlds_first_load_waits_its_turn_and_a_cancelled_wait_sends_nothing(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path, "3.4.1.0")
    turns: list[str] = []

    def cancelled_while_waiting() -> None:
        turns.append("waited")
        raise Interrupted(signal.SIGINT)

    version = VersionWorld(
        config.targets[0],
        config,
        tmp_path,
        options=world.WorldOptions(prestart_locust=False),
        load_turn=cancelled_while_waiting,
    )
    with pytest.raises(Interrupted):
        version.send(10)  # no stack: anything past the turn would fail otherwise

    assert turns == ["waited"]


def test_the_tap_counts_where_kongs_plugin_server_code_is_not_public(tmp_path: Path) -> None:
    for version, tapped in (("3.4.1.0", False), ("3.10.0.17", False), ("3.14.0.13", True)):
        config = _config(tmp_path, version)
        world = VersionWorld(config.targets[0], config, tmp_path)
        assert world.tap is tapped, version
