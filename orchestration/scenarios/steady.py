"""`steady`: exactly N requests at a steady concurrency, as the original report's `hey` run.

The measurement every version gets by default: does Kong start new plugin instances under load?
"""

from __future__ import annotations

import logging

from orchestration.scenarios import Outcome, Scenario, Session, announce_early, phase, sampled

LOGGER = logging.getLogger(__name__)
ABOUT = "New() calls under steady load, after every worker has its first instance"


def run(session: Session) -> Outcome:
    config = session.config
    with session.world() as world:
        before = world.ready()
        pending = world.send(config.requests)
        answer = world.probe("plugin-counter")
        if answer.counter is not None:  # Locust writes its reports while the stack goes down
            settled = world.settle(answer, lambda: 0)
            announce_early(session, ABOUT, before, settled, pending)
            after = world.finish()
            load, shortfall = pending.result()
        else:  # one counter line per request served, which Locust's count says
            load, shortfall = pending.result()
            world.settle(answer, lambda: before.counter_lines + load.requests - load.failures)
            after = world.finish()
    expected_lines = before.counter_lines + load.requests - load.failures
    if world.contract.reports_new_calls and after.counter_lines < expected_lines:
        LOGGER.warning(
            "%s: kong.log has %d counter lines, fewer than the %d its requests should have left",
            world.label,
            after.counter_lines,
            expected_lines,
        )
    return Outcome(
        phases=(phase("load", ABOUT, before, after, load),),
        first=before,
        last=after,
        plugin_counter=answer.counter,
        resources=sampled(world),
        shortfall=shortfall,
    )


SCENARIO = Scenario("steady", ABOUT, run)
