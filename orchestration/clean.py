"""Find and remove what runs that died without tearing down left behind.

A run tears its stacks down however it ends, except when it cannot: SIGKILL, out-of-memory, a CI
job's timeout, a closed laptop. So everything a run creates says whose it is:
- Docker objects (containers, networks, volumes) carry the label `io.kong-plugin-matrix.owner`,
  `HOST:PID:STARTED`: the harness process that made them, and when that process started (so a
  PID that the system handed to another process later is not mistaken for the run);
- processes the harness starts (Locust, `docker compose build`, log followers) inherit
  `KPM_OWNER` with the same text.
An owner is alive when a process with that PID runs on this host and started at that time.
`clean` removes what belongs to dead owners on this host and nothing else: a live run's stack, an
object of another host's run (a shared Docker engine), anything without our label stays. Objects
labelled ours by an older version of the tool, which wrote no owner, stay too (it cannot tell
whether their run still goes on): the summary counts them and says how to remove them by hand.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from orchestration.engine import Engine
from orchestration.errors import EnvironmentProblem
from orchestration.owner import OWNER_ENV, Owner
from orchestration.stack import KEPT_OWNER, LABEL, OWNER_LABEL, RUN_LABEL

Kind = Literal["container", "network", "volume", "image", "process"]


@dataclass(frozen=True)
class Leftover:
    """One thing of a dead run: what it is, its id, and which run it belonged to."""

    kind: Kind
    ident: str
    name: str
    run: str  # the run id, where the object names it
    owner: str  # the dead harness, HOST:PID:STARTED ("" for an image)
    engine: Engine | None = None  # the engine it is on (None for a process)

    def describe(self) -> str:
        whose = f"run {self.run}" if self.run else f"harness {self.owner}" if self.owner else ""
        where = f" on {self.engine.host}" if self.engine and self.engine.host else ""
        return f"{self.kind} {self.name}{where}" + (f" ({whose})" if whose else "")


@dataclass(frozen=True)
class Survey:
    """What of ours exists: the dead runs' leftovers, and how much was left alone."""

    leftovers: tuple[Leftover, ...]
    alive: int  # objects and processes of runs still running here
    elsewhere: int  # objects of runs on other hosts (a shared engine)
    unowned: int  # objects an older version of the tool made, with no owner label
    kept: int  # stacks left up on purpose with --keep

    def left_alone(self) -> str:
        text = f"left alone: {self.alive} of running runs, {self.elsewhere} of other hosts"
        if self.kept:
            text += (
                f", {self.kept} kept with --keep (remove each with: docker compose -p PROJECT "
                "down --volumes; PROJECT is the stack's name without -kong-1)"
            )
        if self.unowned:
            text += (
                f", {self.unowned} with no owner label (made by an older version; if no run is "
                f"going on, remove them with: docker rm -f $(docker ps -aq --filter label={LABEL})"
                f" and docker network prune --filter label={LABEL})"
            )
        return text

    def summary(self) -> str:
        """`2 containers, 1 network of 1 dead run`."""
        harnesses = {leftover.owner for leftover in self.leftovers if leftover.owner}
        kinds: dict[str, int] = {}
        for leftover in self.leftovers:
            kinds[leftover.kind] = kinds.get(leftover.kind, 0) + 1
        counted = ", ".join(_counted(number, kind) for kind, number in kinds.items())
        return f"{counted} of {_counted(len(harnesses), 'dead run')}"


def _counted(number: int, thing: str) -> str:
    plural = "es" if thing.endswith("s") else "s"
    return f"{number} {thing}{'' if number == 1 else plural}"


# (kind, listing command, its id and name fields); each line: id, name, owner label, run label.
_LISTINGS: tuple[tuple[Kind, list[str], str], ...] = (
    ("container", ["ps", "--all"], "{{.ID}}\t{{.Names}}"),
    ("network", ["network", "ls"], "{{.ID}}\t{{.Name}}"),
    ("volume", ["volume", "ls"], "{{.Name}}\t{{.Name}}"),
)
_LABELS_FORMAT = f'\t{{{{.Label "{OWNER_LABEL}"}}}}\t{{{{.Label "{RUN_LABEL}"}}}}'


def _docker_objects(engine: Engine) -> Iterable[tuple[Kind, str, str, str, str]]:
    """(kind, id, name, owner text, run) of every container, network and volume labelled ours."""
    where = f" on {engine.host}" if engine.host else ""
    for kind, command, fields in _LISTINGS:
        output = engine.run(
            *[*command, "--filter", f"label={LABEL}", "--format", fields + _LABELS_FORMAT],
            problem=f"could not list our Docker {kind}s{where}",
        )
        for line in output.splitlines():
            ident, name, owner, run = [*line.split("\t"), "", "", ""][:4]
            if ident:
                yield kind, ident, name, _no_value(owner), _no_value(run)


