"""The command line: `python -m orchestration {run,matrix,ui,collect,report,compare,merge,...}`.

This is the only place exceptions become exit codes: 0 every version ran, 1 some version
errored, 2 bad usage or a missing prerequisite (checked before any Docker work), 128+N on
signal N (130 for Ctrl-C, 143 for SIGTERM, 129 when the terminal closed: SIGHUP).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from tabulate import tabulate

from orchestration import __version__, evidence, report, selftest, versions
from orchestration.collect import DEFAULT_PLUGIN as DEFAULT_PLUGIN_SERVER
from orchestration.collect import collect_file, plugin_servers_in
from orchestration.config import (
    BOUNDS,
    DEFAULT_GO_IMAGE,
    PULLS_AT_ONCE,
    REPO_ROOT,
    SCENARIOS,
    RunConfig,
    default_of,
    new_run_id,
    parse_number,
    resolve,
)
from orchestration.errors import Interrupted, MatrixError, UsageError
from orchestration.owner import OWNER_ENV, Owner
from orchestration.report import RunResult, VersionResult
from orchestration.versions import Target

DEFAULT_RESULTS = Path("results")


class _Parser(argparse.ArgumentParser):
    """argparse, but its errors say how to get help and exit 2 like ours."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    def number(flag: str, field: str, meaning: str) -> None:
        parser.add_argument(flag, help=f"{meaning} (default {_number_text(default_of(field))})")

    number("--requests", "requests", "requests to send in total, like hey -n")
    number("--users", "users", "concurrent Locust users, like hey -c")
    number(
        "--spawn-rate",
        "spawn_rate",
        "users started per second; 1000 starts them all at once, like hey",
    )
    number("--workers", "workers", "Kong's nginx worker processes")
    number("--ready-timeout", "ready_timeout_s", "seconds to wait for Kong and the plugin")
    number("--load-timeout", "load_timeout_s", "seconds the load may take at most")
    number("--parallel", "parallel", "versions measured at once")
    _add_locust_worker_options(parser, number)
    command = parser.prog.split()[-1]
    if command in {"run", "matrix", "bisect"}:  # bisect: every option of run (README)
        number("--changes", "changes", "reload: configuration changes under load")
        number(
            "--idle",
            "idle_s",
            "idle: seconds without load between the two bursts, more than go-pdk's 60 s expiry",
        )
        number("--duration", "duration_s", "soak: seconds the load runs")
        parser.add_argument(
            "--scenario",
            action="append",
            metavar="NAME",
            help=f"what to measure, repeatable: {', '.join(SCENARIOS)} (default {SCENARIOS[0]})",
        )
    if command in {"run", "matrix"}:
        _add_junit_options(parser)
        _add_wide_option(parser)
    parser.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="IMAGE",
        help="measure this Kong image (any tag, e.g. kong/kong-gateway:3.7.1.0); repeatable",
    )
    parser.add_argument(
        "--results", type=Path, default=None, help="results folder (default ./results)"
    )
    parser.add_argument("--keep", action="store_true", help="leave the stack up (debugging)")
    parser.add_argument(
        "--sim",
        action="store_true",
        help="offline: run against kong-sim, the stand-in gateway (results say simulated)",
    )
    parser.add_argument(
        "--tap",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="start the plugin behind kpm-tap, which logs the instance starts, closes and errors "
        f"it sees on the plugin's socket (default {'on' if default_of('tap') else 'off'})",
    )
    parser.add_argument(
        "--plugin",
        action="append",
        metavar="NAME|PATH",
        help="the plugin to measure, repeatable: a built-in (go, go-latest, python, js, or all "
        "four) or your plugin's folder (Go on go-pdk, Python or JavaScript on kong-pdk; its kind "
        "is told from its files); default go",
    )
    parser.add_argument(
        "--plugin-config",
        metavar="JSON",
        default=None,
        help="the plugin's config in Kong's declarative config, a JSON object (default {}); "
        "checked against the schema the plugin dumps",
    )
    parser.add_argument(
        "--go-image",
        default=None,
        help=f"builder image for the plugin (default {DEFAULT_GO_IMAGE}; ignored with --sim)",
    )
    _add_docker_host_option(parser)


def _add_locust_worker_options(
    parser: argparse.ArgumentParser, number: Callable[[str, str, str], None]
) -> None:
    number(
        "--locust-workers",
        "locust_workers",
        "Locust's distributed mode: a master and this many worker processes started here "
        "(0: one Locust process)",
    )
    number(
        "--locust-remote-workers",
        "locust_remote_workers",
        "Locust's distributed mode: a master that waits (up to --load-timeout) for this many "
        "workers you start on other machines; it prints their command",
    )
    number("--locust-master-port", "locust_master_port", "the Locust master's port (0: a free one)")
    parser.add_argument(
        "--locust-master-bind",
        default=None,
        metavar="ADDR",
        help="address the Locust master listens on (default 127.0.0.1: remote workers then "
        "reach it through a tunnel; 0.0.0.0 listens on every address)",
    )


