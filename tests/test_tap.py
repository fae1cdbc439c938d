"""kpm-tap on the stand-in: its counts agree with the plugin's own.

kpm-tap (images/kong-sim/cmd/kpm-tap) sits on Kong's socket in front of the plugin server and
writes a `kpm-tap: instance started id=N total=T` line per instance start it sees pass. go-pdk
calls the plugin's New() once at server start and once per StartInstance, so the plugin's own
counter (the `New() has been called N times` debug line) must read the tap's count plus one.
The collector learns these lines later; a small regex reads them here.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from orchestration import pipeline
from orchestration.config import RunConfig
from orchestration.report import Row
from orchestration.versions import target_for_version

TAP_STARTED = re.compile(rb"\] kpm-tap: instance started id=\d+ total=(\d+)")
TAP_CLOSED = re.compile(rb"\] kpm-tap: instance closed id=\d+ total=(\d+)")
PLUGIN_COUNTER = re.compile(rb"New\(\) has been called (\d+) times")
PDK_CLOSED = re.compile(rb"\] \S+ \S+ closed instance \d+")


def _last(pattern: re.Pattern[bytes], log: bytes) -> int:
    return max((int(match) for match in pattern.findall(log)), default=0)


@pytest.mark.docker
@pytest.mark.parametrize("version", ["3.4.1.0", "3.6.0.0"])
def test_tap_counts_every_instance_start_the_plugin_saw(tmp_path: Path, version: str) -> None:
    config = replace(
        RunConfig(
            run_id="tap",
            targets=(target_for_version(version),),
            results_root=tmp_path,
            sim=True,
            requests=300,
        ),
        tap=True,
    )
    config.run_dir.mkdir(parents=True)

    row = pipeline.measure_job(pipeline.Job(target_for_version(version), "steady"), config)

    assert row.status == "ok", row.error
    log = (Path(row.results_dir or "") / "kong.log").read_bytes()
    started, new_calls = _last(TAP_STARTED, log), _last(PLUGIN_COUNTER, log)
    assert started == len(TAP_STARTED.findall(log))  # one line per start, totals in order
    assert started == new_calls - 1, f"tap saw {started} starts, the plugin {new_calls} New()"
    # go-pdk logs `closed instance N` before it answers, the tap after: the same count.
    assert _last(TAP_CLOSED, log) == len(PDK_CLOSED.findall(log))
    if version == "3.4.1.0":
        assert started > 300  # churn: a new instance on (nearly) every request
    else:
        assert started <= config.workers  # stable: one instance per worker


def _measured(tmp_path: Path, version: str, plugin: str, *, tap: bool) -> Row:
    from orchestration.plugins import resolve_plugins

    (source,) = resolve_plugins((plugin,), Path(__file__).resolve().parents[1])
    config = replace(
        RunConfig(
            run_id=f"tap-{plugin.replace('/', '-')}-{version}",
            targets=(target_for_version(version),),
            results_root=tmp_path,
            sim=True,
            requests=300,
        ),
        tap=tap,
    )
    config.run_dir.mkdir(parents=True)
    job = pipeline.Job(target_for_version(version), "steady", source)
    return pipeline.measure_job(job, config)


@pytest.mark.docker
@pytest.mark.parametrize("plugin", ["python", "js"])
def test_the_tap_and_a_msgpack_plugins_own_count_agree(tmp_path: Path, plugin: str) -> None:
    row = _measured(tmp_path, "3.4.1.0", plugin, tap=True)

    assert row.status == "ok", row.error
    # 300 requests are under 100 per worker: `small-sample` is the only finding (no disagreement)
    assert (row.counted_by, row.verdict, row.findings) == ("tap", "churn", ("small-sample",))
    (load,) = row.phases
    assert load.figures["tap_instance_starts"] == load.figures["plugin_new_calls"] > 300


@pytest.mark.docker
@pytest.mark.parametrize(("version", "verdict"), [("3.4.1.0", "churn"), ("3.6.0.0", "stable")])
def test_a_plugin_that_logs_nothing_is_judged_by_the_tap_alone(
    tmp_path: Path, version: str, verdict: str
) -> None:
    # tests/plugins/rate-tag: go-pdk v0.11, two phases, config fields, no header or line of ours
    row = _measured(tmp_path, version, "tests/plugins/rate-tag", tap=False)

    assert row.status == "ok", row.error
    assert (row.plugin, row.counted_by, row.verdict) == ("rate-tag", "tap", verdict)
    assert row.plugin_counter is None and row.new_calls_total == 0  # it told us nothing itself
    assert row.phases[0].figures == {"tap_instance_starts": row.new_calls_during_load}
