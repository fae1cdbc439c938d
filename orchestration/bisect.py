"""`bisect GOOD BAD`: the first version after GOOD that reads otherwise, in few runs.

The versions between GOOD and BAD are the known versions of GOOD's edition in release order (or
the `--image` tags the user lists, in the order given). Both ends are measured first: when they
read the same there is nothing to find (the search refuses, with both verdicts). Then a binary
search, which finds the first version that reads otherwise only when the verdict changes once in
the range; when the changelog table expects it to change more than once (a fix inside the range,
e.g. 3.4.3.1 between 3.4.0.0 and 3.5.0.1), that is said up front and the versions are measured in
release order from GOOD instead, so the answer is still the first. Each step measures one version
as `run` does (its own run folder, every option of `run` applies: `--sim`, `--scenario`, ...) and
is printed as it goes; a step that errors ends the search with what it knew (a verdict is needed
to go on).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from orchestration import versions
from orchestration.errors import Interrupted, MatrixError, UsageError
from orchestration.report import Row, expected_verdict
from orchestration.versions import Target

Say = Callable[[str], None]


@dataclass(frozen=True)
class Step:
    target: Target
    verdict: str
    row: Row


@dataclass(frozen=True)
class Bisection:
    good: Step
    steps: tuple[Step, ...]  # after GOOD, in the order they ran (BAD first)
    first_different: Target  # the answer
    in_order: bool  # measured one after another from GOOD (the table expects several changes)

    @property
    def runs(self) -> int:
        return 1 + len(self.steps)

    def answer(self) -> str:
        """The answer, what it is, and every version it ran with its verdict."""
        how = (
            "measured in release order"
            if self.in_order
            else "binary search, which takes the verdict to change once in the range"
        )
        ran = ", ".join(f"{s.target.label} {s.verdict}" for s in (self.good, *self.steps))
        return (
            f"first version after {self.good.target.label} that reads otherwise than its "
            f"{self.good.verdict}: {self.first_different.label}, found in {self.runs} runs "
            f"({how}); ran: {ran}"
        )


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


def expected_changes(candidates: Sequence[Target]) -> list[Target]:
    """The candidates at which the changelog table expects the verdict to change (targets it
    says nothing about are passed over)."""
    changes: list[Target] = []
    before: str | None = None
    for target in candidates:
        verdict = expected_verdict(target.expected)
        if verdict is None:
            continue
        if before is not None and verdict != before:
            changes.append(target)
        before = verdict
    return changes


def _several_changes(candidates: Sequence[Target]) -> str | None:
    """What to say up front when the table expects the verdict to change more than once."""
    changes = expected_changes(candidates)
    if len(changes) < 2:
        return None
    fixes = [t.label for t in changes if t.expected == "fixed"]
    holds = f"holds a fix ({', '.join(fixes)}) inside it: " if fixes else ""
    listed = ", ".join(f"{t.label} {t.expected}" for t in changes)
    return (
        f"bisect: the range {candidates[0].label} .. {candidates[-1].label} {holds}the changelog "
        f"table expects the verdict to change {len(changes)} times ({listed}); a binary search "
        f"could answer any of those changes, so after both ends the versions are measured in "
        f"release order from {candidates[0].label} until one reads otherwise"
    )


def search(
    candidates: Sequence[Target],
    measure: Callable[[Target], Row],
    say: Say = lambda _line: None,
) -> Bisection:
    """The first of `candidates` (GOOD first, BAD last) whose verdict is unlike GOOD's."""
    if len(candidates) < 2:
        raise UsageError("bisect needs a GOOD and a BAD version (or two --image tags at least)")
    several = _several_changes(candidates)
    if several:
        say(several)
    good = _step(candidates[0], measure, say, "good end")
    bad = _step(candidates[-1], measure, say, "bad end")
    if bad.verdict == good.verdict:
        raise MatrixError(_same_at_both_ends(good, bad, candidates))
    low, high = 0, len(candidates) - 1  # low reads like GOOD; high does not
    steps = [bad]
    while high - low > 1:
        middle = low + 1 if several else (low + high) // 2
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
    return Bisection(good, tuple(steps), candidates[high], in_order=bool(several))


def _same_at_both_ends(good: Step, bad: Step, candidates: Sequence[Target]) -> str:
    """The refusal: both verdicts, and where the table expects otherwise inside the range."""
    text = (
        f"bisect has no answer: {good.target.label} reads {good.verdict} and "
        f"{bad.target.label} reads {bad.verdict} too; there is no change between the ends to "
        "find. Name as BAD a version that reads otherwise than GOOD"
    )
    changes = expected_changes(candidates)
    if len(changes) > 1:  # the table expects otherwise in between: the first stretch of it
        first = candidates.index(changes[0])
        end = candidates.index(changes[1]) - 1
        text += (
            f" (the changelog table expects {candidates[first].label} to read otherwise: "
            f"bisect {good.target.label} {candidates[end].label})"
        )
    return text


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


def _step(target: Target, measure: Callable[[Target], Row], say: Say, why: str) -> Step:
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
