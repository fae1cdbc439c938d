"""The positive and negative control: does the harness see churn where it is, and only there?

Runs before / broken / fixed / newest releases against kong-sim and checks each verdict, that
the collector's New() count (from the log) equals the plugin's own counter (from its header),
that a stable release's counter stands at 1 + workers before the load (one New() at server start,
one per worker's first event: the report's 5 with 4 workers), and, under the report's conditions
(4 workers, 1000 requests, 50 users), that 3.4.1.0 churns within 10% of the report's 1.855 New()
per request. Every other built-in plugin (go-latest, python, js) runs on 3.4.1.0 and 3.6.0.0
too: the same verdicts, and the collector's count equal to the plugin's own.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestration.report import Row, RunResult

SELFTEST_VERSIONS = ("3.4.0.0", "3.4.1.0", "3.6.0.0", "3.9.0.0")
# The other built-in plugins, each on a churning and a fixed release.
OTHER_PLUGINS = ("go-latest", "python", "js")
OTHER_PLUGIN_VERSIONS = ("3.4.1.0", "3.6.0.0")
GO = "go"  # the report's plugin: go-pdk v0.10.0
EXPECTED_VERDICTS = {
    "3.4.0.0": "stable",
    "3.4.1.0": "churn",
    "3.6.0.0": "stable",
    "3.9.0.0": "stable",
}

# The original report: 1855 New() calls for 1000 requests (hey -c 50) on 3.4.1.0, 4 workers.
REPORT_NEW_PER_REQUEST = 1.855
REPORT_BAND = 0.10  # how far a simulated 3.4.1.0 may read from the report
REPORT_CONDITIONS = {"workers": 4, "requests": 1000, "users": 50}


@dataclass(frozen=True)
class Check:
    version: str
    what: str
    passed: bool
    detail: str
    plugin: str = GO


def planned() -> tuple[tuple[str, str], ...]:
    """Every (version, plugin) the selftest measures, in order."""
    return tuple((version, GO) for version in SELFTEST_VERSIONS) + tuple(
        (version, name) for name in OTHER_PLUGINS for version in OTHER_PLUGIN_VERSIONS
    )


def _checks_for(row: Row, requests: int, as_reported: bool) -> list[Check]:
    def check(what: str, passed: bool, detail: str) -> Check:
        return Check(row.version, what, passed, detail, row.plugin)

    go_pdk = row.plugin in (GO, "go-latest")  # New() at server start, `closed instance` lines

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
    if wanted == "stable" and row.workers is not None and go_pdk:
        at_start = 1 + row.workers
        checks.append(
            check(
                f"counter {at_start} before the load",
                row.new_calls_before_load == at_start,
                f"{row.new_calls_before_load}, want 1 at server start + 1 per worker",
            )
        )
    if wanted == "churn" and as_reported and row.plugin == GO:
        low, high = (REPORT_NEW_PER_REQUEST * (1 + sign * REPORT_BAND) for sign in (-1, 1))
        per_request = row.new_calls_per_request
        checks.append(
            check(
                "New()/request near the report's",
                per_request is not None and low <= per_request <= high,
                f"{per_request}, want {low:.2f}-{high:.2f} (report: {REPORT_NEW_PER_REQUEST})",
            )
        )
    if wanted == "churn" and go_pdk:
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
    """Every check for every row; a missing version is a failed check, not a silent pass.

    The band check runs only under the report's conditions (the run's config says them).
    """
    rows = {(row.version, row.plugin): row for row in run.versions}
    as_reported = all(run.config.get(name) == value for name, value in REPORT_CONDITIONS.items())
    checks: list[Check] = []
    for version, plugin in planned():
        row = rows.get((version, plugin))
        if row is None:
            checks.append(Check(version, "ran", False, "no result row", plugin))
        else:
            checks += _checks_for(row, requests, as_reported)
    return checks
