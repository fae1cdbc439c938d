"""When the report page is drawn: once, at a run's end, with matplotlib loaded meanwhile.

page.py draws report.html with matplotlib, which takes about 0.4 s to import: this module loads
it only when a page is drawn (or in the background, `preload_page_drawing`), so report.py and
the pipeline never import page.py, and page.py imports report.py alone (no circle).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from pathlib import Path

from orchestration.errors import Interrupted
from orchestration.report import RunResult

LOGGER = logging.getLogger(__name__)


def finish_run(run_dir: Path, run: RunResult) -> None:
    """Draw report.html once every row is in (an interrupted run's included), unless it already
    shows these results. Called last, after the verdicts and the table are on the screen."""
    if is_complete(run):
        _draw_page(run_dir, run)


def is_complete(run: RunResult) -> bool:
    """Whether every (target, scenario) the run's configuration names has its row."""
    targets = run.config.get("targets") or ()
    scenarios = run.config.get("scenarios") or ("steady",)
    return len(run.versions) >= len(targets) * len(scenarios)


def preload_page_drawing() -> None:
    """Import matplotlib (about 0.4 s) in the background while a run waits on Docker, so drawing
    the page at the end costs only the drawing. A thread never receives signals, so a Ctrl-C
    cannot leave the import half done. Once is enough; later calls do nothing.

    Call it once a verdict is on the screen (its stack then goes down, which is waiting on
    Docker): started with the run, the import took CPU from bringing the stack up and from
    Locust on two busy cores, and the first verdict line came 0.36-0.56 s later (two
    interleaved runs of `run 3.4.1.0 --sim`, medians of 6 and 8 each way).
    """
    if "orchestration.page" in sys.modules:  # imported, or being imported
        return

    def load() -> None:
        with contextlib.suppress(Exception):  # drawing will say what is wrong, later
            from orchestration import page  # noqa: F401

    threading.Thread(target=load, name="kpm-page-import", daemon=True).start()


def _draw_page(run_dir: Path, run: RunResult) -> None:
    """report.html, unless it already shows these results. A failure to draw, or a Ctrl-C or
    SIGTERM while it draws (the results are written and shown by then), costs the page only."""
    try:
        from orchestration import page  # matplotlib: loaded only when a page is drawn

        page.write_page_if_changed(run_dir, run)
    except (Exception, KeyboardInterrupt) as error:  # the page is derived; the run is safe
        why = "stopped" if isinstance(error, (Interrupted, KeyboardInterrupt)) else str(error)
        LOGGER.warning(
            "could not draw %s: %s; `python -m orchestration report %s --html` draws it",
            run_dir / "report.html",
            why,
            run_dir,
        )
