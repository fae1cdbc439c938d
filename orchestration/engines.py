"""The Docker engines a run spreads its versions over: `--docker-host URL`, repeatable.

An engine is named as `DOCKER_HOST` names one (`unix:///run/docker.sock`,
`tcp://127.0.0.1:2375`); no `--docker-host` means the docker CLI's own choice (`DOCKER_HOST`, the
current context), as before. Each version's stack (build, up, logs, exec, down), its image
checks, the `--sim` stand-in builds and the resource sampler run on the engine that version was
given; `clean` looks at every engine named.

Only engines on this machine are accepted: Compose publishes Kong's ports on the engine host's
127.0.0.1, and this tool sends traffic to this machine's loopback only. An engine on another
machine (`ssh://...`, `tcp://` to another address, or a tunnel to one) is refused with the
alternative: run a job per machine and `merge` the results folders.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from orchestration.engine import Engine
from orchestration.errors import EnvironmentProblem, UsageError
from orchestration.loopback import is_loopback

CHECK_TIMEOUT_S = 15.0
ANOTHER_MACHINE = (
    "its published ports would be on that machine's 127.0.0.1, which this machine cannot reach "
    "(and this tool sends traffic to this machine's loopback only). Measure there instead: run "
    "a job on each machine (python -m orchestration run ... there) and combine the results "
    "folders with python -m orchestration merge DIR..."
)


def parse_docker_host(url: str) -> str:
    """`url` if it names an engine on this machine (unix socket or tcp to loopback); else a
    UsageError that says why and what to do instead."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme == "unix":
        if not parts.path.startswith("/"):
            raise UsageError(
                f"--docker-host {url!r}: a unix socket URL names an absolute path, "
                "e.g. unix:///run/docker.sock"
            )
        return url.strip()
    if parts.scheme == "tcp":
        try:
            host, port = parts.hostname, parts.port
        except ValueError as error:
            raise UsageError(f"--docker-host {url!r}: {error}") from None
        if host is None or port is None:
            raise UsageError(f"--docker-host {url!r}: name the port, e.g. tcp://127.0.0.1:2375")
        if not is_loopback(host):
            raise UsageError(
                f"--docker-host {url!r} is an engine on another machine: " + ANOTHER_MACHINE
            )
        return url.strip()
    if parts.scheme == "ssh":
        raise UsageError(f"--docker-host {url!r} is an engine reached over ssh: " + ANOTHER_MACHINE)
    raise UsageError(
        f"--docker-host {url!r}: use unix:///PATH or tcp://127.0.0.1:PORT (an engine on this "
        "machine)"
    )


def parse_docker_hosts(urls: Sequence[str]) -> tuple[str, ...]:
    hosts = tuple(parse_docker_host(url) for url in urls)
    if len(set(hosts)) != len(hosts):
        raise UsageError(f"an engine is named twice: {' '.join(hosts)}")
    return hosts


def check_engines(hosts: Sequence[str]) -> None:
    """Every engine answers, and runs on this machine; else fail before any work, naming it.

    All at once; the first engine's problem (in the order given) is the one reported.
    """
    if not hosts:
        return
    with ThreadPoolExecutor(max_workers=len(hosts), thread_name_prefix="kpm-engine") as pool:
        checks = [pool.submit(check_engine, host) for host in hosts]
        for check in checks:
            check.result()


def check_engine(host: str) -> None:
    name = (
        Engine(host)
        .run(
            "info",
            "--format",
            "{{.Name}}",
            problem=f"the Docker engine {host} does not answer",
            remedy=f"start it, or leave out --docker-host {host}",
            timeout_s=CHECK_TIMEOUT_S,
        )
        .strip()
    )
    here = socket.gethostname()
    if name != here:
        raise EnvironmentProblem(
            f"the Docker engine {host} runs on {name!r}, not on this machine ({here!r}): "
            + ANOTHER_MACHINE
        )


class EnginePool:
    """The run's engines, one `Engine` each; hands each job the one with the fewest jobs running
    on it (least-loaded; on a tie the one that was given the fewest jobs so far, then the first
    named: round-robin when jobs take equally long). `hosts` empty: the default engine only."""

    def __init__(self, hosts: Sequence[str]) -> None:
        self.engines = tuple(Engine(host) for host in hosts) or (Engine(None),)
        self._running = dict.fromkeys(self.engines, 0)
        self._given = dict.fromkeys(self.engines, 0)
        self._lock = threading.Lock()

    @property
    def hosts(self) -> tuple[str | None, ...]:
        return tuple(engine.host for engine in self.engines)

    @contextlib.contextmanager
    def take(self) -> Iterator[Engine]:
        with self._lock:
            engine = min(self.engines, key=lambda e: (self._running[e], self._given[e]))
            self._running[engine] += 1
            self._given[engine] += 1
        try:
            yield engine
        finally:
            with self._lock:
                self._running[engine] -= 1
