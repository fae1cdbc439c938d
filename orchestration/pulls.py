"""Registry images of a whole run, pulled before each version needs them.

Without this, a sequential matrix of real Kong images pulls each version's base image when that
version's build starts, one after another. `ahead()` starts a `docker pull` of every image the
run will build on and the engine lacks, at most PULLS_AT_ONCE at a time, when the run starts;
each version then waits only for its own images (`wait_for`). A pull that fails is not an error
of its own: the build asks for the image again and reports as it always has (an error row naming
the image). Pulls run in sessions of their own and are stopped when the run ends, however it ends.

Nothing is pulled with --sim (its images are built here) or with several --docker-host engines
(a version's engine is chosen when it starts). The pulls under way are kept on the `Engine` whose
store they fill (`Engine.pulling`), where a version's preparation waits for its own.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager

from orchestration.config import PULLS_AT_ONCE
from orchestration.engine import Engine
from orchestration.errors import StackError
from orchestration.plugins import PLUGIN_IMAGE_REPOSITORY  # kong-sim, go-builder under it too

LOGGER = logging.getLogger(__name__)

STOP_GRACE_S = 5.0
WAIT_POLL_S = 0.2
PULLED, ALREADY_HERE, FAILED = "pulled", "already here", "failed: "


class _Pulls:
    """The pulls of one run on one engine: a future per image, its error text or None."""

    def __init__(self, engine: Engine, images: Iterable[str]) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[str]] = set()
        self._stopped = False
        self._pool = ThreadPoolExecutor(max_workers=PULLS_AT_ONCE, thread_name_prefix="kpm-pull")
        self.futures: dict[str, Future[str | None]] = {
            image: self._pool.submit(self._pull, image) for image in images
        }

    def _pull(self, image: str) -> str | None:
        with self._lock:
            if self._stopped:
                return "stopped"
            started = time.monotonic()
            process = self._engine.start_pull(image)  # stopped by stop(), not by Ctrl-C
            self._running.add(process)
        try:
            _, errors = process.communicate()
        finally:
            with self._lock:
                self._running.discard(process)
        if process.returncode == 0:
            LOGGER.info("pulled %s in %.1fs", image, time.monotonic() - started)
            return None
        return (errors.strip().splitlines() or [f"exit code {process.returncode}"])[-1]

    def stop(self) -> None:
        """No new pull starts; running ones are ended; returns once every one has."""
        with self._lock:
            self._stopped = True
            running = list(self._running)
        self._pool.shutdown(wait=False, cancel_futures=True)
        for process in running:
            process.terminate()
        for process in running:
            try:
                process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._pool.shutdown(wait=True)


def image_ids(engine: Engine, *tags: str) -> dict[str, str]:
    """What `engine` has of `tags` (a seam: tests stand in for an engine's store here)."""
    return engine.image_ids(*tags)


@contextmanager
def ahead(images: Iterable[str], engine: Engine) -> Iterator[tuple[str, ...]]:
    """Pull the registry images among `images` that `engine` lacks, in the background, while
    the block runs; yields what is being pulled. Our own images (built here) are never pulled."""
    wanted = _registry_images(images)
    try:
        missing = tuple(sorted(set(wanted) - image_ids(engine, *wanted).keys()))
    except StackError as error:  # the builds will meet the same problem and say so
        LOGGER.info("not pulling ahead: %s", error)
        missing = ()
    if not missing:
        yield ()
        return
    LOGGER.info("pulling %d image(s) ahead, %d at a time: %s", len(missing), PULLS_AT_ONCE, missing)
    pulls = _Pulls(engine, missing)
    engine.pulling = pulls.futures
    try:
        yield missing
    finally:
        engine.pulling = {}
        pulls.stop()


def wait_for(images: Iterable[str], engine: Engine, check_cancel: Callable[[], None]) -> None:
    """Return once every one of `images` being pulled ahead on `engine` is in (or its pull
    failed: the build then tries itself); `check_cancel` raises when the run is stopping."""
    pulling = engine.pulling
    for image in images:
        future = pulling.get(image)
        if future is None:
            continue
        error = _outcome(future, check_cancel)
        if error is not None:
            LOGGER.warning("pulling %s ahead failed (%s); its build will try again", image, error)


def _outcome(future: Future[str | None], check_cancel: Callable[[], None]) -> str | None:
    while not future.done():
        check_cancel()
        wait([future], timeout=WAIT_POLL_S)
    return "stopped" if future.cancelled() else future.result()


def pull_now(
    images: Iterable[str], engine: Engine, check_cancel: Callable[[], None]
) -> dict[str, str]:
    """Pull the registry images among `images` that the engine lacks, PULLS_AT_ONCE at a time,
    and wait for them: image -> `pulled`, `already here`, or `failed: <why>`."""
    wanted = _registry_images(images)
    outcomes = dict.fromkeys(wanted, ALREADY_HERE)
    with ahead(wanted, engine) as pulling:
        for image in pulling:
            error = _outcome(engine.pulling[image], check_cancel)
            outcomes[image] = PULLED if error is None else f"{FAILED}{error}"
    return outcomes


def _registry_images(images: Iterable[str]) -> list[str]:
    """Registry images only: ours (`kong-plugin-matrix...`) are built here, never pulled."""
    return sorted({image for image in images if not image.startswith(PLUGIN_IMAGE_REPOSITORY)})


def sizes(engine: Engine, *images: str) -> dict[str, int]:
    """Each present image's size in bytes on `engine` (a seam, as `image_ids` is)."""
    return engine.sizes(*images)
