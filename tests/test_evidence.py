"""orchestration/evidence.py: no verdict without proof the plugin ran, and the reasons given."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestration import evidence
from orchestration.contract import PluginContract


@pytest.mark.parametrize(
    ("requests", "ran_on", "instances", "expected"),
    [
        (1000, None, 0, None),  # nothing counted it (an old row): no judgement
        (1000, 0, 4, ("did-not-run", "the plugin ran on none of the 1000 requests")),
        (1000, 999, 4, ("partial", "the plugin ran on 999 of the 1000 requests only")),
        (1000, 1000, 4, None),
        (1000, 1001, 1, None),  # the probe after the load runs it too
        (1000, 1000, 0, ("did-not-run", "the plugin ran on 1000 of 1000 requests but no "
                         "instance start was seen in Kong's log")),
        (1000, 1000, None, ("did-not-run", "the plugin ran on 1000 of 1000 requests but no "
                            "instance start was seen in Kong's log")),
    ],
)  # fmt: skip
def test_missing_proof(
    requests: int, ran_on: int | None, instances: int | None, expected: object
) -> None:
    assert evidence.missing_proof(requests, ran_on, instances) == expected


def _facts(folder: Path, **changes: object) -> None:
    contract = PluginContract(
        name="go-hello", plugin_name="go-hello", phases=("access",), priority=1, label="go-hello"
    )
    evidence.write_plugin_facts(folder, {**contract.facts(), **changes})


def test_plugin_facts_round_trip_and_name_what_kong_learned(tmp_path: Path) -> None:
    assert evidence.read_plugin_facts(tmp_path) is None
    _facts(tmp_path)
    facts = evidence.read_plugin_facts(tmp_path)
    assert facts is not None
    assert (facts["plugin_name"], facts["priority"], facts["phases"]) == ("go-hello", 1, ["access"])
    assert facts["log_name"] == "go-hello"
    (tmp_path / "plugin.json").write_text("[1, 2]")
    assert evidence.read_plugin_facts(tmp_path) is None


def test_log_name_keeps_capitals_when_kong_lowercases_the_server_name() -> None:
    assert PluginContract(name="ratetag", plugin_name="RateTag").log_name == "RateTag"
    assert PluginContract(name="python", plugin_name="py-hello").log_name == "python"


def test_hints_name_phases_priority_and_what_kong_does_not_run(tmp_path: Path) -> None:
    assert evidence.hints(tmp_path) == [
        "its dump was never read (see the row's error and build.log)"
    ]
    _facts(tmp_path)
    assert evidence.hints(tmp_path) == ["go-hello: priority 1, phases access"]
    _facts(tmp_path, phases=["rewrite"])
    assert evidence.hints(tmp_path) == [
        "go-hello: priority 1, phases rewrite; Kong runs none of these for a plugin on a route "
        "(rewrite runs for global plugins only; no PDK has header_filter or body_filter): give it "
        "an Access, Response or Log handler"
    ]


def test_hints_quote_the_first_crash_of_the_plugins_server(tmp_path: Path) -> None:
    _facts(tmp_path)
    (tmp_path / "kong.log").write_text(
        "2026/12/07 10:00:00 [info] 1#0: *2 [go-hello:40] 2026/12/07 "
        "10:00:00 no plugin instance 3\n"
        "2026/12/07 10:00:01 [info] 1#0: *2 [other:41] panic: not ours\n"
        "2026/12/07 10:00:02 [info] 1#0: *2 [go-hello:40] panic: assignment to entry in nil map, "
        "context: ngx.timer\n"
        "2026/12/07 10:00:03 [info] 1#0: *2 [go-hello:40] panic: a second one\n"
    )
    assert evidence.hints(tmp_path)[1] == (
        "Kong's log says: [go-hello:40] panic: assignment to entry in nil map"
    )
    # an error that quotes the crash already does not get it twice
    said = "exited: [go-hello:40] panic: assignment to entry in nil map"
    assert evidence.hints(tmp_path, said) == ["go-hello: priority 1, phases access"]


@pytest.mark.parametrize(
    "line",
    [
        "[notice] 1#0: [kong] process.lua:270 external pluginserver 'go-hello' terminated: exit 3",
        '[info] 1#0: *3 [go-hello:40] kpm-tap: server exited status="exit status 2"',
        "[info] 1#0: *3 [go-hello:40] 2026/12/07 10:00:02 fatal error: concurrent map writes",
        "[info] 1#0: *3 [go-hello:40] Traceback (most recent call last):",
        "[info] 1#0: *3 [go-hello:40] ModuleNotFoundError: No module named 'six'",
    ],
)
def test_each_kind_of_server_trouble_is_found(tmp_path: Path, line: str) -> None:
    log = tmp_path / "kong.log"
    log.write_text(
        f"2026/12/07 10:00:00 [info] 1#0: *1 [go-hello:40] fine\n2026/12/07 10:00:00 {line}\n"
    )
    found = evidence.first_server_trouble(log, ("go-hello",))
    assert found is not None and line.endswith(found.split("] ", 1)[-1])
    assert evidence.first_server_trouble(tmp_path / "none.log", ("go-hello",)) is None


def _stats(folder: Path, *entries: tuple[str, int, int]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "locust_stats.json").write_text(
        json.dumps([{"name": n, "num_requests": r, "num_failures": f} for n, r, f in entries])
    )


def test_the_plugins_own_answers_are_listed_by_status(tmp_path: Path) -> None:
    assert evidence.plugin_answers(tmp_path) is None
    _stats(tmp_path, ("/hello", 10, 2), ("/hello [401]", 990, 0))
    _stats(tmp_path / "phase2", ("/hello [401]", 5, 0), ("/hello [302]", 3, 0))
    assert evidence.plugin_answers(tmp_path) == "302 x3, 401 x995"
    (tmp_path / "phase2" / "locust_stats.json").write_text("not json")
    assert evidence.plugin_answers(tmp_path) == "401 x990"


def test_failures_are_told_by_cause(tmp_path: Path) -> None:
    (tmp_path / "locust_failures.csv").write_text(
        "Method,Name,Error,Occurrences\n"
        "GET,/hello,CatchResponseError('status 500: Kong or the upstream failed'),2\n"
        "GET,/hello,status 502: Kong or the upstream failed,1\n"
        "GET,/hello,\"ConnectionRefusedError(111, 'Connection refused')\",2\n"
        "GET,/hello,timed out,1\n"
        "GET,/hello,\"CatchResponseError('status 404, want 2xx')\",1\n"
        "GET,/hello,no X-Example-Message header: the plugin did not run,4\n"
    )
    assert evidence.failure_causes(tmp_path) == (
        "5xx x3, no plugin header x4, not 2xx x1, time-out x1, transport x2"
    )
