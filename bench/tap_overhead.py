"""Benchmark 6: what kpm-tap costs a plugin's requests: p95 and req/s with and without it.

Kong starts kpm-tap as the plugin server and the tap starts the real server behind it (relaying
every byte and decoding a copy), so every plugin-server call crosses one more unix socket. Four
kong-sim 3.6.0.0 stacks (stable: one instance per worker, no churn in the way) stay up for the
whole benchmark: the built-in `go` (ProtoBuf:1) and `python` (MsgPack:1) plugins, each with and
without the tap. Sides, interleaved: `hey -n REQUESTS -c USERS` against each stack's `/hello`;
p95 and req/s from hey's per-request CSV. Ratios are of medians, tap over no tap.
"""

from __future__ import annotations

import csv
import io
import statistics
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

from bench.common import Samples, Section, interleave, ratio, run
from orchestration.config import RunConfig
from orchestration.plugins import resolve_plugins
from orchestration.versions import target_for_version
from orchestration.world import VersionWorld, WorldOptions

VERSION = "3.6.0.0"
PLUGINS = ("go", "python")
REQUESTS = 3000
USERS = 50


def hey_figures(url: str) -> tuple[float, float]:
    """(p95 ms, req/s) of one `hey` run, from its per-request CSV."""
    output = run(["hey", "-n", str(REQUESTS), "-c", str(USERS), "-o", "csv", url])
    rows = list(csv.DictReader(io.StringIO(output)))
    times_ms = [float(row["response-time"]) * 1000 for row in rows]
    starts = [float(row["offset"]) for row in rows]
    ends = [float(row["offset"]) + float(row["response-time"]) for row in rows]
    p95 = statistics.quantiles(times_ms, n=20)[-1]
    return p95, len(rows) / (max(ends) - min(starts))


def benchmark(repetitions: int) -> Section:
    rps: dict[str, Samples] = {}
    with tempfile.TemporaryDirectory(prefix="kpm-bench-tap-") as scratch, ExitStack() as stacks:
        work = Path(scratch)
        sides: dict[str, Callable[[], float]] = {}
        for plugin in PLUGINS:
            (source,) = resolve_plugins((plugin,), Path(__file__).resolve().parents[1])
            for tap in (False, True):
                name = f"{plugin}, {'tap' if tap else 'no tap'}"
                config = replace(
                    RunConfig(
                        run_id=f"bench-tap-{plugin}-{tap}",
                        targets=(target_for_version(VERSION),),
                        results_root=work,
                        sim=True,
                    ),
                    tap=tap,
                )
                folder = work / name.replace(", ", "-").replace(" ", "-")
                folder.mkdir(parents=True)
                world = stacks.enter_context(
                    VersionWorld(
                        config.targets[0],
                        config,
                        folder,
                        options=WorldOptions(prestart_locust=False),
                        source=source,
                    )
                )
                world.ready()
                rps[name] = Samples(name)
                sides[name] = _side(f"{world.proxy_url}/hello", rps[name])
        for side in sides.values():  # warm-up: page cache, the servers' first requests
            side()
        for samples in rps.values():
            samples.values.clear()
        p95 = interleave(sides, repetitions)
    return _section(p95, rps, repetitions)


def _side(url: str, rps: Samples) -> Callable[[], float]:
    def measure() -> float:
        p95_ms, requests_per_s = hey_figures(url)
        rps.values.append(requests_per_s)
        return p95_ms

    return measure


def _section(p95: dict[str, Samples], rps: dict[str, Samples], repetitions: int) -> Section:
    rows = []
    costs = []
    for plugin in PLUGINS:
        plain, tapped = f"{plugin}, no tap", f"{plugin}, tap"
        p95_ratio, rps_ratio = ratio(p95[tapped], p95[plain]), ratio(rps[tapped], rps[plain])
        costs.append((plugin, p95_ratio, rps_ratio))
        rows += [
            [f"{plugin}: p95 tap / no tap", f"**{p95_ratio:.2f}**"],
            [f"{plugin}: req/s tap / no tap", f"**{rps_ratio:.2f}**"],
        ]
    for name, latency in p95.items():
        rows.append(
            [
                f"median p95 ms, req/s: {name} (min-max)",
                f"{latency.median:.1f} ({latency.spread()}), "
                f"{rps[name].median:.0f} ({rps[name].spread()})",
            ]
        )
    summary = "; ".join(
        f"{plugin}: p95 x{p95_ratio:.2f}, req/s x{rps_ratio:.2f}"
        for plugin, p95_ratio, rps_ratio in costs
    )
    return Section(
        title=f"6. kpm-tap's cost (kong-sim {VERSION}, hey -n {REQUESTS} -c {USERS})",
        headline=f"with the tap, {summary}",
        goal_holds=None,
        headers=["measure", "value"],
        rows=rows,
        notes=[
            f"{repetitions} interleaved rounds after one warm-up round; four stacks up at once.",
            "The tap is on whenever a plugin reports no count of its own, and with --tap.",
        ],
    )
