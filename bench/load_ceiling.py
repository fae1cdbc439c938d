"""Benchmark 4: how many requests per second each load generator gets through, same target.

One kong-sim 3.6.0.0 stack (stable: no churn storm in the way) stays up for the whole benchmark.
Sides, interleaved, each sending `REQUESTS` requests with 50 concurrent users:
- ours: `orchestration.load.HeadlessLocust` with locustfiles/hello.py (exact count, header
  check), as the harness runs it, with 1 and with 2 Locust processes (`--processes 2`);
- ours with the live display: the same 1-process load while `orchestration.progress` redraws the
  load's line (Locust's stats CSV read, rich's rendering) as on a terminal, drawn to /dev/null;
- bare: bench/bare_locustfile.py, a FastHttpUser with no bookkeeping, 1 and 2 processes;
- hey: `hey -n REQUESTS -c 50 -o csv`.
Requests/s of Locust sides come from Locust's own final JSON (first to last request, so start-up is
excluded); hey's from its per-request CSV (first start to last end). Ratios are of medians.
"""

from __future__ import annotations

import csv
import io
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from bench.common import Samples, Section, interleave, ratio, run, sim_stack
from orchestration import load, progress
from orchestration.collect import LogSignals

VERSION = "3.6.0.0"
REQUESTS = 5000
USERS = 50
BARE_LOCUSTFILE = Path(__file__).with_name("bare_locustfile.py")
RUN_TIME_BOUND_S = 120


def ours(url: str, out_dir: Path, processes: int) -> float:
    locust = load.HeadlessLocust(
        requests=REQUESTS,
        users=USERS,
        spawn_rate=USERS,
        out_dir=out_dir,
        timeout_s=RUN_TIME_BOUND_S,
        processes=processes,
    )
    with locust:
        return _rate(locust.run(url))


def ours_shown(url: str, out_dir: Path) -> float:
    """`ours` with one process while the live display draws the load's line, as a run does on
    a terminal 100 columns wide (its log counts stand still here: the harness counts the log
    whether or not anything shows it)."""
    log = LogSignals(0, 0, 0, 0, 0, 0, 0, 0, 0)
    with Path(os.devnull).open("w", encoding="utf-8") as nowhere:
        console = Console(file=nowhere, force_terminal=True, force_interactive=True, width=100)
        with progress.Board(nowhere, live=True, console=console) as board:
            line = progress.Line(VERSION)
            board.add(line)
            line.load(out_dir, REQUESTS, None, lambda: log, own_counts=True)
            return ours(url, out_dir, 1)


def bare(url: str, out_dir: Path, processes: int) -> float:
    out_dir = load.prepare_out_dir(out_dir)
    command = [
        *[sys.executable, "-m", "locust", "--host", url],
        *load.locust_options(out_dir, BARE_LOCUSTFILE, USERS, USERS),
        *["--headless", "--only-summary", "--requests", str(REQUESTS)],
        *["--json-file", str(out_dir / load.STATS_JSON_PREFIX)],
        *["--run-time", f"{RUN_TIME_BOUND_S}s", *load.process_options(processes)],
    ]
    run(command, cwd=out_dir, timeout_s=RUN_TIME_BOUND_S + 30)
    return _rate(load.parse_stats_json(out_dir / load.STATS_JSON))


def _rate(result: load.LoadResult) -> float:
    """A load of REQUESTS requests has a rate; none means Locust counted nothing."""
    if result.rps is None:
        raise RuntimeError(f"Locust counted no requests to rate: {result}")
    return result.rps


def hey(url: str) -> float:
    output = run(["hey", "-n", str(REQUESTS), "-c", str(USERS), "-o", "csv", url])
    rows = list(csv.DictReader(io.StringIO(output)))
    starts = [float(row["offset"]) for row in rows]
    ends = [float(row["offset"]) + float(row["response-time"]) for row in rows]
    return len(rows) / (max(ends) - min(starts))


def benchmark(repetitions: int) -> Section:
    with tempfile.TemporaryDirectory(prefix="kpm-bench-load-") as scratch:
        work = Path(scratch)
        with sim_stack(VERSION, work) as stack:
            url = stack.proxy_url
            hello = f"{url}/hello"
            sides: dict[str, Callable[[], float]] = {
                "ours, 1 process": lambda: ours(url, work / "ours1", 1),
                "ours, 1 process, live display": lambda: ours_shown(url, work / "shown1"),
                "bare Locust, 1 process": lambda: bare(url, work / "bare1", 1),
                "hey": lambda: hey(hello),
                "ours, 2 processes": lambda: ours(url, work / "ours2", 2),
                "bare Locust, 2 processes": lambda: bare(url, work / "bare2", 2),
            }
            for side in sides.values():  # warm-up: kong-sim's instances, .pyc files, page cache
                side()
            samples = interleave(sides, repetitions)
    return _section(samples, repetitions)


def _section(samples: dict[str, Samples], repetitions: int) -> Section:
    ours1, bare1 = samples["ours, 1 process"], samples["bare Locust, 1 process"]
    shown1 = samples["ours, 1 process, live display"]
    ours2, bare2 = samples["ours, 2 processes"], samples["bare Locust, 2 processes"]
    cost = 1 - ratio(ours1, bare1)
    rows = [
        ["ours / bare Locust (1 process)", f"**{ratio(ours1, bare1):.2f}**", ">= 0.90"],
        ["ours / bare Locust (2 processes)", f"{ratio(ours2, bare2):.2f}", ">= 0.90"],
        ["ours with the live display / bare Locust", f"{ratio(shown1, bare1):.2f}", ">= 0.90"],
        ["ours with the live display / ours", f"{ratio(shown1, ours1):.2f}", "1.00 within spread"],
        ["ours / hey (1 process)", f"{ratio(ours1, samples['hey']):.2f}", ""],
        ["ours 2 processes / ours 1 process", f"{ratio(ours2, ours1):.2f}", ""],
        ["bare 2 processes / bare 1 process", f"{ratio(bare2, bare1):.2f}", ""],
        *[
            [f"median req/s, {s.name} (min-max)", f"{s.median:.0f} ({s.spread()})", ""]
            for s in samples.values()
        ],
    ]
    return Section(
        title=f"4. Load ceiling (kong-sim {VERSION}, {REQUESTS} requests, {USERS} users)",
        headline=f"our counting costs {cost:.0%} of bare Locust's req/s (goal < 10%)",
        goal_holds=cost < 0.10,
        headers=["measure", "value", "goal"],
        rows=rows,
        notes=[
            f"{repetitions} interleaved rounds after one warm-up round; "
            f"Python {sys.version.split()[0]}.",
            "Both Locust sides stop on Locust's own stats; ours stops at exactly "
            f"{REQUESTS}, the bare file a few dozen later (it quits on a 50 ms poll).",
            "The live display side is the 1-process load while orchestration.progress redraws "
            "its line (Locust's stats CSV read, rich's rendering) twice a second, as a run does "
            "on a terminal: its cost is `ours with the live display / ours`, 1.00 within spread.",
        ],
    )
