"""Reliability: nothing leaks, nothing measured is lost, every bad input gets a clear answer.

The Docker tests run the real CLI (`python -m orchestration ... --sim`) as a subprocess in a
session of its own, the way a terminal runs it, and afterwards check through Docker's labels that
nothing of that run is left (containers, networks, volumes) and that no Locust of it still runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

import psutil
import pytest
from python_on_whales import DockerClient

from orchestration import pipeline, processes, run_files, scenarios, stack, world
from orchestration.config import RunConfig
from orchestration.engine import Engine, build_failure
from orchestration.errors import EnvironmentProblem, ReadyTimeout, StackError
from orchestration.plugins import plan_plugin_image, resolve_plugins
from orchestration.processes import signals_held
from orchestration.sim import build_sim_images
from orchestration.stack import RUN_LABEL, Stack, StackSpec
from orchestration.versions import target_for_version
from orchestration.world import VersionWorld, WorldOptions, folder_name

REPO = Path(__file__).resolve().parent.parent
COPIED = ("images", "plugins", "orchestration", "locustfiles", "pyproject.toml", ".dockerignore")
SKIPPED = shutil.ignore_patterns("__pycache__")
NEW_CALLS_RE = re.compile(r"New\(\) has been called (\d+) times")
CLI_TIMEOUT_S = 120.0


# --- helpers ----------------------------------------------------------------------------


def _cli_env(repo: Path = REPO, path: str | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(repo), "PYTHONUNBUFFERED": "1"}
    env.pop("KPM_RESULTS", None)
    if path is not None:
        env["PATH"] = path
    return env


def _poll_until(what: str, ready: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout_s:.0f}s for {what}")
        time.sleep(0.1)


class CliRun:
    """`python -m orchestration ARGS` in a session of its own, its stderr read as it comes."""

    def __init__(self, args: list[str], results: Path, *, repo: Path = REPO) -> None:
        self.results = results
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "orchestration", *args, "--results", str(results)],
            cwd=results.parent,
            env=_cli_env(repo),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # like a terminal's foreground job: Ctrl-C hits the group
        )
        self.stdout = ""
        self._readers = [
            threading.Thread(target=self._read_stderr, daemon=True),
            threading.Thread(target=self._read_stdout, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        self.stdout = self.process.stdout.read()

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)

    def wait_until(self, what: str, ready: Callable[[], bool], timeout_s: float = 90) -> None:
        """Poll `ready` (bounded); fail if the CLI ends first or time runs out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if ready():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        pytest.fail(f"never saw {what}; exit {self.process.poll()}; stderr:\n{self.stderr}")

    def wait_for_line(self, text: str, timeout_s: float = 90) -> None:
        self.wait_until(repr(text), lambda: any(text in line for line in self.lines), timeout_s)

    def signal_group(self, signal_number: int) -> None:
        """What a Ctrl-C at the terminal does: the signal reaches every process of the job."""
        os.killpg(self.process.pid, signal_number)

    def finish(self, timeout_s: float = CLI_TIMEOUT_S) -> int:
        code = self.process.wait(timeout=timeout_s)
        for reader in self._readers:
            reader.join(timeout=10)
        return code

    def run_dir(self) -> Path:
        runs = [p for p in self.results.iterdir() if p.is_dir() and not p.is_symlink()]
        assert len(runs) == 1, runs
        return runs[0]

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


def _run_ids(results: Path) -> list[str]:
    if not results.is_dir():
        return []
    return [p.name for p in results.iterdir() if p.is_dir() and not p.is_symlink()]


def _leftovers(run_id: str) -> dict[str, list[str]]:
    """What of run `run_id` Docker still holds, found by the run label alone."""
    docker = DockerClient()
    label = f"{RUN_LABEL}={run_id}"
    return {
        "containers": [c.name for c in docker.container.list(all=True, filters=[("label", label)])],
        "networks": [n.name for n in docker.network.list(filters=[("label", label)])],
        "volumes": [v.name for v in docker.volume.list(filters=[("label", label)])],
    }


