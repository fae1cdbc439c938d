"""Run the harness CLI once with a stopwatch on each pipeline stage; print the stages as JSON.

    python -m bench.trace_harness run 3.4.1.0 --sim

Used by the time-to-verdict benchmark for its per-stage breakdown (not for its ratio: the ratio
times the plain CLI). Stages are found by name; one the pipeline no longer has is left out, and the
rest of the time shows up as "other". A stage called inside another counts for the outer one only.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

STARTED_AT_VARIABLE = "BENCH_STARTED_AT"  # time.time() just before this process was spawned
STAGE_NAMES: tuple[tuple[str, str, str], ...] = (
    # (module or class, attribute, stage label)
    ("orchestration.cli", "_check_prerequisites", "pre-flight checks (docker, --sim tools)"),
    ("orchestration.drawing", "preload_page_drawing", "report page preload (background)"),
    ("orchestration.load:HeadlessLocust", "__enter__", "start Locust (it then imports itself)"),
    (
        "orchestration.world:VersionWorld",
        "_stack_spec",
        "images (checks; builds if missing) and the plugin's dump",
    ),
    ("orchestration.stack:Stack", "__enter__", "image check + compose up + log follower + ports"),
    ("orchestration.world:VersionWorld", "_start_sampler", "resource sampler start"),
    ("orchestration.stack:Stack", "wait_ready", "wait until ready"),
    ("orchestration.world:VersionWorld", "warm_up", "warm-up requests (10 per worker)"),
    ("orchestration.world:VersionWorld", "settle_after", "log counts before the load"),
    ("orchestration.load:HeadlessLocust", "send", "load (Locust, 1000 requests)"),
    ("orchestration.world:VersionWorld", "probe", "plugin counter request"),
    ("orchestration.world:VersionWorld", "settle", "wait for the load's log lines"),
    ("orchestration.world:VersionWorld", "_stop_sampler", "resource sampler stop"),
    ("orchestration.stack:Stack", "save_logs", "save kong.log (only if following it failed)"),
    ("orchestration.stack:Stack", "close", "compose down"),
    ("orchestration.load:HeadlessLocust", "result", "Locust's reports and exit, beyond the down"),
    ("orchestration.world", "collect_file", "collect kong.log"),
    ("orchestration.report", "write_run", "results files"),
    ("orchestration.cli", "_print_run", "table, results and report page"),
)


def _owner(name: str) -> object:
    module_name, _, class_name = name.partition(":")
    module = sys.modules[module_name]
    return getattr(module, class_name) if class_name else module


def _stopwatch(
    function: Callable[..., Any], label: str, spent: dict[str, float], inside: list[str]
) -> Callable[..., Any]:
    @functools.wraps(function)
    def timed_call(*args: Any, **kwargs: Any) -> Any:
        if inside:
            return function(*args, **kwargs)
        inside.append(label)
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spent[label] = spent.get(label, 0.0) + time.perf_counter() - started
            inside.pop()

    return timed_call


def _note_verdicts(started_at: float) -> list[float]:
    """Seconds from the spawn to each `==>` verdict line the CLI prints (filled in as it runs)."""
    from orchestration.commands import common

    moments: list[float] = []
    announce = common.announce

    def noted(*args: Any, **kwargs: Any) -> None:
        announce(*args, **kwargs)
        moments.append(time.time() - started_at)

    common.announce = noted
    return moments


def main(argv: list[str]) -> int:
    import_started = time.perf_counter()
    from orchestration import cli, load, pipeline, report, stack, world

    imports_s = time.perf_counter() - import_started
    # imported so that _owner finds them in sys.modules
    assert load and pipeline and report and stack and world
    spent: dict[str, float] = {}
    inside: list[str] = []
    for owner_name, attribute, label in STAGE_NAMES:
        owner = _owner(owner_name)
        if hasattr(owner, attribute):
            setattr(owner, attribute, _stopwatch(getattr(owner, attribute), label, spent, inside))
    spawned_at = os.environ.get(STARTED_AT_VARIABLE)  # unknown when not run by the benchmark
    started_at = time.time() - imports_s if spawned_at is None else float(spawned_at)
    verdicts_at = _note_verdicts(started_at)
    interpreter_s = time.time() - started_at - imports_s
    run_started = time.perf_counter()
    exit_code = cli.main(argv)
    run_s = time.perf_counter() - run_started
    stages = {"python start-up": interpreter_s, "imports": imports_s, **spent}
    stages["other"] = run_s - sum(spent.values())
    moments = {"verdict line on the screen": verdicts_at[:1], "exit": [time.time() - started_at]}
    print(json.dumps({"exit_code": exit_code, "stages": stages, "since_spawn": moments}))
    return exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
