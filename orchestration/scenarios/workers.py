"""`workers`: the same load at 1, 2, 4 and 8 nginx workers, each a stack of its own.

The churn rule of a release acts per worker (each keeps its own instance table), so New() per
request can change with the worker count; the report's Kong ran 4. `--workers` does not apply.
"""

from __future__ import annotations

from orchestration.collect import LogSignals
from orchestration.report import PhaseResult
from orchestration.scenarios import (
    Outcome,
    Scenario,
    Session,
    World,
    load_and_settle,
    phase,
    sampled,
)
from orchestration.world import WorldOptions

ABOUT = "the same load at 1, 2, 4 and 8 nginx workers: New() per request by worker count"
WORKER_COUNTS = (1, 2, 4, 8)


def run(session: Session) -> Outcome:
    config = session.config
    phases: list[PhaseResult] = []
    worlds: list[World] = []
    first: LogSignals | None = None
    last: LogSignals | None = None
    shortfall, counter = None, None
    for workers in WORKER_COUNTS:
        options = WorldOptions(workers=workers, suffix=f"-w{workers}")
        with session.world(options) as world:
            before = world.ready()
            loaded = load_and_settle(world, world.send(config.requests), before, "workers")
            end = world.finish()
        worlds.append(world)
        name = f"{workers} worker" + ("" if workers == 1 else "s")
        phases.append(phase(name, ABOUT, before, end, loaded.load, workers=workers))
        first = first or before
        last, counter = end, loaded.answer.counter
        shortfall = shortfall or loaded.shortfall
    assert first is not None and last is not None  # WORKER_COUNTS is not empty
    return Outcome(
        phases=tuple(phases),
        first=first,
        last=last,
        plugin_counter=counter,
        shortfall=shortfall,
        resources=sampled(*worlds),
    )


SCENARIO = Scenario("workers", ABOUT, run)
