"""`merge DIR...`: results folders from several machines or CI jobs as one new run folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from orchestration import report
from orchestration.commands import Command, common


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "folders",
        nargs="+",
        type=Path,
        metavar="DIR",
        help="run folders (results/<run-id>) or folders holding them, e.g. CI artifacts",
    )


def _merge(args: argparse.Namespace) -> int:
    from orchestration import merge

    sources = merge.find_sources(args.folders)
    run, run_dir = merge.merge(sources, common.writable_folder(common.results_root(args)))
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


MERGE = Command(
    "merge",
    "combine results folders (machines, CI jobs) into one new run folder",
    _merge,
    _arguments,
)
