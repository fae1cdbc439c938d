"""The report page: self-contained, every version on the chart, and clean in a real browser."""

from __future__ import annotations

import html
import os
import re
import time
from dataclasses import replace
from pathlib import Path

import pytest
from chromium import Chromium, find_chromium
from runs import REPO, cli, copy_run, sim_run

from orchestration import drawing, page, report, run_files
from orchestration.report import RunResult

CHART_TEXT = "Array.from(document.querySelectorAll('#{} svg text')).map(t => t.textContent.trim())"
LINKS = (
    "Array.from(document.querySelectorAll('[src],[href],[srcset],[action],[data]'))"
    ".map(e => e.getAttribute('src') || e.getAttribute('href') || e.getAttribute('srcset')"
    " || e.getAttribute('action') || e.getAttribute('data'))"
)
SCREENSHOT = REPO / "docs" / "report.png"


@pytest.fixture
def browser(tmp_path: Path) -> Chromium:
    executable = find_chromium()
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/install-docker.sh installs it")
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    return Chromium(executable, tmp_path / "profile")


def _svg_texts(document: str, chart_id: str) -> list[str]:
    start = document.index(f'id="{chart_id}"')
    chart = document[start : document.index("</svg>", start)]
    texts = re.findall(r"<text[^>]*>.*?</text>", chart, re.S)
    return [html.unescape(re.sub(r"<[^>]+>", "", text)).strip() for text in texts]


def test_page_is_self_contained(tmp_path: Path) -> None:
    run_dir = copy_run(tmp_path / "run")
    document = page.write_page(run_dir, sim_run()).read_text()
    # The only URLs are the SVG namespace names, which are never fetched.
    urls = set(re.findall(r"https?://[^\s\"'<>]+", document))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}
    assert not re.search(r"<(script|link|img|iframe|object|embed)\b", document)
    assert not re.search(r"\b(src|href)\s*=", document.replace('xlink:href="#', ""))
    assert "@import" not in document and "url(http" not in document
    assert "default-src 'none'" in document  # and the browser is told to fetch nothing
    assert "@font-face" not in document


def test_every_version_is_on_the_new_per_request_chart(tmp_path: Path) -> None:
    run = sim_run()
    document = page.write_page(copy_run(tmp_path / "run"), run).read_text()
    texts = _svg_texts(document, "chart-new-per-request")
    assert {row.version for row in run.versions} <= set(texts)
    assert {"kill-server", "simulated", "churn >= 0.5", "stable <= 0.01"} <= set(texts)
    assert "simulated (kong-sim, not Kong)" in texts  # the hatch is explained
    assert document.count("<pattern") >= 1  # hatched bars


def test_zero_values_show_at_the_floor_and_errors_say_so(tmp_path: Path) -> None:
    run = sim_run()
    broken = replace(
        run.versions[0],
        version="3.5.0.0",
        status="error",
        verdict="error",
        error="boom",
        new_calls_per_request=None,
        p50_ms=None,
        p95_ms=None,
    )
    run = replace(run, versions=(*run.versions, broken))
    document = page.write_page(copy_run(tmp_path / "run"), run).read_text()
    texts = _svg_texts(document, "chart-new-per-request")
    zeros = sum(1 for row in run.versions if row.new_calls_per_request == 0)
    assert texts.count("0") == zeros  # each zero bar is labelled at the floor
    assert "3.5.0.0" in texts and "error" in texts
    assert "boom" in document  # and the errors section quotes it


def test_memory_chart_from_resources_csv_and_its_absence(tmp_path: Path) -> None:
    run_dir = copy_run(tmp_path / "run")
    document = page.write_page(run_dir, sim_run()).read_text()
    assert 'id="chart-memory"' in document
    assert "3.4.1.0 kill-server" in _svg_texts(document, "chart-memory")
    for csv_file in run_dir.glob("*/resources*.csv"):
        csv_file.unlink()
    document = page.write_page(run_dir, sim_run()).read_text()
    assert 'id="chart-memory"' not in document
    assert "No <code>resources*.csv</code> samples" in document


