"""`versions [VERSION]`: the known versions and what the changelogs say about them."""

from __future__ import annotations

import argparse
import json
import textwrap
from typing import Any

from tabulate import tabulate

from orchestration import report, versions
from orchestration.commands import Command
from orchestration.errors import UsageError


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "version",
        nargs="?",
        metavar="VERSION",
        help="one version or series alias: everything recorded about it, its source in full",
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--long", action="store_true", help="every row with its full source (a wide table)"
    )
    parser.add_argument(
        "--default", action="store_true", help="only the default matrix, one a line"
    )
    parser.add_argument(
        "--series", action="store_true", help="one line per series: its releases and aliases"
    )


VERSIONS_WIDTH = 120  # `versions` fits it; --long and `versions VERSION` give the whole source


def _versions(args: argparse.Namespace) -> int:
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


VERSIONS = Command(
    "versions", "list the known versions and their changelog status", _versions, _arguments
)
