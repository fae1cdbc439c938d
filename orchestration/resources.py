"""The plugin server's and Kong's memory and CPU, sampled about once a second while a version runs.

No tool is added to the Kong image: one `docker compose exec` runs a POSIX shell loop in the
container (Kong's images have /bin/sh; kong-sim carries busybox for the same loop) that prints,
once a second, every process's `/proc/PID/stat` line and its `VmRSS` from `/proc/PID/status`, then
`T`. This module reads that stream, tells the plugin server (its process name is the plugin's) from
Kong (every other process but the loop itself), and writes one row per second to `resources.csv`:

    t_s, server_pids, server_rss_kb, server_cpu_pct, kong_rss_kb, kong_cpu_pct, requests

`requests` is what the caller says was served by then (the phases' loads), so memory can be put
against work done. CPU is the ticks spent since the previous sample over the wall time between
them (100 ticks a second, Linux's USER_HZ on every architecture Kong ships for).

The summary: the server's peak RSS; and, for a run under load for at least a minute (`soak`), its
growth per 10,000 requests across the run's second half and `leak` when that growth is more than
`LEAK_KB_PER_10K` (a churning server whose dropped instances are collected levels off; one that
keeps them does not). A shorter run gets neither: its RSS is still the heap warming up.
"""

from __future__ import annotations

import csv
import itertools
import logging
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from orchestration.processes import signal_group

LOGGER = logging.getLogger(__name__)

TICKS_PER_SECOND = 100
COMM_LENGTH = 15  # the kernel keeps the first 15 bytes of a process name
LEAK_KB_PER_10K = 1024.0  # growth per 10,000 requests across the second half that is a leak
# Under load for at least this many seconds before a run is judged: a short run's RSS is still
# the heap warming up, which says nothing about a leak (`soak` runs long for this).
MIN_SAMPLES_FOR_LEAK = 60
STOP_WAIT_S = 5.0
CSV_FIELDS = (
    "t_s",
    "server_pids",
    "server_rss_kb",
    "server_cpu_pct",
    "kong_rss_kb",
    "kong_cpu_pct",
    "requests",
)

# Builtins only, but for `sleep`: runs in Kong's images and in kong-sim's busybox alike.
SAMPLER_SCRIPT = (
    "while :; do "
    'for d in /proc/[0-9]*; do read -r s < "$d/stat" 2>/dev/null || continue; r=0; '
    'while read -r k v u; do if [ "$k" = VmRSS: ]; then r=$v; break; fi; done < "$d/status"; '
    'echo "P $r $s"; done; echo T; sleep 1; done'
)
OWN_PROCESSES = frozenset({"sh", "sleep"})  # the loop itself


@dataclass(frozen=True)
class ProcessSample:
    pid: int
    comm: str
    ticks: int  # utime + stime
    rss_kb: int


def parse_process_line(line: str) -> ProcessSample | None:
    """`P <rss_kb> <the /proc/PID/stat line>`; None for anything else or a malformed line."""
    if not line.startswith("P "):
        return None
    try:
        rss_text, stat = line[2:].split(" ", 1)
        opening, closing = stat.index("("), stat.rindex(")")
        rest = stat[closing + 2 :].split()
        # After the name: state, ppid, ... utime and stime are stat's fields 14 and 15.
        return ProcessSample(
            pid=int(stat[:opening]),
            comm=stat[opening + 1 : closing],
            ticks=int(rest[11]) + int(rest[12]),
            rss_kb=int(rss_text),
        )
    except (ValueError, IndexError):
        return None


@dataclass(frozen=True)
class Row:
    t_s: float
    server_pids: str
    server_rss_kb: int
    server_cpu_pct: float | None  # None on the first sample: CPU needs two
    kong_rss_kb: int
    kong_cpu_pct: float | None
    requests: int


