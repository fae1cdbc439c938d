"""No traceback reaches a user: every command, fed the bad inputs users bring, exits as documented.

A results place that cannot be one (a file, under a file, /proc, read-only /sys), a results folder
that is not ours (not JSON, a list, no `run_id`, rows missing their fields or holding the wrong
kind of value), and bad bisect arguments: each must end in exit 2 and one `error:` line that says
what to do, before any Docker work. In-process (fast, every case) and as subprocesses (a few: the
text a user sees, with Python's own handling of an escaped exception).
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest
from runs import cli as as_a_user
from runs import sim_run, write_folder

from orchestration import cli, pipeline
from orchestration.commands import common

IMPOSSIBLE_PLACES: dict[str, Callable[[Path], Path]] = {
    "a file": lambda tmp: _file(tmp / "taken"),
    "under a file": lambda tmp: _file(tmp / "taken") / "results",
    "under /proc": lambda _tmp: Path("/proc/kpm-results"),
    "under read-only /sys": lambda _tmp: Path("/sys/kpm-results"),
}

# What users hand report/compare/merge as results.json: (name, the file's bytes)
ROW = {
    "version": "3.4.1.0", "image": "kong/kong-gateway:3.4.1.0", "simulated": True,
    "status": "ok", "error": None, "expected": "affected", "verdict": "churn",
    "matches_changelog": True,
}  # fmt: skip
RUN = {"run_id": "r", "tool_version": "0.1.0", "config": {}, "versions": [ROW]}
FOREIGN_RESULTS: dict[str, bytes] = {
    "not JSON": b"<html>a saved web page</html>",
    "not UTF-8": bytes(range(128, 256)),
    "a list": b"[1, 2]",
    "no run_id": json.dumps({k: v for k, v in RUN.items() if k != "run_id"}).encode(),
    "no versions": json.dumps({k: v for k, v in RUN.items() if k != "versions"}).encode(),
    "versions not a list": json.dumps({**RUN, "versions": {"3.4.1.0": ROW}}).encode(),
    "config not an object": json.dumps({**RUN, "config": [1]}).encode(),
    "a row without its fields": json.dumps({**RUN, "versions": [{"version": "3.4.1.0"}]}).encode(),
    "a row that is a string": json.dumps({**RUN, "versions": ["3.4.1.0"]}).encode(),
    "requests as text": json.dumps({**RUN, "versions": [{**ROW, "requests": "many"}]}).encode(),
    "a phase without a name": json.dumps(
        {**RUN, "versions": [{**ROW, "phases": [{"about": "x"}]}]}
    ).encode(),
    "findings as a number": json.dumps({**RUN, "versions": [{**ROW, "findings": 3}]}).encode(),
}


def _file(path: Path) -> Path:
    path.write_text("not a folder\n", encoding="utf-8")
    return path


def _foreign_folder(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / "foreign"
    folder.mkdir()
    (folder / "results.json").write_bytes(FOREIGN_RESULTS[name])
    return folder


@pytest.fixture
def no_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reaching Docker, or the pipeline, is a failure here: every case stops before."""

    def reached(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the command went on to Docker work")

    monkeypatch.setattr(common, "check_prerequisites", reached)
    monkeypatch.setattr(pipeline, "run_matrix", reached)
    monkeypatch.setattr(pipeline, "run_ui", reached)


def _exit_of(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """cli.main's exit code and stderr; an exception that escapes it fails the test, shown."""
    try:
        code = cli.main(argv)
    except SystemExit as stopped:  # argparse's own usage errors
        code = int(stopped.code or 0)
    except BaseException:  # exactly what this test hunts
        pytest.fail(f"{argv} raised instead of saying what to do:\n{traceback.format_exc()}")
    shown = capsys.readouterr()
    assert "Traceback" not in shown.out + shown.err
    return code, shown.err


def _one_line_saying_what_to_do(err: str) -> None:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "pass " in lines[0], err  # what to pass instead


COMMANDS_WITH_RESULTS = [
    ["run", "3.4.1.0", "--sim"],
    ["matrix", "--sim"],
    ["ui", "3.4.1.0", "--sim"],
    ["selftest"],
    ["bisect", "3.4.0.0", "3.4.2.1", "--sim"],
]


@pytest.mark.parametrize("place", IMPOSSIBLE_PLACES)
@pytest.mark.parametrize("command", COMMANDS_WITH_RESULTS, ids=lambda c: c[0])
def test_a_results_place_that_cannot_be_one_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_docker: None,
    command: list[str], place: str,
) -> None:  # fmt: skip
    where = IMPOSSIBLE_PLACES[place](tmp_path)
    code, err = _exit_of([*command, "--results", str(where)], capsys)
    assert code == 2, err
    _one_line_saying_what_to_do(err)
    assert f"--results {where}" in err


@pytest.mark.parametrize("place", IMPOSSIBLE_PLACES)
def test_kpm_results_from_the_environment_is_checked_as_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_docker: None,
    monkeypatch: pytest.MonkeyPatch, place: str,
) -> None:  # fmt: skip
    monkeypatch.setenv("KPM_RESULTS", str(IMPOSSIBLE_PLACES[place](tmp_path)))
    code, err = _exit_of(["run", "3.4.1.0", "--sim"], capsys)
    assert code == 2, err
    _one_line_saying_what_to_do(err)


@pytest.mark.parametrize("place", IMPOSSIBLE_PLACES)
def test_merge_into_a_place_that_cannot_be_one_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], place: str
) -> None:
    source = write_folder(tmp_path / "a", "run-a", sim_run().versions)
    where = IMPOSSIBLE_PLACES[place](tmp_path)
    code, err = _exit_of(["merge", str(source), "--results", str(where)], capsys)
    assert code == 2, err
    _one_line_saying_what_to_do(err)


