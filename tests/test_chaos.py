"""The chaos soak, short: one run of each fault kind, with a fixed seed (tests/chaos.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from chaos import FAULTS, MISSED, plan, render, soak
from test_reliability import sim_images

__all__ = ["sim_images"]  # a fixture these tests use

SEED = 700  # seven runs, one a matrix; the faults from the start land before its stack goes


def test_the_plan_is_the_seeds_and_covers_every_fault() -> None:
    assert plan(SEED, 12) == plan(SEED, 12)
    assert sorted(p.fault for p in plan(SEED, len(FAULTS))) == sorted(FAULTS)


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
