"""selftest's own verdict: a good run passes, and each kind of wrong result fails its check."""

from __future__ import annotations

from dataclasses import replace

from orchestration import selftest
from orchestration.report import RunResult, VersionResult

CONDITIONS = {"workers": 4, "requests": 1000, "users": 50}


def _row(version: str, verdict: str, per_request: float, before: int) -> VersionResult:
    return VersionResult(
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


def _good_rows() -> list[VersionResult]:
    return [
        _row("3.4.0.0", "stable", 0.0, 5),
        _row("3.4.1.0", "churn", 1.8, 60),
        _row("3.6.0.0", "stable", 0.0, 5),
        _row("3.9.0.0", "stable", 0.0, 5),
    ]


def _failed(rows: list[VersionResult], config: dict[str, object] | None = None) -> list[str]:
    run = RunResult("r", "0", dict(CONDITIONS if config is None else config), tuple(rows))
    return [f"{c.version}: {c.what}" for c in selftest.evaluate(run, 1000) if not c.passed]


def test_a_good_run_passes_every_check() -> None:
    run = RunResult("r", "0", dict(CONDITIONS), tuple(_good_rows()))
    checks = selftest.evaluate(run, 1000)
    assert all(check.passed for check in checks)
    assert {check.version for check in checks} == set(selftest.SELFTEST_VERSIONS)
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
    }
    for wanted, wrong in cases.items():
        rows = [wrong if row.version == wrong.version else row for row in good]
        assert _failed(rows) == [wanted], wanted
    assert _failed(good[1:]) == ["3.4.0.0: ran"]  # a missing row fails, never passes silently


def test_the_report_band_is_checked_only_under_the_reports_conditions() -> None:
    rows = [replace(row, new_calls_per_request=1.2) if row.version == "3.4.1.0" else row
            for row in _good_rows()]  # fmt: skip
    assert _failed(rows) == ["3.4.1.0: New()/request near the report's"]
    assert _failed(rows, {**CONDITIONS, "workers": 1}) == []
    assert _failed(rows, {**CONDITIONS, "requests": 300}) == []
