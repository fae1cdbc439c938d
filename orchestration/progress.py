"""Live progress of a run: one line per running version, updated in place on a terminal.

Stages report to the display the way they report to logging: a `VersionWorld` holds a `Line`
and says what it waits on (`stage`), or which load it runs (`load`); the line reads the live
numbers itself at each refresh, from files and counts the run keeps anyway:

- requests done, failures and req/s from Locust's own stats CSV, which Locust rewrites once a
  second in the load's folder (never its console text);
- the live instance count and New() calls per request so far from Kong's log, as the world's
  log follower counts it (`LogCounts`).

Where the lines go (`shown`): on an interactive terminal a `rich` live display, updated in place,
with every other line the run prints (the `kpm:` log lines, the verdict lines) printed above it;
anywhere else (a pipe, a file, CI, a dumb terminal) the same lines as plain text every
`PLAIN_EVERY_S` seconds, with no control characters. The display only ever reads: a failure in
it is said once and the display goes on as plain lines, never raising into the run. Leaving
`shown`, however it is left (Ctrl-C included), stops it and leaves the terminal as it was.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from orchestration.collect import LogSignals
from orchestration.load import STATS_CSV

PLAIN_EVERY_S = 10.0  # how often plain lines are written: often enough to see a run is alive
LIVE_EVERY_S = 0.5  # how often the terminal's lines are redrawn
PLAIN_PREFIX = "kpm: "  # as the log's progress lines


@dataclass(frozen=True)
class _Load:
    """A running load: where Locust writes its stats, and what it was asked for."""

    out_dir: Path
    requests: int  # 0: time-bound
    for_s: float | None
    started: float
    log: Callable[[], LogSignals]
    own_counts: bool  # the plugin counts itself (its counter lines); else kpm-tap's counts
    before: LogSignals


@dataclass(frozen=True)
class _LoadFigures:
    """Locust's figures at its last stats write."""

    requests: int
    failures: int
    rps: float | None


