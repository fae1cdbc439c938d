"""The chaos soak, short: one run of each fault kind, with a fixed seed (tests/chaos.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
from chaos import FAULTS, MISSED, Hit, Planned, in_python_startup, plan, render, soak
from test_reliability import CliRun, sim_images

__all__ = ["sim_images"]  # a fixture these tests use

SEED = 700  # seven runs, one a matrix; the faults from the start land before its stack goes


def test_the_plan_is_the_seeds_and_covers_every_fault() -> None:
    assert plan(SEED, 12) == plan(SEED, 12)
    assert sorted(p.fault for p in plan(SEED, len(FAULTS))) == sorted(FAULTS)


PYTHONS_OWN = """Traceback (most recent call last):
  File "<frozen runpy>", line 189, in _run_module_as_main
  File "<frozen importlib._bootstrap_external>", line 147, in _path_stat
KeyboardInterrupt
"""
OURS = PYTHONS_OWN.replace("<frozen runpy>", "/repo/orchestration/cli.py")


def _faulted(fault: str, code: int, stderr: str, stage: str = "starting") -> bool:
    planned = Planned(0, fault, "run", ("3.4.1.0",), 200, 0.03, 0)
    run = SimpleNamespace(process=SimpleNamespace(returncode=code), stderr=stderr)
    return in_python_startup(planned, Hit(stage), cast(CliRun, run))


def test_a_signal_in_pythons_own_startup_is_told_apart_from_the_harnesss_handling() -> None:
    assert _faulted("SIGINT group", 1, PYTHONS_OWN)  # runpy: "Error while finding module"
    assert _faulted("SIGINT group", -2, PYTHONS_OWN)
    assert _faulted("SIGTERM harness", -15, "")
    assert not _faulted("SIGINT group", 1, OURS)  # a frame of ours: the harness's to catch
    assert not _faulted("SIGINT group", 1, "Traceback ...\nValueError: x\n")
    assert not _faulted("SIGTERM harness", -15, "", stage="preparing images")
    assert not _faulted("SIGTERM harness", 143, "")  # handled: nothing to excuse
    assert not _faulted("SIGKILL harness", -9, "")


@pytest.mark.docker
@pytest.mark.timeout(480)
def test_a_short_soak_leaks_nothing_and_gets_no_verdict_wrong(
    tmp_path: Path, sim_images: None
) -> None:
    outcomes = soak(plan(SEED, len(FAULTS)), tmp_path)
    report = render(outcomes, SEED, f"pytest (seed {SEED})", 0.0)

    assert [o for o in outcomes if o.hung] == [], report
    assert [o.leaks for o in outcomes if o.leaks] == [], report
    assert [o.unreadable for o in outcomes if o.unreadable] == [], report
    assert [o.half_written for o in outcomes if o.half_written] == [], report
    assert [o.wrong_verdicts for o in outcomes if o.wrong_verdicts] == [], report
    assert [o.planned.fault for o in outcomes if o.hit.stage == MISSED] == [], report
