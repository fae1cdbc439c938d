"""Tests for orchestration/engines.py: --docker-host, which engine runs which version."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from runs import REPO, cli
from second_engine import our_objects, second_dockerd

from orchestration import clean, engine
from orchestration.engine import docker_command
from orchestration.engines import EnginePool, check_engines, parse_docker_host, parse_docker_hosts
from orchestration.errors import EnvironmentProblem, UsageError

FIRST_ENGINE = "unix:///var/run/docker.sock"  # where CI's (and Debian's) dockerd listens


@pytest.mark.parametrize(
    "url", ["unix:///var/run/docker.sock", "tcp://127.0.0.1:2375", "tcp://localhost:2375"]
)
def test_engines_on_this_machine_are_accepted(url: str) -> None:
    assert parse_docker_host(url) == url


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("ssh://me@build-box", "reached over ssh"),
        ("tcp://192.0.2.7:2375", "on another machine"),
    ],
)
def test_engines_on_other_machines_are_refused_naming_the_alternative(url: str, said: str) -> None:
    with pytest.raises(UsageError) as refused:
        parse_docker_host(url)

    assert said in str(refused.value)
    assert "merge" in str(refused.value)


@pytest.mark.parametrize(
    "url", ["tcp://127.0.0.1", "unix://relative.sock", "npipe:////./pipe/docker", "127.0.0.1:2375"]
)
def test_malformed_engine_urls_are_refused(url: str) -> None:
    with pytest.raises(UsageError, match="--docker-host"):
        parse_docker_host(url)


def test_an_engine_named_twice_is_refused() -> None:
    with pytest.raises(UsageError, match="named twice"):
        parse_docker_hosts([FIRST_ENGINE, FIRST_ENGINE])


def test_docker_command_names_the_engine_only_when_one_is_given() -> None:
    assert docker_command(None) == ["docker"]
    assert docker_command("unix:///x.sock") == ["docker", "--host", "unix:///x.sock"]


def test_jobs_taking_as_long_go_round_robin() -> None:
    pool = EnginePool(["a", "b", "c"])
    given = []
    for _ in range(6):
        with pool.take() as engine:
            given.append(engine.host)

    assert given == ["a", "b", "c", "a", "b", "c"]


def test_a_busy_engine_gets_no_new_job_while_another_is_idle() -> None:
    pool = EnginePool(["a", "b"])
    with pool.take() as long_job:
        assert long_job.host == "a"
        later = []
        for _ in range(3):  # short jobs, one after another, while the long one runs on a
            with pool.take() as engine:
                later.append(engine.host)

    assert later == ["b", "b", "b"]


def test_parallel_jobs_spread_over_every_engine() -> None:
    pool = EnginePool(["a", "b"])
    taken: list[str | None] = []
    both_in = threading.Barrier(2)

    def job() -> None:
        with pool.take() as engine:
            taken.append(engine.host)
            both_in.wait(timeout=5)

    threads = [threading.Thread(target=job) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(taken, key=str) == ["a", "b"]


def test_no_engine_named_means_the_default_engine() -> None:
    with EnginePool([]).take() as engine:
        assert engine.host is None
        assert engine.command("ps") == ["docker", "ps"]


def test_a_leftover_is_removed_on_its_own_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    commands: list[list[str]] = []
    monkeypatch.setattr(engine, "run_host_command", lambda command, **_: commands.append(command))
    on_e2 = engine.Engine("unix:///e2")
    leftover = clean.Leftover("container", "c0ffee", "kpm-x-kong-1", "run1", "h:1:2", on_e2)

    assert clean.remove([leftover]) == [(leftover, None)]
    assert commands == [["docker", "--host", "unix:///e2", "rm", "--force", "--volumes", "c0ffee"]]
    assert "on unix:///e2" in leftover.describe()


@pytest.mark.docker
def test_an_engine_that_does_not_answer_fails_the_check_naming_it(tmp_path: Path) -> None:
    dead = f"unix://{tmp_path}/no-engine.sock"

    with pytest.raises(EnvironmentProblem) as problem:
        check_engines([dead])

    assert dead in str(problem.value)
    assert "does not answer" in str(problem.value)


def test_an_engine_url_off_this_machine_stops_the_cli_before_any_work(tmp_path: Path) -> None:
    done = cli(
        ["run", "3.4.1.0", "--sim", "--results", str(tmp_path), "--docker-host", "ssh://x@box"],
        REPO,
    )

    assert done.returncode == 2
    assert "merge" in done.stderr
    assert list(tmp_path.iterdir()) == []


# --- against real engines -----------------------------------------------------------------


@pytest.mark.docker
def test_a_down_engine_fails_the_run_before_any_work_naming_it(tmp_path: Path) -> None:
    down = f"unix://{tmp_path}/down.sock"
    done = cli(
        [
            *["run", "3.4.0.0", "3.4.1.0", "--sim", "--parallel", "2"],
            *["--results", str(tmp_path / "results")],
            *["--docker-host", FIRST_ENGINE, "--docker-host", down],
        ],
        REPO,
    )

    assert done.returncode == 2, done.stderr
    assert f"the Docker engine {down} does not answer" in done.stderr
    assert not (tmp_path / "results").exists()  # no run folder: nothing started


@pytest.fixture(scope="module")
def second_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with second_dockerd(tmp_path_factory.mktemp("dockerd2")) as url:
        yield url


@pytest.mark.docker
@pytest.mark.timeout(900)
def test_parallel_versions_run_one_on_each_engine(tmp_path: Path, second_engine: str) -> None:
    """Two versions, --parallel 2, two engines: each engine measures one (the second builds the
    stand-in images in its own image store), each row names its engine, nothing is left."""
    done = cli(
        [
            *["run", "3.4.0.0", "3.4.1.0", "--sim", "--parallel", "2", "--requests", "200"],
            *["--results", str(tmp_path), "--docker-host", FIRST_ENGINE],
            *["--docker-host", second_engine],
        ],
        REPO,
        timeout_s=840,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads((tmp_path / "latest" / "results.json").read_text())["versions"]
    assert [row["verdict"] for row in rows] == ["stable", "churn"]
    assert sorted(row["engine"] for row in rows) == sorted([FIRST_ENGINE, second_engine])
    summary = (tmp_path / "latest" / "summary.md").read_text()
    assert "| engine" in summary
    assert "least-loaded" in summary
    # The second engine built and ran its version itself: its plugin image is in its own store.
    on_second = next(row for row in rows if row["engine"] == second_engine)
    assert plugin_images(second_engine) == ["plugin-go-sim"]
    assert stand_in_versions(second_engine) == [on_second["version"]]
    assert our_objects(second_engine) == []


def plugin_images(url: str) -> list[str]:
    """The plugin images on the engine at `url`, as `plugin-go-sim` (the tag without its hash)."""
    return sorted(tag.rsplit("-", 1)[0] for tag in _tags(url, "kong-plugin-matrix"))


def stand_in_versions(url: str) -> list[str]:
    """The Kong versions of the kong-sim images on the engine at `url`."""
    return sorted(tag.rsplit("-", 1)[0] for tag in _tags(url, "kong-plugin-matrix/kong-sim"))


def _tags(url: str, repository: str) -> list[str]:
    listing = subprocess.run(
        ["docker", "--host", url, "image", "ls", repository, "--format", "{{.Tag}}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return listing.stdout.split()