class Line:
    """One running version's line: what it waits on and since when, or its load's live numbers.

    The world sets it from its own thread; the display reads it from another (`text`).
    """

    def __init__(self, label: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.label = label
        self._clock = clock
        self._what = "starting"
        self._since = clock()
        self._limit_s: float | None = None
        self._load: _Load | None = None
        self._figures = _LoadFigures(0, 0, None)

    def stage(self, what: str, limit_s: float | None = None) -> None:
        """The version now waits on `what` (for at most `limit_s`, if it says)."""
        self._what, self._since, self._limit_s, self._load = what, self._clock(), limit_s, None

    def load(
        self,
        out_dir: Path,
        requests: int,
        for_s: float | None,
        log: Callable[[], LogSignals],
        own_counts: bool,
    ) -> None:
        """A load starts: `requests` requests (0: for `for_s` seconds), Locust's stats written to
        `out_dir`, Kong's log counted by `log`."""
        self._figures = _LoadFigures(0, 0, None)
        self._load = _Load(out_dir, requests, for_s, self._clock(), log, own_counts, log())

    def text(self) -> str:
        """The line as it reads now."""
        load = self._load
        if load is None:
            limit = f"/{self._limit_s:.0f}s" if self._limit_s else ""
            return f"{self.label}: {self._what}, {self._clock() - self._since:.0f}s{limit}"
        return f"{self.label}: " + ", ".join(self._load_parts(load))

    def _load_parts(self, load: _Load) -> list[str]:
        figures = self._figures = _read_figures(load.out_dir) or self._figures
        if load.requests:
            amount = f"{figures.requests}/{load.requests} requests"
        else:
            amount = f"{self._clock() - load.started:.0f}s/{load.for_s or 0:.0f}s"
        rate = "- req/s" if figures.rps is None else f"{figures.rps:.0f} req/s"
        return [amount, rate, f"{figures.failures} failed", *_log_parts(load)]


def _read_figures(out_dir: Path) -> _LoadFigures | None:
    """The "Aggregated" row of Locust's last stats write (the CSV it rewrites once a second);
    None before its first, or while it rewrites the file. The run's own figures come from
    Locust's final JSON (load.py): these only show how far it is."""
    try:
        with (out_dir / STATS_CSV).open(newline="", encoding="utf-8") as stats:
            row = next(r for r in csv.DictReader(stats) if r.get("Name") == "Aggregated")
        requests, rps = int(row["Request Count"]), float(row["Requests/s"])
        return _LoadFigures(
            requests, int(row["Failure Count"]), rps if requests and rps > 0 else None
        )
    except (OSError, StopIteration, KeyError, TypeError, ValueError):
        return None


def _log_parts(load: _Load) -> list[str]:
    """The live instance count, and New() calls per request served since the load began."""
    now = load.log()
    if load.own_counts:
        live = now.instance_starts - now.instance_closes
        new_calls = now.new_calls_total - load.before.new_calls_total
        served = now.counter_lines - load.before.counter_lines
    else:
        live = now.tap_instance_starts - now.tap_instance_closes
        new_calls = now.tap_instance_starts - load.before.tap_instance_starts
        served = now.tap_ran_on - load.before.tap_ran_on
    per_request = f"{new_calls / served:.3f}" if served > 0 else "-"
    return [f"{live} instances", f"New()/request {per_request}"]


def _text_of(line: Line) -> str:
    """The line's text; one that cannot be read (a file half-written, a bug) says so."""
    try:
        return line.text()
    except Exception as error:  # the display never stops the run
        return f"{line.label}: (its progress cannot be read: {error!r})"


class Board:
    """The lines of the running versions, drawn on `stream` while it is entered.

    `live`: redraw them in place (a `rich` live display) every `LIVE_EVERY_S`; otherwise write
    them as plain lines every `every_s` (default `PLAIN_EVERY_S`). `console` replaces the one
    made for `stream` (the benchmark draws to /dev/null as a terminal would)."""

    def __init__(
        self,
        stream: TextIO,
        *,
        live: bool | None = None,
        every_s: float | None = None,
        console: Console | None = None,
    ) -> None:
        self._stream = stream
        self._console = console or Console(file=stream, highlight=False, emoji=False)
        self.live = self._console.is_interactive if live is None else live
        self._every_s = LIVE_EVERY_S if self.live else every_s or PLAIN_EVERY_S
        self._lines: list[Line] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._live: Live | None = None
        self._restore: list[Callable[[], None]] = []

    def add(self, line: Line) -> None:
        with self._lock:
            self._lines.append(line)

    def remove(self, line: Line) -> None:
        with self._lock:
            if line in self._lines:
                self._lines.remove(line)

    def texts(self) -> list[str]:
        """Every line as it reads now."""
        with self._lock:
            lines = list(self._lines)
        return [_text_of(line) for line in lines]

    def __enter__(self) -> Board:
        if self.live:
            try:
                self._start_live()
            except Exception as error:  # the display never stops the run
                self._degrade(error)
        self._ticker = threading.Thread(target=self._tick, name="kpm-progress", daemon=True)
        self._ticker.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        self._stop_live()

    # --- drawing --------------------------------------------------------------------------

    def _tick(self) -> None:
        while not self._stop.wait(self._every_s):
            try:
                self._draw()
            except Exception as error:  # the display never stops the run
                self._degrade(error)

    def _draw(self) -> None:
        texts = self.texts()
        if self._live is not None:
            self._follow_the_terminals_size()
            self._live.update(self._renderable(texts), refresh=True)
        elif texts:
            self._stream.write("".join(f"{PLAIN_PREFIX}{text}\n" for text in texts))
            self._stream.flush()

    def _follow_the_terminals_size(self) -> None:
        """rich measures the terminal on stdin, stdout or stderr, whichever answers first; the
        lines go to `stream`, so its size is the one that counts (and it may change)."""
        with contextlib.suppress(OSError, ValueError, AttributeError):
            self._console.size = os.get_terminal_size(self._stream.fileno())

    @staticmethod
    def _renderable(texts: list[str]) -> Group:
        # One terminal row each: a line too long for the terminal is cut, never wrapped.
        return Group(*(Text(text, no_wrap=True, overflow="ellipsis") for text in texts))

    def _start_live(self) -> None:
        self._live = Live(
            self._renderable([]),
            console=self._console,
            auto_refresh=False,  # our ticker refreshes, so a failure in it is ours to catch
            redirect_stdout=False,
            redirect_stderr=False,
            transient=True,  # the table printed next says how it ended
        )
        self._live.start()
        self._print_above_the_lines()

    def _stop_live(self) -> None:
        live, self._live = self._live, None
        for restore in reversed(self._restore):
            restore()
        self._restore.clear()
        if live is not None:
            with contextlib.suppress(Exception):
                live.stop()

    def _degrade(self, error: BaseException) -> None:
        """Say once what failed, and go on with plain lines."""
        self._stop_live()
        self.live, self._every_s = False, PLAIN_EVERY_S
        with contextlib.suppress(Exception):
            self._stream.write(
                f"{PLAIN_PREFIX}the live progress display failed ({error!r}); plain progress "
                f"lines every {PLAIN_EVERY_S:.0f}s from now on\n"
            )

    def _print_above_the_lines(self) -> None:
        """Send what the run writes to the terminal (stderr, the log's handlers, stdout when it
        is the same terminal) above the live lines, so neither overwrites the other."""
        above = _Above(self, self._stream)
        for name in ("stderr", "stdout"):
            stream = getattr(sys, name)
            if stream is self._stream or (name == "stdout" and _same_terminal(stream)):
                setattr(sys, name, above)
                self._restore.append(partial(setattr, sys, name, stream))
        for handler in logging.getLogger("orchestration").handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is self._stream:
                handler.setStream(above)
                self._restore.append(partial(handler.setStream, self._stream))
        self._restore.append(above.flush_rest)

    def print_above(self, text: str) -> None:
        """Whole lines, printed above the live lines (as they are: the terminal wraps them)."""
        live = self._live
        if live is None:  # stopped meanwhile (another thread's write, or a failure)
            self._stream.write(text + "\n")
            return
        try:
            live.console.print(Text(text), soft_wrap=True)
        except Exception as error:  # the display never stops the run
            self._stream.write(text + "\n")
            self._degrade(error)


class _Above:
    """A text stream whose whole lines the board prints above its live lines."""

    def __init__(self, board: Board, stream: TextIO) -> None:
        self._board = board
        self._stream = stream
        self._partial = ""

    def write(self, text: str) -> int:
        *lines, self._partial = (self._partial + text).split("\n")
        if lines:
            self._board.print_above("\n".join(lines))
        return len(text)

    def flush(self) -> None:
        """A partial line waits for its end: printed alone it would break the live lines."""

    def flush_rest(self) -> None:
        if self._partial:
            self._stream.write(self._partial)
            self._partial = ""

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding: the terminal's
        return getattr(self._stream, name)


def _same_terminal(stream: Any) -> bool:
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return bool(stream.isatty()) and os.ttyname(stream.fileno()) == os.ttyname(
            sys.stderr.fileno()
        )
    return False


_boards: list[Board] = []  # the open displays, innermost last (runs in tests nest)


@contextmanager
def shown(stream: TextIO, *, enabled: bool = True) -> Iterator[Board | None]:
    """The running versions' lines on `stream` (a terminal: in place; else plain lines) until
    the block is left; `enabled=False` shows nothing (the web UI session has its own display)."""
    if not enabled:
        yield None
        return
    with Board(stream) as board:
        _boards.append(board)
        try:
            yield board
        finally:
            _boards.remove(board)


@contextmanager
def showing(line: Line) -> Iterator[Line]:
    """`line` on the open display (if any) until the block is left."""
    board = _boards[-1] if _boards else None
    if board is not None:
        board.add(line)
    try:
        yield line
    finally:
        if board is not None:
            board.remove(line)