class Tally:
    """Turns the stream's samples into rows: one per `T`, CPU from the previous sample's ticks."""

    def __init__(self, plugin_name: str, requests_done: Callable[[], int]) -> None:
        self._server_comm = plugin_name[:COMM_LENGTH]
        self._requests_done = requests_done
        self._started = time.monotonic()
        self._tick: list[ProcessSample] = []
        self._previous: tuple[float, dict[int, int]] | None = None

    def feed(self, line: str) -> Row | None:
        if line.strip() == "T":
            return self._close_tick()
        sample = parse_process_line(line)
        if sample is not None and sample.comm not in OWN_PROCESSES:
            self._tick.append(sample)
        return None

    def _close_tick(self) -> Row:
        now, samples, self._tick = time.monotonic(), self._tick, []
        ticks = {sample.pid: sample.ticks for sample in samples}
        previous, self._previous = self._previous, (now, ticks)

        def cpu(group: Iterable[ProcessSample]) -> float | None:
            if previous is None:
                return None  # the first sample: CPU needs two
            elapsed = max(now - previous[0], 1e-3)
            spent = sum(s.ticks - previous[1].get(s.pid, s.ticks) for s in group)
            return round(100.0 * spent / TICKS_PER_SECOND / elapsed, 1)

        server = [s for s in samples if s.comm == self._server_comm]
        kong = [s for s in samples if s.comm != self._server_comm]
        return Row(
            t_s=round(now - self._started, 2),
            server_pids=" ".join(str(s.pid) for s in server),
            server_rss_kb=sum(s.rss_kb for s in server),
            server_cpu_pct=cpu(server),
            kong_rss_kb=sum(s.rss_kb for s in kong),
            kong_cpu_pct=cpu(kong),
            requests=self._requests_done(),
        )


class Sampler:
    """The sampling loop in the container, read into `path`; stop() ends it (also on errors)."""

    def __init__(
        self,
        command: list[str],
        path: Path,
        plugin_name: str,
        requests_done: Callable[[], int],
    ) -> None:
        self.path = path
        self.rows: list[Row] = []
        self._tally = Tally(plugin_name, requests_done)
        self._lock = threading.Lock()
        self._file = path.open("w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        self._writer.writerow(CSV_FIELDS)
        self._file.flush()
        try:
            self._process = subprocess.Popen(
                [*command, "sh", "-c", SAMPLER_SCRIPT],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                start_new_session=True,  # the run's Ctrl-C is ours to act on, not the sampler's
            )
        except OSError:
            self._file.close()
            raise
        self._thread = threading.Thread(target=self._read, name="kpm-resources", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        stream: IO[str] | None = self._process.stdout
        assert stream is not None
        for line in stream:
            row = self._tally.feed(line)
            if row is not None:
                with self._lock:
                    if self._file.closed:  # stop() gave up waiting for us
                        return
                    self.rows.append(row)
                    values = [getattr(row, name) for name in CSV_FIELDS]
                    self._writer.writerow(["" if value is None else value for value in values])
                    self._file.flush()

    def stop(self) -> list[Row]:
        # The whole group: `docker compose` runs as a child of `docker`, and holds the pipe.
        signal_group(self._process.pid, signal.SIGTERM)
        try:
            self._process.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            signal_group(self._process.pid, signal.SIGKILL)
            self._process.wait()
        self._thread.join(STOP_WAIT_S)
        if self._thread.is_alive():
            signal_group(self._process.pid, signal.SIGKILL)
        with self._lock:
            self._file.close()
        if not self.rows:
            LOGGER.warning(
                "no resource samples in %s: the container has no /bin/sh, or the sampler could "
                "not start there",
                self.path,
            )
        return self.rows


@dataclass(frozen=True)
class Summary:
    server_peak_rss_mb: float
    server_rss_growth_per_10k_mb: float | None
    leak: bool | None  # None: too few samples under load to tell


def summarize(rows: list[Row]) -> Summary | None:
    """Peak RSS, and for a run long enough to tell, growth per 10,000 requests and the leak flag.

    Growth is measured over the second half of the samples under load (the first half is the
    heap warming up); a run under load for less than `MIN_SAMPLES_FOR_LEAK` seconds gets
    neither figure: in seconds, a few MB of warm-up reads as a steep slope that means nothing.
    """
    if not rows:
        return None
    peak = round(max(row.server_rss_kb for row in rows) / 1024, 1)
    # Under load: the samples during which requests were served (an idle gap is not load).
    loaded = [row for before, row in itertools.pairwise(rows) if row.requests > before.requests]
    if len(loaded) < MIN_SAMPLES_FOR_LEAK:
        return Summary(server_peak_rss_mb=peak, server_rss_growth_per_10k_mb=None, leak=None)
    growth = _growth_per_10k_kb(loaded[len(loaded) // 2 :])
    return Summary(
        server_peak_rss_mb=peak,
        server_rss_growth_per_10k_mb=None if growth is None else round(growth / 1024, 2),
        leak=growth is not None and growth > LEAK_KB_PER_10K,
    )


def _growth_per_10k_kb(rows: list[Row]) -> float | None:
    """Least-squares slope of server RSS over requests served, in KB per 10,000 requests."""
    points = [(row.requests, row.server_rss_kb) for row in rows]
    if len(points) < 2 or points[-1][0] == points[0][0]:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return None
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread
    return slope * 10_000