def test_the_table_has_the_summary_rows(tmp_path: Path) -> None:
    run = sim_run()
    document = page.write_page(copy_run(tmp_path / "run"), run).read_text()
    headers, rows = report.table_cells(run.versions)
    for header in headers:
        assert f"<th>{html.escape(header)}</th>" in document
    for cells in rows:
        assert "".join(f"<td>{html.escape(cell)}</td>" for cell in cells) in document
    for row in run.versions:
        if row.phases and row.scenario != "steady":
            assert row.phases[0].about in document


def test_the_page_is_drawn_once_at_the_end(tmp_path: Path) -> None:
    run = sim_run()
    config = {**run.config, "scenarios": ["steady", "kill-server"]}
    run_dir = copy_run(tmp_path / "run")
    partial = RunResult(run.run_id, run.tool_version, config, run.versions[:3])
    run_files.write_run(run_dir, partial)
    drawing.finish_run(run_dir, partial)
    assert not (run_dir / "report.html").exists()  # 3 of 10 rows: not drawn yet
    complete = replace(partial, versions=run.versions)
    run_files.write_run(run_dir, complete)
    assert not (run_dir / "report.html").exists()  # results files only: they must be fast
    drawing.finish_run(run_dir, complete)
    drawn = (run_dir / "report.html").stat().st_mtime_ns
    started = time.monotonic()
    drawing.finish_run(run_dir, complete)  # the same results: not drawn again
    assert (run_dir / "report.html").stat().st_mtime_ns == drawn
    assert time.monotonic() - started < 0.2


def test_a_page_that_cannot_be_drawn_costs_the_page_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_: object) -> str:
        raise ValueError("no ink")

    monkeypatch.setattr(page, "render_run_page", broken)
    run_dir = copy_run(tmp_path / "run")
    run_files.write_run(run_dir, sim_run())
    drawing.finish_run(run_dir, sim_run())
    assert (run_dir / "summary.md").is_file() and not (run_dir / "report.html").exists()
    assert "no ink" in caplog.text and "--html" in caplog.text


def test_report_html_and_open_print_the_path_without_a_browser(tmp_path: Path) -> None:
    run_dir = copy_run(tmp_path / "run")
    done = cli(["report", str(run_dir), "--open"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(run_dir / "report.html")
    assert "no browser here" in done.stderr
    assert (run_dir / "report.html").is_file()


def test_report_on_a_missing_folder_says_what_to_pass(tmp_path: Path) -> None:
    done = cli(["report", str(tmp_path / "nope"), "--html"], tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and "pass a run folder" in done.stderr


def test_page_in_chromium_has_no_errors_no_requests_and_every_version(
    tmp_path: Path, browser: Chromium
) -> None:
    run_dir = copy_run(tmp_path / "run")
    path = page.write_page(run_dir, sim_run())
    with browser:
        loaded = browser.open_page(path.as_uri())
        assert loaded.console_errors() == []
        assert loaded.requested_urls() == [path.as_uri()]  # the file itself, nothing else
        links = loaded.evaluate(LINKS)
        assert not [link for link in links if re.match(r"\s*(https?:)?//", link)]
        shown = set(loaded.evaluate(CHART_TEXT.format("chart-new-per-request")))
        assert {row.version for row in sim_run().versions} <= shown
        assert loaded.evaluate("document.querySelectorAll('svg').length") == 3


def test_the_browser_check_catches_a_page_that_fetches(tmp_path: Path, browser: Chromium) -> None:
    """The check above can fail: a page with a remote image and a console error is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<html><body><img src="https://example.invalid/x.png">'
        '<script>console.error("boom")</script></body></html>'
    )
    with browser:
        loaded = browser.open_page(bad.as_uri())
        assert "boom" in loaded.console_errors()
        assert "https://example.invalid/x.png" in loaded.requested_urls()


def test_readme_screenshot_is_committed_and_small() -> None:
    assert SCREENSHOT.is_file()
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert SCREENSHOT.stat().st_size < 300_000
