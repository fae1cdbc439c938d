"""Tests for orchestration/stack.py.

The Docker tests run a real Compose project whose image is the hello-server
fixture (tests/docker_fixtures/): a static Go binary built here with the host's Go,
in a FROM-scratch image, so nothing is pulled. It answers on the same ports and
paths as Kong with our plugin.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from python_on_whales import DockerClient

from orchestration.contract import EXAMPLE
from orchestration.errors import EnvironmentProblem, ImageUnavailable, KongDied, ReadyTimeout
from orchestration.stack import (
    DEFAULT_COMPOSE_FILE,
    LABEL,
    OWNER_LABEL,
    RUN_LABEL,
    LogFollower,
    Stack,
    StackSpec,
    check_docker,
    plugin_not_answering,
    plugin_server_lines,
    project_name_for,
    sources_digest,
    write_env_file,
    write_service_env_file,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "docker_fixtures"
HELLO_SERVER = FIXTURES / "hello-server"
FIXTURE_COMPOSE = FIXTURES / "compose.yaml"
PROJECT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
DOCKER_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


# --- no Docker needed -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("run_id", "version"),
    [
        ("20240101T120000", "3.4.1.0"),
        ("Run.With.Dots", "3.5.0.1"),
        ("abc", "kong/kong-gateway:3.4.0.0"),
        ("x", "..3.6.1.."),
    ],
)
def test_project_name_for_is_a_valid_compose_name(run_id: str, version: str) -> None:
    name = project_name_for(run_id, version)

    assert "." not in name
    assert PROJECT_NAME.fullmatch(name), name


def test_project_name_for_tells_versions_apart() -> None:
    names = {project_name_for("run1", version) for version in ("3.4.0.0", "3.4.1.0", "3.4.1.1")}

    assert len(names) == 3


@pytest.mark.parametrize("tap", [True, False])
def test_kong_variables_say_how_kong_starts_the_plugin(tmp_path: Path, tap: bool) -> None:
    spec = dataclasses.replace(_fixture_spec(tmp_path, "unused"), tap=tap)

    variables = spec.kong_variables()
    start = variables["KONG_PLUGINSERVER_EXAMPLE_PLUGIN_START_CMD"]

    if tap:
        assert start == (
            "/usr/local/bin/kpm-tap -listen /usr/local/kong/example-plugin.socket "
            "-protocol ProtoBuf:1 -private-prefix /tmp/kpm-tap "
            "-server-socket /tmp/kpm-tap/example-plugin.socket -- /usr/local/bin/example-plugin"
        )
    else:
        assert start == "/usr/local/bin/example-plugin"
    # no generated config: the image's own kong.yml, never both (Kong would ignore the string)
    assert variables["KONG_DECLARATIVE_CONFIG"] == "/etc/kong/kong.yml"
    assert "KONG_DECLARATIVE_CONFIG_STRING" not in variables
    with_config = dataclasses.replace(spec, declarative_json="{}").kong_variables()
    assert "KONG_DECLARATIVE_CONFIG" not in with_config
    write_service_env_file(tmp_path / "kong.env", variables)  # an env file can carry them
    write_env_file(tmp_path / "compose.env", spec.compose_variables())


def test_sources_digest_sees_renames(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("same")
    before = sources_digest(tmp_path, ["a.txt", "b.txt"])
    (tmp_path / "a.txt").rename(tmp_path / "b.txt")

    assert sources_digest(tmp_path, ["a.txt", "b.txt"]) != before


def test_check_docker_names_the_missing_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(EnvironmentProblem, match="docker CLI is not on PATH"):
        check_docker()


def _wait_for(what: str, done: Callable[[], bool], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"waited {timeout_s:.0f}s for {what}"
        time.sleep(0.02)


def test_log_follower_passes_on_whole_lines_and_writes_everything(tmp_path: Path) -> None:
    blocks: list[bytes] = []
    script = "printf 'one\\ntwo\\nthr'; sleep 0.3; printf 'ee\\nfour'; sleep 60"
    follower = LogFollower(["sh", "-c", script], tmp_path / "logs" / "kong.log", blocks.append)

    _wait_for("three lines", lambda: b"".join(blocks) == b"one\ntwo\nthree\n")
    followed_to_the_end = follower.stop()  # while it still runs, as at a teardown

    assert followed_to_the_end
    assert all(block.endswith(b"\n") for block in blocks[:-1])
    assert blocks[-1] == b"four"  # the unfinished last line, once the output ended
    assert (tmp_path / "logs" / "kong.log").read_bytes() == b"one\ntwo\nthree\nfour"


def test_log_follower_whose_command_failed_says_so(tmp_path: Path) -> None:
    blocks: list[bytes] = []
    follower = LogFollower(
        ["sh", "-c", "echo partial; exit 3"], tmp_path / "kong.log", blocks.append
    )

    _wait_for("the command to end", lambda: not follower.running)

    assert follower.stop() is False
    assert blocks == [b"partial\n"]


# --- Docker -----------------------------------------------------------------------------


def _labelled(run_id: str) -> tuple[list[str], list[str]]:
    """Names of the containers and networks carrying this run's label."""
    docker = DockerClient()
    containers = docker.container.list(all=True, filters=[("label", f"{RUN_LABEL}={run_id}")])
    networks = docker.network.list(filters=[("label", f"{RUN_LABEL}={run_id}")])
    return [c.name for c in containers], [n.name for n in networks]


