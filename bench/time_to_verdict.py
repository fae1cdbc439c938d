"""Benchmark 1: time to a verdict for one version, the harness against the manual recipe.

Harness: `python -m orchestration run 3.4.1.0 --sim`, exactly as `nox -s kong-3.4.1.0 -- --sim`
runs it; its verdict is on the screen when its `==> 3.4.1.0 ...: churn` line is written to stderr.
Recipe: the original report's steps, scripted, on the same compose.yaml, the same images
and the same Compose variables the harness wrote (its compose.env, with our own run label); its
verdict is on the screen once `logs | grep | tail` has printed, before its `down`:

    docker compose up -d                      (no --build: the image is cached, as for the harness)
    curl /hello until X-Example-Message shows  (the report's fixed wait, replaced by polling)
    hey -n 1000 -c 50 /hello
    docker compose logs kong | grep 'New() has been called' | tail -n 1
    docker compose down

A third side runs the recipe as typed in the report, `docker compose up --build -d`, to show what
the cached-build check costs. The sides are interleaved, cached images in all. The headline times
each side to its verdict line; time to exit (teardown, results files, the report page) is beside it.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.common import (
    COMMAND_TIMEOUT_S,
    REPO_ROOT,
    Samples,
    Section,
    harness_env,
    interleave,
    ratio,
    run,
    timed,
    without_kpm_variables,
)
from bench.trace_harness import STARTED_AT_VARIABLE

VERSION = "3.4.1.0"
HARNESS_COMMAND = (sys.executable, "-m", "orchestration", "run", VERSION, "--sim")
COMPOSE_FILE = REPO_ROOT / "images" / "compose.yaml"
HEADER = "X-Example-Message"
READY_POLL_S = 0.25
READY_ATTEMPTS = 480  # 2 minutes at most
_COUNTER = re.compile(rb"New\(\) has been called (\d+) times")
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ManualRecipe:
    """The report's recipe as a user scripts it, one Compose project per repetition."""

    def __init__(self, env_file: Path, *, build: bool) -> None:
        self.env_file = env_file
        self.build = build
        self.repetition = 0
        self.stage_seconds: dict[str, list[float]] = {}
        self.last_counter: int | None = None
        self.exit_seconds: list[float] = []

    def compose(self, project: str, *args: str) -> list[str]:
        return [
            *["docker", "compose", "--env-file", str(self.env_file)],
            *["-f", str(COMPOSE_FILE), "-p", project, *args],
        ]

    def __call__(self) -> float:
        self.repetition += 1
        project = f"kpm-bench-recipe-{'build-' if self.build else ''}{self.repetition}"
        started = time.perf_counter()
        try:
            up = ["up", "--build", "-d"] if self.build else ["up", "-d"]
            self._stage("compose up", lambda: run(self.compose(project, *up)))
            port = run(self.compose(project, "port", "kong", "8000")).strip().rpartition(":")[2]
            url = f"http://127.0.0.1:{port}/hello"
            self._stage("poll curl until the header shows", lambda: wait_for_header(url))
            self._stage("hey -n 1000 -c 50", lambda: run(["hey", "-n", "1000", "-c", "50", url]))
            self._stage("logs | grep | tail", lambda: self._read_counter(project))
            verdict_s = time.perf_counter() - started
        finally:
            self._stage("compose down", lambda: run(self.compose(project, "down")))
        self.exit_seconds.append(time.perf_counter() - started)
        return verdict_s

    def _stage(self, name: str, action: Callable[[], object]) -> None:
        self.stage_seconds.setdefault(name, []).append(timed(action))

    def _read_counter(self, project: str) -> None:
        logs = " ".join(self.compose(project, "logs", "kong"))
        line = subprocess.run(
            ["sh", "-c", f"{logs} | grep 'New() has been called' | tail -n 1"],
            capture_output=True,
            env=without_kpm_variables(),
            timeout=60,
            check=False,
        ).stdout
        found = _COUNTER.search(line)
        self.last_counter = int(found.group(1)) if found else None


