"""Tests for orchestration/pulls.py: a run's registry images pulled ahead, bounded, stoppable.

A stand-in `docker` on PATH plays the registry (nothing here may reach one): it writes when each
pull starts and ends, sleeps, and fails for images named `bad/...`; any other docker command goes
to the real docker CLI.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from test_under_nox import Terminal, nox_session

from orchestration import cli, pipeline, prepare, pulls
from orchestration.commands import common
from orchestration.config import DEFAULT_GO_IMAGE, PULLS_AT_ONCE, RunConfig
from orchestration.engine import Engine
from orchestration.errors import Interrupted, StackError
from orchestration.plugins import NODE_IMAGE, resolve_plugins
from orchestration.versions import DEFAULT_MATRIX, target_for_version

REPO_ROOT = Path(__file__).resolve().parent.parent
FAKE_DOCKER = """\
import os, sys, time
if "pull" not in sys.argv[1:3]:
    real = os.environ.get("KPM_TEST_REAL_DOCKER")
    if real:
        os.execv(real, [real, *sys.argv[1:]])
    sys.exit("no docker on this machine")
image = sys.argv[-1]
with open(os.environ["KPM_TEST_PULLS"], "a") as log:
    log.write(f"start {image} {time.time()} {os.getpid()} {' '.join(sys.argv[1:])}\\n")
if image.startswith("bad/"):
    sys.stderr.write("Error response from daemon: pull access denied for " + image + "\\n")
    sys.exit(1)
time.sleep(30 if image.startswith("slow/") else 0.3)
with open(os.environ["KPM_TEST_PULLS"], "a") as log:
    log.write(f"end {image} {time.time()} {os.getpid()}\\n")