@pytest.fixture(scope="module")
def fixture_context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A build folder with the hello-server binary (host Go, static) and its Dockerfile."""
    context = tmp_path_factory.mktemp("hello-server-context")
    subprocess.run(
        ["go", "build", "-o", str(context / "hello-server"), "."],
        cwd=HELLO_SERVER,
        env={**os.environ, "CGO_ENABLED": "0"},
        check=True,
        timeout=300,
    )
    shutil.copy2(HELLO_SERVER / "Dockerfile", context / "Dockerfile")
    return context


@pytest.fixture(scope="module")
def fixture_image(fixture_context: Path) -> Iterator[str]:
    """The fixture's image tag; the first Stack builds it, the module removes it at the end."""
    digest = sources_digest(FIXTURES, ["hello-server"])
    tag = f"kong-plugin-matrix/test-hello-server:{digest}-{uuid.uuid4().hex[:6]}"
    yield tag
    docker = DockerClient()
    if docker.image.exists(tag):
        docker.image.remove(tag, force=True)


def _fixture_spec(tmp_path: Path, image: str, *, compose_file: Path = FIXTURE_COMPOSE) -> StackSpec:
    run_id = f"test-{uuid.uuid4().hex[:10]}"
    return StackSpec(
        version="fixture.1",
        kong_image="unused",
        go_image="unused",
        image_tag=image,
        workers=1,
        project_name=project_name_for(run_id, "fixture.1"),
        run_id=run_id,
        env_file=tmp_path / "compose.env",
        compose_file=compose_file,
    )


@pytest.fixture
def fixture_env(monkeypatch: pytest.MonkeyPatch, fixture_context: Path) -> pytest.MonkeyPatch:
    monkeypatch.setenv("KPM_FIXTURE_CONTEXT", str(fixture_context))
    monkeypatch.setenv("KPM_FIXTURE_MODE", "ready")
    return monkeypatch


@pytest.mark.docker
def test_check_docker_passes_here() -> None:
    check_docker()


@pytest.mark.docker
def test_stack_comes_up_on_loopback_and_saves_logs(
    tmp_path: Path, fixture_env: pytest.MonkeyPatch, fixture_image: str
) -> None:
    spec = _fixture_spec(tmp_path, fixture_image)

    with Stack(spec) as stack:
        stack.wait_ready(timeout_s=60)
        with urllib.request.urlopen(f"{stack.proxy_url}/hello", timeout=5) as response:
            marker = response.headers.get("X-Example-Message")
        echoed = stack.exec(["/usr/local/bin/hello-server", "echo", "from", "exec"])
        log_text = stack.log_text()
        saved = stack.save_logs(tmp_path / "logs" / "kong.log")
        containers, networks = _labelled(spec.run_id)
        bindings = DockerClient().container.inspect(containers[0]).network_settings.ports
        proxy_url, admin_url = stack.proxy_url, stack.admin_url

    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", proxy_url)
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", admin_url)
    assert proxy_url != admin_url
    assert bindings is not None
    host_ips = {binding["HostIp"] for port in bindings.values() for binding in port or []}
    assert host_ips == {"127.0.0.1"}
    assert marker == "New() calls: 1"
    assert echoed.strip() == "from exec"
    assert 'fixture: starting in mode "ready"' in log_text
    assert '"GET /hello" 200' in log_text
    assert "kong-1" not in log_text  # no Compose prefix
    saved_text = saved.read_text()
    assert '"GET /hello" 200' in saved_text
    assert "kong-1" not in saved_text
    assert len(containers) == 1
    assert len(networks) == 1
    assert _labelled(spec.run_id) == ([], [])
    assert f"KPM_RUN_ID={spec.run_id}" in spec.env_file.read_text()


