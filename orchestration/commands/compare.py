"""`compare OLD NEW`: two runs side by side per (version, scenario); exit 1 on a regression."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from orchestration import compare, run_files
from orchestration.commands import Command, common
from orchestration.compare import DEFAULT_NEW_ABSOLUTE, DEFAULT_P95_RELATIVE, DEFAULT_RSS_RELATIVE
from orchestration.errors import UsageError


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("old", type=Path, help="OLD run folder or its results.json")
    parser.add_argument("new", type=Path, help="NEW run folder or its results.json")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.add_argument(
        "--html", type=Path, metavar="FILE", help="also write the report page with both runs"
    )
    parser.add_argument(
        "--threshold-new",
        default=str(DEFAULT_NEW_ABSOLUTE),
        metavar="X",
        help="flag New() per request moving by more than X, absolute "
        f"(default {DEFAULT_NEW_ABSOLUTE}: 0 -> 0.001 is noise, 0 -> 0.1 is not)",
    )
    parser.add_argument(
        "--threshold-p95",
        default=f"{DEFAULT_P95_RELATIVE:.0%}",
        metavar="R",
        help="flag p95 latency moving by more than R, relative "
        f"(default {DEFAULT_P95_RELATIVE:.0%}%)",
    )
    parser.add_argument(
        "--threshold-rss",
        default=f"{DEFAULT_RSS_RELATIVE:.0%}",
        metavar="R",
        help="flag the plugin server's peak memory moving by more than R, relative "
        f"(default {DEFAULT_RSS_RELATIVE:.0%}%)",
    )


def _compare(args: argparse.Namespace) -> int:
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
        html = compare.render_html(result)
        common.writing(args.html, lambda: run_files.write_atomic(args.html, html))
        print(f"Report page: {args.html}", file=sys.stderr)
    return 1 if result.regressions else 0


COMPARE = Command(
    "compare",
    "two runs side by side per (version, scenario); exit 1 on a regression",
    _compare,
    _arguments,
    description="Compare two runs per (version, scenario): verdict, New()/req, p95 and the "
    "plugin server's peak memory. Exit 1 when something got worse past its threshold (a "
    "verdict moving towards churn or error, New()/req, p95 or memory rising), 0 otherwise, "
    "2 on bad input.",
)
