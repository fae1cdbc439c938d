"""The CLI as a user meets it: exit codes, messages, and no Docker work on bad input."""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FACTS_LOG = REPO / "tests" / "fixtures" / "facts_excerpt.log"


def _cpu_s_of_children() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def _run(args: list[str], tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], bool, float]:
    """Run the CLI with a `docker` first on PATH that records being called; also the CPU seconds
    it took (not the wall time, which a busy machine stretches: a mutation run on two loaded
    cores took 13 s for what takes 0.3 s)."""
    spy_dir = tmp_path / "bin"
    spy_dir.mkdir(exist_ok=True)
    marker = tmp_path / "docker-was-called"
    spy = spy_dir / "docker"
    spy.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    spy.chmod(0o755)
    env = {**os.environ, "PATH": f"{spy_dir}:{os.environ['PATH']}", "PYTHONPATH": str(REPO)}
    started = _cpu_s_of_children()
    done = subprocess.run(
        [sys.executable, "-m", "orchestration", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done, marker.exists(), _cpu_s_of_children() - started


@pytest.mark.parametrize("version", ["3.4", "latest", "3.4.1.0;rm", "../x", "9.9.9.9"])
def test_unknown_version_exits_2_fast_without_docker(tmp_path: Path, version: str) -> None:
    done, docker_called, elapsed = _run(["run", version], tmp_path)
    assert done.returncode == 2
    assert "Known versions: 3.4.0.0" in done.stderr
    assert "--image" in done.stderr
    assert not docker_called
    assert elapsed < 5  # CPU seconds; typically ~0.3
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    ("flag", "value", "range_text"),
    [
        ("--requests", "0", "between 1 and"),
        ("--requests", "-5", "between 1 and"),
        ("--requests", "abc", "takes a number"),
        ("--users", "0", "between 1 and"),
        ("--ready-timeout", "0", "between 1 and"),
        ("--load-timeout", "0", "between 1 and"),
        ("--parallel", "0", "between 1 and 16"),
        ("--spawn-rate", "0", "between 0.1 and"),
        ("--workers", "x", "takes a number"),
    ],
)
def test_bad_numbers_exit_2_naming_the_option(
    tmp_path: Path, flag: str, value: str, range_text: str
) -> None:
    done, docker_called, _ = _run(["run", "3.4.1.0", f"{flag}={value}"], tmp_path)
    assert done.returncode == 2
    assert flag in done.stderr and range_text in done.stderr
    assert not docker_called


def test_unsafe_image_is_refused(tmp_path: Path) -> None:
    done, docker_called, _ = _run(["run", "--image", "kong:3.4;rm -rf /"], tmp_path)
    assert done.returncode == 2
    assert "image reference" in done.stderr
    assert not docker_called


def test_unsafe_go_image_is_refused(tmp_path: Path) -> None:
    done, docker_called, _ = _run(["run", "3.4.1.0", "--go-image", "golang:1.22\nX=1"], tmp_path)
    assert done.returncode == 2
    assert "--go-image: " in done.stderr and "image reference" in done.stderr
    assert not docker_called


def test_ui_with_a_taken_port_exits_2_before_any_docker_work(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done, docker_called, _ = _run(["ui", "3.4.1.0", "--sim", "--web-port", str(port)], tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"port {port} on 127.0.0.1 is taken" in done.stderr
    assert "--web-port" in done.stderr
    assert not docker_called
    assert not (tmp_path / "results").exists()


def test_versions_lists_the_table(tmp_path: Path) -> None:
    done, docker_called, _ = _run(["versions", "--json"], tmp_path)
    assert done.returncode == 0
    entries = {e["version"]: e for e in json.loads(done.stdout)}
    assert entries["3.4.1.0"]["changelog"] == "affected"
    assert entries["3.4.1.0"]["image"] == "kong/kong-gateway:3.4.1.0"
    assert not docker_called


def test_collect_reads_the_facts_excerpt(tmp_path: Path) -> None:
    done, docker_called, _ = _run(["collect", str(FACTS_LOG), "--json"], tmp_path)
    assert done.returncode == 0, done.stderr
    signals = json.loads(done.stdout)
    assert signals["instance_starts"] == 1
    assert signals["instance_closes"] == 1
    assert signals["no_instance_errors"] == 1
    assert signals["rpc_closed_errors"] == 1
    assert not docker_called


def test_collect_on_a_missing_file(tmp_path: Path) -> None:
    done, _, _ = _run(["collect", "nope.log"], tmp_path)
    assert done.returncode == 2
    assert "nope.log does not exist" in done.stderr


def test_report_reprints_a_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "results" / "r1"
    run_dir.mkdir(parents=True)
    (run_dir / "results.json").write_text(
        json.dumps(
            {
                "run_id": "r1",
                "tool_version": "0.1.0",
                "config": {},
                "versions": [
                    {
                        "version": "3.4.1.0",
                        "image": "kong/kong-gateway:3.4.1.0",
                        "simulated": True,
                        "status": "interrupted",
                        "error": "interrupted by signal 2",
                        "expected": "affected",
                        "verdict": "interrupted",
                        "matches_changelog": None,
                    }
                ],
            }
        )
    )
    done, _, _ = _run(["report", str(run_dir)], tmp_path)
    assert done.returncode == 1
    assert "| 3.4.1.0 " in done.stdout and "interrupted" in done.stdout
