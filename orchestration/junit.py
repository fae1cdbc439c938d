"""A run as JUnit XML, so CI systems show each (version, plugin, scenario) as a test case.

A case fails when its verdict disagrees with Kong's changelog (`matches_changelog` is False),
when it has no verdict at all (an errored or interrupted row), or when it disagrees with what
the user expects of that version (`--expect VERSION=VERDICT`, repeatable). A version the
changelog says nothing about passes unless the user expects something of it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestration.errors import UsageError
from orchestration.report import Row, RunResult
from orchestration.run_files import write_atomic

EXPECTABLE = ("churn", "stable", "inconclusive")


@dataclass(frozen=True)
class Case:
    """One test case: a row of the run and why it failed (nothing when it passed)."""

    row: Row
    problems: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.row.version} {self.row.plugin} {self.row.scenario}"


def parse_expectations(pairs: Iterable[str]) -> dict[str, str]:
    """`--expect 3.4.1.0=churn` values as {version: verdict}; bad ones are a UsageError."""
    expected: dict[str, str] = {}
    for pair in pairs:
        version, sep, verdict = pair.partition("=")
        if not sep or not version or verdict not in EXPECTABLE:
            raise UsageError(
                f"--expect takes VERSION=VERDICT with VERDICT one of {', '.join(EXPECTABLE)}, "
                f"got {pair!r} (e.g. --expect 3.4.1.0=churn)"
            )
        if version in expected and expected[version] != verdict:
            raise UsageError(f"--expect names {version} twice, with different verdicts")
        expected[version] = verdict
    return expected


def check_expected_versions(expected: Mapping[str, str], versions: Sequence[str]) -> None:
    """Every version in --expect must be one the run measures (a typo would pass silently)."""
    unknown = sorted(set(expected) - set(versions))
    if unknown:
        raise UsageError(
            f"--expect names {', '.join(unknown)}, which this run does not measure "
            f"(it has: {', '.join(dict.fromkeys(versions)) or 'no rows'})"
        )


def cases(run: RunResult, expected: Mapping[str, str]) -> list[Case]:
    return [Case(row, _problems(row, expected.get(row.version))) for row in run.versions]


def _problems(row: Row, wanted: str | None) -> tuple[str, ...]:
    if row.status != "ok":
        return (f"{row.status}: {row.error or 'no measurement'}",)
    problems = []
    if row.matches_changelog is False:
        problems.append(
            f"verdict {row.verdict}, but the changelog says {row.expected} for {row.version}"
        )
    if wanted is not None and row.verdict != wanted:
        problems.append(f"verdict {row.verdict}, expected {wanted} (--expect)")
    return tuple(problems)


def render(run: RunResult, expected: Mapping[str, str]) -> str:
    """The JUnit XML document: one <testsuite> holding a <testcase> per row."""
    all_cases = cases(run, expected)
    failed = sum(1 for case in all_cases if case.problems)
    total_time = sum(case.row.duration_s or 0.0 for case in all_cases)
    suites = ET.Element("testsuites", name="kong-plugin-matrix")
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=f"kong-plugin-matrix {run.run_id}",
        tests=str(len(all_cases)),
        failures=str(failed),
        errors="0",
        skipped="0",
        time=f"{total_time:.3f}",
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in (("run_id", run.run_id), ("tool_version", run.tool_version)):
        ET.SubElement(properties, "property", name=name, value=value)
    for case in all_cases:
        suite.append(_testcase(case))
    suites.set("tests", str(len(all_cases)))
    suites.set("failures", str(failed))
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def _testcase(case: Case) -> ET.Element:
    row = case.row
    element = ET.Element(
        "testcase",
        classname=f"kong-plugin-matrix.{case.row.plugin}",
        name=case.name,
        time=f"{row.duration_s or 0.0:.3f}",
    )
    if case.problems:
        failure = ET.SubElement(
            element,
            "failure",
            message="; ".join(case.problems),
            type="error" if row.status != "ok" else "verdict",
        )
        failure.text = "\n".join(case.problems)
    per_request = "-" if row.new_calls_per_request is None else f"{row.new_calls_per_request:.3f}"
    ET.SubElement(element, "system-out").text = (
        f"verdict {row.verdict}; changelog {row.expected}; New()/request {per_request}; "
        f"ran on {_count(row.ran_on)} of {_count(row.requests)} requests; "
        f"simulated {'yes' if row.simulated else 'no'}; image {row.image}"
        + "".join(f"; finding {finding}" for finding in row.findings)
    )
    return element


def write(path: Path, run: RunResult, expected: Mapping[str, str]) -> None:
    write_atomic(path, render(run, expected))


def check_writable(path: Path) -> None:
    """Before any Docker work: the file's folder must exist (a typo costs no run)."""
    if path.is_dir():
        raise UsageError(f"--junit {path} is a folder: pass a file name, e.g. {path}/junit.xml")
    if not path.parent.is_dir():
        raise UsageError(
            f"--junit {path}: the folder {path.parent} does not exist; create it or pass "
            "another file"
        )


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)
