"""One run's configuration, built once at the edge (flags over environment over defaults).

Each field a person can set is declared here once, with `option(...)` (orchestration/options.py):
its flag, variable, help, default and range. It is written as `config.json` next to the
results, so a table always says how it was made.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestration import __version__, versions
from orchestration.errors import UsageError
from orchestration.options import RUN_COMMANDS, Bound, Option, option, options_of
from orchestration.paths import REPO_ROOT
from orchestration.versions import Target

if TYPE_CHECKING:  # a type only: the plugin kinds are above the configuration
    from orchestration.kinds.base import PluginSource

DEFAULT_GO_IMAGE = "golang:1.22"
# Registry images pulled at once, before a run needs them (orchestration/pulls.py, `pull`).
PULLS_AT_ONCE = 3
# `--scenario` names (orchestration/scenarios/<name>.py); the first is the default.
SCENARIOS = ("steady", "reload", "kill-server", "idle", "workers", "overhead", "soak")
SCENARIO_COMMANDS = frozenset({"run", "matrix", "bisect"})  # bisect: every option of run (README)
REPORT_COMMANDS = frozenset({"run", "matrix", "report"})  # what shapes the table and JUnit file
DEFAULT_RESULTS = Path("results")

# go-pdk expires instances older than 60 s (at the next close): the idle scenario's gap must be
# longer, or its second burst shows nothing the scenario is for.
GO_PDK_EXPIRY_S = 60


def _image(flag: str) -> Any:
    """A check that holds an image reference to --image's rule, naming the flag."""

    def check(image: str) -> str:
        try:
            versions.target_for_image(image)
        except UsageError as error:
            raise UsageError(f"{flag}: {error}") from None
        return image

    return check


def _images(images: tuple[str, ...]) -> tuple[str, ...]:
    for image in images:
        versions.target_for_image(image)
    return images


def _scenarios(chosen: tuple[str, ...]) -> tuple[str, ...]:
    for name in chosen:
        if name not in SCENARIOS:
            raise UsageError(
                f"unknown scenario {name!r}; choose from: {', '.join(SCENARIOS)} "
                "(repeat --scenario for several)"
            )
    if len(set(chosen)) != len(chosen):
        raise UsageError(f"a scenario is named twice: {' '.join(chosen)}")
    return chosen


def _plugin_config(raw: str) -> str:
    """--plugin-config as compact JSON: it must be one JSON object."""
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