def _add_docker_host_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--docker-host",
        action="append",
        default=[],
        metavar="URL",
        help="a Docker engine on this machine (unix:///PATH or tcp://127.0.0.1:PORT), "
        "repeatable: --parallel versions go to the least-loaded one (default: the docker CLI's "
        "own engine)",
    )


def _add_junit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--junit",
        type=Path,
        metavar="FILE",
        help="also write JUnit XML: a test case per (version, plugin, scenario), failing where "
        "the verdict disagrees with the changelog or --expect, or the row errored",
    )
    parser.add_argument(
        "--expect",
        action="append",
        default=[],
        metavar="VERSION=VERDICT",
        help="what a version should read in the JUnit report (churn, stable, inconclusive); "
        "repeatable",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m orchestration",
        description="Does Kong version X churn my Go plugin's instances, and how badly?",
    )
    parser.add_argument("--version", action="version", version=f"kong-plugin-matrix {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser("run", help="measure one or more Kong versions")
    run.add_argument("versions", nargs="*", help="Kong versions from `versions`")
    _add_run_options(run)

    matrix = commands.add_parser(
        "matrix", help="measure the default matrix (or the versions given)"
    )
    matrix.add_argument("versions", nargs="*", help="defaults to the default matrix")
    _add_run_options(matrix)

    ui = commands.add_parser(
        "ui", help="bring one version up and open Locust's web UI on 127.0.0.1"
    )
    ui.add_argument("versions", nargs="*", help="one Kong version (or use --image)")
    _add_run_options(ui)
    ui.add_argument("--web-port", default=str(default_of("web_port")), help="Locust web UI port")

    finder = commands.add_parser(
        "bisect",
        help="the first version after GOOD that reads otherwise; both ends are measured first",
    )
    finder.add_argument("good", nargs="?", help="a version that reads as it should")
    finder.add_argument("bad", nargs="?", help="a later version of the same edition that does not")
    _add_run_options(finder)

    fetching = commands.add_parser(
        "pull",
        help="pull the registry images a run of these versions and plugins builds on, "
        f"{PULLS_AT_ONCE} at a time (before a first real matrix)",
    )
    fetching.add_argument("versions", nargs="*", help="defaults to the default matrix")
    _add_run_options(fetching)

    control = commands.add_parser(
        "selftest",
        help="offline control: 3.4.0.0, 3.4.1.0, 3.6.0.0, 3.9.0.0 on kong-sim read stable, churn,"
        " stable, stable",
    )
    _add_run_options(control)

    collect = commands.add_parser("collect", help="count the churn signals in a Kong log you have")
    collect.add_argument("paths", nargs="+", type=Path, help="kong.log files or run folders")
    collect.add_argument(
        "--json", action="store_true", help="print JSON (results.json field names)"
    )
    collect.add_argument(
        "--plugin",
        help="plugin server name to count (default: the one a run folder recorded, else every "
        "plugin server the log names)",
    )

    tidy = commands.add_parser(
        "clean",
        help="remove what killed runs left: containers, networks, volumes, processes, images",
    )
    tidy.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    _add_docker_host_option(tidy)

    show = commands.add_parser("report", help="print the table of a finished (or interrupted) run")
    show.add_argument("run", type=Path, nargs="?", default=DEFAULT_RESULTS / "latest")
    show.add_argument(
        "--html",
        action="store_true",
        help="(re)draw the run's report.html (tables and charts, one self-contained file) and "
        "print its path",
    )
    show.add_argument(
        "--open", action="store_true", help="as --html, then open it where a browser is at hand"
    )
    _add_junit_options(show)
    _add_wide_option(show)

    _add_compare_parser(commands)

    merging = commands.add_parser(
        "merge", help="combine results folders (machines, CI jobs) into one new run folder"
    )
    merging.add_argument(
        "folders",
        nargs="+",
        type=Path,
        metavar="DIR",
        help="run folders (results/<run-id>) or folders holding them, e.g. CI artifacts",
    )
    merging.add_argument(
        "--results",
        type=Path,
        default=None,
        metavar="ROOT",
        help="where the merged run folder goes (default ./results)",
    )

    listing = commands.add_parser(
        "versions", help="list the known versions and their changelog status"
    )
    listing.add_argument(
        "version",
        nargs="?",
        metavar="VERSION",
        help="one version or series alias: everything recorded about it, its source in full",
    )
    listing.add_argument("--json", action="store_true")
    listing.add_argument(
        "--long", action="store_true", help="every row with its full source (a wide table)"
    )
    listing.add_argument(
        "--default", action="store_true", help="only the default matrix, one a line"
    )
    listing.add_argument(
        "--series", action="store_true", help="one line per series: its releases and aliases"
    )
    return parser


def _add_compare_parser(commands: Any) -> None:
    from orchestration.compare import (
        DEFAULT_NEW_ABSOLUTE,
        DEFAULT_P95_RELATIVE,
        DEFAULT_RSS_RELATIVE,
    )

    comparing = commands.add_parser(
        "compare",
        help="two runs side by side per (version, scenario); exit 1 on a regression",
        description="Compare two runs per (version, scenario): verdict, New()/req, p95 and the "
        "plugin server's peak memory. Exit 1 when something got worse past its threshold (a "
        "verdict moving towards churn or error, New()/req, p95 or memory rising), 0 otherwise, "
        "2 on bad input.",
    )
    comparing.add_argument("old", type=Path, help="OLD run folder or its results.json")
    comparing.add_argument("new", type=Path, help="NEW run folder or its results.json")
    comparing.add_argument("--json", action="store_true", help="print JSON for scripts")
    comparing.add_argument(
        "--html", type=Path, metavar="FILE", help="also write the report page with both runs"
    )
    comparing.add_argument(
        "--threshold-new",
        default=str(DEFAULT_NEW_ABSOLUTE),
        metavar="X",
        help="flag New() per request moving by more than X, absolute "
        f"(default {DEFAULT_NEW_ABSOLUTE}: 0 -> 0.001 is noise, 0 -> 0.1 is not)",
    )
    comparing.add_argument(
        "--threshold-p95",
        default=f"{DEFAULT_P95_RELATIVE:.0%}",
        metavar="R",
        help="flag p95 latency moving by more than R, relative "
        f"(default {DEFAULT_P95_RELATIVE:.0%}%)",
    )
    comparing.add_argument(
        "--threshold-rss",
        default=f"{DEFAULT_RSS_RELATIVE:.0%}",
        metavar="R",
        help="flag the plugin server's peak memory moving by more than R, relative "
        f"(default {DEFAULT_RSS_RELATIVE:.0%}%)",
    )


def _targets(args: argparse.Namespace) -> tuple[Target, ...]:
    if args.command == "selftest":
        return tuple(versions.target_for_version(v) for v in selftest.SELFTEST_VERSIONS)
    if args.command == "bisect":
        return _bisect_candidates(args)
    chosen = list(args.versions)
    if args.command in {"matrix", "pull"} and not chosen and not args.image:
        chosen = list(versions.DEFAULT_MATRIX)
    targets = [versions.target_for_version(v) for v in chosen]
    targets += [versions.target_for_image(image) for image in args.image]
    if not targets:
        raise UsageError(
            f"name at least one version ({versions.known_list()}) or pass --image REPOSITORY:TAG"
        )
    labels = [t.label for t in targets]
    if len(set(labels)) != len(labels):
        raise UsageError(f"a version is named twice: {' '.join(labels)}")
    if args.command == "ui" and len(targets) != 1:
        raise UsageError("ui takes exactly one version (or one --image)")
    return tuple(targets)


def _bisect_candidates(args: argparse.Namespace) -> tuple[Target, ...]:
    from orchestration import bisect

    if args.image:
        if args.good or args.bad:
            raise UsageError("bisect takes GOOD BAD versions, or --image tags in order, not both")
        return tuple(versions.target_for_image(image) for image in args.image)
    if not (args.good and args.bad):
        raise UsageError(
            "bisect needs GOOD and BAD, e.g. bisect 3.4.0.0 3.4.2.1 (or --image tags in order, "
            "the first good, the last bad)"
        )
    good, bad = (versions.lookup(name).version for name in (args.good, args.bad))  # aliases
    return tuple(bisect.between(good, bad))


def config_from(args: argparse.Namespace) -> RunConfig:
    """Flags over KPM_* environment variables over defaults, validated before any Docker work."""
    results_root = _results_root(args)
    if args.command != "pull":  # the only one that writes no results
        results_root = writable_folder(results_root)
    return RunConfig(
        run_id=new_run_id(),
        targets=_targets(args),
        results_root=results_root,
        requests=resolve("requests", args.requests, default_of("requests"), int),
        users=resolve("users", args.users, default_of("users"), int),
        spawn_rate=resolve("spawn_rate", args.spawn_rate, default_of("spawn_rate"), float),
        workers=resolve("workers", args.workers, default_of("workers"), int),
        ready_timeout_s=resolve(
            "ready_timeout", args.ready_timeout, default_of("ready_timeout_s"), float
        ),
        load_timeout_s=resolve(
            "load_timeout", args.load_timeout, default_of("load_timeout_s"), float
        ),
        parallel=resolve("parallel", args.parallel, default_of("parallel"), int),
        keep=args.keep,
        sim=args.sim or args.command == "selftest",
        tap=default_of("tap") if args.tap is None else args.tap,
        go_image=_checked_image(
            "--go-image", args.go_image or os.environ.get("KPM_GO_IMAGE", DEFAULT_GO_IMAGE)
        ),
        scenarios=_scenarios(args),
        plugins=_plugins(args),
        plugin_config=_plugin_config(args),
        changes=resolve("changes", getattr(args, "changes", None), default_of("changes"), int),
        idle_s=resolve("idle", getattr(args, "idle", None), default_of("idle_s"), float),
        duration_s=resolve(
            "duration", getattr(args, "duration", None), default_of("duration_s"), float
        ),
        web_port=_web_port(args),
        docker_hosts=_docker_hosts(args),
        **_locust_worker_settings(args),
    )


def _results_root(args: argparse.Namespace) -> Path:
    """--results, else KPM_RESULTS, else ./results; absolute."""
    return (args.results or Path(os.environ.get("KPM_RESULTS", DEFAULT_RESULTS))).resolve()


def writable_folder(root: Path, option: str | None = None) -> Path:
    """`root`, checked before any work and left as it was: a file there or above it, a place
    that cannot hold folders (/proc) or one we may not write to is the user's to fix (exit 2).
    `option` names what gave it (default: --results ROOT)."""
    where = option or f"--results {root}"
    existing = next(folder for folder in (root, *root.parents) if folder.exists())
    if not existing.is_dir():
        raise UsageError(
            f"{where}: {existing} is a file; pass a folder for the run folders (it is made "
            "when missing)"
        )
    try:
        with tempfile.TemporaryDirectory(dir=existing, prefix=".kpm-check-"):
            pass
    except OSError as error:
        raise UsageError(
            f"{where}: cannot write there ({error.strerror or error}); pass a folder you may "
            "write to"
        ) from None
    return root


def _locust_worker_settings(args: argparse.Namespace) -> dict[str, Any]:
    """--locust-workers, --locust-remote-workers and where the master listens; checked."""
    local, remote, port = (
        resolve(name, getattr(args, name), default_of(name), int)
        for name in ("locust_workers", "locust_remote_workers", "locust_master_port")
    )
    if (local or remote) and args.command == "ui":
        raise UsageError(
            "the web UI runs one Locust process: --locust-workers and --locust-remote-workers "
            "are for run and matrix"
        )
    if local and remote:
        raise UsageError(
            "--locust-workers starts workers here, --locust-remote-workers waits for workers "
            "started elsewhere: choose one"
        )
    parallel = resolve("parallel", args.parallel, default_of("parallel"), int)
    if remote and parallel > 1:
        raise UsageError(
            "--locust-remote-workers serves one version at a time (each version has a master "
            "of its own): leave out --parallel"
        )
    if port and parallel > 1 and (local or remote):
        raise UsageError("--locust-master-port names one port: leave out --parallel, or the port")
    bind = args.locust_master_bind or os.environ.get(
        "KPM_LOCUST_MASTER_BIND", default_of("locust_master_bind")
    )
    users = resolve("users", args.users, default_of("users"), int)
    from orchestration.load import require_users_for_workers

    require_users_for_workers(users, max(local, remote))
    return {
        "locust_workers": local,
        "locust_remote_workers": remote,
        "locust_master_port": port,
        "locust_master_bind": bind,
    }


def _docker_hosts(args: argparse.Namespace) -> tuple[str, ...]:
    """--docker-host URLs, else KPM_DOCKER_HOST (URLs separated by spaces), checked."""
    from orchestration.engines import parse_docker_hosts

    urls = args.docker_host or os.environ.get("KPM_DOCKER_HOST", "").split()
    return parse_docker_hosts(urls)


def _scenarios(args: argparse.Namespace) -> tuple[str, ...]:
    chosen = tuple(getattr(args, "scenario", None) or SCENARIOS[:1])
    for name in chosen:
        if name not in SCENARIOS:
            raise UsageError(
                f"unknown scenario {name!r}; choose from: {', '.join(SCENARIOS)} "
                "(repeat --scenario for several)"
            )
    if len(set(chosen)) != len(chosen):
        raise UsageError(f"a scenario is named twice: {' '.join(chosen)}")
    return chosen


# Scenarios that read what only the built-in plugins report: their config echo (reload), their
# header on the Lua route's twin (overhead); kill-server finds the server by its process name,
# which is the plugin's own only for a Go binary.
NEEDS_BUILT_IN = {"reload": "its config echo header", "overhead": "its marker header"}
NEEDS_GO = {"kill-server": "the server's process name, which is the plugin's only for Go"}


def _plugins(args: argparse.Namespace) -> tuple[str, ...]:
    """The --plugin values, each resolved once here so a bad one fails before any Docker work."""
    from orchestration.plugins import resolve_plugins, runs_as_its_own_process

    chosen = tuple(getattr(args, "plugin", None) or default_of("plugins"))
    sources = resolve_plugins(chosen, REPO_ROOT)
    if len(sources) > 1 and args.command in ("ui", "bisect"):
        raise UsageError(
            f"{args.command} follows one plugin: name one --plugin (got {', '.join(chosen)})"
        )
    for name in getattr(args, "scenario", None) or ():
        for source in sources:
            needs = NEEDS_BUILT_IN.get(name) if not source.builtin else None
            needs = needs or (NEEDS_GO.get(name) if not runs_as_its_own_process(source) else None)
            if needs:
                raise UsageError(
                    f"--scenario {name} cannot measure the plugin {source.label!r}: it needs "
                    f"{needs}. Use --scenario steady, idle, workers or soak with it (or a "
                    "built-in Go plugin for this scenario)"
                )
    return chosen


def _plugin_config(args: argparse.Namespace) -> str:
    """--plugin-config as compact JSON: it must be one JSON object."""
    raw = getattr(args, "plugin_config", None)
    if raw is None:
        return str(default_of("plugin_config"))
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as error:
        raise UsageError(
            f"--plugin-config is not JSON ({error.msg} at character {error.pos}): pass one JSON "
            """object, e.g. --plugin-config '{"message": "hi"}'"""
        ) from None
    if not isinstance(parsed, dict):
        raise UsageError(
            f"--plugin-config must be a JSON object (the plugin's config fields), got "
            f"{type(parsed).__name__}: {raw}"
        )
    return json.dumps(parsed, separators=(",", ":"), sort_keys=True)


def _web_port(args: argparse.Namespace) -> int:
    raw = getattr(args, "web_port", None)
    if raw is None:
        return int(default_of("web_port"))
    return BOUNDS["web_port"].check(parse_number("web_port", raw, int))


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _checked_image(option: str, image: str) -> str:
    """An image reference for an option, held to the same rule as --image."""
    try:
        versions.target_for_image(image)
    except UsageError as error:
        raise UsageError(f"{option}: {error}") from None
    return image


def _announce(row: VersionResult) -> None:
    per_request = "-" if row.new_calls_per_request is None else f"{row.new_calls_per_request:.3f}"
    tag = " [simulated]" if row.simulated else ""
    detail = f": {row.error}" if row.error else f", New()/request {per_request}"
    detail += "".join(f" [{finding}]" for finding in row.findings)
    plugin = "" if row.plugin == "go" else f" {row.plugin}"
    print(f"==> {row.version}{plugin}{tag}: {row.verdict}{detail}", file=sys.stderr, flush=True)


def _add_wide_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wide",
        action="store_true",
        help="print every column of the table, as summary.md has it (default: the columns to "
        "decide on, narrow enough for a terminal)",
    )


