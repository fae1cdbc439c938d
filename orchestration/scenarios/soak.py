"""`soak`: a long steady load (`--duration`, default 600 s), for leaks.

The plugin server's memory is sampled once a second all along (every scenario does; see
orchestration/resources.py); a churning server creates and drops an instance per request, so if
dropped instances are never freed its RSS keeps growing, and the row's `leak` flag says so.
"""

from __future__ import annotations

from orchestration.scenarios import Outcome, Scenario, Session, load_and_settle, phase, sampled

ABOUT = "a long steady load with the plugin server's memory sampled, for leaks"


def run(session: Session) -> Outcome:
    config = session.config
    with session.world() as world:
        first = world.ready()
        loaded = load_and_settle(world, world.send(0, for_s=config.duration), first, "soak")
        last = world.finish()
    return Outcome(
        phases=(phase("soak", ABOUT, first, last, loaded.load, duration_s=config.duration),),
        first=first,
        last=last,
        plugin_counter=loaded.answer.counter,
        shortfall=loaded.shortfall,
        resources=sampled(world),
    )


SCENARIO = Scenario("soak", ABOUT, run)
