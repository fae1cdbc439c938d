"""One run's configuration, built once at the edge (flags over environment over defaults).

It is written as `config.json` next to the results, so a table always says how it was made.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from orchestration import __version__
from orchestration.errors import UsageError
from orchestration.versions import Target

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_GO_IMAGE = "golang:1.22"
# Registry images pulled at once, before a run needs them (orchestration/pulls.py, `pull`).
PULLS_AT_ONCE = 3
ENV_PREFIX = "KPM_"

N = TypeVar("N", int, float)

# `--scenario` names (orchestration/scenarios/<name>.py); the first is the default.
SCENARIOS = ("steady", "reload", "kill-server", "idle", "workers", "overhead", "soak")


@dataclass(frozen=True)
class Bound:
    """An accepted numeric range for one option, used for flags and environment alike."""

    option: str
    low: float
    high: float
    why: str = ""  # why the range is what it is, when that is not plain

    def check(self, value: N) -> N:
        if not self.low <= value <= self.high:
            raise UsageError(
                f"{self.option} must be between {_fmt(self.low)} and {_fmt(self.high)}, "
                f"got {_fmt(value)}{self.why}"
            )
        return value


def _fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


# go-pdk expires instances older than 60 s (at the next close): the idle scenario's gap must be
# longer, or its second burst shows nothing the scenario is for.
GO_PDK_EXPIRY_S = 60

BOUNDS = {
    "requests": Bound("--requests", 1, 10_000_000),
    "users": Bound("--users", 1, 10_000),
    "spawn_rate": Bound("--spawn-rate", 0.1, 10_000),
    "workers": Bound("--workers", 1, 64),
    "ready_timeout": Bound("--ready-timeout", 1, 3600),
    "load_timeout": Bound("--load-timeout", 1, 24 * 3600),
    "parallel": Bound("--parallel", 1, 16),
    "web_port": Bound("--web-port", 1, 65535),
    "changes": Bound("--changes", 1, 100),
    "idle": Bound(
        "--idle",
        GO_PDK_EXPIRY_S + 1,
        24 * 3600,
        f" (the idle scenario measures a gap longer than go-pdk's {GO_PDK_EXPIRY_S} s instance "
        "expiry; a shorter one would show nothing it is for)",
    ),
    "duration": Bound("--duration", 1, 7 * 24 * 3600),
    "locust_workers": Bound("--locust-workers", 0, 64),
    "locust_remote_workers": Bound("--locust-remote-workers", 0, 1000),
    "locust_master_port": Bound("--locust-master-port", 0, 65535),
}


@dataclass(frozen=True)
class RunConfig:
    """Everything one run needs; stages receive the parts they use as plain values."""

    run_id: str
    targets: tuple[Target, ...]
    results_root: Path
    requests: int = 1000
    users: int = 50
    spawn_rate: float = 1000.0  # all users at once, like hey -c
    workers: int = 4
    ready_timeout_s: float = 240.0
    load_timeout_s: float = 600.0
    parallel: int = 1
    keep: bool = False
    sim: bool = False
    go_image: str = DEFAULT_GO_IMAGE
    # kpm-tap in front of the plugin server, counting what crosses its socket. Off by default: the
    # extra hop cost ~12% req/s and ~3 ms p95 on the stand-in (docs/architecture.md).
    tap: bool = False
    scenarios: tuple[str, ...] = SCENARIOS[:1]
    # `--plugin` values as given: built-in names (go, go-latest, python, js, all) or folders
    plugins: tuple[str, ...] = ("go",)
    plugin_config: str = "{}"  # `--plugin-config`: the plugin's config in kong.yml, as JSON
    changes: int = 3  # reload: configuration changes under load
    idle_s: float = 75.0  # idle: the gap, longer than go-pdk's 60 s instance expiry
    duration_s: float = 600.0  # soak: how long the load runs
    web_port: int = 8089  # the ui command's Locust web UI
    # --docker-host engines the versions are spread over (empty: the docker CLI's default), and
    # the one a job runs on: the pipeline sets it per job (orchestration/engines.py).
    docker_hosts: tuple[str, ...] = ()
    docker_host: str | None = None
    # Locust's distributed mode (orchestration/load.py, LocustWorkers): workers started here, or
    # workers started elsewhere the master waits for; where the master listens (0: a free port).
    locust_workers: int = 0
    locust_remote_workers: int = 0
    locust_master_bind: str = "127.0.0.1"
    locust_master_port: int = 0
    tool_version: str = __version__
    repo_root: Path = field(default=REPO_ROOT)

    @property
    def run_dir(self) -> Path:
        return self.results_root / self.run_id

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["results_root"] = str(self.results_root)
        data["repo_root"] = str(self.repo_root)
        data["targets"] = [asdict(t) for t in self.targets]
        return data


def new_run_id() -> str:
    """Sortable by time, unique across concurrent runs from one checkout."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def parse_number(option: str, raw: str, kind: Callable[[str], N]) -> N:
    try:
        return kind(raw)
    except ValueError:
        bound = BOUNDS[option]
        raise UsageError(
            f"{bound.option} takes a number between {_fmt(bound.low)} and {_fmt(bound.high)}, "
            f"got {raw!r}"
        ) from None


def resolve(
    option: str,
    flag: str | None,
    default: N,
    kind: Callable[[str], N],
    environ: Mapping[str, str] | None = None,
) -> N:
    """The flag's text, else `KPM_<OPTION>` from the environment, else the default; checked."""
    env = os.environ if environ is None else environ
    raw = flag if flag is not None else env.get(ENV_PREFIX + option.upper())
    value = default if raw is None else parse_number(option, raw, kind)
    return BOUNDS[option].check(value)


def default_of(name: str) -> Any:
    """A RunConfig field's default: the one place defaults are written."""
    return next(f.default for f in fields(RunConfig) if f.name == name)
