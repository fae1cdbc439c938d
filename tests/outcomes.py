"""Shared by the tests of rows.py and pipeline.py: log counts, outcomes and a run's
configuration, made by hand."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from orchestration.collect import LogSignals
from orchestration.config import RunConfig
from orchestration.load import LoadResult
from orchestration.plugins import default_plugin
from orchestration.scenarios import Outcome, phase
from orchestration.versions import target_for_version


def signals(new_calls: int, counter_lines: int = 0) -> LogSignals:
    return LogSignals(
        new_calls_total=new_calls,
        counter_lines=counter_lines,
        instance_starts=3,
        instance_closes=2,
        no_instance_errors=1,
        rpc_closed_errors=1,
        plugin_server_starts=1,
        plugin_server_exits=0,
        lines=10,
    )


def load_outcome(
    first: LogSignals, last: LogSignals, load: LoadResult, plugin_counter: int | None = None
) -> Outcome:
    return Outcome((phase("load", "the load", first, last, load),), first, last, plugin_counter)


def config_for(tmp_path: Path, *versions: str) -> RunConfig:
    return RunConfig(
        run_id="test-run",
        targets=tuple(target_for_version(v) for v in versions),
        results_root=tmp_path,
        sim=True,
        plugin_sources=(default_plugin(),),  # what the CLI resolves the default --plugin into
    )


def tapped(new_calls: int, tap_starts: int, counter_lines: int, ran_on: int = 0) -> LogSignals:
    return replace(
        signals(new_calls, counter_lines),
        tap_starts=1,
        tap_instance_starts=tap_starts,
        tap_ran_on=ran_on,
    )


LOAD_1000 = LoadResult(requests=1000, failures=0, rps=500.0, p50_ms=3.0, p95_ms=9.0, duration_s=2)
