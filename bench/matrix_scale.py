"""Benchmark 2: the default matrix one version after another against `--parallel K`, with --sim.

Sides, interleaved: `python -m orchestration matrix --sim` (pipelined: the next version comes up
while the previous goes down), the same from the last commit before pipelining (`UNPIPELINED`, a
`git archive` of it in a scratch folder: one version fully after another), and this checkout with
`--parallel 2` and `--parallel 3`. Each run's results.json is kept, to check that every side reaches
the same verdicts and close New()-per-request values.

Why per-request values may differ at all: on kong-sim the churn rate of an affected version depends
on how requests from the 50 users interleave across Kong's 4 workers, which depends on CPU
contention; a stable version reads ~0 whatever the timing. The tolerance below covers that.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import REPO_ROOT, Samples, Section, harness_env, interleave, ratio, run

PARALLEL = (2, 3)
UNPIPELINED = "199d58c"  # the last commit whose sequential matrix ran one version fully at a time
PER_REQUEST_TOLERANCE = 0.25  # absolute New()/request; churn reads ~1.4 on kong-sim, stable ~0


class MatrixRun:
    """One way of running the matrix; remembers each run's verdicts and per-request values."""

    def __init__(self, results_root: Path, parallel: int, checkout: Path = REPO_ROOT) -> None:
        self.results_root = results_root
        self.parallel = parallel
        self.checkout = checkout
        self.outcomes: list[dict[str, tuple[str, float]]] = []

    def command(self) -> list[str]:
        extra = ["--parallel", str(self.parallel)] if self.parallel > 1 else []
        return [sys.executable, "-m", "orchestration", "matrix", "--sim", *extra]

    def __call__(self) -> float:
        started = time.perf_counter()
        env = harness_env(self.results_root) | {"PYTHONPATH": str(self.checkout)}
        run(self.command(), cwd=self.checkout, env=env)
        elapsed = time.perf_counter() - started
        results = json.loads((self.results_root / "latest" / "results.json").read_text())
        self.outcomes.append(
            {
                row["version"]: (row["verdict"], float(row["new_calls_per_request"] or 0.0))
                for row in results["versions"]
            }
        )
        return elapsed


def benchmark(repetitions: int) -> Section:
    with tempfile.TemporaryDirectory(prefix="kpm-bench-matrix-") as scratch:
        base = _unpipelined_checkout(Path(scratch) / "unpipelined")
        runs = {1: MatrixRun(Path(scratch) / "sequential", 1)}
        runs |= {0: MatrixRun(Path(scratch) / "sequential-unpipelined", 1, base)}
        runs |= {k: MatrixRun(Path(scratch) / f"parallel-{k}", k) for k in PARALLEL}
        warm_up_s = runs[1]()  # builds every missing image; not part of the ratio
        sides: dict[str, Callable[[], float]] = {_side_name(k): side for k, side in runs.items()}
        samples = interleave(sides, repetitions)
    return _section(samples, runs, warm_up_s, repetitions)


def _side_name(parallel: int) -> str:
    return {0: UNPIPELINED_SIDE, 1: "sequential"}.get(parallel, f"--parallel {parallel}")


UNPIPELINED_SIDE = f"sequential, unpipelined ({UNPIPELINED})"


def _unpipelined_checkout(folder: Path) -> Path:
    """The files of commit `UNPIPELINED`, in `folder`: today's sequential matrix before it."""
    folder.mkdir(parents=True)
    archive = folder / "source.tar"
    run(["git", "archive", "--output", str(archive), UNPIPELINED])
    run(["tar", "-xf", str(archive), "-C", str(folder)])
    return folder


def _agreement(runs: dict[int, MatrixRun]) -> tuple[bool, float]:
    """Whether every run gave the same verdicts, and the largest per-request spread of a version."""
    outcomes = [outcome for side in runs.values() for outcome in side.outcomes]
    versions = outcomes[0].keys()
    same_verdicts = all(
        {outcome[v][0] for outcome in outcomes} == {outcomes[0][v][0]} for v in versions
    )
    spread = max(max(o[v][1] for o in outcomes) - min(o[v][1] for o in outcomes) for v in versions)
    return same_verdicts, spread


def _section(
    samples: dict[str, Samples], runs: dict[int, MatrixRun], warm_up_s: float, repetitions: int
) -> Section:
    sequential, unpipelined = samples["sequential"], samples[UNPIPELINED_SIDE]
    same_verdicts, spread = _agreement(runs)
    verdicts = ", ".join(f"{v} {verdict}" for v, (verdict, _) in runs[1].outcomes[0].items())
    pipelined = ratio(sequential, unpipelined)
    rows = [
        [
            "sequential (pipelined) / sequential unpipelined, time",
            f"**{pipelined:.2f}**",
            "<= 0.6",
        ],
        *[
            [f"speed-up, {name} vs sequential", f"**{ratio(sequential, s):.2f}x**", "> 1"]
            for name, s in samples.items()
            if name.startswith("--parallel")
        ],
        *[
            [f"median {s.name} (s), min-max", f"{s.median:.1f} ({s.spread()})", ""]
            for s in samples.values()
        ],
        ["verdicts identical in every run", "yes" if same_verdicts else "**NO**", "yes"],
        [
            "largest New()/request spread of one version",
            f"{spread:.3f}",
            f"<= {PER_REQUEST_TOLERANCE}",
        ],
    ]
    best = max(ratio(sequential, s) for name, s in samples.items() if name.startswith("--par"))
    agree = same_verdicts and spread <= PER_REQUEST_TOLERANCE
    return Section(
        title=f"2. Matrix scale (default matrix, {len(runs[1].outcomes[0])} versions, --sim)",
        headline=f"pipelined/unpipelined sequential = {pipelined:.2f} (goal <= 0.6); --parallel "
        f"best speed-up {best:.2f}x; results agree: {'yes' if agree else 'NO'}",
        goal_holds=agree and best > 1.0 and pipelined <= 0.6,
        headers=["measure", "value", "goal"],
        rows=rows,
        notes=[
            f"{repetitions} interleaved rounds; a sequential warm-up run (timed apart, builds "
            f"missing images) took {warm_up_s:.1f} s.",
            f"Verdicts: {verdicts}.",
            "Per-request tolerance: kong-sim's churn rate depends on how the 50 users' requests "
            "interleave over 4 workers, which CPU contention from parallel stacks changes; "
            "verdict thresholds are 0.5 (churn) and 0.01 (stable), far outside that spread.",
            "Pipelined (issue 13, goal 2): each version's images, compose up and readiness run "
            "while the previous version's stack goes down and its saved log is counted; its "
            "load waits until that stack is down, so no load shares the machine with another "
            "version's load or teardown. Each version's plugin dump is read from .cache/dumps by "
            "the image's ID (one `docker image inspect`, not a `docker run`); the unpipelined "
            "side, older, runs the dump every time. Registry images are pulled at once for the "
            "whole matrix (three at a time) on real runs; with --sim there is nothing to pull, "
            "and with cached images (every round here) nothing to build.",
        ],
    )
