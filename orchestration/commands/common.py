"""What the measuring commands share: the run's configuration from the options, the checks
before any Docker work, the rows as they come, the table and the JUnit file at the end."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from orchestration import drawing, report, versions
from orchestration.config import OPTIONS, RunConfig, new_run_id
from orchestration.errors import MatrixError, UsageError
from orchestration.options import Check, values_of
from orchestration.paths import REPO_ROOT
from orchestration.report import Row, RunResult
from orchestration.versions import Target

if TYPE_CHECKING:  # the adapter imports python-on-whales: only for commands that use Docker
    from orchestration.engine import Engine
    from orchestration.plugins import PluginSource

# Scenarios that read what only the built-in plugins report: their config echo (reload), their
# header on the Lua route's twin (overhead); kill-server finds the server by its process name,
# which is the plugin's own only for a Go binary.
NEEDS_BUILT_IN = {"reload": "its config echo header", "overhead": "its marker header"}
NEEDS_GO = {"kill-server": "the server's process name, which is the plugin's only for Go"}

JunitRequest = tuple[Path, dict[str, str]]
_T = TypeVar("_T")


def options(args: argparse.Namespace, **more: Check) -> dict[str, Any]:
    """The declared options of `args.command`: flag over KPM_* variable over default, checked,
    with the checks that live above the configuration handed in (`more`: others, by name)."""
    checks = {"docker_host": _docker_hosts, "expect": _expectations, **more}
    return values_of(args, args.command, OPTIONS, checks=checks)


def _docker_hosts(urls: tuple[str, ...]) -> tuple[str, ...]:
    from orchestration.engines import parse_docker_hosts

    return parse_docker_hosts(urls)


def _expectations(pairs: tuple[str, ...]) -> dict[str, str]:
    from orchestration.junit import parse_expectations

    return parse_expectations(pairs)


def _plugins(names: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[PluginSource, ...]]:
    """--plugin's values as given (config.json keeps them) and the plugins they name, resolved
    here, once for the run: a bad one fails before any work."""
    from orchestration.plugins import resolve_plugins

    return names, resolve_plugins(names, REPO_ROOT)


def config_from(
    args: argparse.Namespace,
    targets: Callable[[tuple[str, ...]], Sequence[Target]],
    *,
    writes_results: bool = True,
    one_plugin: bool = False,
    **fixed: Any,
) -> RunConfig:
    """The run's configuration, validated before any Docker work. `targets` turns the --image
    values into the versions to measure, as the command reads its arguments; `fixed` holds what
    the command decides itself (selftest: sim)."""
    values = options(args, plugin=_plugins)
    results_root = values["results"].resolve()
    if writes_results:
        results_root = writable_folder(results_root)
    chosen = tuple(targets(values["image"]))
    labels = [t.label for t in chosen]
    if len(set(labels)) != len(labels):
        raise UsageError(f"a version is named twice: {' '.join(labels)}")
    fields = {o.field: values[o.name] for o in OPTIONS if o.field and o.name in values}
    fields["plugins"], fields["plugin_sources"] = values["plugin"]
    fields.update(fixed, run_id=new_run_id(), targets=chosen, results_root=results_root)
    config = RunConfig(**fields)
    _check_plugins(config, args.command if one_plugin else None)
    _check_locust_workers(config)
    return config


def listed_targets(
    names: Sequence[str], images: Sequence[str], default: Sequence[str] = ()
) -> tuple[Target, ...]:
    """Versions by name, then --image tags; `default` when neither is given."""
    chosen = list(names) or ([] if images else list(default))
    targets = [versions.target_for_version(v) for v in chosen]
    targets += [versions.target_for_image(image) for image in images]
    if not targets:
        raise UsageError(
            f"name at least one version ({versions.known_list()}) or pass --image REPOSITORY:TAG"
        )
    return tuple(targets)


def results_root(args: argparse.Namespace) -> Path:
    """--results, else KPM_RESULTS, else ./results; absolute."""
    path: Path = options(args)["results"]
    return path.resolve()


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


def _check_locust_workers(config: RunConfig) -> None:
    """The rules between --locust-workers, --locust-remote-workers, --parallel and the port."""
    local, remote = config.locust_workers, config.locust_remote_workers
    if local and remote:
        raise UsageError(
            "--locust-workers starts workers here, --locust-remote-workers waits for workers "
            "started elsewhere: choose one"
        )
    if remote and config.parallel > 1:
        raise UsageError(
            "--locust-remote-workers serves one version at a time (each version has a master "
            "of its own): leave out --parallel"
        )
    if config.locust_master_port and config.parallel > 1 and (local or remote):
        raise UsageError("--locust-master-port names one port: leave out --parallel, or the port")
    from orchestration.load import require_users_for_workers

    require_users_for_workers(config.users, max(local, remote))


def _check_plugins(config: RunConfig, one_plugin_for: str | None) -> None:
    """The plugins against the scenarios; one plugin only for `one_plugin_for` (ui, bisect)."""
    from orchestration.plugins import runs_as_its_own_process

    sources = config.plugin_sources
    if len(sources) > 1 and one_plugin_for:
        raise UsageError(
            f"{one_plugin_for} follows one plugin: name one --plugin (got "
            f"{', '.join(config.plugins)})"
        )
    for name in config.scenarios:
        for source in sources:
            needs = NEEDS_BUILT_IN.get(name) if not source.builtin else None
            needs = needs or (NEEDS_GO.get(name) if not runs_as_its_own_process(source) else None)
            if needs:
                raise UsageError(
                    f"--scenario {name} cannot measure the plugin {source.label!r}: it needs "
                    f"{needs}. Use --scenario steady, idle, workers or soak with it (or a "
                    "built-in Go plugin for this scenario)"
                )


def check_prerequisites(sim: bool, docker_hosts: tuple[str, ...] = ()) -> None:
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
            with_processes=False, with_images=False, engines=engines_to_survey(docker_hosts)
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


def engines_to_survey(docker_hosts: tuple[str, ...]) -> tuple[Engine, ...]:
    from orchestration.engines import EnginePool

    return EnginePool(docker_hosts).engines


def announce(row: Row) -> None:
    per_request = "-" if row.new_calls_per_request is None else f"{row.new_calls_per_request:.3f}"
    tag = " [simulated]" if row.simulated else ""
    detail = f": {row.error}" if row.error else f", New()/request {per_request}"
    detail += "".join(f" [{finding}]" for finding in row.findings)
    print(f"==> {report.short_label(row)}{tag}: {row.verdict}{detail}", file=sys.stderr, flush=True)


def column_set(args: argparse.Namespace) -> report.ColumnSet:
    return "full" if options(args).get("wide") else "compact"


def print_run(run: RunResult, run_dir: Path, columns: report.ColumnSet) -> None:
    """The table, then the report page (drawn last: the verdicts are on the screen by then)."""
    print(report.render_summary(run, columns), flush=True)
    print(f"Results: {run_dir}", file=sys.stderr, flush=True)
    drawing.finish_run(run_dir, run)


def junit_request(args: argparse.Namespace, labels: Sequence[str]) -> JunitRequest | None:
    """--junit FILE and --expect, checked before any work: (file, expectations) or None."""
    from orchestration import junit

    values = options(args)
    path: Path | None = values.get("junit")
    expected: dict[str, str] = values.get("expect") or {}
    if path is None:
        if expected:
            raise UsageError("--expect only shapes the JUnit report: add --junit FILE")
        return None
    junit.check_writable(path)
    writable_folder(path.parent, option=f"--junit {path}")
    junit.check_expected_versions(expected, labels)
    return path, expected


def write_junit(request: JunitRequest | None, run: RunResult) -> None:
    from orchestration import junit

    if request is not None:
        path, expected = request
        writing(path, lambda: junit.write(path, run, expected))
        print(f"JUnit: {path}", file=sys.stderr)


def writing(path: Path, write: Callable[[], _T]) -> _T:
    """Run `write`; a file that cannot be written is the user's to fix (exit 2), not a crash."""
    try:
        return write()
    except OSError as error:
        raise UsageError(
            f"cannot write {path}: {error.strerror or error}; pass a folder you may write to"
        ) from None


def licence_notice(config: RunConfig) -> None:
    licensed = bool(os.environ.get("KONG_LICENSE_DATA", "").strip())
    for line in versions.licence_notice(config.targets, config.scenarios, licensed=licensed):
        print(line, file=sys.stderr)
