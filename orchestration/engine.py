"""One Docker engine, and the only door to it: every image, container, compose and build call.

An `Engine` holds the engine's host (`--docker-host`, None for the docker CLI's own choice) in
one place, as python-on-whales keeps it in one client configuration: nothing else passes a host
around. The engine pool (engines.py) hands one to each job; stacks, the `--sim` images, pulls and
`clean` all ask it. Registry pulls started ahead of a run (pulls.py) are kept on the engine whose
image store they fill.
"""

from __future__ import annotations

import logging
import re
import subprocess
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from pathlib import Path
from typing import IO

from python_on_whales import DockerClient, DockerException
from python_on_whales.exceptions import NoSuchImage
from python_on_whales.utils import run as run_docker

from orchestration.errors import EnvironmentProblem, ImageUnavailable, MatrixError, StackError
from orchestration.processes import last_lines, run_host_command, stop_descendants

LOGGER = logging.getLogger(__name__)

BUILD_OUTPUT_LINES = 5000  # kept for build.log; a plugin build prints a few hundred


class Engine:
    """One Docker engine: its host and its client."""

    def __init__(self, host: str | None = None) -> None:
        self.host = host
        self.client = DockerClient(host=host)
        # The registry pulls running ahead into this engine's store (pulls.ahead): image -> its
        # pull, whose result is None or why it failed.
        self.pulling: dict[str, Future[str | None]] = {}

    def __repr__(self) -> str:
        return f"Engine({self.host!r})"

    def describe(self) -> str:
        return self.host or "the default Docker engine"

    def command(self, *args: str) -> list[str]:
        """The docker CLI command line `docker [--host HOST] ARGS...` for this engine."""
        return [*docker_command(self.host), *args]

    def run(
        self,
        *args: str,
        problem: str,
        remedy: str = "",
        timeout_s: float | None = None,
        error: type[MatrixError] = EnvironmentProblem,
    ) -> str:
        """`docker ARGS...` on this engine; its output, or `error` saying what to do."""
        return run_host_command(
            self.command(*args), problem=problem, remedy=remedy, timeout_s=timeout_s, error=error
        )

    # --- images -----------------------------------------------------------------------------

    def image_ids(self, *tags: str) -> dict[str, str]:
        """The ID of each of `tags` the engine has (the ones it lacks are left out); one docker
        call when all are there."""
        try:
            try:
                images = self.client.image.inspect(list(tags))
                return {tag: image.id for tag, image in zip(tags, images, strict=True)}
            except NoSuchImage:
                return {
                    tag: self.client.image.inspect(tag).id
                    for tag in tags
                    if self.client.image.exists(tag)
                }
        except DockerException as error:
            raise StackError(
                f"could not look up {', '.join(tags)}: {error.stderr or error}"
            ) from error

    def missing(self, *tags: str) -> set[str]:
        """Which of `tags` the engine lacks; one docker call when all are there."""
        return set(tags) - self.image_ids(*tags).keys()

    def exists(self, image: str) -> bool:
        try:
            found: bool = self.client.image.exists(image)
        except DockerException as error:
            raise StackError(f"could not look up image {image}: {docker_problem(error)}") from error
        return found

    def identity(self, image: str) -> str:
        """`image@<id>` for an image present on the engine; the bare name when it is not (the
        build will pull it, and the next run keys on what was pulled) or Docker cannot say."""
        try:
            found = str(
                run_docker(
                    self.command("image", "inspect", "--format", "{{.Id}}", image),
                    return_stderr=False,
                )
            )
        except (DockerException, OSError):
            return image
        return f"{image}@{found.strip()}"

    def sizes(self, *images: str) -> dict[str, int]:
        """Each present image's size in bytes, as `docker image ls` counts it."""
        if not images:
            return {}
        try:
            found = self.client.image.inspect(list(images))
        except DockerException:
            return {}
        return {image: info.size for image, info in zip(images, found, strict=True)}

    def environment(self, image: str) -> list[str]:
        """The `NAME=value` environment an image's containers start with."""
        try:
            found = self.client.image.inspect(image)
        except DockerException as error:
            raise StackError(f"could not read {image}: {error.stderr or error}") from error
        return list(found.config.env or [])

    def start_pull(self, image: str) -> subprocess.Popen[str]:
        """`docker pull --quiet IMAGE` in a session of its own (stopped by whoever started it,
        not by the terminal's Ctrl-C); its errors on stderr."""
        return subprocess.Popen(
            self.command("pull", "--quiet", image),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def pull(self, image: str, timeout_s: float) -> str | None:
        """Pull `image` and wait: None once it is in, else the last line of why not."""
        pulled = subprocess.run(
            self.command("pull", "--quiet", image),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if pulled.returncode == 0:
            return None
        return (pulled.stderr.strip().splitlines() or ["pull failed"])[-1]

    def import_image(self, archive: IO[bytes], image: str, *, label: str, timeout_s: float) -> None:
        """`docker import` a root file system (a tar stream) as `image`, labelled `label=1`."""
        imported = subprocess.run(
            self.command("import", "--change", f"LABEL {label}=1", "-", image),
            stdin=archive,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if imported.returncode != 0:
            raise ImageUnavailable(f"could not import {image}: {imported.stderr.strip()}")

    # --- Compose ----------------------------------------------------------------------------

    def compose(
        self,
        compose_file: Path,
        project_name: str,
        env_file: Path,
        variables: Iterable[str] = (),
    ) -> DockerClient:
        """A client for one Compose project on this engine whose `variables` are read from
        `env_file` only.

        Compose lets the shell environment override an env file, and the CLI reads
        KPM_* variables too (`KPM_WORKERS=4 ... --workers 2`): the named variables are
        removed from the environment of every docker call, so the file always wins.
        """
        unset = [arg for name in variables for arg in ("-u", name)]
        return DockerClient(
            compose_files=[compose_file],
            compose_project_name=project_name,
            compose_env_files=[env_file],
            client_call=["env", *unset, "docker"],
            host=self.host,
        )

    def build(self, compose: DockerClient, service: str, image: str) -> None:
        """Build `service`'s image of a Compose project (`compose`, from `self.compose`) with
        BuildKit; failures become `ImageUnavailable`. Base images already present are used as
        they are; missing ones are pulled, which is where a missing tag or an unreachable
        registry shows up."""
        build_service_image(compose, service, image)


def docker_command(host: str | None) -> list[str]:
    """The docker CLI for `host` (None: the CLI's own default engine)."""
    return ["docker"] if host is None else ["docker", "--host", host]


def build_service_image(docker: DockerClient, service: str, image: str) -> None:
    """`Engine.build`: `service`'s image built by a Compose client made by `Engine.compose`."""
    output: deque[str] = deque(maxlen=BUILD_OUTPUT_LINES)
    LOGGER.info("building %s", image)
    started = time.monotonic()
    try:
        # Output is a pipe, so Compose already prints plain progress lines.
        for _source, raw_line in docker.compose.build([service], stream_logs=True):
            line = raw_line.decode(errors="replace").rstrip()
            output.append(line)
            LOGGER.debug("build %s: %s", image, line)
    except DockerException as error:
        raise ImageUnavailable(
            f"could not build {image} (service {service!r}): {build_failure(list(output))}",
            build_output=tuple(output),
        ) from error
    except BaseException:
        # Interrupted while Compose builds: python-on-whales leaves its process running.
        project = docker.client_config.compose_project_name or ""
        stop_descendants(_is_compose_build(project))
        raise
    LOGGER.info("built %s in %.1fs", image, time.monotonic() - started)


def _is_compose_build(project_name: str) -> Callable[[list[str]], bool]:
    def matches(command: list[str]) -> bool:
        return "build" in command and project_name in command

    return matches


_BUILD_STEP_RE = re.compile(r"^#(\d+) \[[^\]]*\] load metadata for (\S+)")
_BUILD_ERROR_RE = re.compile(r"^#(\d+) ERROR: (.*)")


def build_failure(lines: list[str]) -> str:
    """One line saying why a Compose (BuildKit) build failed, and what to do about it."""
    base_images = {m[1]: m[2] for line in lines if (m := _BUILD_STEP_RE.match(line))}
    for line in lines:
        error = _BUILD_ERROR_RE.match(line)
        if error is None:
            continue
        image = base_images.get(error[1])
        if image is not None:
            return (
                f"base image {image} could not be had ({error[2]}). Pull it by hand "
                f"(docker pull {image}), check the tag, or use --sim (no registry needed)"
            )
        return f"build step #{error[1]} failed: {error[2]}"
    solve = [line for line in lines if line.startswith("failed to solve")]
    return (solve or last_lines("\n".join(lines), 1).splitlines() or ["no build output"])[-1]


def docker_problem(error: DockerException) -> str:
    """What a failed docker call said (its last lines), or its exit code."""
    return last_lines(error.stderr, 3) or f"docker exited with code {error.return_code}"
