"""Plugins shaped the way users write them (Kong's own PDK examples and the like) get a true
answer under --sim: the regression churns them on 3.4.1.0 and not on 3.6.0.0, and a plugin that
never runs never reads `stable` or `churn` (issue: "no verdict without proof that the plugin ran").

One CLI run measures every shape on both versions (the rows are independent), as a user would
with `run 3.4.1.0 3.6.0.0 --sim --plugin DIR ...`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SHAPES = REPO / "tests" / "plugins"
REQUESTS = 300

# folder under tests/plugins -> what it is
RUNS_ON_EVERY_REQUEST = {
    "go-hello-priority1": "go-pdk's go-hello shape: priority 1, one Access handler",
    "py-hello": "kong-python-pdk's py-hello shape: priority 0, one access handler",
    "js-hello": "a JavaScript plugin with the PDK's default priority (0)",
    "go-response": "only a Response handler, priority 0",
    "go-auth": "an auth plugin answering 401 itself (kong.Response.Exit)",
    "GoCapitals": "a plugin named with capitals (Kong lowercases server names)",
}
NEVER_RUNS = {
    "go-header-filter": "only a HeaderFilter method: no PDK phase, Kong never calls it",
    "go-exits-at-once": "a server that crashes whenever Kong starts it",
}


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], dict[str, Any]]:
    results = tmp_path_factory.mktemp("results")
    plugins = [arg for name in [*RUNS_ON_EVERY_REQUEST, *NEVER_RUNS]
               for arg in ("--plugin", str(SHAPES / name))]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "orchestration", "run", "3.4.1.0", "3.6.0.0", "--sim",
         "--requests", str(REQUESTS), "--results", str(results), *plugins],
        cwd=REPO, capture_output=True, text=True, timeout=1500, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr  # the plugins that never run are error rows
    assert "Traceback" not in done.stderr + done.stdout
    (run_dir,) = [path for path in results.iterdir() if path.is_dir() and not path.is_symlink()]
    saved = json.loads((run_dir / "results.json").read_text())["versions"]
    return {(row["version"], row["plugin"]): row for row in saved}


@pytest.mark.docker
@pytest.mark.parametrize("shape", sorted(RUNS_ON_EVERY_REQUEST))
def test_a_users_plugin_churns_on_the_bug_and_not_after_the_fix(
    rows: dict[tuple[str, str], dict[str, Any]], shape: str
) -> None:
    bug, fixed = rows[("3.4.1.0", shape)], rows[("3.6.0.0", shape)]
    for row, verdict in ((bug, "churn"), (fixed, "stable")):
        assert (row["status"], row["verdict"], row["counted_by"]) == ("ok", verdict, "tap"), row
        assert row["ran_on"] >= row["requests"] == REQUESTS, row
        assert row["failures"] == 0, row
    assert bug["new_calls_per_request"] > 1.0
    assert fixed["new_calls_per_request"] == 0.0


@pytest.mark.docker
def test_the_plugins_own_401_is_served_not_failed(
    rows: dict[tuple[str, str], dict[str, Any]],
) -> None:
    for version in ("3.4.1.0", "3.6.0.0"):
        row = rows[(version, "go-auth")]
        assert row["plugin_answers"] == f"401 x{REQUESTS}", row
        assert row["failure_causes"] is None


@pytest.mark.docker
@pytest.mark.parametrize("shape", sorted(NEVER_RUNS))
def test_a_plugin_that_never_runs_never_reads_stable_or_churn(
    rows: dict[tuple[str, str], dict[str, Any]], shape: str
) -> None:
    for version in ("3.4.1.0", "3.6.0.0"):
        row = rows[(version, shape)]
        assert row["status"] == "error", row
        assert row["verdict"] not in ("stable", "churn", "inconclusive"), row
        assert row["matches_changelog"] is None


@pytest.mark.docker
def test_why_a_plugin_did_not_run_is_said(rows: dict[tuple[str, str], dict[str, Any]]) -> None:
    header_filter = rows[("3.4.1.0", "go-header-filter")]
    assert header_filter["verdict"] == "did-not-run"
    assert header_filter["ran_on"] == 0
    assert (
        "go-header-filter: priority 1, phases none; Kong runs none of these"
        in (header_filter["error"])
    )
    crashed = rows[("3.4.1.0", "go-exits-at-once")]
    assert (
        "the plugin server go-exits-at-once exited while Kong 3.4.1.0 started" in crashed["error"]
    )
    assert "panic: go-exits-at-once: this plugin server crashes at start" in crashed["error"]
