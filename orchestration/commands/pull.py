"""`pull`: the registry images a run of these versions and plugins builds on, fetched now."""

from __future__ import annotations

import argparse

from tabulate import tabulate

from orchestration import versions
from orchestration.commands import Command, common
from orchestration.config import PULLS_AT_ONCE
from orchestration.errors import UsageError


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("versions", nargs="*", help="defaults to the default matrix")


def _pull(args: argparse.Namespace) -> int:
    from orchestration import pipeline, pulls
    from orchestration.engines import EnginePool

    config = common.config_from(
        args,
        lambda images: common.listed_targets(args.versions, images, versions.DEFAULT_MATRIX),
        writes_results=False,
    )
    if config.sim:
        raise UsageError("--sim builds its images on this machine: there is nothing to pull")
    common.check_prerequisites(False, config.docker_hosts)
    images = pipeline.registry_images(config, pipeline.jobs_of(config))
    rows, failed = [], False
    for engine in EnginePool(config.docker_hosts).engines:
        outcomes = pulls.pull_now(images, engine, _never_cancelled)
        there = [i for i, outcome in outcomes.items() if not outcome.startswith(pulls.FAILED)]
        failed = failed or len(there) < len(outcomes)
        sizes = pulls.sizes(engine, *there)
        for image, outcome in outcomes.items():
            size = f"{sizes[image] / 1e6:.0f} MB" if image in sizes else "-"
            rows.append([engine.describe(), image, outcome, size])
    print(tabulate(rows, headers=["engine", "image", "result", "size"], tablefmt="github"))
    return 1 if failed else 0


def _never_cancelled() -> None:
    """A pull is stopped by the signal itself (KeyboardInterrupt, Interrupted), not a flag."""


PULL = Command(
    "pull",
    "pull the registry images a run of these versions and plugins builds on, "
    f"{PULLS_AT_ONCE} at a time (before a first real matrix)",
    _pull,
    _arguments,
)
