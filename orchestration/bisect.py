"""`bisect GOOD BAD`: the first version whose verdict differs from GOOD's, in the fewest runs.

The versions between GOOD and BAD are the known versions of GOOD's edition in release order (or
the `--image` tags the user lists, in the order given). GOOD is measured first, for the verdict
to compare with; BAD is taken, as in `git bisect`, to differ from it (that is why it was named),
so it is never run unless the search ends on it. Each step measures one version as `run` does
(its own run folder, every option of `run` applies: `--sim`, `--scenario`, ...) and is printed as
it goes; a step that errors ends the search with what it knew (a verdict is needed to go on).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from orchestration import versions
from orchestration.errors import Interrupted, MatrixError, UsageError
from orchestration.report import VersionResult
from orchestration.versions import Target


@dataclass(frozen=True)
class Step:
    target: Target
    verdict: str
    row: VersionResult


@dataclass(frozen=True)
class Outcome:
    good: Step
    steps: tuple[Step, ...]  # after GOOD, in the order they ran
    first_different: Target  # the answer

    @property
    def runs(self) -> int:
        return 1 + len(self.steps)


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def between(good: str, bad: str) -> list[Target]:
    """GOOD, the known versions after it up to BAD, and BAD, in release order (one edition)."""
    first, last = versions.lookup(good), versions.lookup(bad)
    if first.edition != last.edition:
        raise UsageError(
            f"{good} and {bad} are of different editions ({first.edition}, {last.edition}): "
            "bisect within Enterprise (a.b.c.d) or open source (a.b.c)"
        )
    if _release(good) >= _release(bad):
        raise UsageError(f"GOOD must come before BAD in release order, got {good} then {bad}")
    chosen = sorted(
        (v for v in versions.KNOWN_VERSIONS if v.edition == first.edition),
        key=lambda v: _release(v.version),
    )
    return [
        versions.target_for_version(v.version)
        for v in chosen
        if _release(good) <= _release(v.version) <= _release(bad)
    ]


def search(
    candidates: Sequence[Target],
    measure: Callable[[Target], VersionResult],
    say: Callable[[str], None] = lambda _line: None,
) -> Outcome:
    """Binary search of `candidates` (GOOD first, BAD last): the first verdict unlike GOOD's."""
    if len(candidates) < 2:
        raise UsageError("bisect needs a GOOD and a BAD version (or two --image tags at least)")
    good = _step(candidates[0], measure, say, "good")
    low, high = 0, len(candidates) - 1  # low reads like GOOD; high is taken to differ
    steps: list[Step] = []
    while high - low > 1:
        middle = (low + high) // 2
        try:
            step = _step(candidates[middle], measure, say, f"{high - low - 1} left between")
        except (Interrupted, KeyboardInterrupt):
            say(_where_it_stopped(good, candidates[low : high + 1]))
            raise
        steps.append(step)
        if step.verdict == good.verdict:
            low = middle
        else:
            high = middle
    return Outcome(good, tuple(steps), candidates[high])


def _where_it_stopped(good: Step, left: Sequence[Target]) -> str:
    """What an interrupted search knew: the range still open, and the command that goes on."""
    first, last = left[0], left[-1]
    again = " ".join(f"--image {t.image}" for t in left)
    with contextlib.suppress(UsageError):  # not versions of our table: images they stay
        if between(first.label, last.label) == list(left):
            again = f"{first.label} {last.label}"
    return (
        f"bisect interrupted: the first version whose verdict differs from {good.target.label}'s "
        f"({good.verdict}) comes after {first.label}, at {last.label} at the latest; to go on: "
        f"bisect {again}"
    )


def _step(
    target: Target, measure: Callable[[Target], VersionResult], say: Callable[[str], None], why: str
) -> Step:
    row = measure(target)
    if row.status != "ok":
        raise MatrixError(
            f"bisect stopped: {target.label} gave no verdict ({row.status}: {row.error}); "
            "fix that and bisect again, or bisect around it"
        )
    say(f"bisect: {target.label} reads {row.verdict} ({why})")
    return Step(target, row.verdict, row)


def changelog_around(answer: Target, candidates: Sequence[Target]) -> list[str]:
    """What the changelog table says about the answer and its neighbours."""
    at = [t.label for t in candidates].index(answer.label)
    return [
        f"{t.label}: changelog {t.expected} ({t.source})"
        for t in candidates[max(0, at - 1) : at + 2]
    ]
