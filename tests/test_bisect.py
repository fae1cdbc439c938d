"""bisect: the first version after GOOD that reads otherwise, both ends measured first."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from test_reliability import REPO, _cli_env

from orchestration import bisect
from orchestration.errors import Interrupted, MatrixError, UsageError
from orchestration.report import Row
from orchestration.versions import Target, target_for_image

CHURNS = {"3.4.1.0", "3.4.1.1", "3.4.2.0", "3.4.2.1", "3.5.0.0", "3.5.0.1"}


def _measured(
    ran: list[str], errors: frozenset[str] = frozenset(), churns: frozenset[str] | set[str] = CHURNS
) -> Callable[[Target], Row]:
    def measure(target: Target) -> Row:
        ran.append(target.label)
        verdict = "churn" if target.label in churns else "stable"
        status = "error" if target.label in errors else "ok"
        return Row(
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


def test_the_regression_is_found_with_both_ends_measured_first() -> None:
    ran: list[str] = []
    said: list[str] = []
    found = bisect.search(bisect.between("3.4.0.0", "3.4.2.1"), _measured(ran), said.append)
    assert found.first_different.label == "3.4.1.0"
    assert found.runs == len(ran) == 4
    assert ran == ["3.4.0.0", "3.4.2.1", "3.4.1.1", "3.4.1.0"]  # the ends, then binary search
    assert said == [
        "bisect: 3.4.0.0 reads stable (good end)",
        "bisect: 3.4.2.1 reads churn (bad end)",
        "bisect: 3.4.1.1 reads churn (3 left between)",
        "bisect: 3.4.1.0 reads churn (1 left between)",
    ]  # every probe as it comes; the table expects one change here: nothing said up front
    assert not found.in_order
    assert found.answer() == (
        "first version after 3.4.0.0 that reads otherwise than its stable: 3.4.1.0, found in 4 "
        "runs (binary search, which takes the verdict to change once in the range); ran: "
        "3.4.0.0 stable, 3.4.2.1 churn, 3.4.1.1 churn, 3.4.1.0 churn"
    )


def test_ends_that_read_the_same_are_refused_with_both_verdicts() -> None:
    # 3.4.0.0 .. 3.6.0.0: stable at both ends, churn in between (the wrong 3.5.0.0)
    ran: list[str] = []
    with pytest.raises(MatrixError) as refused:
        bisect.search(bisect.between("3.4.0.0", "3.6.0.0"), _measured(ran))
    assert ran == ["3.4.0.0", "3.6.0.0"]  # nothing searched
    assert str(refused.value) == (
        "bisect has no answer: 3.4.0.0 reads stable and 3.6.0.0 reads stable too; there is no "
        "change between the ends to find. Name as BAD a version that reads otherwise than GOOD "
        "(the changelog table expects 3.4.1.0 to read otherwise: bisect 3.4.0.0 3.4.2.1)"
    )
    assert refused.value.exit_code == 1  # measured, no answer: as a step without a verdict
    # images the table says nothing about: both verdicts, no suggestion
    images = [target_for_image(f"example/kong:{n}") for n in "abc"]
    with pytest.raises(MatrixError, match=r"example/kong:c reads stable too; .* than GOOD$"):
        bisect.search(images, _measured([]))


def test_a_range_holding_a_fix_is_said_up_front_and_walked_in_order() -> None:
    # 3.4.0.0 .. 3.5.0.1: churn from 3.4.1.0, 3.4.3.1 fixed, churn again from 3.5.0.0. Reality
    # here churns only from 3.4.2.0: a binary search would answer 3.4.2.0 too, but a reality
    # that churned 3.4.1.0 .. 3.4.2.1 and 3.5.0.0 .. would be answered 3.5.0.0 by one
    ran: list[str] = []
    said: list[str] = []
    candidates = bisect.between("3.4.0.0", "3.5.0.1")
    churns = {"3.4.1.0", "3.4.1.1", "3.4.2.0", "3.4.2.1", "3.5.0.0", "3.5.0.1"}
    found = bisect.search(candidates, _measured(ran, churns=churns), said.append)
    assert said[0] == (
        "bisect: the range 3.4.0.0 .. 3.5.0.1 holds a fix (3.4.3.1) inside it: the changelog "
        "table expects the verdict to change 3 times (3.4.1.0 affected, 3.4.3.1 fixed, 3.5.0.0 "
        "affected); a binary search could answer any of those changes, so after both ends the "
        "versions are measured in release order from 3.4.0.0 until one reads otherwise"
    )
    assert ran == ["3.4.0.0", "3.5.0.1", "3.4.1.0"]
    assert found.first_different.label == "3.4.1.0" and found.in_order
    assert found.answer().startswith(
        "first version after 3.4.0.0 that reads otherwise than its stable: 3.4.1.0, found in 3 "
        "runs (measured in release order); ran: 3.4.0.0 stable, 3.5.0.1 churn, 3.4.1.0 churn"
    )


def test_a_range_with_a_fix_answers_the_first_change_where_halving_would_not() -> None:
    """Reality churning from 3.4.2.1, fixed at 3.4.3.1, churning again from 3.5.0.0: halving
    3.4.0.0 .. 3.5.0.1 reads 3.4.2.0 stable, 3.4.3.1 stable, 3.5.0.0 churn and answers 3.5.0.0
    (the issue's wrong answer); the walk in release order answers 3.4.2.1."""
    candidates = bisect.between("3.4.0.0", "3.5.0.1")
    churns = {"3.4.2.1", "3.5.0.0", "3.5.0.1"}  # 3.4.2.0 and before stable, then the fix
    ran: list[str] = []
    found = bisect.search(candidates, _measured(ran, churns=churns))
    assert found.first_different.label == "3.4.2.1"
    assert ran == ["3.4.0.0", "3.5.0.1", "3.4.1.0", "3.4.1.1", "3.4.2.0", "3.4.2.1"]


def test_expected_changes_pass_over_what_the_table_says_nothing_about() -> None:
    unknown = target_for_image("example/kong:x")
    candidates = bisect.between("3.4.0.0", "3.4.2.1")
    mixed = [candidates[0], unknown, *candidates[1:]]
    assert [t.label for t in bisect.expected_changes(mixed)] == ["3.4.1.0"]
    assert bisect.expected_changes([unknown, unknown]) == []


def test_the_fix_is_found_too_and_images_keep_the_order_given() -> None:
    ran: list[str] = []
    found = bisect.search(bisect.between("3.4.1.0", "3.4.3.1"), _measured(ran))
    assert found.first_different.label == "3.4.3.1"  # first unlike 3.4.1.0's churn
    images = [target_for_image(f"kong/kong-gateway:{v}") for v in ("3.4.0.0", "3.4.1.0", "3.4.2.1")]
    assert bisect.search(images, _measured([])).first_different.label.endswith("3.4.1.0")


def test_a_step_without_a_verdict_stops_the_search() -> None:
    with pytest.raises(MatrixError, match=r"3\.4\.1\.1 gave no verdict"):
        bisect.search(bisect.between("3.4.0.0", "3.4.2.1"), _measured([], frozenset({"3.4.1.1"})))


def _stopped_at(stop: str, stopped_by: BaseException) -> Callable[[Target], Row]:
    measured = _measured([])

    def measure(target: Target) -> Row:
        if target.label == stop:
            raise stopped_by
        return measured(target)

    return measure


def test_an_interrupted_bisect_says_what_is_left_and_how_to_go_on() -> None:
    # 3.4.0.0 .. 3.4.2.1: 3.4.1.1 reads churn, 3.4.1.0 is next: the range is 3.4.0.0 .. 3.4.1.1
    said: list[str] = []
    with pytest.raises(Interrupted):
        bisect.search(
            bisect.between("3.4.0.0", "3.4.2.1"),
            _stopped_at("3.4.1.0", Interrupted(15)),
            said.append,
        )
    assert said[-1] == (
        "bisect interrupted: the first version whose verdict differs from 3.4.0.0's (stable) "
        "comes after 3.4.0.0, at 3.4.1.1 at the latest; to go on: bisect 3.4.0.0 3.4.1.1"
    )


@pytest.mark.parametrize(
    ("images", "stopped_on", "left"),
    [
        # a reads stable, e churn: stopped on the first middle, all five are left
        ([f"example/kong:{n}" for n in "abcde"], 2, 5),
        # known versions, but not every one between: going on by version would add the rest;
        # 3.4.2.1 reads churn, stopped on 3.4.1.0: 3.4.0.0 .. 3.4.2.1 are left
        ([f"kong/kong-gateway:{v}" for v in ("3.4.0.0", "3.4.1.0", "3.4.2.1", "3.4.1.1", "3.5.0.1")
          ], 1, 3),
    ],
)  # fmt: skip
def test_an_interrupted_bisect_over_images_lists_the_images_left(
    images: list[str], stopped_on: int, left: int
) -> None:
    said: list[str] = []
    churns = {target_for_image(images[-1]).label, *CHURNS}
    measured = _measured([], churns=churns)

    def stop(target: Target) -> Row:
        if target.label == target_for_image(images[stopped_on]).label:
            raise KeyboardInterrupt
        return measured(target)

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
    assert "reads otherwise than its stable: 3.4.1.0, found in 4 runs" in done.stdout
    assert "bisect: 3.4.0.0 reads stable (good end)" in done.stderr
    assert "bisect: 3.4.2.1 reads churn (bad end)" in done.stderr
    assert "3.4.1.0: changelog affected" in done.stdout
    assert len([p for p in tmp_path.iterdir() if p.is_dir() and not p.is_symlink()]) == 4


@pytest.mark.docker
def test_bisect_on_the_stand_in_refuses_ends_that_agree(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "orchestration", "bisect", "3.4.0.0", "3.6.0.0", "--sim",
         "--requests", "300", "--results", str(tmp_path)],
        cwd=REPO, env=_cli_env(), capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "bisect: the range 3.4.0.0 .. 3.6.0.0 holds a fix (3.4.3.1, 3.5.0.2) inside it" in (
        done.stderr
    )
    assert "error: bisect has no answer: 3.4.0.0 reads stable and 3.6.0.0 reads stable too" in (
        done.stderr
    )
    assert done.stdout.count("first version") == 0  # no answer printed
