"""`bisect GOOD BAD`: the first version after GOOD that reads otherwise."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace

from orchestration import drawing, versions
from orchestration.commands import Command, common
from orchestration.config import new_run_id
from orchestration.errors import UsageError
from orchestration.owner import OWNER_ENV, Owner
from orchestration.report import Row
from orchestration.versions import Target


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("good", nargs="?", help="a version that reads as it should")
    parser.add_argument("bad", nargs="?", help="a later version of the same edition that does not")


def _candidates(args: argparse.Namespace, images: tuple[str, ...]) -> tuple[Target, ...]:
    from orchestration import bisect

    if images:
        if args.good or args.bad:
            raise UsageError("bisect takes GOOD BAD versions, or --image tags in order, not both")
        return tuple(versions.target_for_image(image) for image in images)
    if not (args.good and args.bad):
        raise UsageError(
            "bisect needs GOOD and BAD, e.g. bisect 3.4.0.0 3.4.2.1 (or --image tags in order, "
            "the first good, the last bad)"
        )
    good, bad = (versions.lookup(name).version for name in (args.good, args.bad))  # aliases
    return tuple(bisect.between(good, bad))


def _bisect(args: argparse.Namespace) -> int:
    from orchestration import bisect, pipeline

    config = common.config_from(args, lambda images: _candidates(args, images), one_plugin=True)
    if len(config.scenarios) != 1:
        raise UsageError("bisect compares one scenario's verdict: name at most one --scenario")
    os.environ[OWNER_ENV] = Owner.current().text
    common.check_prerequisites(config.sim, config.docker_hosts)
    labels = " ".join(t.label for t in config.targets)
    print(f"bisect: {len(config.targets)} versions in order: {labels}", file=sys.stderr)

    def measure(target: Target) -> Row:
        step = replace(config, run_id=new_run_id(), targets=(target,))
        run = pipeline.run_matrix(step, announce=common.announce)
        drawing.finish_run(step.run_dir, run)
        return run.versions[0]

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    found = bisect.search(config.targets, measure, say)
    print(found.answer())
    for line in bisect.changelog_around(found.first_different, config.targets):
        print(f"  {line}")
    return 0


BISECT = Command(
    "bisect",
    "the first version after GOOD that reads otherwise; both ends are measured first",
    _bisect,
    _arguments,
)