"""


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in `docker` first on PATH; returns its log. The engine has `present:1`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(f"#!{sys.executable}\n{FAKE_DOCKER}")
    docker.chmod(0o755)
    log = tmp_path / "pulls.log"
    log.touch()
    monkeypatch.setenv("KPM_TEST_REAL_DOCKER", shutil.which("docker") or "")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("KPM_TEST_PULLS", str(log))
    monkeypatch.setattr(
        pulls, "image_ids", lambda host, *tags: {t: "sha256:1" for t in tags if t == "present:1"}
    )
    return log


def _events(log: Path) -> list[list[str]]:
    return [line.split() for line in log.read_text().splitlines()]


def _most_at_once(log: Path) -> int:
    running = most = 0
    for event in sorted(_events(log), key=lambda e: float(e[2])):
        running += 1 if event[0] == "start" else -1
        most = max(most, running)
    return most


def _table(text: str) -> list[list[str]]:
    """The body rows of a GitHub-style table, cells stripped."""
    lines = text.strip().splitlines()[2:]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def _never_cancelled() -> None:
    return None


ENGINE = Engine()  # the stand-in `docker` on PATH answers for it


def test_missing_registry_images_are_pulled_at_most_three_at_once(registry: Path) -> None:
    images = [f"kong/kong-gateway:3.{n}" for n in range(7)]
    ours = "kong-plugin-matrix/kong-sim:3.4.1.0-abc"
    with pulls.ahead([*images, images[0], "present:1", ours], ENGINE) as pulling:
        assert pulling == tuple(sorted(images))  # once each, none present, none of ours
        pulls.wait_for(images, ENGINE, _never_cancelled)
        events = _events(registry)

    starts = [e for e in events if e[0] == "start"]
    assert sorted(e[1] for e in starts) == sorted(images)
    assert {" ".join(e[4:6]) for e in starts} == {"pull --quiet"}
    assert sorted(e[1] for e in events if e[0] == "end") == sorted(images)  # all in by then
    assert _most_at_once(registry) == PULLS_AT_ONCE


def test_a_version_waits_only_for_its_own_images(registry: Path) -> None:
    with pulls.ahead(["kong/kong-gateway:3.4", "slow/golang:1.22"], ENGINE):
        started = time.monotonic()
        pulls.wait_for(["kong/kong-gateway:3.4", "present:1"], ENGINE, _never_cancelled)
        assert time.monotonic() - started < 10  # not the 30 s of the slow pull
        assert ["end", "kong/kong-gateway:3.4"] in [e[:2] for e in _events(registry)]
        assert "slow/golang:1.22" not in [e[1] for e in _events(registry) if e[0] == "end"]


def test_the_end_of_the_run_stops_running_pulls(
    registry: Path, caplog: pytest.LogCaptureFixture
) -> None:
    started = time.monotonic()
    with pulls.ahead(["slow/a:1", "slow/b:1"], ENGINE):
        while len(_events(registry)) < 2:
            time.sleep(0.05)
        pids = [int(e[3]) for e in _events(registry)]
    assert time.monotonic() - started < pulls.STOP_GRACE_S + 5
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        pulls.wait_for(["slow/a:1"], ENGINE, _never_cancelled)  # nothing ahead any more
    assert "slow/a:1" not in caplog.text


def test_a_failed_pull_is_left_to_the_build(
    registry: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING), pulls.ahead(["bad/kong:9.9"], ENGINE):
        pulls.wait_for(["bad/kong:9.9"], ENGINE, _never_cancelled)
    assert "pulling bad/kong:9.9 ahead failed (Error response from daemon: pull access" in (
        caplog.text
    )
    assert "its build will try again" in caplog.text


def test_waiting_for_a_pull_stops_when_the_run_is_cancelled(registry: Path) -> None:
    def cancelled() -> None:
        raise Interrupted(2, "interrupted by SIGINT")

    with pulls.ahead(["slow/a:1"], ENGINE), pytest.raises(Interrupted):
        pulls.wait_for(["slow/a:1"], ENGINE, cancelled)


def test_an_engine_that_cannot_say_what_it_has_pulls_nothing(
    registry: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_engine(engine: Engine, *tags: str) -> dict[str, str]:
        raise StackError("could not look up kong/kong-gateway:3.4: Cannot connect")

    monkeypatch.setattr(pulls, "image_ids", no_engine)
    with pulls.ahead(["kong/kong-gateway:3.4"], ENGINE) as pulling:
        assert pulling == ()
    assert _events(registry) == []


def test_the_run_pulls_each_versions_bases_on_its_one_engine(tmp_path: Path) -> None:
    go, js, python = (
        {s.label: s for s in resolve_plugins(["all"], REPO_ROOT)}[label]
        for label in ("go", "js", "python")
    )
    config = RunConfig(
        run_id="t",
        targets=(target_for_version("3.4.0.0"), target_for_version("3.4.1.0")),
        results_root=tmp_path,
        go_image="golang:1.22",
    )
    jobs = (
        pipeline.Job(config.targets[0], "steady", go),
        pipeline.Job(config.targets[1], "steady", js),
        pipeline.Job(config.targets[1], "steady", python),
    )
    first, second = (target.image for target in config.targets)

    images, engine = pipeline._pull_ahead(config, jobs)
    # every target copies kpm-tap from the golang stage: js and python need golang too
    go_image, node = "golang:1.22", "node:20-bookworm-slim"
    assert images == [first, go_image, second, go_image, node, second, go_image]
    assert engine is None
    one = replace(config, docker_hosts=("unix:///run/other.sock",))
    assert pipeline._pull_ahead(one, jobs)[1] == "unix:///run/other.sock"
    assert pipeline._pull_ahead(replace(config, sim=True), jobs) == ([], None)
    two = replace(config, docker_hosts=("unix:///a.sock", "unix:///b.sock"))
    assert pipeline._pull_ahead(two, jobs) == ([], None)


# --- python -m orchestration pull ---------------------------------------------------------


CALLS: list[tuple[str, object]] = []  # what `pull` asked of the prerequisites and the sizes


@pytest.fixture
def pull_command(registry: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`cli.main(["pull", ...])` against the stand-in registry; every image is 120 MB. What it
    asks is in CALLS."""
    CALLS.clear()

    def sizes(engine: Engine, *images: str) -> dict[str, int]:
        CALLS.append(("sizes", engine.host))
        return dict.fromkeys(images, 120_000_000)

    monkeypatch.setattr(
        common, "check_prerequisites", lambda sim, hosts: CALLS.append(("check", (sim, hosts)))
    )
    monkeypatch.setattr(pulls, "sizes", sizes)
    return registry


def test_pull_fetches_every_base_of_the_run_at_once(
    pull_command: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["pull", "3.4.0.0", "3.4.1.0", "--plugin", "go", "--plugin", "js"])
    table = capsys.readouterr().out

    first, second = (target_for_version(v).image for v in ("3.4.0.0", "3.4.1.0"))
    expected = sorted([first, second, DEFAULT_GO_IMAGE, NODE_IMAGE])
    assert code == 0
    assert sorted(e[1] for e in _events(pull_command) if e[0] == "end") == expected
    assert [cell.strip() for cell in table.splitlines()[0].split("|")[1:-1]] == [
        "engine", "image", "result", "size",
    ]  # fmt: skip
    assert _table(table) == [["the default Docker engine", i, "pulled", "120 MB"] for i in expected]
    # a real run's prerequisites (not --sim's), on the default engine, whose sizes are read
    assert CALLS == [("check", (False, ())), ("sizes", None)]  # None: the default engine


