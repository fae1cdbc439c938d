"""Benchmark 5: start-up. `python -m orchestration versions` and `nox -l` wall time, and no rebuild.

The two commands are interleaved and their medians reported (no ratio goal: they are compared with
`python -c pass`, the floor any Python CLI pays). The no-rebuild check runs 3.4.1.0 --sim twice
and asserts the second run builds nothing: the plugin image tag (a hash of its sources,
`orchestration.plugins.plugin_image_tag`) is unchanged, the image's creation time is unchanged, and
the harness said it reused it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import (
    REPO_ROOT,
    Samples,
    Section,
    harness_env,
    interleave,
    run,
    sim_stack_spec,
    timed,
    without_kpm_variables,
)

NOX = (sys.executable, "-m", "nox", "-l")
VERSIONS = (sys.executable, "-m", "orchestration", "versions")
FLOOR = (sys.executable, "-c", "pass")
REBUILD_VERSION = "3.4.1.0"


def image_created(tag: str) -> str:
    return run(["docker", "image", "inspect", "--format", "{{.Created}}", tag]).strip()


def second_run_builds_nothing(scratch: Path) -> tuple[bool, str]:
    """Run the same version twice; True when the second run reused the first run's image."""
    tag = sim_stack_spec(REBUILD_VERSION, scratch).image_tag
    command = [sys.executable, "-m", "orchestration", "run", REBUILD_VERSION, "--sim"]
    env = harness_env(scratch / "results")
    run(command, env=env)
    created_before = image_created(tag)
    completed = run_capturing_stderr(command, env)
    created_after = image_created(tag)
    config = json.loads((scratch / "results" / "latest" / "config.json").read_text())
    reused = created_before == created_after and not _build_lines(completed)
    detail = (
        f"image {tag} created {created_after}; second run's config: sim={config.get('sim')}; "
        f"its build-related output: {_build_lines(completed) or 'none'}"
    )
    return reused, detail


def run_capturing_stderr(command: list[str], env: dict[str, str]) -> str:
    completed = subprocess.run(
        command,
        cwd=REPO_ROOT,
        env={**without_kpm_variables(), **env},
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return completed.stderr


def _build_lines(stderr: str) -> str:
    """Lines where the harness says it builds (it says 'reusing' when it does not)."""
    return " | ".join(
        line.strip()
        for line in stderr.splitlines()
        if "build" in line.lower() and "reusing" not in line.lower()
    )


def benchmark(repetitions: int) -> Section:
    sides = {
        "python -m orchestration versions": lambda: timed(lambda: run(VERSIONS)),
        "nox -l": lambda: timed(lambda: run(NOX)),
        "python -c pass (floor)": lambda: timed(lambda: run(FLOOR)),
    }
    samples = interleave(sides, repetitions)
    with tempfile.TemporaryDirectory(prefix="kpm-bench-startup-") as scratch:
        reused, detail = second_run_builds_nothing(Path(scratch))
    return _section(samples, reused, detail, repetitions)


def _section(samples: dict[str, Samples], reused: bool, detail: str, repetitions: int) -> Section:
    floor = samples["python -c pass (floor)"]
    rows = [
        [f"{s.name}: median s (min-max)", f"{s.median:.3f} ({s.spread()})", ""]
        for s in samples.values()
    ]
    rows += [
        [f"{s.name} / floor", f"{s.median / floor.median:.1f}", ""]
        for s in samples.values()
        if s is not floor
    ]
    rebuilt = "yes" if reused else "**NO**"
    rows.append(["second run of the same version rebuilt nothing", rebuilt, "yes"])
    versions = samples["python -m orchestration versions"].median
    nox_list = samples["nox -l"].median
    return Section(
        title="5. Start-up",
        headline=f"`versions` answers in {versions:.2f} s, `nox -l` in {nox_list:.2f} s; "
        f"second run rebuilt nothing: {'yes' if reused else 'NO'}",
        goal_holds=reused,
        headers=["measure", "value", "goal"],
        rows=rows,
        notes=[f"{repetitions} interleaved rounds.", f"No-rebuild check: {detail}."],
    )