def _no_value(text: str) -> str:
    return "" if text == "<no value>" else text


def _dangling_images(engine: Engine) -> list[Leftover]:
    """Untagged images of our builds (a tag that moved to a newer build leaves one behind)."""
    output = engine.run(
        *["image", "ls", "--filter", "dangling=true"],
        *["--filter", f"label={LABEL}", "--format", "{{.ID}}"],
        problem="could not list our dangling Docker images",
    )
    return [
        Leftover("image", ident, ident, "", "", engine) for ident in sorted(set(output.split()))
    ]


def _our_processes(this_host: str) -> tuple[list[Leftover], int]:
    """Processes started by a harness (they carry KPM_OWNER) whose harness is dead."""
    import psutil

    leftovers, alive = [], 0
    for process in psutil.process_iter(["pid", "name"]):
        with contextlib.suppress(psutil.Error):
            if process.pid == os.getpid():
                continue
            owner = Owner.parse(process.environ().get(OWNER_ENV, ""))
            if owner is None or owner.pid == process.pid:
                continue  # not started by a harness, or a harness itself
            if owner.liveness(this_host) == "dead":
                name = " ".join(process.cmdline())[:120] or process.info["name"]
                leftovers.append(Leftover("process", str(process.pid), name, "", owner.text))
            else:
                alive += 1
    return leftovers, alive


def survey(
    *,
    with_processes: bool = True,
    with_images: bool = True,
    engines: tuple[Engine, ...] = (),
) -> Survey:
    """Everything of ours, sorted into dead runs' leftovers, live runs, and other hosts'.

    `engines`: the Docker engines to look at (none named: the default engine).
    """
    engines = engines or (Engine(),)
    this_host = socket.gethostname()
    leftovers: list[Leftover] = []
    alive = elsewhere = unowned = kept = 0
    found = ((engine, item) for engine in engines for item in _docker_objects(engine))
    for engine, (kind, ident, name, owner_text, run) in found:
        owner = Owner.parse(owner_text)
        state = "unowned" if owner is None else owner.liveness(this_host)
        if owner_text == KEPT_OWNER:
            kept += 1
        elif state == "dead":
            leftovers.append(Leftover(kind, ident, name, run, owner_text, engine))
        elif state == "alive":
            alive += 1
        elif state == "elsewhere":
            elsewhere += 1
        else:
            unowned += 1
    if with_images:
        for engine in engines:
            leftovers += _dangling_images(engine)
    if with_processes:
        processes, alive_processes = _our_processes(this_host)
        leftovers = processes + leftovers  # stop them first: a build could still make a container
        alive += alive_processes
    return Survey(tuple(leftovers), alive, elsewhere, unowned, kept)


def remove(leftovers: Iterable[Leftover]) -> list[tuple[Leftover, str | None]]:
    """Remove each leftover; (leftover, None) when it went, (leftover, why not) otherwise."""
    outcomes: list[tuple[Leftover, str | None]] = []
    for leftover in leftovers:
        try:
            _remove_one(leftover)
        except Exception as error:  # one failure must not stop the rest
            outcomes.append((leftover, str(error).strip() or type(error).__name__))
        else:
            outcomes.append((leftover, None))
    return outcomes


_REMOVE_COMMANDS: dict[str, list[str]] = {  # after `docker [--host URL]`
    "container": ["rm", "--force", "--volumes"],
    "network": ["network", "rm"],
    "volume": ["volume", "rm", "--force"],
    "image": ["image", "rm"],
}


def _remove_one(leftover: Leftover) -> None:
    if leftover.kind == "process":
        with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
            os.kill(int(leftover.ident), signal.SIGKILL)
        return
    engine = leftover.engine or Engine()
    try:
        engine.run(
            *_REMOVE_COMMANDS[leftover.kind],
            leftover.ident,
            problem=f"could not remove {leftover.describe()}",
        )
    except EnvironmentProblem as error:
        if not _GONE.search(str(error)):  # removed meanwhile (its own run's teardown): done
            raise


# Docker's words for an object that no longer exists (container, network, volume, image).
_GONE = re.compile(r"\b(?:No such (?:container|image|volume)|not found|no such)\b", re.IGNORECASE)