def _good_run(tmp_path: Path) -> Path:
    return write_folder(tmp_path / "good", "good-run", sim_run().versions)


FOREIGN_USES: dict[str, Callable[[Path, Path], list[str]]] = {
    "report": lambda bad, _good: ["report", str(bad)],
    "report results.json": lambda bad, _good: ["report", str(bad / "results.json")],
    "report --html": lambda bad, _good: ["report", str(bad), "--html"],
    "compare OLD": lambda bad, good: ["compare", str(bad), str(good)],
    "compare NEW": lambda bad, good: ["compare", str(good), str(bad), "--json"],
    "merge": lambda bad, good: ["merge", str(good), str(bad)],
    "merge a folder of runs": lambda bad, good: ["merge", str(bad.parent)],
}


@pytest.mark.parametrize("use", FOREIGN_USES)
@pytest.mark.parametrize("results", FOREIGN_RESULTS)
def test_a_foreign_or_old_results_folder_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    use: str, results: str,
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)  # merge writes under ./results when it gets that far
    bad = _foreign_folder(tmp_path, results)
    code, err = _exit_of(FOREIGN_USES[use](bad, _good_run(tmp_path)), capsys)
    assert code == 2, err
    _one_line_saying_what_to_do(err)
    assert not (tmp_path / "results").exists()  # merge made nothing


@pytest.mark.parametrize(
    "make",
    [
        lambda tmp: tmp / "missing",
        lambda tmp: (tmp / "empty").mkdir() or tmp / "empty",
        lambda tmp: (tmp / "odd" / "results.json").mkdir(parents=True) or tmp / "odd",
    ],
    ids=["missing", "an empty folder", "results.json a folder"],
)
@pytest.mark.parametrize("command", ["report", "compare", "merge"])
def test_a_folder_without_a_run_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    command: str, make: Callable[[Path], Path],
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    folder = make(tmp_path)
    argv = [command, str(folder)] + ([str(_good_run(tmp_path))] if command == "compare" else [])
    code, err = _exit_of(argv, capsys)
    assert code == 2, err
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err


@pytest.mark.parametrize("place", IMPOSSIBLE_PLACES)
@pytest.mark.parametrize("command", [["report"], ["run", "3.4.1.0", "--sim"]], ids=" ".join)
def test_a_junit_file_that_cannot_be_written_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_docker: None,
    command: list[str], place: str,
) -> None:  # fmt: skip
    junit = IMPOSSIBLE_PLACES[place](tmp_path) / "junit.xml"
    where = [str(_good_run(tmp_path))] if command == ["report"] else ["--results", str(tmp_path)]
    argv = [*command, *where, "--junit", str(junit)]
    code, err = _exit_of(argv, capsys)
    assert code == 2, err
    _one_line_saying_what_to_do(err)


@pytest.mark.parametrize("folder", ["/proc", "/dev/null", "/sys/kernel"])
def test_merge_of_a_system_folder_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    folder: str,
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    code, err = _exit_of(["merge", folder], capsys)
    assert code == 2, err
    _one_line_saying_what_to_do(err)


@pytest.mark.parametrize(
    "argv",
    [
        ["collect", "missing.log"],
        ["collect", "."],  # a folder without kong.log
        ["collect", "/proc/self/mem"],  # unreadable
        ["versions", "--nope"],
        ["bisect", "3.4.0.0"],
        ["bisect", "3.4.0.0", "3.6.0"],  # editions differ
        ["bisect", "3.6.0.0", "3.4.0.0"],  # the wrong way round
        ["bisect", "3.4.0.0", "9.9.9.9"],
        ["bisect", "x", "y"],
        ["bisect", "3.4.0.0", "3.4.2.1", "--scenario", "steady", "--scenario", "idle"],
        ["bisect", "3.4.0.0", "3.4.2.1", "--plugin", "go", "--plugin", "js"],
        ["bisect", "3.4.0.0", "3.4.2.1", "--idle", "5"],
        ["bisect", "3.4.0.0", "--image", "kong:3.6.1"],
        ["bisect", "--image", "NOT AN IMAGE", "--image", "kong:3.6.1"],
        ["run", "3.4.1.0", "--sim", "--requests", "0"],
        ["run", "3.4.1.0", "--sim", "--idle", "30"],
    ],
    ids=" ".join,
)
def test_bad_arguments_exit_2_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    no_docker: None, argv: list[str],
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    code, err = _exit_of(argv, capsys)
    assert code == 2, err
    assert "error: " in err


def test_as_a_user_sees_it_no_traceback_and_exit_2(tmp_path: Path) -> None:
    """The issue's cases, as processes: Python prints any exception that escapes as a
    Traceback with exit 1, whatever cli.main's handlers were stubbed with in-process."""
    taken = _file(tmp_path / "taken")
    good = _good_run(tmp_path)
    no_run_id = _foreign_folder(tmp_path, "no run_id")
    cases = [
        ["run", "3.4.1.0", "--sim", "--results", str(taken)],
        ["run", "3.4.1.0", "--sim", "--results", "/proc/kpm-results"],
        ["report", str(no_run_id)],
        ["compare", str(no_run_id), str(good)],
        ["merge", str(no_run_id)],
        ["merge", str(good), "--results", str(taken)],
    ]
    for argv in cases:
        done = as_a_user(argv, tmp_path, KPM_RESULTS=str(tmp_path / "results"))
        assert "Traceback" not in done.stdout + done.stderr, (argv, done.stderr)
        assert done.returncode == 2, (argv, done.stderr)
        _one_line_saying_what_to_do(done.stderr)
