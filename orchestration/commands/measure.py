"""`run`, `matrix`, `ui` and `selftest`: measure versions and print the table."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from tabulate import tabulate

from orchestration import run_files, selftest, versions
from orchestration.commands import Command, common
from orchestration.config import RunConfig
from orchestration.errors import Interrupted, UsageError
from orchestration.owner import OWNER_ENV, Owner
from orchestration.report import RunResult


def _measure(
    args: argparse.Namespace, config: RunConfig, run: Callable[[RunConfig], RunResult]
) -> int:
    """Check what is needed, run, then print the table and write the JUnit file (also when the
    run was interrupted: the rows measured so far are the user's)."""
    common.licence_notice(config)
    junit_request = common.junit_request(args, [t.label for t in config.targets])
    # Every process this run starts carries its owner, so `clean` can tell what a dead run left.
    os.environ[OWNER_ENV] = Owner.current().text
    common.check_prerequisites(config.sim, config.docker_hosts)
    try:
        finished = run(config)
    except Interrupted:
        finished = run_files.load_run(config.run_dir)  # as written on the way out
        common.print_run(finished, config.run_dir, common.column_set(args))
        common.write_junit(junit_request, finished)
        raise
    common.print_run(finished, config.run_dir, common.column_set(args))
    common.write_junit(junit_request, finished)
    return 0 if finished.all_ok else 1


def _matrix_of(config: RunConfig) -> RunResult:
    from orchestration import pipeline

    return pipeline.run_matrix(config, announce=common.announce)


def _run(args: argparse.Namespace) -> int:
    config = common.config_from(args, lambda images: common.listed_targets(args.versions, images))
    return _measure(args, config, _matrix_of)


def _matrix(args: argparse.Namespace) -> int:
    config = common.config_from(
        args,
        lambda images: common.listed_targets(args.versions, images, versions.DEFAULT_MATRIX),
    )
    return _measure(args, config, _matrix_of)


def _ui(args: argparse.Namespace) -> int:
    from orchestration import pipeline
    from orchestration.load import require_free_port

    config = common.config_from(
        args, lambda images: common.listed_targets(args.versions, images), one_plugin=True
    )
    if len(config.targets) != 1:
        raise UsageError("ui takes exactly one version (or one --image)")
    if config.locust_workers or config.locust_remote_workers:
        raise UsageError(
            "the web UI runs one Locust process: --locust-workers and --locust-remote-workers "
            "are for run and matrix"
        )

    def ui(config: RunConfig) -> RunResult:
        return pipeline.run_ui(config)

    require_free_port(config.web_port)  # a taken port is known before anything is built
    return _measure(args, config, ui)


def _selftest(args: argparse.Namespace) -> int:
    config = common.config_from(
        args,
        lambda _images: tuple(versions.target_for_version(v) for v in selftest.SELFTEST_VERSIONS),
        sim=True,
    )
    common.licence_notice(config)
    os.environ[OWNER_ENV] = Owner.current().text
    common.check_prerequisites(config.sim, config.docker_hosts)
    return _selftest_run(config)


def _selftest_run(config: RunConfig) -> int:
    from orchestration import pipeline
    from orchestration.paths import REPO_ROOT
    from orchestration.plugins import resolve_plugins

    plugins = {
        p.label: p for p in resolve_plugins((selftest.GO, *selftest.OTHER_PLUGINS), REPO_ROOT)
    }
    jobs = tuple(
        pipeline.Job(versions.target_for_version(version), plugin=plugins[name])
        for version, name in selftest.planned()
    )
    run = pipeline.run_matrix(config, announce=common.announce, jobs=jobs)
    common.print_run(run, config.run_dir, "compact")
    checks = selftest.evaluate(run, config.requests)
    rows = [[c.version, c.plugin, c.what, "PASS" if c.passed else "FAIL", c.detail] for c in checks]
    print(
        tabulate(
            rows,
            headers=["version", "plugin", "check", "result", "detail"],
            tablefmt="github",
            disable_numparse=True,
        )
    )
    failed = [c for c in checks if not c.passed]
    print(f"selftest: {len(checks) - len(failed)} passed, {len(failed)} failed", file=sys.stderr)
    return 1 if failed else 0


def _versions(help_text: str) -> Callable[[argparse.ArgumentParser], None]:
    def arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("versions", nargs="*", help=help_text)

    return arguments


RUN = Command(
    "run", "measure one or more Kong versions", _run, _versions("Kong versions from `versions`")
)
MATRIX = Command(
    "matrix",
    "measure the default matrix (or the versions given)",
    _matrix,
    _versions("defaults to the default matrix"),
)
UI = Command(
    "ui",
    "bring one version up and open Locust's web UI on 127.0.0.1",
    _ui,
    _versions("one Kong version (or use --image)"),
)
SELFTEST = Command(
    "selftest",
    "offline control: 3.4.0.0, 3.4.1.0, 3.6.0.0, 3.9.0.0 on kong-sim read stable, churn, stable,"
    " stable",
    _selftest,
)
