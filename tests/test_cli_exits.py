"""`cli.main` in-process with the Docker stages stubbed: every exit code, message and default."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from orchestration import cli, pipeline, report, versions
from orchestration.config import RunConfig
from orchestration.errors import Interrupted, StackError
from orchestration.report import RunResult, VersionResult


class Stage:
    """Stands in for the pipeline: records the config it got and answers as told."""

    def __init__(self, answer: Callable[[RunConfig], RunResult]) -> None:
        self.answer = answer
        self.configs: list[RunConfig] = []

    def __call__(self, config: RunConfig, **_: object) -> RunResult:
        self.configs.append(config)
        return self.answer(config)


def _row(version: str, status: str = "ok", verdict: str = "stable") -> VersionResult:
    return VersionResult(
        version=version,
        image=f"kong/kong-gateway:{version}",
        simulated=True,
        status=status,  # type: ignore[arg-type]
        error=None if status == "ok" else "boom",
        expected="baseline",
        verdict=verdict,  # type: ignore[arg-type]
        matches_changelog=True,
    )


def _written(config: RunConfig, *rows: VersionResult) -> RunResult:
    run = RunResult(config.run_id, config.tool_version, config.to_dict(), rows)
    config.run_dir.mkdir(parents=True, exist_ok=True)
    report.write_run(config.run_dir, run)
    return run


@pytest.fixture
def prerequisites(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    checked: list[bool] = []
    monkeypatch.setattr(cli, "_check_prerequisites", lambda sim, *_engines: checked.append(sim))
    return checked


def _main(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, stage: Stage, *args: str) -> int:
    monkeypatch.setattr(pipeline, "run_matrix", stage)
    monkeypatch.setattr(pipeline, "run_ui", stage)
    return cli.main([*args, "--results", str(tmp_path)])


def test_every_version_ran_exits_0_and_prints_the_table(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prerequisites: list[bool],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    stage = Stage(lambda config: _written(config, _row("3.4.0.0")))
    assert _main(monkeypatch, tmp_path, stage, "run", "3.4.0.0", "--sim") == 0
    assert prerequisites == [True]
    assert "| 3.4.0.0 " in capsys.readouterr().out


def test_a_version_that_errored_exits_1(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prerequisites: list[bool]
) -> None:
    stage = Stage(lambda c: _written(c, _row("3.4.0.0"), _row("3.4.1.0", "error", "error")))
    assert _main(monkeypatch, tmp_path, stage, "run", "3.4.0.0", "3.4.1.0") == 1


@pytest.mark.parametrize(("signal_number", "code"), [(2, 130), (15, 143)])
def test_an_interrupt_exits_128_plus_the_signal_with_the_table_and_no_error_prefix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prerequisites: list[bool],
    capsys: pytest.CaptureFixture[str], signal_number: int, code: int,
) -> None:  # fmt: skip
    def interrupted(config: RunConfig) -> RunResult:
        _written(config, _row("3.4.1.0", "interrupted", "interrupted"))
        raise Interrupted(signal_number, "interrupted by it: every stack was torn down")

    assert _main(monkeypatch, tmp_path, Stage(interrupted), "run", "3.4.1.0") == code
    shown = capsys.readouterr()
    assert "| 3.4.1.0 " in shown.out  # the table as written on the way out
    assert "interrupted by it" in shown.err and "error:" not in shown.err


def test_ctrl_c_outside_the_pipeline_exits_130(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prerequisites: list[bool],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    def ctrl_c(_config: RunConfig) -> RunResult:
        raise KeyboardInterrupt

    assert _main(monkeypatch, tmp_path, Stage(ctrl_c), "run", "3.4.1.0") == 130
    assert "interrupted by SIGINT (Ctrl-C)" in capsys.readouterr().err


def test_a_failure_is_an_error_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prerequisites: list[bool],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    def fails(_config: RunConfig) -> RunResult:
        raise StackError("the stack broke")

    assert _main(monkeypatch, tmp_path, Stage(fails), "run", "3.4.1.0") == 1
    assert capsys.readouterr().err.strip().endswith("error: the stack broke")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "9.9.9.9"], "'9.9.9.9' is not in our table"),
        (["run", "3.4.1.0", "3.4.1.0"], "a version is named twice"),
        (["ui", "3.4.1.0", "3.6.0.0"], "ui takes exactly one version"),
        (["run"], "name at least one version"),
        (["run", "3.4.1.0", "--requests", "10000001"], "--requests must be between 1 and"),
        (["run", "3.4.1.0", "--scenario", "nope"], "unknown scenario 'nope'"),
        (["run", "3.4.1.0", "--scenario", "reload", "--scenario", "reload"], "named twice"),
        (["run", "3.4.1.0", "--changes", "0"], "--changes must be between 1 and 100"),
        (["run", "3.4.1.0", "--plugin-config", "{nope"], "--plugin-config is not JSON"),
        (["run", "3.4.1.0", "--plugin-config", "[1]"], "must be a JSON object"),
        (["run", "3.4.1.0", "--plugin", "/no/such/dir"], "/no/such/dir"),
        (["run", "3.4.1.0", "--plugin", "go", "--plugin", "all"], "given twice"),
        (
            ["run", "3.4.1.0", "--plugin", "tests/plugins/rate-tag", "--scenario", "reload"],
            "--scenario reload cannot measure the plugin 'rate-tag'",
        ),
        (["ui", "3.4.1.0", "--plugin", "all"], "ui follows one plugin"),
        (["bisect", "3.4.0.0", "3.4.2.1", "--plugin", "go", "--plugin", "js"], "bisect follows"),
        (
            ["run", "3.4.1.0", "--plugin", "python", "--scenario", "kill-server"],
            "--scenario kill-server cannot measure the plugin 'python'",
        ),
    ],
)
def test_bad_arguments_exit_2_before_any_docker_work(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prerequisites: list[bool],
    capsys: pytest.CaptureFixture[str], args: list[str], message: str,
) -> None:  # fmt: skip
    stage = Stage(_written)
    assert _main(monkeypatch, tmp_path, stage, *args) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and message in error
    assert prerequisites == [] and stage.configs == []


def test_defaults_and_matrix_without_versions(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prerequisites: list[bool]
) -> None:
    stage = Stage(_written)
    assert _main(monkeypatch, tmp_path, stage, "matrix") == 0
    (config,) = stage.configs
    assert [t.label for t in config.targets] == list(versions.DEFAULT_MATRIX)
    assert (config.requests, config.users, config.workers) == (1000, 50, 4)
    assert (config.spawn_rate, config.parallel, config.scenarios) == (1000.0, 1, ("steady",))
    assert (config.plugins, config.plugin_config) == (("go",), "{}")
    assert not config.sim and prerequisites == [False]


def test_a_flag_wins_over_the_environment_which_wins_over_the_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prerequisites: list[bool]
) -> None:
    stage = Stage(_written)
    monkeypatch.setenv("KPM_REQUESTS", "2000")
    monkeypatch.setenv("KPM_USERS", "7")
    assert _main(monkeypatch, tmp_path, stage, "run", "3.4.1.0", "--users", "9") == 0
    assert (stage.configs[0].requests, stage.configs[0].users) == (2000, 9)


def test_once_the_work_is_shown_a_late_signal_changes_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prerequisites: list[bool]
) -> None:
    """Found by the chaos soak: a SIGTERM after the table was out turned exit 0 into -15."""
    import signal  # the handlers are restored after each test (tests/conftest.py)

    stage = Stage(lambda config: _written(config, _row("3.4.0.0")))
    assert _main(monkeypatch, tmp_path, stage, "run", "3.4.0.0") == 0
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_plugins_and_their_config_reach_the_run_as_given(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prerequisites: list[bool]
) -> None:
    stage = Stage(_written)
    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # the fixture's path is relative
    args = ["run", "3.4.1.0", "--plugin", "all", "--plugin", "tests/plugins/rate-tag"]
    config_json = '{"tag": "a", "limit": 5}'
    assert _main(monkeypatch, tmp_path, stage, *args, "--plugin-config", config_json) == 0
    (config,) = stage.configs
    assert config.plugins == ("all", "tests/plugins/rate-tag")
    assert config.plugin_config == '{"limit":5,"tag":"a"}'
