"""`idle`: a burst, an idle gap longer than go-pdk's 60 s instance expiry, another burst.

go-pdk expires every instance older than 60 s at the next instance close (`lastEventTime` is
never set, so idle or not): New() calls caused by the second burst show what an idle period costs
on this release. The gap is `--idle` seconds (default 75).
"""

from __future__ import annotations

import logging
import time

from orchestration.scenarios import Outcome, Scenario, Session, load_and_settle, phase, sampled

LOGGER = logging.getLogger(__name__)
ABOUT = "an idle gap longer than go-pdk's 60 s instance expiry: New() caused by the load after it"
CANCEL_POLL_S = 0.5


def run(session: Session) -> Outcome:
    config = session.config
    share = max(1, config.requests // 2)
    with session.world() as world:
        first = world.ready()
        before = load_and_settle(world, world.send(share), first, "before-idle")
        LOGGER.info("%s: idle for %.0fs", world.label, config.idle)
        world.shown.stage("idle, no requests", config.idle)
        deadline = time.monotonic() + config.idle
        while (left := deadline - time.monotonic()) > 0:
            session.cancel.raise_if_set()
            time.sleep(min(CANCEL_POLL_S, left))
        after = load_and_settle(world, world.send(share), before.end, "after-idle")
        last = world.finish()
    return Outcome(
        phases=(
            phase("before the gap", ABOUT, first, before.end, before.load),
            phase(
                "after the gap",
                ABOUT,
                before.end,
                last,
                after.load,
                counted=False,
                idle_s=config.idle,
            ),
        ),
        first=first,
        last=last,
        plugin_counter=after.answer.counter,
        shortfall=before.shortfall or after.shortfall,
        resources=sampled(world),
    )


SCENARIO = Scenario("idle", ABOUT, run)
