"""bisect: the first version whose verdict differs from GOOD's, in the fewest runs."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from test_reliability import REPO, _cli_env

from orchestration import bisect
from orchestration.errors import Interrupted, MatrixError, UsageError
from orchestration.report import VersionResult
from orchestration.versions import Target, target_for_image, target_for_version

CHURNS = {"3.4.1.0", "3.4.1.1", "3.4.2.0", "3.4.2.1", "3.5.0.0", "3.5.0.1"}


def _measured(
    ran: list[str], errors: frozenset[str] = frozenset()
) -> Callable[[Target], VersionResult]:
    def measure(target: Target) -> VersionResult:
        ran.append(target.label)
        verdict = "churn" if target.label in CHURNS else "stable"
        status = "error" if target.label in errors else "ok"
        return VersionResult(
            target.label, target.image, True, status, None, target.expected,  # type: ignore[arg-type]
            verdict if status == "ok" else "error", None,  # type: ignore[arg-type]
        )  # fmt: skip

    return measure


def test_versions_between_are_one_edition_in_release_order() -> None:
    labels = [t.label for t in bisect.between("3.4.0.0", "3.5.0.1")]
    every_3_4_3 = [f"3.4.3.{patch}" for patch in range(1, 30)]
    assert labels == ["3.4.0.0", "3.4.1.0", "3.4.1.1", "3.4.2.0", "3.4.2.1", *every_3_4_3,
                      "3.5.0.0", "3.5.0.1"]  # fmt: skip
    with pytest.raises(UsageError, match="different editions"):
        bisect.between("3.4.0.0", "3.6.0")
    with pytest.raises(UsageError, match="GOOD must come before BAD"):
        bisect.between("3.6.0.0", "3.4.0.0")


def test_the_regression_is_found_in_at_most_three_runs() -> None:
    ran: list[str] = []
    found = bisect.search(bisect.between("3.4.0.0", "3.4.2.1"), _measured(ran))
    assert found.first_different.label == "3.4.1.0"
    assert found.runs == len(ran) <= 3
    assert ran[0] == "3.4.0.0" and "3.4.2.1" not in ran  # BAD is taken to differ, never run


def test_the_fix_is_found_too_and_images_keep_the_order_given() -> None:
    ran: list[str] = []
    found = bisect.search(bisect.between("3.4.1.0", "3.6.0.0"), _measured(ran))
    assert found.first_different.label == "3.4.3.1"  # first unlike 3.4.1.0's churn
    images = [target_for_image(f"kong/kong-gateway:{v}") for v in ("3.4.0.0", "3.4.1.0", "3.4.2.1")]
    assert bisect.search(images, _measured([])).first_different.label.endswith("3.4.1.0")


def test_a_step_without_a_verdict_stops_the_search() -> None:
    with pytest.raises(MatrixError, match=r"3\.4\.1\.1 gave no verdict"):
        bisect.search(bisect.between("3.4.0.0", "3.4.2.1"), _measured([], frozenset({"3.4.1.1"})))


def _stopped_at(stop: str, stopped_by: BaseException) -> Callable[[Target], VersionResult]:
    measured = _measured([])

    def measure(target: Target) -> VersionResult:
        if target.label == stop:
            raise stopped_by
        return measured(target)

    return measure


def test_an_interrupted_bisect_says_what_is_left_and_how_to_go_on() -> None:
    # eight releases from 3.4.0.0 to 3.5.0.1: 3.4.2.0 reads churn, 3.4.1.0 is next: the range
    # is 3.4.0.0 .. 3.4.2.0
    eight = ("3.4.0.0", "3.4.1.0", "3.4.1.1", "3.4.2.0", "3.4.2.1", "3.4.3.1", "3.5.0.0", "3.5.0.1")
    said: list[str] = []
    with pytest.raises(Interrupted):
        bisect.search(
            [target_for_version(v) for v in eight],
            _stopped_at("3.4.1.0", Interrupted(15)),
            said.append,
        )
    assert said[-1] == (
        "bisect interrupted: the first version whose verdict differs from 3.4.0.0's (stable) "
        "comes after 3.4.0.0, at 3.4.2.0 at the latest; to go on: bisect 3.4.0.0 3.4.2.0"
    )


@pytest.mark.parametrize(
    ("images", "stopped_on", "left"),
    [
        # a reads stable, so does every other: stopped on the first middle, all five are left
        ([f"example/kong:{n}" for n in "abcde"], 2, 5),
        # known versions, but not every one between: going on by version would add the rest;
        # 3.4.2.1 reads churn, stopped on 3.4.1.0: 3.4.0.0 .. 3.4.2.1 are left
        ([f"kong/kong-gateway:{v}" for v in ("3.4.0.0", "3.4.1.0", "3.4.2.1", "3.4.3.1", "3.5.0.1")
          ], 1, 3),
    ],
)  # fmt: skip
def test_an_interrupted_bisect_over_images_lists_the_images_left(
    images: list[str], stopped_on: int, left: int
) -> None:
    said: list[str] = []
    stop = _stopped_at(target_for_image(images[stopped_on]).label, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        bisect.search([target_for_image(i) for i in images], stop, said.append)
    assert said[-1].endswith("to go on: bisect " + " ".join(f"--image {i}" for i in images[:left]))


def test_a_bisect_interrupted_on_good_has_nothing_to_say() -> None:
    said: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        bisect.search(
            bisect.between("3.4.0.0", "3.4.2.1"),
            _stopped_at("3.4.0.0", KeyboardInterrupt()),
            said.append,
        )
    assert said == []


@pytest.mark.docker
def test_bisect_on_the_stand_in_finds_3_4_1_0(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "orchestration", "bisect", "3.4.0.0", "3.4.2.1", "--sim",
         "--requests", "300", "--results", str(tmp_path)],
        cwd=REPO, env=_cli_env(), capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "differs from 3.4.0.0's (stable): 3.4.1.0, found in 3 runs" in done.stdout
    assert "bisect: 3.4.0.0 reads stable (good)" in done.stderr
    assert "3.4.1.0: changelog affected" in done.stdout
    assert len([p for p in tmp_path.iterdir() if p.is_dir() and not p.is_symlink()]) == 3