def _locusts_writing_to(folder: Path) -> list[int]:
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        command = process.info["cmdline"] or []
        if "locust" in command and any(str(folder) in arg for arg in command):
            found.append(process.info["pid"])
    return found


def assert_nothing_left(results: Path, said: str = "") -> None:
    """Nothing of the runs under `results` is left; `said`: the run's stderr, shown if so."""
    for run_id in _run_ids(results):
        assert _leftovers(run_id) == {"containers": [], "networks": [], "volumes": []}, said
    assert _locusts_writing_to(results) == []


def _remove_leftovers(results: Path) -> None:
    """Only for a test that already failed: remove what its own runs left, by their label."""
    docker = DockerClient()
    for run_id in _run_ids(results):
        found = _leftovers(run_id)
        for container in found["containers"]:
            docker.container.remove(container, force=True, volumes=True)
        for network in found["networks"]:
            docker.network.remove(network)
        for volume in found["volumes"]:
            docker.volume.remove(volume)
    for pid in _locusts_writing_to(results):
        os.killpg(pid, signal.SIGKILL)


class Runs:
    """Starts CLI runs for one test and, whatever happens, ends them and their leftovers."""

    def __init__(self, results: Path) -> None:
        self.results = results
        self.started: list[CliRun] = []

    def start(self, *args: str, repo: Path = REPO) -> CliRun:
        run = CliRun(list(args), self.results, repo=repo)
        self.started.append(run)
        return run

    def __enter__(self) -> Runs:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for run in self.started:
            run.kill()
        _remove_leftovers(self.results)


@pytest.fixture
def runs(tmp_path: Path) -> Iterator[Runs]:
    with Runs(tmp_path / "results") as started:
        yield started


@pytest.fixture(scope="module")
def sim_images() -> None:
    """The --sim stand-ins (built once, usually already there)."""
    for version in ("3.4.0.0", "3.4.1.0"):
        build_sim_images(version, Engine())


def _fresh_checkout(root: Path, version: str) -> tuple[Path, str]:
    """A copy of the checkout whose plugin source differs by a comment: its plugin image tag
    exists nowhere yet, so a run from it must build. Returns the copy and that tag."""
    checkout = root / "checkout"
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, checkout / name, ignore=SKIPPED)
        else:
            shutil.copy2(source, checkout / name)
    main_go = checkout / "plugins" / "example-plugin" / "main.go"
    main_go.write_text(main_go.read_text() + f"\n// test build {uuid.uuid4().hex}\n")
    return checkout, _plugin_tag(version, checkout, sim=True)


def _plugin_tag(version: str, repo: Path, *, sim: bool) -> str:
    """The tag of the `go` plugin image a run builds for `version` from `repo`."""
    images = build_sim_images(version, Engine(), root=repo)
    (source,) = resolve_plugins(["go"], repo)
    plan = plan_plugin_image(
        source,
        kong_image=images.kong_image,
        go_image=images.go_image,
        sim=sim,
        engine=Engine(),
        root=repo,
    )
    return plan.tag


def _remove_image(tag: str) -> None:
    docker = DockerClient()
    if docker.image.exists(tag):
        docker.image.remove(tag, force=True)


def _builds_from(checkout: Path) -> list[int]:
    """Processes still building from `checkout` (a `docker compose ... build`)."""
    return [
        process.info["pid"]
        for process in psutil.process_iter(["pid", "cmdline"])
        if "build" in (process.info["cmdline"] or [])
        and str(checkout) in " ".join(process.info["cmdline"])
    ]


def _saved_rows(run_dir: Path) -> dict[str, dict[str, object]]:
    data = json.loads((run_dir / "results.json").read_text())
    return {row["version"]: row for row in data["versions"]}


# --- 3. Docker missing, daemon down, Compose missing: exit 2 and what to do -------------


