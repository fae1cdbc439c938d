"""Shared helpers for the benchmarks: interleaved timing, medians and ratios, a kept-up sim stack.

Every benchmark compares two (or more) sides measured in the same run, interleaved A B A B ...,
because these machines are noisy: a slow minute hits both sides alike. The headline is always the
ratio of medians; absolute medians are supporting columns only.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from orchestration.config import new_run_id
from orchestration.contract import declarative_template
from orchestration.engine import Engine
from orchestration.plugins import default_plugin, prepared
from orchestration.sim import build_sim_images
from orchestration.stack import Stack, StackSpec, project_name_for

REPO_ROOT = Path(__file__).resolve().parent.parent
COMMAND_TIMEOUT_S = 600.0


@dataclass
class Samples:
    """Repeated measurements of one side, in the order they were taken."""

    name: str
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def spread(self) -> str:
        """min-max, so a reader sees how noisy the median is."""
        return f"{min(self.values):.2f}-{max(self.values):.2f}"


def interleave(sides: Mapping[str, Callable[[], float]], repetitions: int) -> dict[str, Samples]:
    """Run each side once per round (A B A B ...), `repetitions` rounds; a call returns one value.

    The order inside a round alternates, so neither side always runs first (a warm cache or a
    just-freed CPU helps whoever comes second).
    """
    samples = {name: Samples(name) for name in sides}
    names = list(sides)
    for round_number in range(repetitions):
        order = names if round_number % 2 == 0 else names[::-1]
        for name in order:
            value = sides[name]()
            samples[name].values.append(value)
            print(f"  round {round_number + 1} {name}: {value:.3f}", file=sys.stderr, flush=True)
    return samples


def ratio(numerator: Samples, denominator: Samples) -> float:
    """Ratio of medians."""
    return numerator.median / denominator.median


def timed(action: Callable[[], object]) -> float:
    """Wall-clock seconds one call of `action` takes."""
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def run(
    command: Sequence[str],
    *,
    cwd: Path = REPO_ROOT,
    env: Mapping[str, str] | None = None,
    timeout_s: float = COMMAND_TIMEOUT_S,
) -> str:
    """Run `command`, fail loudly with its output if it fails, return its stdout."""
    completed = subprocess.run(
        list(command),
        cwd=cwd,
        env={**without_kpm_variables(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(command)}` exited {completed.returncode}:\n"
            f"{completed.stdout[-2000:]}\n{completed.stderr[-2000:]}"
        )
    return completed.stdout


def first_line(command: Sequence[str]) -> str:
    """The first output line of a version command, or 'missing' when it cannot run."""
    if shutil.which(command[0]) is None:
        return "missing"
    try:
        output = subprocess.run(
            list(command), capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    return output.strip().splitlines()[0] if output.strip() else "unavailable"


def machine_description() -> dict[str, str]:
    """What the numbers were measured on."""
    memory_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    return {
        "CPUs (nproc)": str(os.cpu_count()),
        "memory": f"{memory_kb / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "Docker engine": first_line(["docker", "version", "--format", "{{.Server.Version}}"]),
        "Docker Compose": first_line(["docker", "compose", "version", "--short"]),
        "Python": platform.python_version(),
        "Go": first_line(["go", "version"]),
        "Locust": first_line([sys.executable, "-m", "locust", "--version"]).split(" from ")[0],
        "hey": "installed" if shutil.which("hey") else "missing",
    }


def sim_stack_spec(version: str, work_dir: Path, *, workers: int = 4) -> StackSpec:
    """The spec the harness would use for `version --sim` (images built now if missing)."""
    engine = Engine()
    images = build_sim_images(version, engine)
    image, contract = prepared(
        default_plugin(),
        kong_image=images.kong_image,
        go_image=images.go_image,
        sim=True,
        engine=engine,
    )
    run_id = f"bench-{new_run_id()}"
    return StackSpec(
        version=version,
        kong_image=images.kong_image,
        go_image=images.go_image,
        image_tag=image,
        workers=workers,
        project_name=project_name_for(run_id, version),
        run_id=run_id,
        env_file=work_dir / "compose.env",
        plugin=contract,
        declarative_json=json.dumps(contract.declarative(declarative_template(REPO_ROOT))),
    )


@contextmanager
def sim_stack(version: str, work_dir: Path, *, ready_timeout_s: float = 120) -> Iterator[Stack]:
    """A kong-sim stack for `version`, up and ready; torn down on leaving, however we leave."""
    with Stack(sim_stack_spec(version, work_dir)) as stack:
        stack.wait_ready(ready_timeout_s)
        yield stack


@dataclass
class Section:
    """One benchmark's part of docs/benchmarks.md: a headline, a table and notes."""

    title: str
    headline: str  # the ratio, in words, with the goal and whether it holds
    goal_holds: bool | None  # None: no goal, just a number
    headers: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)


def harness_env(results_root: Path) -> dict[str, str]:
    """Environment for `python -m orchestration`: this checkout, results kept out of ./results."""
    return {"PYTHONPATH": str(REPO_ROOT), "KPM_RESULTS": str(results_root)}


def without_kpm_variables() -> dict[str, str]:
    """os.environ minus KPM_*: a user's shell settings must not change what is compared."""
    return {name: value for name, value in os.environ.items() if not name.startswith("KPM_")}