def wait_for_header(url: str) -> None:
    """`curl -sI` in a loop, as a user would: until the plugin's header shows."""
    for _attempt in range(READY_ATTEMPTS):
        headers = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-D", "-", "--max-time", "2", url],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
        if HEADER.lower() in headers.lower():
            return
        time.sleep(READY_POLL_S)
    raise RuntimeError(f"{url} never showed {HEADER}")


class Harness:
    """The CLI as nox runs it: seconds to its verdict line; remembers New()/request and exits."""

    def __init__(self, results_root: Path) -> None:
        self.results_root = results_root
        self.per_request: list[float] = []
        self.exit_seconds: list[float] = []

    def __call__(self) -> float:
        started = time.perf_counter()
        verdict_at, stderr = run_until_verdict(HARNESS_COMMAND, harness_env(self.results_root))
        self.exit_seconds.append(time.perf_counter() - started)
        results = json.loads((self.results_root / "latest" / "results.json").read_text())
        row = results["versions"][0]
        if verdict_at is None or row["status"] != "ok":
            raise RuntimeError(f"the harness gave no verdict ({row['error']}):\n{stderr[-2000:]}")
        self.per_request.append(float(row["new_calls_per_request"]))
        return verdict_at - started

    def compose_env(self) -> Path:
        return self.results_root / "latest" / VERSION / "compose.env"


