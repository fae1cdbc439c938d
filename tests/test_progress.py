"""orchestration/progress.py: the running versions' lines, in place on a terminal, plain elsewhere.

The fast tests draw a `Board` on a real pseudo-terminal or pipe of their own; the Docker tests run
the CLI with `--sim` as the foreground job of a pseudo-terminal (test_under_nox's `Terminal`).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import select
import shutil
import struct
import sys
import termios
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TextIO

import pytest
from test_reliability import REPO, _remove_leftovers, assert_nothing_left
from test_under_nox import Terminal, nox_session

from orchestration import progress
from orchestration.collect import LogSignals
from orchestration.load import STATS_CSV

FIXTURES = Path(__file__).parent / "fixtures"
NOTHING = LogSignals(0, 0, 0, 0, 0, 0, 0, 0, 0)
ERASE_LINE = "\x1b[2K"  # how rich's live display takes its lines back to redraw them
CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Log:
    """Kong's log counts as the world's follower would have them."""

    def __init__(self) -> None:
        self.signals = NOTHING

    def __call__(self) -> LogSignals:
        return self.signals


def test_a_waiting_line_says_what_it_waits_on_and_for_how_long() -> None:
    clock = Clock()
    line = progress.Line("3.4.1.0", clock)
    line.stage("waiting for Kong to answer", 240)
    clock.now += 12.4
    assert line.text() == "3.4.1.0: waiting for Kong to answer, 12s/240s"
    line.stage("tearing down the stack")
    clock.now += 3
    assert line.text() == "3.4.1.0: tearing down the stack, 3s"


def test_a_load_line_reads_locusts_stats_csv_and_the_logs_live_counts(tmp_path: Path) -> None:
    log = Log()
    log.signals = replace(NOTHING, new_calls_total=4, counter_lines=10, instance_starts=4)
    line = progress.Line("3.4.1.0", Clock())
    line.load(tmp_path, 30000, None, log, own_counts=True)
    assert line.text() == (  # Locust has not written its stats yet
        "3.4.1.0: 0/30000 requests, - req/s, 0 failed, 4 instances, New()/request -"
    )
    shutil.copy(FIXTURES / "locust_stats.csv", tmp_path / STATS_CSV)  # 1000 requests, 1074/s
    log.signals = replace(
        NOTHING, new_calls_total=504, counter_lines=1010, instance_starts=504, instance_closes=2
    )
    assert line.text() == (
        "3.4.1.0: 1000/30000 requests, 1074 req/s, 0 failed, 502 instances, New()/request 0.500"
    )
    (tmp_path / STATS_CSV).write_text("Type,Name,Request")  # Locust rewriting it: keep the last
    assert "1000/30000 requests" in line.text()


def test_a_time_bound_load_shows_elapsed_over_its_duration_and_the_taps_counts(
    tmp_path: Path,
) -> None:
    clock, log = Clock(), Log()
    line = progress.Line("3.4.1.0-python-soak", clock)
    line.load(tmp_path, 0, 600, log, own_counts=False)
    clock.now += 42
    log.signals = replace(NOTHING, tap_instance_starts=3, tap_ran_on=300)
    assert line.text() == (
        "3.4.1.0-python-soak: 42s/600s, - req/s, 0 failed, 3 instances, New()/request 0.010"
    )


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "LIVE_EVERY_S", 0.02)
    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.02)


class Pty:
    """A pseudo-terminal `columns` wide whose output is read as it comes."""

    def __init__(self, columns: int) -> None:
        self.master, replica = os.openpty()
        fcntl.ioctl(replica, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
        self.stream = os.fdopen(replica, "w", encoding="utf-8")  # closed in close()
        self._chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            if not select.select([self.master], [], [], 0.1)[0]:
                continue
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                return
            if not chunk:
                return
            self._chunks.append(chunk)

    def output(self) -> str:
        time.sleep(0.2)  # what was written has reached the master
        return b"".join(self._chunks).decode().replace("\r\n", "\n")  # the terminal's newlines

    def close(self) -> None:
        self.stream.close()
        self._reader.join(timeout=5)
        os.close(self.master)


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> Iterator[Pty]:
    monkeypatch.setenv("TERM", "xterm-256color")
    for name in ("NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "FORCE_COLOR", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)
    pty = Pty(columns=60)
    yield pty
    pty.close()


def _rows(output: str) -> list[str]:
    """What the output drew, row by row, with the control sequences taken out."""
    return [row for row in CONTROL.sub("\n", output).split("\n") if row]


def test_on_a_terminal_the_lines_update_in_place_and_other_output_goes_above_them(
    terminal: Pty, fast: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stderr", terminal.stream)  # as the run's stderr is the terminal
    handler = logging.StreamHandler(terminal.stream)
    logging.getLogger("orchestration").addHandler(handler)
    clock = Clock()
    try:
        with progress.Board(terminal.stream) as board:
            assert board.live
            line = progress.Line("3.4.1.0", clock)
            board.add(line)
            line.stage("waiting for Kong to answer", 240)
            time.sleep(0.2)
            clock.now += 7
            print("==> 3.4.1.0 [simulated]: churn", file=sys.stderr)
            logging.getLogger("orchestration.world").warning("kpm: a log line")
            time.sleep(0.2)
            assert handler.stream is not terminal.stream  # it goes above the lines meanwhile
        assert sys.stderr is terminal.stream and handler.stream is terminal.stream
    finally:
        logging.getLogger("orchestration").removeHandler(handler)
    output = terminal.output()
    first = output.index("3.4.1.0: waiting for Kong to answer, 0s/240s")
    later = output.index("3.4.1.0: waiting for Kong to answer, 7s/240s")
    assert first < output.index(ERASE_LINE, first) < later  # taken back, drawn again
    assert output.count("==> 3.4.1.0 [simulated]: churn\n") == 1  # whole, once
    assert output.count("kpm: a log line\n") == 1
    ending = output[output.rindex("7s/240s") :]  # the lines taken back, the cursor shown again
    assert ERASE_LINE in ending and "\x1b[?25h" in ending


def test_on_a_terminal_every_line_fits_its_width(terminal: Pty, fast: None) -> None:
    with progress.Board(terminal.stream) as board:
        line = progress.Line("3.4.1.0-a-plugin-with-a-long-name-reload", Clock())
        board.add(line)
        line.stage("building or reusing the a-plugin-with-a-long-name plugin's image", 600)
        time.sleep(0.2)
    rows = [row for row in _rows(terminal.output()) if row.startswith("3.4.1.0-")]
    assert rows and all(len(row) <= 60 for row in rows), rows
    assert rows[0].endswith("…")  # cut, not wrapped


def test_on_a_pipe_plain_lines_at_the_interval_with_no_control_characters(fast: None) -> None:
    reader, writer = os.pipe()
    with os.fdopen(writer, "w", encoding="utf-8") as stream, progress.Board(stream) as board:
        assert not board.live
        line = progress.Line("3.4.1.0", Clock())
        board.add(line)
        line.stage("waiting for Kong to answer", 240)
        time.sleep(0.2)
    with os.fdopen(reader, "rb") as pipe:
        output = pipe.read()
    assert b"\x1b" not in output and b"\r" not in output
    lines = output.decode().splitlines()
    assert len(lines) >= 2
    assert set(lines) == {"kpm: 3.4.1.0: waiting for Kong to answer, 0s/240s"}


def test_a_failing_live_display_goes_on_as_plain_lines_and_never_raises(
    terminal: Pty, fast: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stderr", terminal.stream)

    def broken(_texts: list[str]) -> object:
        raise RuntimeError("cannot draw")

    with progress.Board(terminal.stream) as board:
        line = progress.Line("3.4.1.0", Clock())
        board.add(line)
        monkeypatch.setattr(progress.Board, "_renderable", staticmethod(broken))
        time.sleep(0.3)
        assert not board.live
        assert sys.stderr is terminal.stream  # given back at once
    output = terminal.output()
    assert "the live progress display failed (RuntimeError('cannot draw'))" in output
    assert "kpm: 3.4.1.0: starting, 0s\n" in output.replace("\r\n", "\n")


@pytest.fixture
def nowhere() -> Iterator[TextIO]:
    with Path(os.devnull).open("w", encoding="utf-8") as stream:
        yield stream


def test_a_line_that_cannot_be_read_says_so_and_the_others_go_on(
    fast: None, nowhere: TextIO
) -> None:
    read: list[LogSignals] = []

    def log_that_breaks() -> LogSignals:  # read once as the load starts, then broken
        if read:
            raise ValueError("half a line")
        read.append(NOTHING)
        return NOTHING

    board = progress.Board(nowhere, live=False)
    broken, fine = progress.Line("3.4.0.0", Clock()), progress.Line("3.4.1.0", Clock())
    board.add(broken)
    board.add(fine)
    broken.load(Path("/nonexistent"), 10, None, log_that_breaks, own_counts=True)
    assert board.texts() == [
        "3.4.0.0: (its progress cannot be read: ValueError('half a line'))",
        "3.4.1.0: starting, 0s",
    ]


def test_showing_puts_a_line_on_the_open_display_until_the_block_is_left(
    fast: None, nowhere: TextIO
) -> None:
    line = progress.Line("3.4.1.0", Clock())
    with progress.showing(line):  # no display open: nothing to show it on, nothing fails
        pass
    with progress.shown(nowhere) as board:
        assert board is not None
        with progress.showing(line):
            assert board.texts() == ["3.4.1.0: starting, 0s"]
        assert board.texts() == []
    with progress.shown(sys.stderr, enabled=False) as nothing:
        assert nothing is None


# --- the CLI on a terminal, with Docker -------------------------------------------------------


@pytest.fixture
def results(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "results"
    yield folder
    _remove_leftovers(folder)  # only does anything when a test already failed


def _cli(results: Path, requests: int) -> list[str]:
    return [sys.executable, "-m", "orchestration", "run", "3.4.1.0", "--sim",
            "--requests", str(requests), "--results", str(results)]  # fmt: skip


def _rows_written(results: Path) -> list[dict[str, object]]:
    (folder,) = [p for p in results.iterdir() if p.is_dir() and not p.is_symlink()]
    rows: list[dict[str, object]] = json.loads((folder / "results.json").read_text())["versions"]
    return rows


@pytest.mark.docker
def test_a_run_on_a_terminal_shows_its_live_line_in_place_and_ends_with_the_table(
    results: Path,
) -> None:
    terminal = Terminal(_cli(results, 3000), cwd=REPO, term="xterm-256color", columns=100)
    try:
        code = terminal.finish()
    finally:
        terminal.close()
    screen = terminal.screen
    assert code == 0, screen
    live = [row for row in _rows(screen) if row.startswith("3.4.1.0: ")]
    assert any("/3000 requests" in row and "New()/request" in row for row in live), live
    assert any(re.fullmatch(r"3\.4\.1\.0: [a-zA-Z' -]+, \d+s(/\d+s)?", row) for row in live), live
    assert ERASE_LINE in screen
    assert all(len(row) <= 100 for row in live), live
    after_the_lines = screen[screen.rindex(ERASE_LINE) :]
    assert "| 3.4.1.0 " in after_the_lines and "Results: " in after_the_lines
    assert_nothing_left(results)


@pytest.mark.docker
@pytest.mark.parametrize("how", ["ctrl-c", "ctrl-c under nox", "closed"])
def test_stopping_a_run_during_the_live_display_keeps_its_row_and_leaves_nothing(
    results: Path, how: str
) -> None:
    command = _cli(results, 500000)
    if how == "ctrl-c under nox":
        command = nox_session(results, "kong-3.4.1.0", "--sim", "--requests", "500000")
    terminal = Terminal(command, cwd=REPO, term="xterm-256color", columns=100)
    try:
        terminal.wait_for("/500000 requests")  # the live line, counting
        if how.startswith("ctrl-c"):
            terminal.type_ctrl_c()
        else:
            terminal.hang_up()
        code = terminal.finish()
    finally:
        terminal.close()
    (row,) = _rows_written(results)
    assert row["status"] == "interrupted"
    if how.startswith("ctrl-c"):
        assert code == 130, terminal.screen
        after_the_lines = terminal.screen[terminal.screen.rindex("/500000 requests") :]
        assert "\x1b[?25h" in after_the_lines  # the cursor shown again
        after_the_lines = after_the_lines[after_the_lines.rindex(ERASE_LINE) :]  # taken back
        assert "| 3.4.1.0 " in after_the_lines  # then the table
        assert "interrupted by SIGINT (Ctrl-C)" in after_the_lines
    else:
        assert code == 129
    assert_nothing_left(results)