@pytest.mark.docker
def test_stack_follows_its_log_into_log_path(
    tmp_path: Path, fixture_env: pytest.MonkeyPatch, fixture_image: str
) -> None:
    spec = _fixture_spec(tmp_path, fixture_image)
    log_path = tmp_path / "kong.log"
    blocks: list[bytes] = []

    with Stack(spec, log_path=log_path, on_log=blocks.append) as stack:
        plugin_counter = stack.wait_ready(timeout_s=60)
        for _ in range(3):
            urllib.request.urlopen(f"{stack.proxy_url}/hello", timeout=5).close()
        _wait_for("4 requests in the log", lambda: b"".join(blocks).count(b"GET /hello") >= 4)
        read_at_once = stack.log_text()

    followed = log_path.read_text()
    assert plugin_counter == 1  # the fixture's header: "New() calls: 1"
    assert b"".join(blocks).decode() == followed
    assert followed.startswith(read_at_once)
    assert followed.count('"GET /hello" 200') == 4
    assert "kong-1" not in followed  # no Compose prefix
    assert _labelled(spec.run_id) == ([], [])


@pytest.mark.docker
def test_a_kong_killed_before_the_teardown_is_told_during_and_after_its_load(
    tmp_path: Path, fixture_env: pytest.MonkeyPatch, fixture_image: str
) -> None:
    """A kill seen by `death()` (the load's watch) and one seen only by the teardown's last look
    (a load whose last response came just before it) are both KongDied, each saying when."""
    during = _fixture_spec(tmp_path / "during", fixture_image)
    after = _fixture_spec(tmp_path / "after", fixture_image)
    for spec in (during, after):
        spec.env_file.parent.mkdir()

    with Stack(during, log_path=tmp_path / "during.log") as stack:
        stack.wait_ready(timeout_s=60)
        assert stack.death() is None
        _kill(during.run_id)
        _wait_for("the follower to see the death", lambda: stack.death() is not None)
        seen = stack.death()
    with Stack(after, log_path=tmp_path / "after.log") as stack:
        stack.wait_ready(timeout_s=60)
        _kill(after.run_id)
        with pytest.raises(KongDied) as raised:
            stack.close(expect_running=True)

    assert seen is not None
    assert str(seen).startswith("Kong died during the load: the container of stack ")
    assert str(raised.value).startswith("Kong died after its load, before its teardown: ")
    for text in (str(seen), str(raised.value)):
        assert "exited with code 137 (SIGKILL: killed from outside" in text
    assert "fixture: starting" in (tmp_path / "after.log").read_text()  # saved before the down
    assert _labelled(during.run_id) == _labelled(after.run_id) == ([], [])


@pytest.mark.docker
def test_a_running_kong_closes_quietly_when_expected_to_run(
    tmp_path: Path, fixture_env: pytest.MonkeyPatch, fixture_image: str
) -> None:
    spec = _fixture_spec(tmp_path, fixture_image)
    with Stack(spec, log_path=tmp_path / "kong.log") as stack:
        stack.wait_ready(timeout_s=60)
        stack.close(expect_running=True)  # raises if it reads Kong as stopped

    assert _labelled(spec.run_id) == ([], [])


def _kill(run_id: str) -> None:
    (container,) = _labelled(run_id)[0]
    subprocess.run(["docker", "kill", container], check=True, capture_output=True, timeout=30)


@pytest.mark.docker
def test_ready_timeout_quotes_the_log(
    tmp_path: Path, fixture_env: pytest.MonkeyPatch, fixture_image: str
) -> None:
    fixture_env.setenv("KPM_FIXTURE_MODE", "silent")
    spec = _fixture_spec(tmp_path, fixture_image)

    with Stack(spec) as stack:
        started = time.monotonic()
        with pytest.raises(ReadyTimeout) as raised:
            stack.wait_ready(timeout_s=3)
        waited = time.monotonic() - started

    assert "X-Example-Message" in str(raised.value)
    assert "container health: " in str(raised.value)
    assert any("without X-Example-Message" in line for line in raised.value.last_log_lines)
    assert len(raised.value.last_log_lines) <= 20
    assert 3 <= waited < 15
    assert _labelled(spec.run_id) == ([], [])


@pytest.mark.docker
def test_exited_container_fails_at_once_with_its_exit_code(
    tmp_path: Path, fixture_env: pytest.MonkeyPatch, fixture_image: str
) -> None:
    fixture_env.setenv("KPM_FIXTURE_MODE", "exit")
    spec = _fixture_spec(tmp_path, fixture_image)

    started = time.monotonic()
    with pytest.raises(ReadyTimeout) as raised, Stack(spec) as stack:
        stack.wait_ready(timeout_s=120)

    assert time.monotonic() - started < 60
    assert "exited with code 3" in str(raised.value)
    assert any("exiting with code 3" in line for line in raised.value.last_log_lines)
    assert _labelled(spec.run_id) == ([], [])