def _column_set(args: argparse.Namespace) -> report.ColumnSet:
    return "full" if getattr(args, "wide", False) else "compact"


def _print_run(run: RunResult, run_dir: Path, column_set: report.ColumnSet) -> None:
    """The table, then the report page (drawn last: the verdicts are on the screen by then)."""
    print(report.render_summary(run, column_set), flush=True)
    print(f"Results: {run_dir}", file=sys.stderr, flush=True)
    report.finish_run(run_dir, run)


def _check_prerequisites(sim: bool, docker_hosts: tuple[str, ...] = ()) -> None:
    """Docker, every --docker-host engine (and, for --sim, the host's Go and busybox) before any
    Docker work, all at once."""
    from concurrent.futures import ThreadPoolExecutor

    from orchestration.engines import check_engines
    from orchestration.sim import check_host_tools
    from orchestration.stack import check_docker

    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="kpm-check") as pool:
        checks = [
            pool.submit(check_docker, daemon=not docker_hosts),
            pool.submit(check_engines, docker_hosts),
        ]
        if sim:
            checks.append(pool.submit(check_host_tools))
        leftovers = pool.submit(_warn_of_leftovers, docker_hosts)
        for check in checks:  # Docker's problem first when both fail
            check.result()
        leftovers.result()


def _warn_of_leftovers(docker_hosts: tuple[str, ...] = ()) -> None:
    """One line when runs that died without tearing down left Docker objects behind."""
    from orchestration import clean

    try:
        found = clean.survey(
            with_processes=False, with_images=False, engines=_engines_to_survey(docker_hosts)
        )
    except MatrixError:
        return  # Docker's own check says what is wrong with it
    if found.leftovers:
        hosts = "".join(f" --docker-host {host}" for host in docker_hosts)
        print(
            f"warning: {found.summary()} are still in Docker (a run that was killed); "
            f"remove them with: python -m orchestration clean{hosts}",
            file=sys.stderr,
        )


