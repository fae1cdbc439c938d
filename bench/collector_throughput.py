"""Benchmark 3: collector throughput against `grep -c`, and its peak memory on 1M vs 2M lines.

The log is generated: Kong's line formats (see docs/architecture.md) in the mix a churning
3.4.1.0 writes under load with 4 nginx workers. Per request either the churn storm (start, New(),
go-pdk `closed instance`, Kong's `[error] closed`, go-pdk `no plugin instance`, the `[warn]` twin,
start again, New(), access line) or a quiet reuse (New() only when an instance starts, access
line), with two plugin-server restarts (counter back to 1) and a little unrelated noise. Random
but seeded, so every run reads the same bytes.

Sides, interleaved: our collector (`collect_file`, all signals) in a fresh interpreter per run,
and `grep -c 'New() has been called'`. Both read the same file from the page cache (a warm-up pass
of each comes first). The collector's time is `collect_file` alone, timed inside the child (the
interpreter's start and imports are a fixed cost, shown apart); grep's is its whole process. Peak
memory is the child's peak RSS (VmHWM) and tracemalloc's peak.
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from bench.common import Samples, Section, interleave, ratio, run, timed
from orchestration.collect import _PluginPatterns, line_blocks

DEFAULT_LINES = 1_000_000
SEED = 20231121
PLUGIN = "example-plugin"
NOISE = (
    "{ts} [notice] {pid}#0: *{conn} [lua] init.lua:259 purge(): [DB cache] purging (local) "
    "cache, context: ngx.timer\n",
    '172.18.0.1 - - [21/Nov/2023:22:33:05 +0000] "GET /status HTTP/1.1" 200 1210 "-" '
    '"curl/7.88.1"\n',
    "{ts} [debug] {pid}#0: *{conn} [lua] globalpatches.lua:73 sleep(): executing a blocking "
    "'sleep' (0.001 seconds), context: init_worker_by_lua*\n",
)
HOST = 'client: 172.18.0.1, server: kong, request: "GET /hello HTTP/1.1", host: "127.0.0.1:8000"'
ACCESS = (
    '172.18.0.1 - - [21/Nov/2023:22:33:05 +0000] "GET /hello HTTP/1.1" 200 43 "-" '
    '"python/gevent-http-client-2.6.1"\n'
)
COLLECT_SNIPPET = """
import json, sys, time, tracemalloc
from pathlib import Path
from orchestration.collect import collect_file
path, trace = Path(sys.argv[1]), sys.argv[2] == "trace"
if trace:
    tracemalloc.start()
started = time.perf_counter()
signals = collect_file(path)
elapsed = time.perf_counter() - started
traced_peak = tracemalloc.get_traced_memory()[1] if trace else 0
status = Path("/proc/self/status").read_text().splitlines()
peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({"signals": signals.to_dict(), "seconds": elapsed,
                  "peak_rss_kb": peak_kb, "traced_peak_bytes": traced_peak}))