@pytest.mark.docker
@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_teardown_runs_when_the_block_raises(
    tmp_path: Path,
    fixture_env: pytest.MonkeyPatch,
    fixture_image: str,
    error: type[BaseException],
) -> None:
    spec = _fixture_spec(tmp_path, fixture_image)
    seen_inside: tuple[list[str], list[str]] = ([], [])

    with pytest.raises(error, match="boom"), Stack(spec):
        seen_inside = _labelled(spec.run_id)
        raise error("boom")

    assert len(seen_inside[0]) == 1
    assert len(seen_inside[1]) == 1
    assert _labelled(spec.run_id) == ([], [])


@pytest.mark.docker
def test_keep_leaves_the_stack_running(
    tmp_path: Path, fixture_env: pytest.MonkeyPatch, fixture_image: str
) -> None:
    spec = _fixture_spec(tmp_path, fixture_image)
    try:
        with Stack(spec, keep=True):
            pass
        kept = _labelled(spec.run_id)
    finally:
        spec.engine.compose(spec.compose_file, spec.project_name, spec.env_file).compose.down(
            volumes=True, remove_orphans=True, quiet=True
        )

    assert len(kept[0]) == 1
    assert _labelled(spec.run_id) == ([], [])


@pytest.mark.docker
def test_failed_build_raises_image_unavailable(
    tmp_path: Path, fixture_env: pytest.MonkeyPatch
) -> None:
    empty_context = tmp_path / "context"
    empty_context.mkdir()
    shutil.copy2(HELLO_SERVER / "Dockerfile", empty_context / "Dockerfile")  # binary missing
    fixture_env.setenv("KPM_FIXTURE_CONTEXT", str(empty_context))
    image = f"kong-plugin-matrix/test-broken:{uuid.uuid4().hex[:8]}"
    spec = _fixture_spec(tmp_path, image)

    with pytest.raises(ImageUnavailable) as raised, Stack(spec):
        pass

    assert image in str(raised.value)
    assert "hello-server" in str(raised.value)  # the build's own complaint is quoted
    assert not DockerClient().image.exists(image)
    assert _labelled(spec.run_id) == ([], [])


@pytest.mark.docker
def test_images_compose_file_publishes_only_on_loopback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The shell's KPM_* must not override the stack's env file.
    monkeypatch.delenv("KONG_LICENSE_DATA", raising=False)
    monkeypatch.setenv("KPM_WORKERS", "7")
    monkeypatch.setenv("KPM_RUN_ID", "from-the-shell")
    spec = _fixture_spec(
        tmp_path, "kong-plugin-matrix:config-check", compose_file=DEFAULT_COMPOSE_FILE
    )
    write_env_file(spec.env_file, spec.compose_variables())
    write_service_env_file(spec.kong_env_file, spec.kong_variables())
    client = spec.engine.compose(
        spec.compose_file, spec.project_name, spec.env_file, spec.compose_variables()
    )

    config = client.compose.config(return_json=True)

    kong = config["services"]["kong"]
    assert {port["host_ip"] for port in kong["ports"]} == {"127.0.0.1"}
    assert {port["target"] for port in kong["ports"]} == {8000, 8001}
    assert all(not port.get("published") for port in kong["ports"])  # ephemeral
    assert kong["labels"] == {LABEL: "1", RUN_LABEL: spec.run_id, OWNER_LABEL: spec.owner}
    assert config["networks"]["default"]["labels"][RUN_LABEL] == spec.run_id
    assert config["networks"]["default"]["labels"][OWNER_LABEL] == spec.owner
    assert kong["environment"]["KONG_NGINX_WORKER_PROCESSES"] == str(spec.workers)
    # Unset in the shell: null, which Compose leaves out of the container (seen with compose run).
    assert kong["environment"]["KONG_LICENSE_DATA"] is None
    assert not kong.get("privileged")
    assert not kong.get("volumes")
    assert kong["image"] == spec.image_tag
    assert "build" not in kong  # the plugin image is built before the stack (plugins.py)
    assert kong["environment"]["KONG_PLUGINSERVER_EXAMPLE_PLUGIN_START_CMD"] == (
        "/usr/local/bin/example-plugin"
    )
    assert kong["environment"]["KONG_NGINX_WORKER_PROCESSES"] == "1"
    assert kong["environment"]["KONG_PLUGINS"] == "bundled,example-plugin"
    assert kong["healthcheck"]["test"] == ["CMD", "kong", "health"]