def _engines_to_survey(docker_hosts: tuple[str, ...]) -> tuple[str | None, ...]:
    return docker_hosts or (None,)


def _cmd_run(args: argparse.Namespace) -> int:
    from orchestration import pipeline
    from orchestration.load import require_free_port

    config = config_from(args)
    licensed = bool(os.environ.get("KONG_LICENSE_DATA", "").strip())
    for line in versions.licence_notice(config.targets, config.scenarios, licensed=licensed):
        print(line, file=sys.stderr)
    junit_request = _junit_request(args, [t.label for t in config.targets])
    # Every process this run starts carries its owner, so `clean` can tell what a dead run left.
    os.environ[OWNER_ENV] = Owner.current().text
    if args.command == "ui":  # a taken port is known before anything is built
        require_free_port(config.web_port)
    _check_prerequisites(config.sim, config.docker_hosts)
    if args.command == "selftest":
        return _selftest(config)
    try:
        if args.command == "ui":
            run = pipeline.run_ui(config)
        else:
            run = pipeline.run_matrix(config, announce=_announce)
    except Interrupted:
        run = report.load_run(config.run_dir)  # as written on the way out
        _print_run(run, config.run_dir, _column_set(args))
        _write_junit(junit_request, run)
        raise
    _print_run(run, config.run_dir, _column_set(args))
    _write_junit(junit_request, run)
    return 0 if run.all_ok else 1


