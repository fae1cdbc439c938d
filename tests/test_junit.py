"""JUnit XML: a test case per (version, plugin, scenario), failing where CI should go red."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest
from runs import cli, sim_run, write_folder

from orchestration import junit
from orchestration.errors import UsageError
from orchestration.report import RunResult


def _parse(document: str) -> ET.Element:
    root = ET.fromstring(document.encode())
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 1
    return suites[0]


def _failures(suite: ET.Element) -> dict[str, str]:
    return {
        case.attrib["name"]: failure.attrib["message"]
        for case in suite.findall("testcase")
        if (failure := case.find("failure")) is not None
    }


def _with_problems() -> RunResult:
    run = sim_run()
    rows = list(run.versions)
    rows[0] = replace(rows[0], verdict="churn", matches_changelog=False)  # 3.4.0.0 steady
    rows[5] = replace(rows[5], status="error", verdict="error", error="boom")  # 3.4.3.1 kill
    return replace(run, versions=tuple(rows))


def test_one_passing_case_per_row_of_an_agreeing_run() -> None:
    suite = _parse(junit.render(sim_run(), {}))
    cases = suite.findall("testcase")
    assert [c.attrib["name"] for c in cases] == [
        f"{row.version} go {row.scenario}" for row in sim_run().versions
    ]
    assert suite.attrib["tests"] == "10" and suite.attrib["failures"] == "0"
    assert all(float(c.attrib["time"]) > 0 for c in cases)
    assert _failures(suite) == {}


def test_disagreeing_and_errored_rows_fail() -> None:
    suite = _parse(junit.render(_with_problems(), {}))
    failures = _failures(suite)
    assert set(failures) == {"3.4.0.0 go steady", "3.4.3.1 go kill-server"}
    assert "changelog says baseline" in failures["3.4.0.0 go steady"]
    assert "error: boom" in failures["3.4.3.1 go kill-server"]
    assert suite.attrib["failures"] == "2"


def test_expect_fails_every_scenario_of_that_version_that_disagrees() -> None:
    expected = junit.parse_expectations(["3.6.0.0=churn", "3.4.1.0=churn"])
    failures = _failures(_parse(junit.render(sim_run(), expected)))
    assert set(failures) == {"3.6.0.0 go steady", "3.6.0.0 go kill-server"}
    assert "expected churn (--expect)" in failures["3.6.0.0 go steady"]


@pytest.mark.parametrize("pair", ["3.4.1.0", "3.4.1.0=broken", "=churn", "3.4.1.0=error"])
def test_bad_expectations(pair: str) -> None:
    with pytest.raises(UsageError, match="VERSION=VERDICT"):
        junit.parse_expectations([pair])


def test_report_writes_junit_and_checks_expect(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "run", "run-1", _with_problems().versions)
    out = tmp_path / "junit.xml"
    done = cli(["report", str(folder), "--junit", str(out), "--expect", "3.7.1.0=churn"], tmp_path)
    assert done.returncode == 1, done.stderr  # the run has an errored row, as `report` says
    assert len(_failures(_parse(out.read_text()))) == 4

    unknown = cli(
        ["report", str(folder), "--junit", str(out), "--expect", "9.9.9.9=churn"], tmp_path
    )
    assert unknown.returncode == 2 and "does not measure" in unknown.stderr
    alone = cli(["report", str(folder), "--expect", "3.4.1.0=churn"], tmp_path)
    assert alone.returncode == 2 and "add --junit FILE" in alone.stderr


def test_run_checks_junit_and_expect_before_any_docker_work(tmp_path: Path) -> None:
    spy = tmp_path / "bin"
    spy.mkdir()
    (spy / "docker").write_text(f"#!/bin/sh\ntouch {tmp_path / 'docker-called'}\nexit 1\n")
    (spy / "docker").chmod(0o755)
    path = f"{spy}:/usr/bin:/bin"
    nowhere = cli(["run", "3.4.1.0", "--junit", "no/dir/j.xml"], tmp_path, PATH=path)
    assert nowhere.returncode == 2 and "does not exist" in nowhere.stderr
    other = cli(
        ["matrix", "3.4.1.0", "--junit", "j.xml", "--expect", "3.4.0.0=stable"], tmp_path, PATH=path
    )
    assert other.returncode == 2 and "3.4.0.0, which this run does not measure" in other.stderr
    assert not (tmp_path / "docker-called").exists()
    assert not (tmp_path / "results").exists()


def test_a_rows_findings_are_in_its_output() -> None:
    """A verdict from a small sample (or any other finding) is said where CI shows the case."""
    first = replace(sim_run().versions[0], findings=("small-sample",))
    run = replace(sim_run(), versions=(first,))
    (case,) = _parse(junit.render(run, {})).iter("testcase")
    assert (case.findtext("system-out") or "").endswith("; finding small-sample")
