"""`clean`: remove what killed runs left in Docker and among the processes."""

from __future__ import annotations

import argparse
import sys

from orchestration.commands import Command, common


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="only list what would be removed")


def _clean(args: argparse.Namespace) -> int:
    from orchestration import clean
    from orchestration.engines import check_engines
    from orchestration.stack import check_docker

    hosts: tuple[str, ...] = common.options(args)["docker_host"]
    if hosts:
        check_engines(hosts)
    else:
        check_docker()
    found = clean.survey(engines=common.engines_to_survey(hosts))
    left_alone = found.left_alone()
    if not found.leftovers:
        print(f"nothing to remove ({left_alone})")
        return 0
    if args.dry_run:
        for leftover in found.leftovers:
            print(f"would remove {leftover.describe()}")
        print(f"{found.summary()}; {left_alone}")
        return 0
    failed = 0
    for leftover, problem in clean.remove(found.leftovers):
        if problem is None:
            print(f"removed {leftover.describe()}")
        else:
            failed += 1
            print(f"could not remove {leftover.describe()}: {problem}", file=sys.stderr)
    print(f"{found.summary()}: {len(found.leftovers) - failed} removed; {left_alone}")
    return 1 if failed else 0


CLEAN = Command(
    "clean",
    "remove what killed runs left: containers, networks, volumes, processes, images",
    _clean,
    _arguments,
)