JunitRequest = tuple[Path, dict[str, str]]


def _junit_request(args: argparse.Namespace, labels: Sequence[str]) -> JunitRequest | None:
    """--junit FILE and --expect, checked before any work: (file, expectations) or None."""
    from orchestration import junit

    path: Path | None = getattr(args, "junit", None)
    expected = junit.parse_expectations(getattr(args, "expect", None) or ())
    if path is None:
        if expected:
            raise UsageError("--expect only shapes the JUnit report: add --junit FILE")
        return None
    junit.check_writable(path)
    writable_folder(path.parent, option=f"--junit {path}")
    junit.check_expected_versions(expected, labels)
    return path, expected


def _write_junit(request: JunitRequest | None, run: RunResult) -> None:
    from orchestration import junit

    if request is not None:
        path, expected = request
        _writing(path, lambda: junit.write(path, run, expected))
        print(f"JUnit: {path}", file=sys.stderr)


def _selftest(config: RunConfig) -> int:
    from orchestration import pipeline
    from orchestration.plugins import resolve_plugins
    from orchestration.versions import target_for_version

    plugins = {
        p.label: p for p in resolve_plugins((selftest.GO, *selftest.OTHER_PLUGINS), REPO_ROOT)
    }
    jobs = tuple(
        pipeline.Job(target_for_version(version), plugin=plugins[name])
        for version, name in selftest.planned()
    )
    run = pipeline.run_matrix(config, announce=_announce, jobs=jobs)
    _print_run(run, config.run_dir, "compact")
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