@dataclass(frozen=True)
class RunConfig:
    """Everything one run needs; stages receive the parts they use as plain values."""

    run_id: str
    targets: tuple[Target, ...]
    results_root: Path = field(
        default=DEFAULT_RESULTS,
        metadata=option(
            "results folder (default ./results)",
            name="results",
            commands=RUN_COMMANDS | {"merge"},
            metavar="DIR",
            readme="where run folders go; a file, a place under one, or one that cannot be written "
            "to (`/proc`, a read-only folder) is refused before any work (exit 2)",
        ),
    )
    requests: int = field(
        default=1000,
        metadata=option(
            "requests to send in total, like hey -n (default {default})",
            bound=Bound(1, 10_000_000),
            metavar="N",
            readme="requests in total, exactly (counted by our locustfile)",
        ),
    )
    users: int = field(
        default=50,
        metadata=option(
            "concurrent Locust users, like hey -c (default {default})",
            bound=Bound(1, 10_000),
            metavar="N",
        ),
    )
    spawn_rate: float = field(
        default=1000.0,  # all users at once, like hey -c
        metadata=option(
            "users started per second; 1000 starts them all at once, like hey (default {default})",
            bound=Bound(0.1, 10_000),
            metavar="R",
        ),
    )
    workers: int = field(
        default=4,
        metadata=option(
            "Kong's nginx worker processes (default {default})",
            bound=Bound(1, 64),
            metavar="N",
            readme="Kong's nginx worker processes (`KONG_NGINX_WORKER_PROCESSES`); recorded in the "
            "results",
        ),
    )
    ready_timeout: float = field(
        default=240.0,
        metadata=option(
            "seconds to wait for Kong and the plugin (default {default})",
            bound=Bound(1, 3600),
            metavar="S",
        ),
    )
    load_timeout: float = field(
        default=600.0,
        metadata=option(
            "seconds the load may take at most (default {default})",
            bound=Bound(1, 24 * 3600),
            metavar="S",
        ),
    )
    parallel: int = field(
        default=1,
        metadata=option(
            "versions measured at once (default {default})",
            bound=Bound(1, 16),
            metavar="K",
            readme="versions measured at once, each in its own compose project",
        ),
    )
    keep: bool = field(
        default=False,
        metadata=option(
            "leave the stack up (debugging)",
            readme="leave the stack up for debugging (`docker compose -p <project> down` later)",
        ),
    )
    sim: bool = field(
        default=False,
        metadata=option(
            "offline: run against kong-sim, the stand-in gateway (results say simulated)",
        ),
    )
    go_image: str = field(
        default=DEFAULT_GO_IMAGE,
        metadata=option(
            "builder image for the plugin (default {default}; ignored with --sim)",
            metavar="IMAGE",
            check=_image("--go-image"),
            readme="builder image for a Go plugin (raised to the plugin's `go` line when that is "
            "newer)",
        ),
    )
    # kpm-tap in front of the plugin server, counting what crosses its socket. Off by default: the
    # extra hop cost ~12% req/s and ~3 ms p95 on the stand-in (docs/architecture.md).
    tap: bool = field(
        default=False,
        metadata=option(
            "start the plugin behind kpm-tap, which logs the instance starts, closes and errors it "
            "sees on the plugin's socket (default {default})",
            readme="start the plugin server behind `kpm-tap`, a relay on Kong's socket that "
            "changes no byte and logs every instance start, close and error it sees (`kpm-tap: "
            "instance started id=17 total=342`), for ProtoBuf:1 and MsgPack:1 alike. Always on for "
            "a plugin that reports no count of its own; for the built-ins, which count themselves, "
            "it is a cross-check. Its cost, side by side on the stand-in (`python -m bench --only "
            "6`, 5 interleaved rounds of `hey -n 3000 -c 50`, quiet machine, 2026-12-01): p95 "
            "x1.39 and req/s x0.63 for `go`, p95 x1.11 and req/s x0.83 for `python` (one more "
            "socket and process per call, felt most by the fastest server); the counts are "
            "unchanged",
        ),
    )
    scenarios: tuple[str, ...] = field(
        default=SCENARIOS[:1],
        metadata=option(
            f"what to measure, repeatable: {', '.join(SCENARIOS)} (default {{default}})",
            name="scenario",
            commands=SCENARIO_COMMANDS,
            metavar="NAME",
            check=_scenarios,
            readme="what to measure, repeatable: "
            f"{', '.join(f'`{name}`' for name in SCENARIOS)}; one row per version and scenario",
        ),
    )
    # `--plugin` values as given: built-in names (go, go-latest, python, js, all) or folders;
    # resolved by the command layer (its check is handed in: the plugin kinds are above this
    # module) into `plugin_sources`, once for the run.
    plugins: tuple[str, ...] = field(
        default=("go",),
        metadata=option(
            "the plugin to measure, repeatable: a built-in (go, go-latest, python, js, or all "
            "four) or your plugin's folder (Go on go-pdk, Python or JavaScript on kong-pdk; its "
            "kind is told from its files); default {default}",
            name="plugin",
            metavar="NAME|PATH",
            readme="the plugin to measure, repeatable: `go`, `go-latest`, `python`, `js`, `all` "
            "(those four) or your plugin's folder; one row per (version, plugin); see [Your own "
            "plugin](#your-own-plugin)",
        ),
    )
    plugin_config: str = field(
        default="{}",
        metadata=option(
            "the plugin's config in Kong's declarative config, a JSON object (default {default}); "
            "checked against the schema the plugin dumps",
            metavar="JSON",
            check=_plugin_config,
            readme="the plugin's `config` in Kong's declarative config (every plugin of the run "
            "gets it), checked against the schema the plugin dumps before Kong starts",
        ),
    )
    changes: int = field(
        default=3,
        metadata=option(
            "reload: configuration changes under load (default {default})",
            commands=SCENARIO_COMMANDS,
            bound=Bound(1, 100),
            metavar="N",
        ),
    )
    idle: float = field(
        default=75.0,  # longer than go-pdk's 60 s instance expiry
        metadata=option(
            "idle: seconds without load between the two bursts, more than go-pdk's 60 s expiry "
            "(default {default})",
            commands=SCENARIO_COMMANDS,
            bound=Bound(
                GO_PDK_EXPIRY_S + 1,
                24 * 3600,
                f" (the idle scenario measures a gap longer than go-pdk's {GO_PDK_EXPIRY_S} s "
                "instance expiry; a shorter one would show nothing it is for)",
            ),
            metavar="S",
            readme="`idle`: seconds without load between the bursts, 61 at least (go-pdk expires "
            "instances older than 60 s; a shorter gap is refused, it would show nothing the "
            "scenario is for)",
        ),
    )
    duration: float = field(
        default=600.0,
        metadata=option(
            "soak: seconds the load runs (default {default})",
            commands=SCENARIO_COMMANDS,
            bound=Bound(1, 7 * 24 * 3600),
            metavar="S",
        ),
    )
    web_port: int = field(
        default=8089,
        metadata=option(
            "Locust web UI port (default {default})",
            commands=frozenset({"ui"}),
            bound=Bound(1, 65535),
            metavar="PORT",
        ),
    )
    # --docker-host engines the versions are spread over (empty: the docker CLI's default); the
    # pipeline hands each job one of them (orchestration/engines.py).
    docker_hosts: tuple[str, ...] = field(
        default=(),
        metadata=option(
            "a Docker engine on this machine (unix:///PATH or tcp://127.0.0.1:PORT), repeatable: "
            "--parallel versions go to the least-loaded one (default: the docker CLI's own engine)",
            name="docker_host",
            commands=RUN_COMMANDS | {"clean"},
            metavar="URL",
            readme="a Docker engine on this machine to spread versions over (repeatable); see "
            "[More than one machine](#more-than-one-machine)",
        ),
    )
    # Locust's distributed mode (orchestration/load.py, LocustWorkers): workers started here, or
    # workers started elsewhere the master waits for; where the master listens (0: a free port).
    locust_workers: int = field(
        default=0,
        metadata=option(
            "Locust's distributed mode: a master and this many worker processes started here "
            "(0: one Locust process)",
            bound=Bound(0, 64),
            metavar="N",
        ),
    )
    locust_remote_workers: int = field(
        default=0,
        metadata=option(
            "Locust's distributed mode: a master that waits (up to --load-timeout) for this many "
            "workers you start on other machines; it prints their command",
            bound=Bound(0, 1000),
            metavar="N",
        ),
    )
    locust_master_bind: str = field(
        default="127.0.0.1",
        metadata=option(
            "address the Locust master listens on (default {default}: remote workers then reach it "
            "through a tunnel; 0.0.0.0 listens on every address)",
            metavar="ADDR",
        ),
    )
    locust_master_port: int = field(
        default=0,
        metadata=option(
            "the Locust master's port (0: a free one)",
            bound=Bound(0, 65535),
            metavar="P",
        ),
    )
    # What `plugins` names, resolved once at the edge (commands/common.py, config_from); the jobs
    # are made from these. config.json has both: the names as given, and what they resolved to.
    plugin_sources: tuple[PluginSource, ...] = ()
    tool_version: str = __version__
    repo_root: Path = field(default=REPO_ROOT)

    @property
    def run_dir(self) -> Path:
        return self.results_root / self.run_id

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["plugin_sources"] = [  # what each name gave: its label, kind and folder
            {**asdict(source), "path": str(source.path)} for source in self.plugin_sources
        ]
        data["results_root"] = str(self.results_root)
        data["repo_root"] = str(self.repo_root)
        data["targets"] = [asdict(t) for t in self.targets]
        return data


