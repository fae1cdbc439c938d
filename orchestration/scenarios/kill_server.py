"""`kill-server`: the plugin server killed under load (an OOM kill, a crash), and what follows.

Kong respawns its plugin server (at most once a second); until the new one answers, requests
fail or go on without the plugin. A call on an instance the worker already has fails with
`connection refused`, which Kong logs and passes over (`handle_event` returns): the request is
served without the plugin, a bypass. A call that was in flight reads `closed`: Kong resets and
starts a new instance, and a start that cannot connect answers 500 (an error). 3.14.0.0+ answer
500 for every failed call. A response without the plugin's marker is a bypass, counted apart, in
every phase where there is one. Reports the time from the kill until the plugin answers again,
the requests that failed or bypassed it, the New() calls of the recovery, and the server
restarts Kong's log shows.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from orchestration.errors import StackError
from orchestration.load import failure_kinds
from orchestration.scenarios import (
    Outcome,
    Scenario,
    Session,
    World,
    load_and_settle,
    phase,
    sampled,
)

ABOUT = "the plugin server killed under load: recovery time, failed and bypassed requests, "
ABOUT += "New() during recovery, restarts"
KILL_AT = 0.3  # how far into the second load the server is killed
RECOVERY_POLL_S = 0.05


def run(session: Session) -> Outcome:
    config = session.config
    share = max(1, config.requests // 3)
    with session.world() as world:
        first = world.ready()
        sent_before = world.send(share)
        before = load_and_settle(world, sent_before, first, "before-kill")
        pending, (killed, recovered_s), _ = world.send_and_meanwhile(
            share, KILL_AT, lambda: _kill_and_time(world)
        )
        during = load_and_settle(world, pending, before.end, "after-recovery")
        kinds = failure_kinds(pending.out_dir)
        bypassed = _bypassed(pending.out_dir)
        # The new server has no instance yet: each worker's first one belongs to the recovery.
        recovered = world.settle_after(world.warm_up())
        sent_after = world.send(share)
        after = load_and_settle(world, sent_after, recovered, "after-kill")
        last = world.finish()
    restarts = during.end.plugin_server_starts - before.end.plugin_server_starts
    return Outcome(
        phases=(
            phase(
                "before the kill",
                ABOUT,
                first,
                before.end,
                before.load,
                **_bypass_figure(_bypassed(sent_before.out_dir)),
            ),
            phase(
                "kill and recovery",
                ABOUT,
                before.end,
                recovered,
                during.load,
                counted=False,
                killed=killed,
                recovered_s=recovered_s,
                bypassed=bypassed,
                errors=sum(kinds.values()) - bypassed,  # Locust's own: its count must agree
                restarts=restarts,
            ),
            phase(
                "after recovery",
                ABOUT,
                recovered,
                last,
                after.load,
                **_bypass_figure(_bypassed(sent_after.out_dir)),
            ),
        ),
        first=first,
        last=last,
        plugin_counter=after.answer.counter,
        shortfall=before.shortfall or after.shortfall,  # the middle load may fall short: counted
        resources=sampled(world),
    )


def _bypassed(out_dir: Path) -> int:
    """The load's requests answered without the plugin's marker header: served without it."""
    return sum(n for message, n in failure_kinds(out_dir).items() if "header" in message)


def _bypass_figure(bypassed: int) -> dict[str, Any]:
    """`bypassed` for a phase that had any: a steady phase shows it only when it is not 0."""
    return {"bypassed": bypassed} if bypassed else {}


def _kill_and_time(world: World) -> tuple[int, float | None]:
    """Kill the plugin server, then poll until the plugin answers again (bounded). The time
    runs from the kill command, so it includes the `docker compose exec` carrying it (~0.1 s)."""
    started = time.monotonic()
    killed = world.kill_plugin_server()
    if killed == 0:
        raise StackError(
            f"{world.label}: no {world.contract.name} process to kill in the container"
        )
    deadline = started + world.config.ready_timeout
    while time.monotonic() < deadline:
        if world.probe("recovery").marker is not None:
            return killed, round(time.monotonic() - started, 2)
        time.sleep(RECOVERY_POLL_S)
    return killed, None  # never answered again within the readiness bound


SCENARIO = Scenario("kill-server", ABOUT, run)