def _log_paths(paths: Sequence[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            logs = sorted(path.glob("*/kong.log")) or sorted(path.glob("kong.log"))
            if not logs:
                raise UsageError(f"{path} holds no kong.log (expected <run>/<version>/kong.log)")
            found += logs
        elif path.is_file():
            found.append(path)
        else:
            raise UsageError(f"{path} does not exist: pass a Kong log file or a results run folder")
    return found


def _cmd_collect(args: argparse.Namespace) -> int:
    counted = [
        (path, plugin, collect_file(path, plugin=plugin).to_dict())
        for path in _log_paths(args.paths)
        for plugin in _plugins_in(path, args.plugin)
    ]
    if args.json:
        several = {str(path) for path, _, _ in counted}
        keyed = {
            str(path) if len(several) == len(counted) else f"{path} [{plugin}]": counts
            for path, plugin, counts in counted
        }
        only = next(iter(keyed.values())) if len(keyed) == 1 else keyed
        print(json.dumps(only, indent=2))
        return 0
    names = list(counted[0][2])
    rows = [[str(path), plugin, *(counts[n] for n in names)] for path, plugin, counts in counted]
    headers = ["log", "plugin", *names]
    print(tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True))
    return 0


def _plugins_in(log: Path, asked: str | None) -> list[str]:
    """The plugin servers to count in `log`: the one asked for; else the one its run recorded
    (plugin.json beside it); else every one the log names (the example plugin if none)."""
    if asked:
        return [asked]
    facts = evidence.read_plugin_facts(log.parent)
    if facts and facts.get("log_name"):
        return [str(facts["log_name"])]
    return plugin_servers_in(log) or [DEFAULT_PLUGIN_SERVER]


def _cmd_clean(args: argparse.Namespace) -> int:
    from orchestration import clean
    from orchestration.engines import check_engines
    from orchestration.stack import check_docker

    hosts = _docker_hosts(args)
    if hosts:
        check_engines(hosts)
    else:
        check_docker()
    found = clean.survey(engines=_engines_to_survey(hosts))
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


def _cmd_bisect(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from orchestration import bisect, pipeline

    config = config_from(args)
    if len(config.scenarios) != 1:
        raise UsageError("bisect compares one scenario's verdict: name at most one --scenario")
    os.environ[OWNER_ENV] = Owner.current().text
    _check_prerequisites(config.sim, config.docker_hosts)
    labels = " ".join(t.label for t in config.targets)
    print(f"bisect: {len(config.targets)} versions in order: {labels}", file=sys.stderr)

    def measure(target: Target) -> VersionResult:
        step = replace(config, run_id=new_run_id(), targets=(target,))
        run = pipeline.run_matrix(step, announce=_announce)
        report.finish_run(step.run_dir, run)
        return run.versions[0]

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    found = bisect.search(config.targets, measure, say)
    print(found.answer())
    for line in bisect.changelog_around(found.first_different, config.targets):
        print(f"  {line}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    if not args.run.exists():
        raise UsageError(
            f"{args.run} does not exist: pass a run folder (results/<run-id>) or its results.json"
        )
    run = report.load_run(args.run)
    junit_request = _junit_request(args, [row.version for row in run.versions])
    if args.html or args.open:
        from orchestration import page

        run_dir = args.run if args.run.is_dir() else args.run.parent
        path = _writing(run_dir / page.PAGE_NAME, lambda: page.write_page(run_dir, run))
        print(path)
        if args.open and not _open_in_browser(path):
            print(f"no browser here to open it with; open {path} yourself", file=sys.stderr)
    else:
        print(report.render_summary(run, _column_set(args)))
    _write_junit(junit_request, run)
    return 0 if run.all_ok else 1


_T = TypeVar("_T")


def _writing(path: Path, write: Callable[[], _T]) -> _T:
    """Run `write`; a file that cannot be written is the user's to fix (exit 2), not a crash."""
    try:
        return write()
    except OSError as error:
        raise UsageError(
            f"cannot write {path}: {error.strerror or error}; pass a folder you may write to"
        ) from None


def _open_in_browser(path: Path) -> bool:
    """Open the page where a graphical browser is at hand; never a console browser on a server
    (it would take the terminal), never an error."""
    import webbrowser

    headless_linux = sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )
    if headless_linux:
        return False
    try:
        return webbrowser.get().open(path.resolve().as_uri())
    except (webbrowser.Error, OSError):
        return False


def _cmd_compare(args: argparse.Namespace) -> int:
    from orchestration import compare

    thresholds = compare.Thresholds(
        new_per_request=compare.parse_threshold("--threshold-new", args.threshold_new, False),
        p95=compare.parse_threshold("--threshold-p95", args.threshold_p95, True),
        rss=compare.parse_threshold("--threshold-rss", args.threshold_rss, True),
    )
    if args.html is not None and not args.html.parent.is_dir():
        raise UsageError(f"--html {args.html}: the folder {args.html.parent} does not exist")
    old = compare.load_side(args.old, "OLD")
    new = compare.load_side(args.new, "NEW")
    result = compare.compare(old, new, thresholds, args.old, args.new)
    print(compare.render_json(result) if args.json else compare.render_markdown(result), end="")
    if args.html is not None:
        _writing(args.html, lambda: report.write_atomic(args.html, compare.render_html(result)))
        print(f"Report page: {args.html}", file=sys.stderr)
    return 1 if result.regressions else 0


def _cmd_merge(args: argparse.Namespace) -> int:
    from orchestration import merge

    sources = merge.find_sources(args.folders)
    run, run_dir = merge.merge(sources, writable_folder(_results_root(args)))
    print(report.render_summary(run))
    conflicts = run.config.get("conflicts") or []
    differ = run.config.get("settings_differ") or {}
    if conflicts:
        print(
            f"warning: measured by more than one source, both rows kept: {', '.join(conflicts)}",
            file=sys.stderr,
        )
    if differ:
        shown = "; ".join(f"{k} {' vs '.join(map(str, v))}" for k, v in differ.items())
        print(f"warning: the sources ran with different settings: {shown}", file=sys.stderr)
    print(f"Merged {len(sources)} runs, {len(run.versions)} rows: {run_dir}", file=sys.stderr)
    return 0


VERSIONS_WIDTH = 120  # `versions` fits it; --long and `versions VERSION` give the whole source


def _cmd_versions(args: argparse.Namespace) -> int:
    if args.version and (args.default or args.series or args.long):
        raise UsageError(
            f"versions {args.version} shows one version in full: drop --default, --series and "
            "--long, or drop the version to list them all"
        )
    if args.default:
        print("\n".join(versions.DEFAULT_MATRIX))
        return 0
    if args.series:
        rows, headers = versions.series_rows(), versions.SERIES_HEADERS
        print(tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True))
        return 0
    chosen = [versions.lookup(args.version)] if args.version else list(versions.KNOWN_VERSIONS)
    entries = [_version_entry(v) for v in chosen]
    if args.json:
        print(json.dumps(entries[0] if args.version else entries, indent=2))
    elif args.version:
        print(_version_record(entries[0]))
    else:
        print(_versions_table(entries, full_source=args.long))
    return 0


def _version_entry(v: versions.KongVersion) -> dict[str, Any]:
    return {
        "version": v.version,
        "edition": v.edition,
        "image": v.image,
        "changelog": v.expected,
        "default_matrix": v.in_default_matrix,
        "aliases": versions.aliases_of(v),
        "source": v.source,
    }


def _versions_table(entries: list[dict[str, Any]], full_source: bool) -> str:
    """The known versions; the source cut to what fits VERSIONS_WIDTH unless `full_source`."""
    headers = ["version", "edition", "changelog", "default", "alias", "source"]
    rows = [
        [
            e["version"],
            e["edition"],
            e["changelog"],
            "yes" if e["default_matrix"] else "",
            " ".join(e["aliases"]),
            e["source"],
        ]
        for e in entries
    ]
    if full_source:
        return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
    others = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)][:-1]
    room = VERSIONS_WIDTH - len("| ") - sum(others) - len(" | ") * len(others)
    for row in rows:
        row[-1] = textwrap.shorten(row[-1], room, placeholder=" ...")
    return (
        report.render_narrow(headers, rows)
        + "\nThe full source: `versions VERSION` (one) or `versions --long` (all)."
    )


