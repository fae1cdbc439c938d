"""`overhead`: what the external plugin costs against a bundled Lua plugin doing the same work.

kong.yml has two routes: `/hello`, where the external plugin sets its marker header, and
`/hello-lua`, where Kong's bundled response-transformer sets the same header in-process, with no
plugin server. The same load goes to each in turn, interleaved over a few rounds (so a slow
moment hits both); the last phase gives req/s and p95 of the external plugin over the Lua one's,
as ratios of the rounds' medians. Kong discussion #10823 reports about 25% fewer req/s for an
external plugin. kong-sim models the Lua route in its own process: a simulated ratio shows the
plugin-server round trip, not Kong's Lua runtime.
"""

from __future__ import annotations

import statistics

from orchestration.collect import LogSignals
from orchestration.load import LoadResult
from orchestration.report import PhaseResult
from orchestration.scenarios import Outcome, Scenario, Session, load_and_settle, phase, sampled

ABOUT = "the external plugin against a bundled Lua plugin doing the same work, interleaved: "
ABOUT += "req/s and p95 ratios"
ROUNDS = 3


def run(session: Session) -> Outcome:
    config = session.config
    share = max(1, config.requests // (2 * ROUNDS))
    phases: list[PhaseResult] = []
    loads: dict[str, list[LoadResult]] = {"external": [], "lua": []}
    shortfall = None
    with session.world() as world:
        first = mark = world.ready()
        routes = {"external": world.contract.route, "lua": world.contract.lua_route}
        for round_number in range(1, ROUNDS + 1):
            order = ("external", "lua") if round_number % 2 else ("lua", "external")
            for kind in order:
                path = None if kind == "external" else routes[kind]
                loaded = load_and_settle(world, world.send(share, path=path), mark, kind)
                phases.append(
                    phase(
                        f"{kind} {round_number}",
                        ABOUT,
                        mark,
                        loaded.end,
                        loaded.load,
                        counted=kind == "external",
                        route=routes[kind],
                    )
                )
                loads[kind].append(loaded.load)
                mark, shortfall = loaded.end, shortfall or loaded.shortfall
        last = world.finish()
    phases.append(_ratios(loads, mark, last))
    return Outcome(
        phases=tuple(phases),
        first=first,
        last=last,
        plugin_counter=None,
        shortfall=shortfall,
        resources=sampled(world),
    )


def _ratios(loads: dict[str, list[LoadResult]], mark: LogSignals, last: LogSignals) -> PhaseResult:
    def median(kind: str, figure: str) -> float:
        return float(statistics.median(getattr(load, figure) for load in loads[kind]))

    lua_rps, lua_p95 = median("lua", "rps"), median("lua", "p95_ms")
    return phase(
        "external / lua",
        ABOUT,
        mark,
        last,
        None,
        counted=False,
        rps_ratio=round(median("external", "rps") / lua_rps, 3) if lua_rps else None,
        p95_ratio=round(median("external", "p95_ms") / lua_p95, 3) if lua_p95 else None,
    )


SCENARIO = Scenario("overhead", ABOUT, run)
