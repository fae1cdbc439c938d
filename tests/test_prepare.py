"""Tests for orchestration.prepare: a job made ready, and the stacks described from it."""

from __future__ import annotations

from pathlib import Path

from outcomes import config_for

from orchestration.contract import EXAMPLE
from orchestration.engine import Engine
from orchestration.prepare import Prepared


def _prepared(version: str = "3.4.1.0") -> Prepared:
    return Prepared(version, "kong:x", "golang:x", "plugin:x", EXAMPLE, Engine())


def test_two_jobs_of_one_version_get_compose_projects_of_their_own(tmp_path: Path) -> None:
    """Two plugins (or scenarios) of one version run as two jobs, and a pipelined run brings one
    up while the other goes down: one project name for both made Compose remove the first's
    containers under the second ("removal of container ... is already in progress")."""
    config = config_for(tmp_path, "3.4.1.0")
    specs = [
        _prepared().spec(config, workers=4, suffix="", env_dir=tmp_path / folder, tap=False)
        for folder in ("3.4.1.0", "3.4.1.0-python", "3.4.1.0-python-reload")
    ]
    names = [spec.project_name for spec in specs]
    assert len(set(names)) == 3
    assert all(name.startswith(f"kpm-{config.run_id}-3-4-1-0") for name in names)


def test_the_stacks_of_one_job_are_told_apart_by_their_suffix(tmp_path: Path) -> None:
    config = config_for(tmp_path, "3.4.1.0")
    one, two = (
        _prepared().spec(
            config, workers=w, suffix=f"-w{w}", env_dir=tmp_path / "3.4.1.0", tap=False
        )
        for w in (1, 4)
    )
    assert one.project_name != two.project_name
    assert (one.env_file.name, two.env_file.name) == ("compose-w1.env", "compose-w4.env")