# The options that are no field of the run: which images (they become `targets`) and how the
# table and the JUnit file are shaped.
COMMAND_OPTIONS = (
    Option(
        "image",
        "measure this Kong image (any tag, e.g. kong/kong-gateway:3.7.1.0); repeatable",
        default=(),
        kind="list",
        metavar="IMAGE",
        check=_images,
        readme="measure this Kong image (repeatable)",
    ),
    Option(
        "junit",
        "also write JUnit XML: a test case per (version, plugin, scenario), failing where the "
        "verdict disagrees with the changelog or --expect, or the row errored",
        default=None,
        kind="path",
        commands=REPORT_COMMANDS,
        metavar="FILE",
    ),
    Option(
        "expect",
        "what a version should read in the JUnit report (churn, stable, inconclusive); repeatable",
        default=(),
        kind="list",
        commands=REPORT_COMMANDS,
        metavar="VERSION=VERDICT",
    ),
    Option(
        "wide",
        "print every column of the table, as summary.md has it (default: the columns to decide "
        "on, narrow enough for a terminal)",
        default=False,
        kind="switch",
        commands=REPORT_COMMANDS,
    ),
)

# Every option, in the order --help and README list them.
OPTIONS: tuple[Option, ...] = (*options_of(RunConfig), *COMMAND_OPTIONS)


def option_named(name: str) -> Option:
    return next(each for each in OPTIONS if each.name == name)


def new_run_id() -> str:
    """Sortable by time, unique across concurrent runs from one checkout."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)
