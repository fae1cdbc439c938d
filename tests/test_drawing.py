"""When the report page is drawn (orchestration/drawing.py): once a run is complete, a failure
to draw costing the page only, matplotlib loaded in the background."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_report import _row

from orchestration import drawing, run_files
from orchestration.report import RunResult


def test_a_complete_run_draws_its_page_and_a_failure_to_draw_only_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from orchestration import page

    drawn: list[tuple[Path, RunResult]] = []
    monkeypatch.setattr(page, "write_page_if_changed", lambda *args: drawn.append(args))
    for config in (
        {"targets": ["3.4.1.0", "3.6.0.0"]},
        {"targets": ["3.4.1.0"], "scenarios": [1, 2]},
    ):
        drawing.finish_run(tmp_path, RunResult("r", "0", config, (_row(),)))
    assert drawn == [], "a run still missing rows draws no page"
    run = RunResult("r", "0", {"targets": ["3.4.1.0"]}, (_row(),))
    run_files.write_run(tmp_path, run)
    assert drawn == [], "writing the results files draws no page: it must stay fast"
    drawing.finish_run(tmp_path, run)
    assert drawn == [(tmp_path, run)]

    def fail(run_dir: Path, run: RunResult) -> Path:
        raise RuntimeError("no fonts")

    monkeypatch.setattr(page, "write_page_if_changed", fail)
    drawing.finish_run(tmp_path, run)
    assert caplog.messages == [
        f"could not draw {tmp_path / 'report.html'}: no fonts; "
        f"`python -m orchestration report {tmp_path} --html` draws it"
    ]
    assert run_files.load_run(tmp_path / "results.json") == run  # the run itself is safe

    def interrupted(run_dir: Path, run: RunResult) -> Path:
        raise KeyboardInterrupt

    caplog.clear()
    monkeypatch.setattr(page, "write_page_if_changed", interrupted)
    drawing.finish_run(tmp_path, run)  # a Ctrl-C while drawing costs the page only
    assert caplog.messages == [
        f"could not draw {tmp_path / 'report.html'}: stopped; "
        f"`python -m orchestration report {tmp_path} --html` draws it"
    ]


def test_the_page_module_is_imported_once_in_a_background_daemon_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys
    import threading

    import orchestration
    from orchestration import page

    started: list[threading.Thread] = []

    class Recorded(threading.Thread):
        def start(self) -> None:
            started.append(self)
            super().start()

    monkeypatch.setattr(threading, "Thread", Recorded)
    drawing.preload_page_drawing()  # already imported: nothing to do
    assert started == []
    monkeypatch.delitem(sys.modules, "orchestration.page")
    monkeypatch.delattr(orchestration, "page")
    drawing.preload_page_drawing()
    (importer,) = started
    assert (importer.name, importer.daemon) == ("kpm-page-import", True)  # never holds an exit
    importer.join(timeout=60)
    assert sys.modules["orchestration.page"] is not page  # imported again, in that thread
