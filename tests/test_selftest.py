"""selftest's own verdict: a good run passes, and each kind of wrong result fails its check."""

from __future__ import annotations

from dataclasses import replace

from orchestration import selftest
from orchestration.report import Row, RunResult

CONDITIONS = {"workers": 4, "requests": 1000, "users": 50}


def _row(version: str, verdict: str, per_request: float, before: int, plugin: str = "go") -> Row:
    return Row(
        plugin=plugin,
        version=version,
        image=f"kong/kong-gateway:{version}",
        simulated=True,
        status="ok",
        error=None,
        expected="affected" if verdict == "churn" else "fixed",
        verdict=verdict,  # type: ignore[arg-type]
        matches_changelog=True,
        requests=1000,
        failures=0,
        new_calls_total=before + round(per_request * 1000),
        new_calls_before_load=before,
        new_calls_per_request=per_request,
        instance_closes=800 if verdict == "churn" else 0,
        no_instance_errors=790 if verdict == "churn" else 0,
        plugin_counter=before + round(per_request * 1000),
        workers=4,
    )


def _good_rows() -> list[Row]:
    others = [
        row
        for plugin in selftest.OTHER_PLUGINS
        for row in (
            _row("3.4.1.0", "churn", 1.5, 5 if plugin == "go-latest" else 4, plugin),
            _row("3.6.0.0", "stable", 0.0, 5 if plugin == "go-latest" else 4, plugin),
        )
    ]
    return [
        _row("3.4.0.0", "stable", 0.0, 5),
        _row("3.4.1.0", "churn", 1.8, 60),
        _row("3.6.0.0", "stable", 0.0, 5),
        _row("3.9.0.0", "stable", 0.0, 5),
        *others,
    ]


def _failed(rows: list[Row], config: dict[str, object] | None = None) -> list[str]:
    run = RunResult("r", "0", dict(CONDITIONS if config is None else config), tuple(rows))
    checks = selftest.evaluate(run, 1000)
    return [
        f"{c.version}: {c.what}" + ("" if c.plugin == "go" else f" ({c.plugin})")
        for c in checks
        if not c.passed
    ]


def test_a_good_run_passes_every_check() -> None:
    run = RunResult("r", "0", dict(CONDITIONS), tuple(_good_rows()))
    checks = selftest.evaluate(run, 1000)
    assert all(check.passed for check in checks)
    assert {check.version for check in checks} == set(selftest.SELFTEST_VERSIONS)
    assert {(c.version, c.plugin) for c in checks} == set(selftest.planned())
    assert {"go", "go-latest", "python", "js"} == {c.plugin for c in checks}
    assert "3.4.1.0: New()/request near the report's" in [f"{c.version}: {c.what}" for c in checks]


def test_each_wrong_result_fails_its_own_check() -> None:
    good = _good_rows()
    cases = {
        "3.4.1.0: verdict": replace(good[1], verdict="stable"),
        "3.6.0.0: verdict": replace(good[2], verdict="churn"),
        "3.4.1.0: New()/request near the report's": replace(good[1], new_calls_per_request=1.6),
        "3.4.0.0: counter 5 before the load": replace(good[0], new_calls_before_load=6),
        "3.9.0.0: log count == plugin's own counter": replace(good[3], plugin_counter=6),
        "3.6.0.0: all requests served": replace(good[2], failures=1),
        "3.4.1.0: churn signals present": replace(good[1], no_instance_errors=0),
        "3.4.0.0: ran": replace(good[0], status="error", error="boom"),
        "3.4.1.0: verdict (python)": replace(good[6], verdict="stable"),
        "3.6.0.0: verdict (js)": replace(good[9], verdict="churn"),
        "3.6.0.0: log count == plugin's own counter (go-latest)": replace(
            good[5], plugin_counter=3
        ),
    }
    for wanted, wrong in cases.items():
        rows = [
            wrong if (row.version, row.plugin) == (wrong.version, wrong.plugin) else row
            for row in good
        ]
        assert _failed(rows) == [wanted], wanted
    assert _failed(good[1:]) == ["3.4.0.0: ran"]  # a missing row fails, never passes silently
    assert _failed(good[:-1]) == ["3.6.0.0: ran (js)"]


def test_the_report_band_is_checked_only_under_the_reports_conditions() -> None:
    rows = [replace(row, new_calls_per_request=1.2) if row.version == "3.4.1.0" else row
            for row in _good_rows()]  # fmt: skip
    assert _failed(rows) == ["3.4.1.0: New()/request near the report's"]
    assert _failed(rows, {**CONDITIONS, "workers": 1}) == []
    assert _failed(rows, {**CONDITIONS, "requests": 300}) == []


def test_each_check_says_what_it_saw() -> None:
    """The details are what `selftest` prints next to each check."""
    good = _good_rows()
    rows = (
        replace(good[0], status="error", error="boom"),
        replace(good[1], failures=3, new_calls_per_request=1.7, plugin_counter=1),
        good[2],
    )
    checks = selftest.evaluate(RunResult("r", "0", dict(CONDITIONS), rows), 1000)
    details = {f"{c.version}: {c.what}": c.detail for c in checks if c.plugin == "go"}
    assert details == {
        "3.4.0.0: ran": "boom",
        "3.4.0.0: verdict": "stable, want stable",
        "3.4.0.0: all requests served": "1000 requests, 0 failures, want 1000 and 0",
        "3.4.0.0: log count == plugin's own counter": "collector 5, plugin header 5",
        "3.4.0.0: counter 5 before the load": "5, want 1 at server start + 1 per worker",
        "3.4.1.0: ran": "ok",
        "3.4.1.0: verdict": "churn, want churn",
        "3.4.1.0: all requests served": "1000 requests, 3 failures, want 1000 and 0",
        "3.4.1.0: log count == plugin's own counter": "collector 1860, plugin header 1",
        "3.4.1.0: New()/request near the report's": "1.7, want 1.67-2.04 (report: 1.855)",
        "3.4.1.0: churn signals present": "closed instance 800, no plugin instance 790",
        "3.6.0.0: ran": "ok",
        "3.6.0.0: verdict": "stable, want stable",
        "3.6.0.0: all requests served": "1000 requests, 0 failures, want 1000 and 0",
        "3.6.0.0: log count == plugin's own counter": "collector 5, plugin header 5",
        "3.6.0.0: counter 5 before the load": "5, want 1 at server start + 1 per worker",
        "3.9.0.0: ran": "no result row",
    }
    assert selftest.Check("3.9.0.0", "ran", False, "no result row") in checks
    assert checks[-1] == selftest.Check("3.6.0.0", "ran", False, "no result row", "js")


def test_the_report_band_is_closed_and_ten_percent_either_side() -> None:
    low = selftest.REPORT_NEW_PER_REQUEST * (1 - selftest.REPORT_BAND)
    high = selftest.REPORT_NEW_PER_REQUEST * (1 + selftest.REPORT_BAND)
    for inside in (low, high):
        rows = [replace(r, new_calls_per_request=inside) for r in _good_rows()]
        assert _failed(rows) == [], inside
    for outside in (low - 0.01, high + 0.01):
        rows = [replace(r, new_calls_per_request=outside) for r in _good_rows()]
        assert _failed(rows) == ["3.4.1.0: New()/request near the report's"], outside