def _fake_docker(tmp_path: Path, script: str) -> str:
    """A PATH whose `docker` is `script`, followed by this Python's folder (no real docker)."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    fake = bin_dir / "docker"
    fake.write_text("#!/bin/sh\n" + script)
    fake.chmod(0o755)
    return f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin"


def _cli_with_path(tmp_path: Path, path: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestration", *args],
        cwd=tmp_path,
        env=_cli_env(path=path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


DAEMON_DOWN = (
    'if [ "$1" = info ]; then echo "Cannot connect to the Docker daemon at '
    'unix:///var/run/docker.sock. Is the docker daemon running?" >&2; exit 1; fi\nexit 0\n'
)
COMPOSE_MISSING = (
    'if [ "$1" = compose ]; then echo "docker: \'compose\' is not a docker command." >&2; '
    "exit 1; fi\necho 20.10.24\n"
)


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        (None, "the docker CLI is not on PATH: install Docker"),
        (DAEMON_DOWN, "the Docker daemon does not answer"),
        (COMPOSE_MISSING, "the Docker Compose v2 plugin is missing"),
    ],
    ids=["no-docker", "daemon-down", "no-compose"],
)
def test_missing_docker_pieces_exit_2_with_what_to_do(
    tmp_path: Path, script: str | None, expected: str
) -> None:
    if script is None:
        path = f"{Path(sys.executable).parent}:{tmp_path}"  # a folder with no docker in it
        assert shutil.which("docker", path=path) is None
    else:
        path = _fake_docker(tmp_path, script)

    done = _cli_with_path(tmp_path, path, "run", "3.4.1.0", "--sim", "--requests", "200")

    assert done.returncode == 2, done.stderr
    assert expected in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "results").exists()
    if script == DAEMON_DOWN:
        assert "Cannot connect to the Docker daemon" in done.stderr
        assert "start it (systemctl start docker" in done.stderr
    if script == COMPOSE_MISSING:
        assert "cli-plugins/docker-compose" in done.stderr


def test_a_daemon_that_hangs_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", _fake_docker(tmp_path, "sleep 30\n"))
    monkeypatch.setattr(processes, "COMMAND_TIMEOUT_S", 1.0)

    started = time.monotonic()
    with pytest.raises(EnvironmentProblem, match="gave no answer in 1s; start it"):
        stack.check_docker()
    assert time.monotonic() - started < 10


# --- small guarantees the cases below rely on -------------------------------------------


def test_signals_held_delays_a_ctrl_c_until_the_block_ends() -> None:
    finished_block = False
    with pytest.raises(KeyboardInterrupt), signals_held():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # a signal is handled between bytecodes: give it the chance
        finished_block = True
    assert finished_block
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_env_file_refuses_values_that_could_add_variables(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="KPM_GO_IMAGE"):
        stack.write_env_file(tmp_path / "x.env", {"KPM_GO_IMAGE": "golang:1.22\nKPM_RUN_ID=x"})
    assert not (tmp_path / "x.env").exists()


def test_build_failure_names_the_missing_base_image() -> None:
    lines = [
        "#3 [kong internal] load metadata for docker.io/kong/kong-gateway:9.9.9.9",
        '#3 ERROR: failed to do request: Head "https://registry-1.docker.io/v2/kong/'
        'kong-gateway/manifests/9.9.9.9": dial tcp: lookup registry-1.docker.io: no such host',
        "#4 [kong internal] load metadata for docker.io/library/golang:1.22",
        "#4 CANCELED",
        "failed to solve: rpc error: code = Unknown desc = ...",
    ]
    summary = build_failure(lines)
    assert summary.startswith("base image docker.io/kong/kong-gateway:9.9.9.9 could not be had")
    assert "no such host" in summary
    assert "docker pull docker.io/kong/kong-gateway:9.9.9.9" in summary
    assert build_failure(["#7 ERROR: process did not complete"]) == (
        "build step #7 failed: process did not complete"
    )


def _spec(tmp_path: Path) -> StackSpec:
    return StackSpec(
        version="3.4.1.0",
        kong_image="kong-sim",
        go_image="go-builder",
        image_tag="kong-plugin-matrix:test",
        workers=1,
        project_name="kpm-test-never-started",
        run_id="test",
        env_file=tmp_path / "compose.env",
    )


def test_a_failing_log_save_does_not_hide_why_the_stack_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    kong = Stack(_spec(tmp_path), log_path=tmp_path / "kong.log")
    kong._started = True  # as after `compose up`

    def save_fails(path: Path) -> Path:
        raise StackError(f"could not save the log to {path}: the daemon went away")

    removed: list[bool] = []
    monkeypatch.setattr(kong, "save_logs", save_fails)
    monkeypatch.setattr(kong, "_remove", lambda: removed.append(True))

    with pytest.raises(ReadyTimeout, match="was not ready"):
        try:
            raise ReadyTimeout("Kong 3.4.1.0 was not ready within 5s")
        finally:
            kong.__exit__(None, None, None)

    assert removed == [True]  # torn down all the same
    assert "the daemon went away" in caplog.text


class _StackWithoutLog:
    """Stands in for Stack (no Docker): it never manages to save its log."""

    def __init__(self, spec: object, **_: object) -> None:
        self.spec = spec

    def __enter__(self) -> _StackWithoutLog:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def close(self, *, expect_running: bool = False) -> None:
        return None

    def exec_command(self) -> list[str]:
        return ["true"]  # a sampler that samples nothing


def test_a_log_that_could_not_be_saved_is_an_error_row_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = RunConfig(
        run_id="r", targets=(target_for_version("3.4.1.0"),), results_root=tmp_path, sim=True
    )
    monkeypatch.setattr(VersionWorld, "_stack_spec", lambda _world: _spec(tmp_path))
    monkeypatch.setattr(world, "Stack", _StackWithoutLog)

    def straight_to_the_end(session: scenarios.Session) -> scenarios.Outcome:
        with session.world(WorldOptions(prestart_locust=False)) as up:
            up.finish()  # the stack went down, and its log is nowhere
        raise AssertionError("finish() should have said the log is missing")

    monkeypatch.setattr(
        scenarios, "get", lambda name: scenarios.Scenario(name, "test", straight_to_the_end)
    )
    row = pipeline.measure_job(pipeline.Job(config.targets[0]), config)

    assert row.status == "error"
    assert "Kong's log could not be saved" in (row.error or "")


def test_threads_publishing_at_once_leave_valid_results(tmp_path: Path) -> None:
    runs = [tmp_path / f"run-{n}" for n in range(4)]
    for run_dir in runs:
        run_dir.mkdir()

    def point(run_dir: Path) -> None:
        for _ in range(50):
            run_files.point_latest(tmp_path, run_dir)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(point, runs))

    assert (tmp_path / "latest").resolve() in {r.resolve() for r in runs}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".latest")] == []


# --- 4. an image that cannot be had -------------------------------------------------------


@pytest.mark.docker
def test_missing_image_is_an_error_row_and_the_matrix_goes_on(
    tmp_path: Path, runs: Runs, sim_images: None
) -> None:
    # The second target is a local image (kong-sim) with a local builder: no registry needed.
    local = build_sim_images("3.4.1.0", Engine())
    missing = "kong/kong-gateway:9.9.9.9"
    (source,) = resolve_plugins(["go"], REPO)
    good_tag = plan_plugin_image(
        source, kong_image=local.kong_image, go_image=local.go_image, sim=False, engine=Engine()
    ).tag
    try:
        started = time.monotonic()
        run = runs.start(
            "matrix",
            *["--image", missing, "--image", local.kong_image, "--go-image", local.go_image],
            *["--requests", "200", "--ready-timeout", "60"],
        )
        code = run.finish()
        elapsed = time.monotonic() - started
    finally:
        _remove_image(good_tag)

    rows = _saved_rows(run.run_dir())
    assert code == 1, run.stderr
    assert elapsed < 90
    assert rows[missing]["status"] == "error"
    error = str(rows[missing]["error"])
    assert f"base image docker.io/{missing} could not be had" in error
    assert "or use --sim" in error
    assert (run.run_dir() / folder_name(missing) / "build.log").is_file()
    assert rows[local.kong_image]["status"] == "ok", rows[local.kong_image]["error"]
    assert rows[local.kong_image]["requests"] == 200
    assert "## Errors" in (run.run_dir() / "summary.md").read_text()
    assert f"==> {missing}: error: could not build" in run.stderr
    assert_nothing_left(runs.results)


# --- 5. Kong never ready ----------------------------------------------------------------


@pytest.mark.docker
def test_kong_that_never_gets_ready_is_an_error_row_with_its_log(
    tmp_path: Path, runs: Runs, sim_images: None
) -> None:
    # kong-sim refuses a version it has no release family for and exits 1 at start, the way Kong
    # does on a bad configuration: no test hook, just a version nobody should measure.
    image = "kong/kong-gateway:3.3.0.0"
    refused = build_sim_images("3.3.0.0", Engine())
    plugin_tag = _plugin_tag("3.3.0.0", REPO, sim=True)
    try:
        started = time.monotonic()
        run = runs.start("run", "--sim", "--image", image, "--ready-timeout", "20")
        code = run.finish()
        elapsed = time.monotonic() - started
    finally:
        _remove_image(plugin_tag)
        _remove_image(refused.kong_image)

    row = _saved_rows(run.run_dir())[image]
    error = str(row["error"])
    log = run.run_dir() / folder_name(image) / "kong.log"
    assert code == 1, run.stderr
    assert elapsed < 20 + 60  # the readiness bound plus builds and teardown
    assert row["status"] == "error"
    assert "exited with code 1 before it was ready" in error
    assert 'last log lines: Error: no release family known for Kong version "3.3.0.0"' in error
    assert f"full log: {log}" in error
    assert 'no release family known for Kong version "3.3.0.0"' in log.read_text()
    assert_nothing_left(runs.results)


# --- 6. Ctrl-C and SIGTERM --------------------------------------------------------------


def _assert_interrupted_run(run: CliRun, finished: list[str], interrupted: list[str]) -> None:
    rows = _saved_rows(run.run_dir())
    assert [v for v in finished if rows[v]["status"] == "ok"] == finished
    assert [v for v in interrupted if rows[v]["status"] == "interrupted"] == interrupted
    summary = (run.run_dir() / "summary.md").read_text()
    assert "interrupted" in summary
    assert f"finished versions and the summary are in {run.run_dir()}" in run.stderr


@pytest.mark.docker
def test_ctrl_c_during_load_twice_tears_down_and_keeps_finished_rows(
    runs: Runs, sim_images: None
) -> None:
    run = runs.start("matrix", "--sim", "3.4.0.0", "3.4.1.0", "--requests", "3000")
    run.wait_for_line("==> 3.4.0.0")
    run.wait_for_line("3.4.1.0: sending 3000 requests")
    run.signal_group(signal.SIGINT)
    run.wait_until(
        "3.4.1.0 tearing down",
        lambda: any("tearing down" in line and "Kong 3.4.1.0" in line for line in run.lines),
    )
    run.signal_group(signal.SIGINT)  # impatient: a second Ctrl-C while the stack goes down

    assert run.finish() == 130, run.stderr
    _assert_interrupted_run(run, finished=["3.4.0.0"], interrupted=["3.4.1.0"])
    assert "interrupted by SIGINT (Ctrl-C): every stack was torn down" in run.stderr
    assert_nothing_left(runs.results, run.stderr)
    # 9. an interrupted run's folder still reads with `collect` and `report`
    collected = subprocess.run(
        [sys.executable, "-m", "orchestration", "collect", str(run.run_dir()), "--json"],
        env=_cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert collected.returncode == 0, collected.stderr
    assert len(json.loads(collected.stdout)) == 2  # both versions' kong.log
    shown = subprocess.run(
        [sys.executable, "-m", "orchestration", "report", str(run.run_dir())],
        env=_cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 1
    assert "| 3.4.1.0 " in shown.stdout and "interrupted" in shown.stdout


@pytest.mark.docker
def test_ctrl_c_while_a_stack_goes_down_in_the_background_keeps_its_row_and_leaves_nothing(
    runs: Runs, sim_images: None
) -> None:
    # Pipelined: 3.4.1.0 comes up while 3.4.0.0 goes down; the Ctrl-C hits both at once.
    run = runs.start("matrix", "--sim", "3.4.0.0", "3.4.1.0", "--requests", "300")
    run.wait_until(
        "3.4.0.0 going down while 3.4.1.0 comes up",
        lambda: (
            "3.4.1.0: preparing images" in run.stderr
            and any("tearing down" in line and "Kong 3.4.0.0" in line for line in run.lines)
        ),
    )
    run.signal_group(signal.SIGINT)

    assert run.finish() == 130, run.stderr
    _assert_interrupted_run(run, finished=["3.4.0.0"], interrupted=["3.4.1.0"])
    kept = _saved_rows(run.run_dir())["3.4.0.0"]
    assert (kept["verdict"], kept["requests"]) == ("stable", 300)  # as measured, not cut short
    assert_nothing_left(runs.results)


@pytest.mark.docker
def test_sigterm_while_waiting_for_kong(runs: Runs, sim_images: None) -> None:
    run = runs.start("run", "--sim", "3.4.1.0", "3.4.0.0", "--requests", "200")
    run.wait_for_line("3.4.1.0: waiting for Kong")
    run.process.send_signal(signal.SIGTERM)  # to the CLI alone, as `kill` or a CI runner does

    assert run.finish() == 143, run.stderr
    _assert_interrupted_run(run, finished=[], interrupted=["3.4.1.0", "3.4.0.0"])
    assert "interrupted by SIGTERM" in run.stderr
    assert_nothing_left(runs.results)


@pytest.mark.docker
def test_sigterm_during_a_build_stops_it(tmp_path: Path, runs: Runs, sim_images: None) -> None:
    checkout, tag = _fresh_checkout(tmp_path, "3.4.1.0")
    try:
        run = runs.start("run", "--sim", "3.4.1.0", "--requests", "200", repo=checkout)
        run.wait_for_line(f"building {tag}")
        run.process.send_signal(signal.SIGTERM)
        code = run.finish()
        _poll_until("the build to stop", lambda: not _builds_from(checkout), timeout_s=20)
    finally:
        _remove_image(tag)

    assert code == 143, run.stderr
    _assert_interrupted_run(run, finished=[], interrupted=["3.4.1.0"])
    assert_nothing_left(runs.results)


@pytest.mark.docker
def test_ctrl_c_with_parallel_versions_stops_every_stack_promptly(
    runs: Runs, sim_images: None
) -> None:
    run = runs.start(
        "matrix",
        *["--sim", "3.4.0.0", "3.4.1.0", "--parallel", "2"],
        *["--requests", "100000", "--load-timeout", "300"],
    )
    run.wait_for_line("3.4.0.0: sending")
    run.wait_for_line("3.4.1.0: sending")
    run.wait_until("both Locusts running", lambda: len(_locusts_writing_to(runs.results)) == 2)
    signalled = time.monotonic()
    run.signal_group(signal.SIGINT)

    assert run.finish(timeout_s=60) == 130, run.stderr
    assert time.monotonic() - signalled < 40
    _assert_interrupted_run(run, finished=[], interrupted=["3.4.0.0", "3.4.1.0"])
    assert_nothing_left(runs.results)


# --- 7. the plugin server dies during the load -------------------------------------------


def _container_of(results: Path) -> str:
    (run_id,) = _run_ids(results)
    containers = DockerClient().container.list(filters=[("label", f"{RUN_LABEL}={run_id}")])
    assert len(containers) == 1
    return str(containers[0].id)


def _plugin_pid(container: str) -> int:
    """The host PID of the plugin server (kong-sim's image has no shell to kill it from)."""
    top = subprocess.run(
        ["docker", "top", container, "-eo", "pid,comm"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.splitlines()
    pids = [int(line.split()[0]) for line in top[1:] if line.split()[1:] == ["example-plugin"]]
    assert len(pids) == 1, top
    return pids[0]


def _counting_started(container: str) -> bool:
    tail = subprocess.run(
        ["docker", "logs", "--tail", "3", container],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return "New() has been called" in tail.stdout + tail.stderr


@pytest.mark.docker
def test_a_plugin_server_killed_during_the_load_is_counted(runs: Runs, sim_images: None) -> None:
    requests = 8000  # the ~1 s restart fails requests; enough load keeps the verdict clear
    run = runs.start("run", "--sim", "3.4.1.0", "--requests", str(requests), "--users", "10")
    run.wait_for_line("3.4.1.0: sending")
    container = _container_of(runs.results)
    run.wait_until("New() lines in the log", lambda: _counting_started(container))
    os.kill(_plugin_pid(container), signal.SIGKILL)

    # The requests of the outage did not run the plugin: no verdict, and the row says why.
    assert run.finish() == 1, run.stderr
    row = _saved_rows(run.run_dir())["3.4.1.0"]
    log = (run.run_dir() / "3.4.1.0" / "kong.log").read_text()
    first, second = log.split("terminated: signal 9", 1)
    highest_before = max(int(n) for n in NEW_CALLS_RE.findall(first))
    highest_after = max(int(n) for n in NEW_CALLS_RE.findall(second))
    assert (row["status"], row["verdict"]) == ("error", "partial")
    assert row["requests"] == requests
    error = str(row["error"])
    assert row["ran_on"] == requests - int(str(row["failures"])) < requests
    assert f"the plugin ran on {row['ran_on']} of the {requests} requests only" in error
    assert "external pluginserver 'example-plugin' terminated: signal 9" in error
    assert row["plugin_server_starts"] == 2
    # The counter restarted at 1: the total adds both lives of the server.
    assert row["plugin_counter"] == highest_after
    assert row["new_calls_total"] == highest_before + highest_after
    assert_nothing_left(runs.results)


@pytest.mark.docker
def test_kong_killed_during_the_load_is_an_error_row_naming_its_exit(
    runs: Runs, sim_images: None
) -> None:
    """`docker kill` of Kong mid-load (as an OOM kill or a crash): the load stops within seconds
    and the row names Kong's exit; no verdict, nothing blamed on the plugin."""
    requests = 30000
    run = runs.start("run", "--sim", "3.4.1.0", "--requests", str(requests), "--users", "10")
    run.wait_for_line("3.4.1.0: sending")
    container = _container_of(runs.results)
    run.wait_until("New() lines in the log", lambda: _counting_started(container))
    subprocess.run(["docker", "kill", container], check=True, capture_output=True, timeout=30)
    killed = time.monotonic()
    run.wait_until("the load to stop", lambda: any("Kong died" in line for line in run.lines), 30)
    stopped_after_s = time.monotonic() - killed

    assert run.finish() == 1, run.stderr
    row = _saved_rows(run.run_dir())["3.4.1.0"]
    error = str(row["error"])
    assert (row["status"], row["verdict"]) == ("error", "error")
    assert error.startswith("Kong died during the load: the container of ")
    assert "exited with code 137 (SIGKILL: killed from outside" in error
    assert "the plugin ran on" not in error  # not blamed on the plugin
    assert stopped_after_s < 15, stopped_after_s
    assert_nothing_left(runs.results)


# --- 8. two matrices at once from one checkout --------------------------------------------


@pytest.mark.docker
def test_two_runs_at_once_building_the_same_tag_both_succeed(
    tmp_path: Path, runs: Runs, sim_images: None
) -> None:
    checkout, tag = _fresh_checkout(tmp_path, "3.4.1.0")
    try:
        both = [
            runs.start("run", "--sim", "3.4.1.0", "--requests", "200", repo=checkout)
            for _ in range(2)
        ]
        codes = [run.finish() for run in both]
        built = [sum(f"building {tag}" in line for line in run.lines) for run in both]
    finally:
        _remove_image(tag)

    assert codes == [0, 0], [run.stderr for run in both]
    assert built == [1, 1]  # each really built it, at the same time
    run_ids = _run_ids(runs.results)
    assert len(run_ids) == 2
    latest = runs.results / "latest"
    assert latest.resolve().name in run_ids
    assert run_files.load_run(latest).all_ok
    for run_id in run_ids:
        assert _saved_rows(runs.results / run_id)["3.4.1.0"]["requests"] == 200
    assert_nothing_left(runs.results)
