"""`ui`: Locust's web UI against one version, until Ctrl-C; the load until then is counted."""

from __future__ import annotations

from orchestration.load import run_web_ui
from orchestration.scenarios import Outcome, Scenario, Session, phase, sampled
from orchestration.world import WorldOptions

ABOUT = "New() calls under the load you start from Locust's web UI"


def run(session: Session) -> Outcome:
    config = session.config
    with session.world(WorldOptions(prestart_locust=False)) as world:
        before = world.ready()
        ui = run_web_ui(
            world.proxy_url,
            out_dir=session.version_dir,
            web_port=config.web_port,
            users=config.users,
            spawn_rate=config.spawn_rate,
        )
        answer = world.probe("plugin-counter")
        load = ui.load
        world.settle(answer, lambda: before.counter_lines + load.requests - load.failures)
        after = world.finish()
    return Outcome(
        phases=(phase("web UI", ABOUT, before, after, load),),
        first=before,
        last=after,
        plugin_counter=answer.counter,
        resources=sampled(world),
        stopped_by=ui.stopped_by,
    )


SCENARIO = Scenario("ui", ABOUT, run)