def test_pull_writes_no_results_and_rounds_sizes_to_megabytes(
    pull_command: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(pulls, "sizes", lambda _engine, *images: dict.fromkeys(images, 2_500_001))
    results = tmp_path / "a-file"  # a run would refuse it (exit 2): pull writes nothing there
    results.write_text("")

    assert cli.main(["pull", "--image", "kong/kong-gateway:3.4", "--results", str(results)]) == 0
    assert {row[3] for row in _table(capsys.readouterr().out)} == {"3 MB"}  # 2.500001 MB
    assert results.read_text() == ""


def test_a_failed_pull_is_a_row_and_exit_1(
    pull_command: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["pull", "--image", "bad/kong:9.9"])
    table = capsys.readouterr().out

    assert code == 1
    assert _table(table)[0][1:] == [
        "bad/kong:9.9",
        "failed: Error response from daemon: pull access denied for bad/kong:9.9",
        "-",
    ]


def test_images_already_here_are_not_pulled(
    pull_command: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["pull", "--image", "present:1", "--image", "kong/kong-gateway:3.4"]) == 0
    assert [row[1:3] for row in _table(capsys.readouterr().out)] == [
        ["golang:1.22", "pulled"],
        ["kong/kong-gateway:3.4", "pulled"],
        ["present:1", "already here"],
    ]
    assert "present:1" not in pull_command.read_text()


def test_pull_without_versions_pulls_the_default_matrix(pull_command: Path) -> None:
    assert cli.main(["pull"]) == 0
    pulled = {e[1] for e in _events(pull_command) if e[0] == "end"}
    assert pulled == {target_for_version(v).image for v in DEFAULT_MATRIX} | {DEFAULT_GO_IMAGE}


def test_pull_with_sim_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["pull", "3.4.1.0", "--sim"]) == 2
    assert capsys.readouterr().err == (
        "error: --sim builds its images on this machine: there is nothing to pull\n"
    )


@pytest.mark.docker
def test_ctrl_c_in_the_pull_session_stops_every_pull(
    registry: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pulls, "image_ids", Engine.image_ids)  # the child asks the real engine
    images = ["slow/kong-gateway:3.4.1.0", "slow/kong-gateway:3.5.0.0"]
    args = nox_session(
        registry.parent / "results", "pull", "--image", images[0], "--image", images[1]
    )
    terminal = Terminal(args, cwd=REPO_ROOT)
    try:
        terminal.wait_for("pulling 3 image(s) ahead")
        while len([e for e in _events(registry) if e[0] == "start"]) < 3:
            time.sleep(0.05)
        terminal.type_ctrl_c()
        stopped = time.monotonic()
        code = terminal.finish()
    finally:
        terminal.close()
    assert code == 130, terminal.screen
    assert time.monotonic() - stopped < pulls.STOP_GRACE_S  # ended at once, not waited for
    assert "interrupted by SIGINT (Ctrl-C)" in terminal.screen
    for pid in {int(e[3]) for e in _events(registry)}:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_real_version_waits_for_its_own_pulls_before_its_build(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[tuple[str, ...]] = []

    def waited(images: list[str], engine: Engine, check_cancel: object) -> None:
        seen.append(("wait", *images, str(engine.host)))

    def built(*args: object, **kwargs: object) -> None:
        seen.append(("build",))
        raise StackError("stop here")

    monkeypatch.setattr(pulls, "wait_for", waited)
    monkeypatch.setattr(prepare, "prepared", built)
    target = target_for_version("3.4.1.0")
    config = RunConfig(run_id="t", targets=(target,), results_root=tmp_path)
    (go,) = resolve_plugins(["go"], REPO_ROOT)
    with pytest.raises(StackError, match="stop here"):
        prepare.prepare(target, config, go, Engine("unix:///x"), _never_cancelled)
    assert seen == [("wait", target.image, DEFAULT_GO_IMAGE, "unix:///x"), ("build",)]


@pytest.mark.parametrize("plugin", ["python", "js"])
def test_pull_for_python_and_js_lists_golang_too(
    pull_command: Path, capsys: pytest.CaptureFixture[str], plugin: str
) -> None:
    """Their images copy kpm-tap from the golang stage, so a build would pull it otherwise."""
    assert cli.main(["pull", "3.4.1.0", "--plugin", plugin]) == 0
    listed = [row[1] for row in _table(capsys.readouterr().out)]
    node = [NODE_IMAGE] if plugin == "js" else []
    assert sorted(listed) == sorted([target_for_version("3.4.1.0").image, DEFAULT_GO_IMAGE, *node])
    assert DEFAULT_GO_IMAGE in {e[1] for e in _events(pull_command) if e[0] == "end"}
