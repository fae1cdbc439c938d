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
