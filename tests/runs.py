"""Shared by the tests of what is built on results.json: a real simulated run to work on (rows,
resources.csv and the head of each kong.log from `matrix --sim --scenario steady --scenario
kill-server`), folders made from its rows, and the CLI run as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from orchestration.report import Row, RunResult
from orchestration.run_files import load_run

REPO = Path(__file__).resolve().parent.parent
SIM_RUN = REPO / "tests" / "fixtures" / "runs" / "sim-matrix"


def copy_run(destination: Path, source: Path = SIM_RUN) -> Path:
    """A writable copy of a run folder (the page is written into it)."""
    shutil.copytree(source, destination)
    return destination


def sim_run() -> RunResult:
    return load_run(SIM_RUN)


def write_folder(folder: Path, run_id: str, rows: Iterable[Row], source: Path = SIM_RUN) -> Path:
    """A run folder holding `rows` (and their version folders, copied from `source`)."""
    folder.mkdir(parents=True)
    chosen = tuple(rows)
    for row in chosen:
        assert row.results_dir is not None
        name = Path(row.results_dir).name
        if (source / name).is_dir():
            shutil.copytree(source / name, folder / name)
    base = sim_run()
    run = replace(base, run_id=run_id, versions=chosen)
    (folder / "results.json").write_text(json.dumps(run.to_dict(), indent=2))
    return folder


def cli(
    args: list[str], cwd: Path, timeout_s: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    """`python -m orchestration ARGS` with this checkout's package, no display."""
    environment = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    environment.update(PYTHONPATH=str(REPO), **env)
    return subprocess.run(
        [sys.executable, "-m", "orchestration", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