"""


def churn_log_lines(total_lines: int, seed: int = SEED) -> Iterator[str]:
    """Kong error-log and access lines of a churning plugin, `total_lines` of them."""
    rng = random.Random(seed)
    counter, seq, server_pid, written = 0, 0, 2350, 0
    restarts_at = {total_lines // 3, 2 * total_lines // 3}
    while written < total_lines:
        worker = rng.randrange(4)
        pid, conn = 2346 + worker, rng.randrange(100, 100_000)
        ts = f"2023/11/21 22:{33 + written // 1_000_000:02d}:{(written // 20_000) % 60:02d}"
        prefix = f"{ts} [debug] {pid}#0: *{conn} [kong]"
        relay = f"{ts} [info] 2346#0: *1 [{PLUGIN}:{server_pid}] {ts}"
        if restarts_at and written >= min(restarts_at):
            restarts_at.discard(min(restarts_at))
            server_pid += 7
            counter = 0
            group = [
                f"{ts} [notice] 2346#0: *1 [kong] process.lua:252 Starting {PLUGIN}, "
                "context: ngx.timer\n"
            ]
        elif rng.random() < 0.85:
            seq += 1
            counter += 2
            group = [
                f"{prefix} pb_rpc.lua:381 [{PLUGIN}] started plugin server: seq {seq}, "
                f"worker {worker}, instance id {seq}, {HOST}\n",
                f"{prefix} pb_rpc.lua:251 [{PLUGIN}] New() has been called {counter - 1} times, "
                f"{HOST}\n",
                f"{relay} closed instance {seq}, context: ngx.timer\n",
                f"{ts} [error] {pid}#0: *{conn} [kong] pb_rpc.lua:413 [{PLUGIN}] closed, {HOST}\n",
                f"{relay} no plugin instance {seq}, context: ngx.timer\n",
                f"{ts} [warn] {pid}#0: *{conn} [kong] pb_rpc.lua:417 [{PLUGIN}] closed, {HOST}\n",
                f"{prefix} pb_rpc.lua:381 [{PLUGIN}] started plugin server: seq {seq}, "
                f"worker {worker}, instance id {seq}, {HOST}\n",
                f"{prefix} pb_rpc.lua:251 [{PLUGIN}] New() has been called {counter} times, "
                f"{HOST}\n",
                ACCESS,
            ]
        elif rng.random() < 0.7:
            group = [ACCESS]
        else:
            template = NOISE[rng.randrange(len(NOISE))]
            group = [template.format(ts=ts, pid=pid, conn=conn)]
        yield from group[: total_lines - written]
        written += min(len(group), total_lines - written)


def write_log(path: Path, total_lines: int) -> Path:
    with path.open("w", encoding="ascii", buffering=1 << 20) as log:
        log.writelines(churn_log_lines(total_lines))
    return path


def collect_in_child(path: Path, *, trace: bool = False) -> dict[str, object]:
    """`collect_file` in a fresh interpreter (no state or memory shared with the benchmark)."""
    output = run([sys.executable, "-c", COLLECT_SNIPPET, str(path), "trace" if trace else "time"])
    result: dict[str, object] = json.loads(output)
    return result


def one_pass_seconds(path: Path, chunk_bytes: int = 64 * 1024) -> float:
    """The floor for any pure-Python scan: read the file and `bytes.count` one pattern, once."""
    started = time.perf_counter()
    with path.open("rb") as stream:
        while chunk := stream.read(chunk_bytes):
            chunk.count(b"\n")
    return time.perf_counter() - started


def scan_costs(path: Path, repetitions: int) -> dict[str, float]:
    """Seconds (best of `repetitions`) of each C-level scan the collector makes, alone, over the
    whole file in the collector's blocks (read once, kept in memory): where its time goes."""
    patterns = _PluginPatterns(PLUGIN)
    with path.open("rb") as stream:
        blocks = list(line_blocks(stream))
    scans: dict[str, Callable[[bytes], object]] = {
        "count line ends (`bytes.count(b'\\n')`)": lambda block: block.count(b"\n"),
        "count one long literal (`New() has been called `)": lambda block: block.count(
            b"New() has been called "
        ),
        "look for a short literal (`kpm-tap: ` in block)": lambda block: b"kpm-tap: " in block,
        "regex: NAME's relayed and counter lines (findall)": patterns.name_lines.findall,
        "regex: Kong's level-tagged lines (findall)": patterns.kong_line.findall,
    }
    return {name: _best_of(repetitions, scan, blocks) for name, scan in scans.items()}


def _best_of(repetitions: int, scan: Callable[[bytes], object], blocks: list[bytes]) -> float:
    best = math.inf
    for _ in range(repetitions):
        best = min(best, timed(lambda: [scan(block) for block in blocks]))
    return best


