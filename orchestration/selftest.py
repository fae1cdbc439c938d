"""The positive and negative control: does the harness see churn where it is, and only there?

Runs a before / broken / fixed trio against kong-sim and checks each verdict, and that the
collector's New() count (from the log) equals the plugin's own counter (from its header).
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestration.report import RunResult, VersionResult

SELFTEST_VERSIONS = ("3.4.0.0", "3.4.1.0", "3.6.0.0")
EXPECTED_VERDICTS = {"3.4.0.0": "stable", "3.4.1.0": "churn", "3.6.0.0": "stable"}


@dataclass(frozen=True)
class Check:
    version: str
    what: str
    passed: bool
    detail: str


def _checks_for(row: VersionResult, requests: int) -> list[Check]:
    def check(what: str, passed: bool, detail: str) -> Check:
        return Check(row.version, what, passed, detail)

    wanted = EXPECTED_VERDICTS.get(row.version, "?")
    checks = [
        check("ran", row.status == "ok", row.error or "ok"),
        check("verdict", row.verdict == wanted, f"{row.verdict}, want {wanted}"),
        check(
            "all requests served",
            row.requests == requests and row.failures == 0,
            f"{row.requests} requests, {row.failures} failures, want {requests} and 0",
        ),
        check(
            "log count == plugin's own counter",
            row.new_calls_total is not None and row.new_calls_total == row.plugin_counter,
            f"collector {row.new_calls_total}, plugin header {row.plugin_counter}",
        ),
    ]
    if wanted == "churn":
        checks.append(
            check(
                "churn signals present",
                bool(row.instance_closes) and bool(row.no_instance_errors),
                f"closed instance {row.instance_closes}, "
                f"no plugin instance {row.no_instance_errors}",
            )
        )
    return checks


def evaluate(run: RunResult, requests: int) -> list[Check]:
    """Every check for every row; a missing version is a failed check, not a silent pass."""
    rows = {row.version: row for row in run.versions}
    checks: list[Check] = []
    for version in SELFTEST_VERSIONS:
        row = rows.get(version)
        if row is None:
            checks.append(Check(version, "ran", False, "no result row"))
        else:
            checks += _checks_for(row, requests)
    return checks