def _version_record(entry: dict[str, Any]) -> str:
    """One version, a field a line, the source wrapped at VERSIONS_WIDTH."""
    shown = {
        **entry,
        "default_matrix": "yes" if entry["default_matrix"] else "no",
        "aliases": " ".join(entry["aliases"]) or "-",
    }
    source = shown.pop("source")
    lines = [f"{name.replace('_', ' ')}: {value}" for name, value in shown.items()]
    lines += textwrap.wrap(f"source: {source}", VERSIONS_WIDTH, subsequent_indent="  ")
    return "\n".join(lines)


def _cmd_pull(args: argparse.Namespace) -> int:
    from orchestration import pipeline, pulls
    from orchestration.engines import describe

    config = config_from(args)
    if config.sim:
        raise UsageError("--sim builds its images on this machine: there is nothing to pull")
    _check_prerequisites(False, config.docker_hosts)
    images = pipeline.registry_images(config, pipeline.jobs_of(config))
    rows, failed = [], 0
    for engine in config.docker_hosts or (None,):
        outcomes = pulls.pull_now(images, engine, _never_cancelled)
        there = [i for i, outcome in outcomes.items() if not outcome.startswith(pulls.FAILED)]
        sizes = pulls.sizes(engine, *there)
        for image, outcome in outcomes.items():
            failed += image not in there
            size = f"{sizes[image] / 1e6:.0f} MB" if image in sizes else "-"
            rows.append([describe(engine), image, outcome, size])
    print(tabulate(rows, headers=["engine", "image", "result", "size"], tablefmt="github"))
    return 1 if failed else 0


