"""`clean`: what runs that died (SIGKILL, OOM, a CI timeout) left, removed; nothing else touched."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from python_on_whales import DockerClient
from test_reliability import Runs, _cli_env, _locusts_writing_to, assert_nothing_left, sim_images

from orchestration.owner import Owner
from orchestration.stack import KEPT_OWNER, LABEL, OWNER_LABEL, RUN_LABEL

__all__ = ["sim_images"]  # a fixture these tests use


def _finished_process_owner() -> Owner:
    """The owner text of a process that has ended: its PID and start time, no longer alive."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    started = psutil.Process(process.pid).create_time()
    process.wait()
    return Owner(socket.gethostname(), process.pid, started)


def test_an_owner_is_alive_only_while_that_very_process_runs() -> None:
    me = Owner.current()
    host = socket.gethostname()
    assert Owner.parse(me.text) == me
    assert me.liveness(host) == "alive"
    assert _finished_process_owner().liveness(host) == "dead"
    # the same PID, started at another time: the system gave the PID to someone else
    reused = Owner(host, me.pid, me.started - 3600)
    assert reused.liveness(host) == "dead"
    assert Owner("another-host", me.pid, me.started).liveness(host) == "elsewhere"
    assert Owner.parse("") is None
    assert Owner.parse("host:notapid:1.0") is None


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestration", *args],
        env=_cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def networks() -> Iterator[dict[str, str]]:
    """One network per kind of owner; whatever a test leaves of them is removed after it."""
    docker = DockerClient()
    suffix = uuid.uuid4().hex[:8]
    dead, me = _finished_process_owner(), Owner.current()
    owners = {
        "dead": {LABEL: "1", RUN_LABEL: f"dead-{suffix}", OWNER_LABEL: dead.text},
        "alive": {LABEL: "1", RUN_LABEL: f"alive-{suffix}", OWNER_LABEL: me.text},
        "elsewhere": {
            **{LABEL: "1", RUN_LABEL: f"far-{suffix}"},
            OWNER_LABEL: Owner("another-host", me.pid, me.started).text,
        },
        "unowned": {LABEL: "1", RUN_LABEL: f"old-{suffix}"},
        "kept": {LABEL: "1", RUN_LABEL: f"kept-{suffix}", OWNER_LABEL: KEPT_OWNER},
        "not ours": {"org.example.someone-else": "1"},
    }
    names = {}
    for kind, labels in owners.items():
        name = f"kpm-test-clean-{kind.replace(' ', '-')}-{suffix}"
        docker.network.create(name, labels=labels)
        names[kind] = name
    yield names
    for name in names.values():
        if docker.network.exists(name):
            docker.network.remove(name)


@pytest.mark.docker
def test_clean_removes_only_what_dead_runs_left(networks: dict[str, str]) -> None:
    docker = DockerClient()

    listed = _cli("clean", "--dry-run")
    assert listed.returncode == 0, listed.stderr
    assert f"would remove network {networks['dead']}" in listed.stdout
    assert all(docker.network.exists(name) for name in networks.values())  # a dry run

    cleaned = _cli("clean")
    assert cleaned.returncode == 0, cleaned.stderr
    assert f"removed network {networks['dead']}" in cleaned.stdout
    assert not docker.network.exists(networks["dead"])
    for kind in ("alive", "elsewhere", "unowned", "kept", "not ours"):
        assert docker.network.exists(networks[kind]), kind
        assert networks[kind] not in cleaned.stdout
    assert "with no owner label" in cleaned.stdout  # says how to remove those by hand
    assert "kept with --keep" in cleaned.stdout


@pytest.mark.docker
def test_a_killed_run_is_announced_then_cleaned_up(tmp_path: Path, sim_images: None) -> None:
    with Runs(tmp_path / "results") as runs:
        run = runs.start("run", "--sim", "3.4.1.0", "--requests", "500000")
        run.wait_for_line("3.4.1.0: sending 500000 requests")
        run.process.send_signal(signal.SIGKILL)  # the harness alone: its Locust lives on
        run.process.wait(timeout=30)
        assert _locusts_writing_to(runs.results)  # what a hard kill leaves

        warned = _cli("run", "--sim", "3.4.0.0", "--requests", "20", "--results", str(tmp_path))
        assert "of 1 dead run are still in Docker" in warned.stderr, warned.stderr
        assert "python -m orchestration clean" in warned.stderr

        cleaned = _cli("clean")
        assert cleaned.returncode == 0, cleaned.stderr
        assert "removed container" in cleaned.stdout
        assert "removed process" in cleaned.stdout
        assert_nothing_left(runs.results)
