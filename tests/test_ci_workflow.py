"""docs/github-workflow.yml: the jobs hang together and every command in it exists."""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestration.cli import build_parser
from orchestration.versions import ALIASES, DEFAULT_MATRIX, lookup

REPO = Path(__file__).resolve().parent.parent
WORKFLOW = REPO / "docs" / "github-workflow.yml"
CI_DOC = REPO / "docs" / "ci.md"


def _workflow() -> dict[str, Any]:
    data: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads a bare `on` as true
    return data


def _steps(job: str) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = _workflow()["jobs"][job]["steps"]
    return steps


def _commands(job: str, version: str) -> list[list[str]]:
    """Each `run:` line as argv, with the matrix version and $SIM_FLAG filled in."""
    sim_flag = _workflow()["env"]["SIM_FLAG"]
    commands = []
    for step in _steps(job):
        for written in str(step.get("run", "")).splitlines():
            line = written.replace("${{ matrix.version }}", version).replace("$SIM_FLAG", sim_flag)
            for part in line.split("&&"):
                commands.append(shlex.split(part))
    return commands


def _nox_sessions() -> set[str]:
    """Every session `nox -l` lists (`*` selected by default, `-` not)."""
    listed = subprocess.run(
        [sys.executable, "-m", "nox", "-l"], cwd=REPO, capture_output=True, text=True, check=True
    )
    return set(re.findall(r"^[*-] (\S+)", listed.stdout, re.M))


def _cli_argv(argv: list[str]) -> list[str] | None:
    """What the CLI gets from `nox -s SESSION -- ARGS` or `python -m orchestration ARGS`."""
    if argv[:2] == ["python", "-m"] and argv[2] == "orchestration":
        return argv[3:]
    if argv[:2] == ["nox", "-s"]:
        session, posargs = argv[2], argv[4:] if argv[3:4] == ["--"] else []
        prefix = (
            ["run", session.removeprefix("kong-")] if session.startswith("kong-") else [session]
        )
        return prefix + posargs
    return None


def test_one_measuring_job_per_version_then_a_merge_job() -> None:
    jobs = _workflow()["jobs"]
    assert set(jobs) == {"measure", "merge"}
    versions = jobs["measure"]["strategy"]["matrix"]["version"]
    assert [lookup(version).version for version in versions] == list(DEFAULT_MATRIX)
    assert any(version in ALIASES for version in versions), "the example shows an alias"
    assert jobs["measure"]["strategy"]["fail-fast"] is False
    assert jobs["merge"]["needs"] == "measure"
    assert jobs["merge"]["if"] == "always()"


@pytest.mark.parametrize("job", ["measure", "merge"])
def test_every_command_is_a_nox_session_or_cli_command_that_parses(job: str) -> None:
    sessions = _nox_sessions()
    parser = build_parser()
    checked = 0
    for version in _workflow()["jobs"]["measure"]["strategy"]["matrix"]["version"]:
        for argv in _commands(job, version):
            if argv[:2] == ["nox", "-s"]:
                assert argv[2] in sessions, f"no nox session {argv[2]}"
            cli_argv = _cli_argv(argv)
            if cli_argv is not None:
                parser.parse_args(cli_argv)  # an unknown command or option exits 2 here
                checked += 1
    assert checked >= len(DEFAULT_MATRIX)


def test_artifacts_flow_from_the_versions_to_the_merge() -> None:
    uploads = [s["with"] for s in _steps("measure") if "upload-artifact" in s.get("uses", "")]
    downloads = [s["with"] for s in _steps("merge") if "download-artifact" in s.get("uses", "")]
    merged = [s["with"] for s in _steps("merge") if "upload-artifact" in s.get("uses", "")]
    assert len(uploads) == len(downloads) == len(merged) == 1
    per_version = uploads[0]["name"].replace("${{ matrix.version }}", "3.4.1.0")
    assert fnmatch.fnmatch(per_version, downloads[0]["pattern"])
    assert not fnmatch.fnmatch(merged[0]["name"], downloads[0]["pattern"])  # a re-run stays clean
    merge_line = next(a for a in _commands("merge", "-") if a[:3] == ["nox", "-s", "merge"])
    assert downloads[0]["path"] in merge_line
    junit = [s["with"] for s in _steps("merge") if "junit-report" in s.get("uses", "")]
    assert junit and any(junit[0]["report_paths"] in argv for argv in _commands("merge", "-"))


def test_ci_doc_quotes_the_workflow_file_verbatim() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", CI_DOC.read_text(), re.S)
    assert WORKFLOW.read_text() in blocks


def test_actionlint_finds_nothing() -> None:
    actionlint = shutil.which("actionlint") or shutil.which(str(Path.home() / "go/bin/actionlint"))
    if actionlint is None:
        if os.environ.get("CI"):
            pytest.fail("actionlint is not installed; .ci/run installs it with go install")
        pytest.skip("actionlint is not installed (go install github.com/rhysd/actionlint/cmd/...)")
    done = subprocess.run([actionlint, str(WORKFLOW)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