def _never_cancelled() -> None:
    """A pull is stopped by the signal itself (KeyboardInterrupt, Interrupted), not a flag."""


_COMMANDS = {
    "run": _cmd_run,
    "matrix": _cmd_run,
    "ui": _cmd_run,
    "selftest": _cmd_run,
    "collect": _cmd_collect,
    "report": _cmd_report,
    "bisect": _cmd_bisect,
    "compare": _cmd_compare,
    "merge": _cmd_merge,
    "clean": _cmd_clean,
    "versions": _cmd_versions,
    "pull": _cmd_pull,
}


# SIGHUP: the terminal the run was started in closed (its window, an ssh session that dropped).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _OutputThatMayGo:
    """stdout or stderr, whose reader may go while the run goes on: a closed terminal (EIO), a
    pipe whose reader quit (EPIPE). The first write that fails sends the descriptor to
    /dev/null; the run then tears down and writes its results files as it would have."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._gone = False

    def write(self, text: str) -> int:
        if not self._gone:
            try:
                return int(self._stream.write(text))
            except OSError:
                self._went()
        return len(text)

    def flush(self) -> None:
        if not self._gone:
            try:
                self._stream.flush()
            except OSError:
                self._went()

    def _went(self) -> None:
        self._gone = True
        with contextlib.suppress(OSError, ValueError, AttributeError):
            nowhere = os.open(os.devnull, os.O_WRONLY)
            os.dup2(nowhere, self._stream.fileno())  # what is still buffered goes there too
            os.close(nowhere)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _stop_on_first_signal(signal_number: int, _frame: FrameType | None) -> None:
    """The first Ctrl-C, SIGTERM or SIGHUP stops the run; later ones must not cut its teardown
    short."""
    for number in STOP_SIGNALS:
        signal.signal(number, _already_stopping)
    if signal_number == signal.SIGINT:
        raise KeyboardInterrupt
    raise Interrupted(signal_number)


def _already_stopping(signal_number: int, _frame: FrameType | None) -> None:
    print(
        f"{signal.Signals(signal_number).name} again: already stopping, the teardown goes on "
        "(a kill -9 would leave containers: then run `python -m orchestration clean`)",
        file=sys.stderr,
        flush=True,
    )


def _show_progress() -> None:
    """Stage progress (building, waiting, sending, tearing down) as `kpm:` lines on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("kpm: %(message)s"))
    logger = logging.getLogger("orchestration")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if not isinstance(stream, _OutputThatMayGo):
            setattr(sys, name, _OutputThatMayGo(stream))
    for number in STOP_SIGNALS:
        if signal.getsignal(number) is not signal.SIG_IGN:  # started to ignore it: keep that
            signal.signal(number, _stop_on_first_signal)
    _show_progress()
    try:
        code = _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("interrupted by SIGINT (Ctrl-C); every stack started was torn down", file=sys.stderr)
        return 130
    except MatrixError as error:
        prefix = "" if error.exit_code > 128 else "error: "  # an interrupt is no error
        print(f"{prefix}{error}", file=sys.stderr)
        return error.exit_code
    _done_listening()
    return code


def _done_listening() -> None:
    """The work is done and shown: a signal from now on must not change how it ended."""
    for number in STOP_SIGNALS:
        if signal.getsignal(number) is not signal.SIG_IGN:
            signal.signal(number, signal.SIG_IGN)