def grep_count(path: Path) -> int:
    completed = subprocess.run(
        ["grep", "-c", "New() has been called", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    return int(completed.stdout.strip() or 0)


def benchmark(repetitions: int, lines: int = DEFAULT_LINES) -> Section:
    with tempfile.TemporaryDirectory(prefix="kpm-bench-collect-") as scratch:
        small = write_log(Path(scratch) / "churn-1x.log", lines)
        large = write_log(Path(scratch) / "churn-2x.log", 2 * lines)
        first = collect_in_child(small)  # warm-up: page cache, .pyc files
        grep_lines = grep_count(small)
        whole_process: list[float] = []

        def collector() -> float:
            started = time.perf_counter()
            seconds = collect_in_child(small)["seconds"]
            whole_process.append(time.perf_counter() - started)
            assert isinstance(seconds, float)
            return seconds

        samples = interleave(
            {"collector": collector, "grep -c": lambda: timed(lambda: grep_count(small))},
            repetitions,
        )
        samples["collector, whole process"] = Samples("collector, whole process", whole_process)
        memory = {n: collect_in_child(path, trace=True) for n, path in ((1, small), (2, large))}
        floor_s = min(one_pass_seconds(small) for _ in range(repetitions))
        costs = scan_costs(small, repetitions)
        size_mb = small.stat().st_size / 1e6
    return _section(
        samples=samples,
        first=first,
        grep_lines=grep_lines,
        memory=memory,
        lines=lines,
        size_mb=size_mb,
        floor_s=floor_s,
        costs=costs,
        repetitions=repetitions,
    )


def _section(
    *,
    samples: dict[str, Samples],
    first: dict[str, object],
    grep_lines: int,
    memory: dict[int, dict[str, object]],
    lines: int,
    size_mb: float,
    floor_s: float,
    costs: dict[str, float],
    repetitions: int,
) -> Section:
    speed = ratio(samples["grep -c"], samples["collector"])  # time ratio, inverted: lines/s ratio
    signals = first["signals"]
    assert isinstance(signals, dict)

    def peak(n: int, key: str) -> float:
        value = memory[n][key]
        assert isinstance(value, int)
        return value / 1024 if key == "peak_rss_kb" else value / 1024 / 1024

    whole = ratio(samples["grep -c"], samples["collector, whole process"])
    rows = [
        ["collector lines/s / grep -c lines/s", f"**{speed:.2f}**", ">= 0.5"],
        ["the same, collector timed with interpreter start and imports", f"{whole:.2f}", ""],
        *[
            [
                f"{s.name}: median s (min-max), lines/s",
                f"{s.median:.2f} ({s.spread()}), {lines / s.median / 1e6:.1f} M",
                "",
            ]
            for s in samples.values()
        ],
        [
            "peak RSS, 1M vs 2M lines (MiB)",
            f"{peak(1, 'peak_rss_kb'):.1f} vs {peak(2, 'peak_rss_kb'):.1f}",
            "flat",
        ],
        [
            "tracemalloc peak, 1M vs 2M lines (MiB)",
            f"{peak(1, 'traced_peak_bytes'):.2f} vs {peak(2, 'traced_peak_bytes'):.2f}",
            "flat",
        ],
    ]
    grep_s = samples["grep -c"].median
    rows += [
        [
            f"one scan alone: {name}, s (x grep's whole run)",
            f"{seconds:.3f} ({seconds / grep_s:.1f}x)",
            "",
        ]
        for name, seconds in costs.items()
    ]
    flat = peak(2, "peak_rss_kb") <= peak(1, "peak_rss_kb") * 1.1 + 2
    return Section(
        title=f"3. Collector throughput ({lines:,} lines, {size_mb:.0f} MB)",
        headline=f"collector/grep lines per second = {speed:.2f} (goal >= 0.5); "
        f"peak memory {'flat' if flat else 'GROWS'} from 1M to 2M lines",
        goal_holds=speed >= 0.5 and flat,
        headers=["measure", "value", "goal"],
        rows=rows,
        notes=[
            f"{repetitions} interleaved rounds; each collector run is a fresh interpreter; the "
            "headline times `collect_file` inside it, the 'whole process' row from outside.",
            f"Both agree: grep counted {grep_lines} counter lines, the collector "
            f"{signals['counter_lines']} (New() total {signals['new_calls_total']}, "
            f"instance starts {signals['instance_starts']}, closes {signals['instance_closes']}, "
            f"no-instance {signals['no_instance_errors']}, rpc closed "
            f"{signals['rpc_closed_errors']}, server starts {signals['plugin_server_starts']}).",
            f"Why 0.5 does not hold in pure Python: reading the file and counting ONE byte "
            f"pattern with C-level `bytes.count` takes {floor_s:.3f} s, "
            f"{floor_s / grep_s:.1f}x grep's whole run, and 0.5 allows 2x. The 'one scan alone' "
            "rows are the collector's passes, each timed by itself: counting the line ends alone "
            "(the `lines` signal; CPython counts one byte without SIMD) is about as slow as grep's "
            "whole run, and the two regex scans (NAME's relayed and counter lines; Kong's "
            "level-tagged lines, which `[` leads, so the engine tries every `[`) cost several "
            "greps each. On this log 87% of the lines carry a signal (the churn storm), so there "
            "is no block a pre-check could skip; a pre-check by `bytes.count` costs as much as "
            "the scan it would save (a short literal is slow to search, see the `kpm-tap: ` "
            "row, a search the collector now skips when NAME relays no plain line).",
            "Native engines, tried while writing this (same blocks, same machine, one run each, "
            "not in this table): Hyperscan (`hyperscan` 0.9.1) reporting every match of five "
            "literals to a Python callback that only counts took 0.24 s, "
            "`ahocorasick_rs` 1.0.3's `find_matches_as_indexes` 0.37 s (870,000 matches): the "
            "Python call or tuple per match costs more than the search, so neither reaches grep "
            "while the log is this dense; and neither captures groups, so the counter values, "
            "PIDs and connections the pairing needs would be read again in Python at each "
            "match. Neither was added. Splitting the file over 2 "
            "processes (byte ranges, counts only): 0.41-0.69 s against 0.53 s, no gain on 2 "
            "shared cores. What would reach 0.5: one compiled pass that classifies each line and "
            "returns only the counts (a small C or Rust extension of our own).",
        ],
    )
