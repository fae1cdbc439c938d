"""Scenarios: what a run does with one version, phase by phase.

A scenario is one small module in this package with a `SCENARIO`: its name (`--scenario NAME`),
one line on what it is about, and `run(session)`, which drives one or more `World`s through
named phases and returns an `Outcome`. A `World` is the protocol below: a `VersionWorld` in a run
(Kong's stack, its log, Locust), a fake in tests of what a scenario does with it. The pipeline
schedules (target, scenario) pairs and turns each outcome into a row; nothing here writes results
or catches errors (a failure is the pipeline's error row, an interrupt its `interrupted` row).

The next scenario: a module with `SCENARIO = Scenario(...)`, added to `_MODULES` below.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar

from orchestration.collect import LogSignals
from orchestration.config import SCENARIOS, RunConfig
from orchestration.contract import Answer, PluginContract
from orchestration.engine import Engine
from orchestration.errors import UsageError
from orchestration.load import LoadResult
from orchestration.plugins import PluginSource, default_plugin
from orchestration.progress import Line
from orchestration.report import PhaseResult
from orchestration.resources import Summary
from orchestration.versions import Target
from orchestration.world import (
    NEVER_CANCELLED,
    ONE_WORLD,
    Cancel,
    VersionWorld,
    WorldOptions,
)

T = TypeVar("T")


class SentLoad(Protocol):
    """A load whose requests were sent (world.py's `PendingLoad`); Locust may still be writing."""

    @property
    def out_dir(self) -> Path: ...

    def sent(self) -> tuple[int, int] | None: ...

    def result(self) -> tuple[LoadResult, str | None]: ...


class World(Protocol):
    """What a scenario drives: one version's Kong, its log's counts, and its load (world.py's
    `VersionWorld` says what each does). Used in a `with` block, which tears it all down."""

    config: RunConfig
    contract: PluginContract
    workers: int
    resources: Summary | None
    shown: Line  # its live progress line

    def __enter__(self) -> World: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...

    @property
    def label(self) -> str: ...

    @property
    def proxy_url(self) -> str: ...

    def ready(self) -> LogSignals: ...

    def warm_up(self) -> int | None: ...

    def probe(self, purpose: str) -> Answer: ...

    def send(
        self, requests: int, *, path: str | None = None, for_s: float | None = None
    ) -> SentLoad: ...

    def send_and_meanwhile(
        self, requests: int, after_fraction: float, action: Callable[[], T]
    ) -> tuple[SentLoad, T, bool]: ...

    def post_config(self, declarative: dict[str, Any]) -> None: ...

    def kill_plugin_server(self) -> int: ...

    def settle(self, answer: Answer, counter_lines: Callable[[], int]) -> LogSignals: ...

    def settle_after(self, ready_counter: int | None) -> LogSignals: ...

    def finish(self) -> LogSignals: ...


@dataclass(frozen=True)
class Session:
    """What a scenario gets: one target, the run's configuration, its folder and stop flag, and
    the plugin to measure."""

    target: Target
    config: RunConfig
    version_dir: Path
    cancel: Cancel = NEVER_CANCELLED
    plugin: PluginSource = field(default_factory=default_plugin)
    # Takes an outcome whose counts are final but whose stack is still up (`announce_early`)
    on_verdict: Callable[[Outcome], None] | None = None
    # Returns once the first load may start (see `VersionWorld`); None: at once
    load_turn: Callable[[], None] | None = None
    engine: Engine = field(default_factory=Engine)  # the Docker engine the job runs on
    # Makes each world the scenario asks for (None: a VersionWorld); tests hand in fakes
    make_world: Callable[[Session, WorldOptions], World] | None = None

    def world(self, options: WorldOptions = ONE_WORLD) -> World:
        """A world for the target, to use in a `with` block."""
        if self.make_world is not None:
            return self.make_world(self, options)
        return VersionWorld(
            self.target,
            self.config,
            self.version_dir,
            self.cancel,
            options=options,
            source=self.plugin,
            load_turn=self.load_turn,
            engine=self.engine,
        )


@dataclass(frozen=True)
class Outcome:
    """A scenario's phases, and the log's counts at its start (after warm-up) and end."""

    phases: tuple[PhaseResult, ...]
    first: LogSignals  # the first world's log after warm-up
    last: LogSignals  # the last world's saved log, counted whole
    plugin_counter: int | None = None  # the plugin's own count at the end (its header)
    shortfall: str | None = None  # set when a load ended before every request was sent
    stopped_by: int | None = None  # the signal that ended a web UI session
    findings: tuple[str, ...] = ()
    resources: tuple[Summary, ...] = ()  # one per world that was sampled


@dataclass(frozen=True)
class Scenario:
    name: str
    about: str
    run: Callable[[Session], Outcome] = field(repr=False)


def phase(
    name: str,
    about: str,
    before: LogSignals,
    after: LogSignals,
    load: LoadResult | None,
    *,
    counted: bool = True,
    **figures: Any,
) -> PhaseResult:
    """A phase's figures: the instances started between two log counts, over the requests that
    came back through the plugin (a failed one did not run it).

    kpm-tap's count of instance starts when it ran (it sees any plugin), else the plugin's own
    New() count; with both, each is in the figures (`tap_instance_starts`, `plugin_new_calls`)
    so the row can check that they agree.
    """
    counted_by_plugin = after.new_calls_total - before.new_calls_total
    new_calls = counted_by_plugin
    served = load.requests - load.failures if load is not None else 0  # through the plugin
    # The requests the plugin ran on: kpm-tap's, else the built-in's header on every success.
    ran_on = served if load is not None and after.counter_lines else None
    if after.tapped:
        ran_on = after.tap_ran_on - before.tap_ran_on
        new_calls = after.tap_instance_starts - before.tap_instance_starts
        figures = {"tap_instance_starts": new_calls, **figures}
        if after.counter_lines:
            figures["plugin_new_calls"] = counted_by_plugin
    requests = load.requests if load is not None else None
    return PhaseResult(
        name=name,
        about=about,
        requests=requests,
        failures=load.failures if load is not None else None,
        ran_on=ran_on,
        new_calls=new_calls,
        new_calls_per_request=round(new_calls / served, 4) if served > 0 else None,
        rps=round(load.rps, 1) if load is not None and load.rps is not None else None,
        p50_ms=load.p50_ms if load is not None else None,
        p95_ms=load.p95_ms if load is not None else None,
        counted=counted,
        figures=figures,
    )


@dataclass(frozen=True)
class Loaded:
    """One load and the log's counts once its last lines are in."""

    load: LoadResult
    shortfall: str | None
    end: LogSignals
    answer: Answer  # the probe after it: the plugin's own count and config


def load_and_settle(world: World, pending: SentLoad, since: LogSignals, purpose: str) -> Loaded:
    """Wait for a sent load's result and for its log lines: a probe after it says how far the
    plugin's count got (without one, a counter line per request served since `since`)."""
    answer = world.probe(purpose)
    load, shortfall = pending.result()
    end = world.settle(answer, lambda: since.counter_lines + load.requests - load.failures + 1)
    return Loaded(load, shortfall, end, answer)


def announce_early(
    session: Session, about: str, before: LogSignals, settled: LogSignals, pending: SentLoad
) -> None:
    """Hand the verdict on as soon as the load's log lines are in, before the stack goes down.

    `settled` are the live counts once the log has caught up with the load; Locust's counts come
    from its last request, its timings only with its reports (after the teardown, in the row).
    Nothing is handed on when Locust did not say, or sent fewer requests than asked (that row is
    an error, decided after the teardown).
    """
    sent = pending.sent()
    if session.on_verdict is None or sent is None or sent[0] != session.config.requests:
        return
    counts_only = LoadResult(sent[0], sent[1], rps=0.0, p50_ms=0.0, p95_ms=0.0, duration_s=0.0)
    phases = (phase("load", about, before, settled, counts_only),)
    session.on_verdict(Outcome(phases=phases, first=before, last=settled))


def sampled(*worlds: World) -> tuple[Summary, ...]:
    """The resource summaries of the worlds that were sampled."""
    return tuple(world.resources for world in worlds if world.resources is not None)


# Module names under orchestration.scenarios; `ui` is the web UI command's, not a --scenario.
_MODULES = (*SCENARIOS, "ui")
DEFAULT = SCENARIOS[0]


def get(name: str) -> Scenario:
    """The scenario called `name`, or a UsageError listing the known ones."""
    if name not in _MODULES:
        raise UsageError(f"unknown scenario {name!r}; choose from: {', '.join(SCENARIOS)}")
    module = importlib.import_module(f"orchestration.scenarios.{name.replace('-', '_')}")
    scenario: Scenario = module.SCENARIO
    return scenario
