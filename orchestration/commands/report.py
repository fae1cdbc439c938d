"""`report`: a finished (or interrupted) run's table again, its page, its JUnit file."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from orchestration import report, run_files
from orchestration.commands import Command, common
from orchestration.config import DEFAULT_RESULTS
from orchestration.errors import UsageError


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=Path, nargs="?", default=DEFAULT_RESULTS / "latest")
    parser.add_argument(
        "--html",
        action="store_true",
        help="(re)draw the run's report.html (tables and charts, one self-contained file) and "
        "print its path",
    )
    parser.add_argument(
        "--open", action="store_true", help="as --html, then open it where a browser is at hand"
    )


def _report(args: argparse.Namespace) -> int:
    if not args.run.exists():
        raise UsageError(
            f"{args.run} does not exist: pass a run folder (results/<run-id>) or its results.json"
        )
    run = run_files.load_run(args.run)
    junit_request = common.junit_request(args, [row.version for row in run.versions])
    if args.html or args.open:
        from orchestration import page

        run_dir = args.run if args.run.is_dir() else args.run.parent
        path = common.writing(run_dir / page.PAGE_NAME, lambda: page.write_page(run_dir, run))
        print(path)
        if args.open and not open_in_browser(path):
            print(f"no browser here to open it with; open {path} yourself", file=sys.stderr)
    else:
        print(report.render_summary(run, common.column_set(args)))
    common.write_junit(junit_request, run)
    return 0 if run.all_ok else 1


def open_in_browser(path: Path) -> bool:
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


REPORT = Command(
    "report", "print the table of a finished (or interrupted) run", _report, _arguments
)