@pytest.mark.docker
def test_a_license_in_the_shell_reaches_kong_and_no_file_of_ours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KONG_LICENSE_DATA", '{"license":{"payload":"secret-test-value"}}')
    spec = _fixture_spec(
        tmp_path, "kong-plugin-matrix:config-check", compose_file=DEFAULT_COMPOSE_FILE
    )
    write_env_file(spec.env_file, spec.compose_variables())
    write_service_env_file(spec.kong_env_file, spec.kong_variables())
    client = spec.engine.compose(
        spec.compose_file, spec.project_name, spec.env_file, spec.compose_variables()
    )

    kong = client.compose.config(return_json=True)["services"]["kong"]

    assert kong["environment"]["KONG_LICENSE_DATA"] == '{"license":{"payload":"secret-test-value"}}'
    assert "secret-test-value" not in spec.env_file.read_text()


def test_a_teardown_runs_in_a_session_of_its_own_that_a_group_ctrl_c_cannot_reach() -> None:
    """The teardown's `docker compose down` (run_in_own_session): its own session, made before
    it runs, and its signal mask ours (a signal blocked before it ran killed it once unblocked:
    a stack left behind in CI)."""
    import os
    import sys

    from orchestration.processes import run_in_own_session

    probe = (
        "import os, signal; "
        "print(os.getsid(0), os.getpgid(0), signal.SIGINT in signal.pthread_sigmask(0, []))"
    )
    completed = run_in_own_session([sys.executable, "-c", probe], timeout_s=30)
    session, group, sigint_blocked = completed.stdout.split()

    assert completed.returncode == 0, completed.stderr
    assert int(session) != os.getsid(0) and int(group) != os.getpgid(0)
    assert sigint_blocked == "False"


# A plugin server Kong was given the wrong socket for (go-pdk v0.6 on the JS server's, issue 19).
# A failed connect reads in OpenResty's bare words, as Kong and kong-sim write it.
NOT_ANSWERING_LOG = """\
2026/12/07 21:10:39 [notice] 1001#0: *1 [kong] process.lua:252 Starting go-pdk-06, context: ngx.timer
2026/12/07 21:10:39 [info] 1001#0: *1 [go-pdk-06:18] Listening on socket: /tmp/kpm-tap/go-pdk-06.socket, context: ngx.timer
2026/12/07 21:10:40 [info] 1001#0: *1 [other:19] unrelated, context: ngx.timer
2026/12/07 21:10:55 [error] 1002#0: *259 [kong] mp_rpc.lua:206 [go-pdk-06] trying to connect: no such file or directory, client: 172.24.0.1, server: kong, request: "GET /hello HTTP/1.1", host: "x"
2026/12/07 21:10:55 [error] 1002#0: *260 [kong] mp_rpc.lua:206 [go-pdk-06] trying to connect: no such file or directory, client: 172.24.0.1, server: kong, request: "GET /hello HTTP/1.1", host: "x"
"""  # noqa: E501


def test_a_plugin_that_never_answers_is_told_about_the_plugin() -> None:
    contract = replace(
        EXAMPLE,
        name="go-pdk-06",
        label="go-pdk-06",
        socket="/usr/local/kong/js_pluginserver.sock",
        protocol="MsgPack:1",
        server_command="/usr/local/bin/go-pdk-06",
    )

    lines = plugin_server_lines(NOT_ANSWERING_LOG, contract)
    message = plugin_not_answering(contract, lines)

    assert lines == [
        "2026/12/07 21:10:39 [info] 1001#0: *1 [go-pdk-06:18] Listening on socket: "
        "/tmp/kpm-tap/go-pdk-06.socket",
        "2026/12/07 21:10:39 [notice] 1001#0: *1 [kong] process.lua:252 Starting go-pdk-06",
        "2026/12/07 21:10:55 [error] 1002#0: *260 [kong] mp_rpc.lua:206 [go-pdk-06] trying to "
        "connect: no such file or directory",
    ]
    assert message.startswith(
        "Kong is up, but plugin go-pdk-06 never answered on /hello: Kong talks to its plugin "
        "server 'go-pdk-06' over /usr/local/kong/js_pluginserver.sock (MsgPack:1), started as "
        "`/usr/local/bin/go-pdk-06`. Check that the server starts and listens on that socket; "
        "what Kong's log says of it: 2026/12/07 21:10:39 [info]"
    )
    assert "slow" not in message
    silent = plugin_not_answering(contract, plugin_server_lines("", contract))
    assert silent.endswith(
        "Kong's log has no line from it (`[go-pdk-06:PID] ...`), so it may never have started"
    )
