"""`reload`: change the plugin's configuration under load, through the admin API, a few times.

Kong (DB-less) takes a new configuration at `POST /config` and rebuilds every plugin's config
with a fresh `__seq__`; a healthy Kong then starts about one new instance per worker per change,
and the plugin runs with the new configuration. Releases that reuse an instance by plugin id alone
(Enterprise 3.4.3.1-3.4.3.5, 3.5.0.2-3.5.0.3, 3.6.0.0-3.6.1.1) keep the old instance, and the
change never reaches the plugin (Kong PR #12718 fixed it): the `stale-config` finding.

Each change sets the example plugin's `message`, which it echoes in its config header; after the
change's load, ten new connections per worker ask which message the plugin runs with.
"""

from __future__ import annotations

import functools
from typing import Any

from orchestration.collect import LogSignals
from orchestration.contract import KONG_YML, Answer, declarative_template
from orchestration.errors import StackError
from orchestration.scenarios import (
    Outcome,
    Scenario,
    Session,
    World,
    load_and_settle,
    phase,
    sampled,
)
from orchestration.world import WARM_UP_PER_WORKER

ABOUT = "the plugin's configuration changed under load: New() and failures per change, and "
ABOUT += "whether the change reaches the plugin"
CHANGE_AT = 0.3  # how far into its load each change is made


def run(session: Session) -> Outcome:
    config = session.config
    share = max(1, config.requests // (config.changes + 1))
    stale = False
    with session.world() as world:
        declarative = world.contract.declarative(declarative_template(config.repo_root))
        first = world.ready()
        steady = load_and_settle(world, world.send(share), first, "steady")
        phases = [phase("steady", ABOUT, first, steady.end, steady.load)]
        shortfall, mark, last_answer = steady.shortfall, steady.end, steady.answer
        for change in range(1, config.changes + 1):
            message = f"kpm-reload-{change}"
            wanted = _with_message(declarative, world.contract.plugin_name, message)
            start = mark
            pending, _, under_load = world.send_and_meanwhile(
                share, CHANGE_AT, functools.partial(world.post_config, wanted)
            )
            changed = load_and_settle(world, pending, start, f"change-{change}")
            applied, asked, last_answer, mark = _ask_which_config(world, message)
            stale = stale or applied < asked
            shortfall = shortfall or changed.shortfall
            phases.append(
                phase(
                    f"change {change}",
                    ABOUT,
                    start,
                    changed.end,
                    changed.load,
                    counted=False,
                    under_load=under_load,
                    applied=f"{applied}/{asked}",
                    workers=world.workers,
                )
            )
        last = world.finish()
    return Outcome(
        phases=tuple(phases),
        first=first,
        last=last,
        plugin_counter=last_answer.counter,
        shortfall=shortfall,
        findings=("stale-config",) if stale else (),
        resources=sampled(world),
    )


def _with_message(declarative: dict[str, Any], plugin_name: str, message: str) -> dict[str, Any]:
    """The same configuration with the plugin's `message` set, wherever the plugin is."""
    found = 0

    def visit(node: Any) -> Any:
        nonlocal found
        if isinstance(node, dict):
            copied = {key: visit(value) for key, value in node.items()}
            if copied.get("name") == plugin_name and "config" in copied:
                copied["config"] = {**(copied["config"] or {}), "message": message}
                found += 1
            return copied
        if isinstance(node, list):
            return [visit(item) for item in node]
        return node

    changed: dict[str, Any] = visit(declarative)
    if found != 1:
        raise StackError(
            f"{KONG_YML} configures the plugin {plugin_name} {found} times; the reload scenario "
            "changes exactly one"
        )
    return changed


def _ask_which_config(world: World, message: str) -> tuple[int, int, Answer, LogSignals]:
    """How many of ten new connections per worker answered with `message`, the last answer, and
    the log's counts once its line is in."""
    answers = [world.probe("which-config") for _ in range(WARM_UP_PER_WORKER * world.workers)]
    applied = sum(answer.config == message for answer in answers)
    mark = world.settle(answers[-1], lambda: 0)
    return applied, len(answers), answers[-1], mark


SCENARIO = Scenario("reload", ABOUT, run)
