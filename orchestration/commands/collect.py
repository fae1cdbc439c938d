"""`collect`: the churn signals counted in a Kong log you have."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from tabulate import tabulate

from orchestration import evidence
from orchestration.collect import DEFAULT_LOG_NAME, collect_file, plugin_servers_in
from orchestration.commands import Command
from orchestration.errors import UsageError


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", type=Path, help="kong.log files or run folders")
    parser.add_argument("--json", action="store_true", help="print JSON (results.json field names)")
    parser.add_argument(
        "--plugin",
        help="plugin server name to count (default: the one a run folder recorded, else every "
        "plugin server the log names)",
    )


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


def _collect(args: argparse.Namespace) -> int:
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
    return plugin_servers_in(log) or [DEFAULT_LOG_NAME]


COLLECT = Command("collect", "count the churn signals in a Kong log you have", _collect, _arguments)