def run_until_verdict(command: Sequence[str], env: dict[str, str]) -> tuple[float | None, str]:
    """Run `command` to its end; the moment (perf_counter) its first `==> ` line came, and its
    stderr. Stdout (the table) is not read: the verdict line comes first, on stderr."""
    process = subprocess.Popen(
        list(command),
        cwd=REPO_ROOT,
        env={**without_kpm_variables(), **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    verdict_at, lines = None, []
    with process:
        for line in process.stderr:
            if verdict_at is None and line.startswith(b"==> "):
                verdict_at = time.perf_counter()
            lines.append(line.decode(errors="replace"))
        status = process.wait(timeout=COMMAND_TIMEOUT_S)
    if status != 0:
        raise RuntimeError(f"`{' '.join(command)}` exited {status}:\n{''.join(lines)[-2000:]}")
    return verdict_at, "".join(lines)


def recipe_env_file(harness_env_file: Path, target: Path) -> Path:
    """The harness's compose.env with our own run label, so our containers are told apart."""
    lines = [
        "KPM_RUN_ID=bench-recipe" if line.startswith("KPM_RUN_ID=") else line
        for line in harness_env_file.read_text().splitlines()
    ]
    target.write_text("\n".join(lines) + "\n")
    return target


def stage_breakdown(results_root: Path, repetitions: int) -> dict[str, float]:
    """Median seconds per harness stage over a few traced runs (outside the ratio), and the
    median moments (from the spawn) of the verdict line and the exit."""
    runs: list[dict[str, float]] = []
    for _ in range(repetitions):
        output = run(
            [sys.executable, "-m", "bench.trace_harness", "run", VERSION, "--sim"],
            env={**harness_env(results_root), STARTED_AT_VARIABLE: repr(time.time())},
        )
        traced = json.loads(output.strip().splitlines()[-1])
        moments = {f"at {name}": times[0] for name, times in traced["since_spawn"].items()}
        runs.append({**traced["stages"], **moments})
    return {stage: statistics.median(r.get(stage, 0.0) for r in runs) for stage in runs[0]}


def benchmark(repetitions: int) -> Section:
    with tempfile.TemporaryDirectory(prefix="kpm-bench-verdict-") as scratch:
        harness = Harness(Path(scratch) / "results")
        warm_up_s = timed(harness)  # builds any missing image; not part of the ratio
        harness.per_request.clear()
        harness.exit_seconds.clear()
        env_file = recipe_env_file(harness.compose_env(), Path(scratch) / "recipe.env")
        recipe = ManualRecipe(env_file, build=False)
        recipe_build = ManualRecipe(env_file, build=True)
        samples = interleave(
            {"harness": harness, "recipe": recipe, "recipe --build": recipe_build}, repetitions
        )
        stages = stage_breakdown(Path(scratch) / "traced", max(1, repetitions // 2))
    return _section(
        samples=samples,
        harness=harness,
        recipe=recipe,
        recipe_build=recipe_build,
        stages=stages,
        warm_up_s=warm_up_s,
        repetitions=repetitions,
    )


def _section(
    *,
    samples: dict[str, Samples],
    harness: Harness,
    recipe: ManualRecipe,
    recipe_build: ManualRecipe,
    stages: dict[str, float],
    warm_up_s: float,
    repetitions: int,
) -> Section:
    headline_ratio = ratio(samples["harness"], samples["recipe"])
    exits = {
        "harness": Samples("harness, to exit", harness.exit_seconds),
        "recipe": Samples("recipe, to exit (after its down)", recipe.exit_seconds),
    }
    rows = [
        ["harness / recipe (`up -d`), to the verdict line", f"**{headline_ratio:.2f}**", "<= 0.5"],
        [
            "harness / recipe as typed (`up --build -d`), to the verdict line",
            f"{ratio(samples['harness'], samples['recipe --build']):.2f}",
            "",
        ],
        [
            "harness / recipe (`up -d`), to exit",
            f"{ratio(exits['harness'], exits['recipe']):.2f}",
            "",
        ],
        *[
            [f"median {s.name} to the verdict (s), min-max", f"{s.median:.2f} ({s.spread()})", ""]
            for s in samples.values()
        ],
        *[
            [f"median {s.name} (s), min-max", f"{s.median:.2f} ({s.spread()})", ""]
            for s in exits.values()
        ],
    ]
    harness_stages = [f"{name} {seconds:.2f}" for name, seconds in stages.items()]
    recipe_stages = [
        f"{name} {statistics.median(values):.2f}" for name, values in recipe.stage_seconds.items()
    ]
    return Section(
        title=f"1. Time to verdict, one version ({VERSION} --sim)",
        headline=f"harness/recipe to the verdict line = {headline_ratio:.2f} (goal <= 0.5)",
        goal_holds=headline_ratio <= 0.5,
        headers=["measure", "value", "goal"],
        rows=rows,
        notes=[
            f"{repetitions} interleaved rounds (harness, recipe, recipe --build, then reversed); "
            f"warm-up run (timed apart, image builds if any): {warm_up_s:.1f} s.",
            "Harness stages, median seconds of traced runs (`python -m bench.trace_harness run "
            f"{VERSION} --sim`): " + "; ".join(harness_stages) + ".",
            "Recipe stages, median seconds: " + "; ".join(recipe_stages) + ".",
            "What the harness does beyond the recipe, and how it is paid for: Python start-up "
            "and imports (python-on-whales and pydantic are most of them); the pre-flight "
            "checks (`docker info`, `docker compose version` and, with --sim, the Go toolchain "
            "lookup, all at once, the toolchain lookup cached for the run); the image checks; "
            "one `compose ps` for both ports; Locust's own start, about 0.3 s, hidden: Locust "
            "is started first, imports itself while the stack comes up and is handed the URL "
            "once Kong is ready; Locust's HTML report and exit, hidden too: Locust says when "
            "its requests are done, and writes its reports while the stack goes down (its "
            "interpreter's teardown is skipped once they are closed). The verdict line is "
            "printed as soon as the log has caught up with the load (Locust's counts come on its "
            "done signal), before the stack goes down; the row, the table and the results files "
            "follow the teardown, and a row that reads otherwise than that line is printed again. "
            "In return the readiness "
            "probe polls every 0.02 s, and Kong's log is followed into kong.log and counted as "
            "it arrives, so nothing reads the whole log again (the recipe's "
            "`logs | grep | tail`).",
            f"Same answer on both sides: the harness read New()/request "
            f"{statistics.median(harness.per_request):.3f} (median); the recipe's last counter "
            f"line read {recipe.last_counter} New() calls in total after 1000 requests "
            f"(`up --build`: {recipe_build.last_counter}).",
        ],
    )
