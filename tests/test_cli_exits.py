"""`cli.main` in-process with the Docker stages stubbed: every exit code, message and default."""

from __future__ import annotations

import errno
import io
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from orchestration import cli, pipeline, report, run_files, versions
from orchestration.commands import common
from orchestration.commands import report as report_command
from orchestration.config import RunConfig
from orchestration.engine import Engine
from orchestration.errors import Interrupted, StackError
from orchestration.paths import REPO_ROOT
from orchestration.report import Row, RunResult


class Stage:
    """Stands in for the pipeline: records the config it got and answers as told."""

    def __init__(self, answer: Callable[[RunConfig], RunResult]) -> None:
        self.answer = answer
        self.configs: list[RunConfig] = []

    def __call__(self, config: RunConfig, **_: object) -> RunResult:
        self.configs.append(config)
        return self.answer(config)


def _row(version: str, status: str = "ok", verdict: str = "stable") -> Row:
    return Row(
        version=version,
        image=f"kong/kong-gateway:{version}",
        simulated=True,
        status=status,  # type: ignore[arg-type]
        error=None if status == "ok" else "boom",
        expected="baseline",
        verdict=verdict,  # type: ignore[arg-type]
        matches_changelog=True,
    )


def _written(config: RunConfig, *rows: Row) -> RunResult:
    run = RunResult(config.run_id, config.tool_version, config.to_dict(), rows)
    config.run_dir.mkdir(parents=True, exist_ok=True)
    run_files.write_run(config.run_dir, run)
    return run


@pytest.fixture
def prerequisites(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    checked: list[bool] = []
    monkeypatch.setattr(common, "check_prerequisites", lambda sim, *_engines: checked.append(sim))
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


@pytest.mark.parametrize(("signal_number", "code"), [(2, 130), (15, 143), (1, 129)])
def test_an_interrupt_exits_128_plus_the_signal_with_the_table_and_no_error_prefix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prerequisites: list[bool],
    capsys: pytest.CaptureFixture[str], signal_number: int, code: int,
) -> None:  # fmt: skip
    def interrupted(config: RunConfig) -> RunResult:
        _written(config, _row("3.4.1.0", "interrupted", "interrupted"))
        raise Interrupted(signal_number, "interrupted by it: every stack was torn down")

    stage = Stage(interrupted)
    assert _main(monkeypatch, tmp_path, stage, "run", "3.4.1.0") == code
    shown = capsys.readouterr()
    run = run_files.load_run(stage.configs[0].run_dir)
    assert shown.out == report.render_summary(run, "compact") + "\n"  # as written on the way out
    assert "| 3.4.1.0 " in shown.out
    assert shown.err.splitlines()[-1] == "interrupted by it: every stack was torn down"


def test_ctrl_c_outside_the_pipeline_exits_130(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prerequisites: list[bool],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    def ctrl_c(_config: RunConfig) -> RunResult:
        raise KeyboardInterrupt

    assert _main(monkeypatch, tmp_path, Stage(ctrl_c), "run", "3.4.1.0") == 130
    assert capsys.readouterr().err.splitlines()[-1] == (
        "interrupted by SIGINT (Ctrl-C); every stack started was torn down"
    )


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
        (
            ["bisect", "3.4.0.0", "3.4.2.1", "--plugin", "go", "--plugin", "js"],
            "bisect follows one plugin: name one --plugin (got go, js)\n",
        ),
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


def test_the_plugins_are_resolved_once_into_the_configuration(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prerequisites: list[bool]
) -> None:
    """--plugin is resolved at the edge, once per run (not again by the option reading of
    --wide or --junit, the scenario check or the job list): the jobs come from the sources the
    configuration carries."""
    from orchestration import plugins

    resolved: list[tuple[str, ...]] = []
    resolve = plugins.resolve_plugins

    def counted(values: Sequence[str], repo_root: Path) -> tuple[plugins.PluginSource, ...]:
        resolved.append(tuple(values))
        return resolve(values, repo_root)

    jobs: list[pipeline.Job] = []

    def scheduled(config: RunConfig) -> RunResult:
        jobs.extend(pipeline.jobs_of(config))
        return _written(config)

    monkeypatch.setattr(plugins, "resolve_plugins", counted)
    stage = Stage(scheduled)
    junit = str(tmp_path / "junit.xml")
    args = ["run", "3.4.1.0", "--plugin", "go", "--plugin", "python", "--wide", "--junit", junit]
    assert _main(monkeypatch, tmp_path, stage, *args) == 0
    (config,) = stage.configs
    assert resolved == [("go", "python")]
    assert [s.label for s in config.plugin_sources] == ["go", "python"]
    assert [job.plugin for job in jobs] == list(config.plugin_sources)
    assert _main(monkeypatch, tmp_path, stage, "run", "3.4.1.0") == 0  # the default, resolved
    assert resolved[1:] == [("go",)]
    assert stage.configs[1].plugin_sources == resolve(["go"], REPO_ROOT)


# --- the options as README documents them: defaults, flags, the environment -----------------

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_defaults() -> dict[str, str]:
    """README's table of the options of run, matrix, ui and selftest: option -> default cell."""
    defaults: dict[str, str] = {}
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.startswith("| `--"):
            cells = [cell.strip() for cell in line.strip("|").split(" | ")]
            options = [option.strip("`").split()[0] for option in cells[0].split(", ")]
            values = cells[1].split(", ") if len(options) > 1 else [cells[1]]
            defaults.update(zip(options, values, strict=True))
    return defaults


# option -> (RunConfig field, a value to give, what the field then holds, README's default as held)
OPTIONS: dict[str, tuple[str, str, object, object]] = {
    "--requests": ("requests", "1234", 1234, 1000),
    "--users": ("users", "7", 7, 50),
    "--spawn-rate": ("spawn_rate", "2.5", 2.5, 1000.0),
    "--workers": ("workers", "3", 3, 4),
    "--ready-timeout": ("ready_timeout", "31.5", 31.5, 240.0),
    "--load-timeout": ("load_timeout", "61", 61.0, 600.0),
    "--parallel": ("parallel", "2", 2, 1),
    "--changes": ("changes", "5", 5, 3),
    "--idle": ("idle", "61.5", 61.5, 75.0),
    "--duration": ("duration", "9", 9.0, 600.0),
    "--locust-workers": ("locust_workers", "2", 2, 0),
    "--locust-master-port": ("locust_master_port", "5557", 5557, 0),
    "--locust-master-bind": ("locust_master_bind", "0.0.0.0", "0.0.0.0", "127.0.0.1"),
    "--go-image": ("go_image", "golang:1.23", "golang:1.23", "golang:1.22"),
}


def _config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *args: str, command: str = "run"
) -> RunConfig:
    stage = Stage(_written)
    monkeypatch.setattr(common, "check_prerequisites", lambda *_: None)
    assert _main(monkeypatch, tmp_path, stage, command, *args) == 0
    (config,) = stage.configs
    return config


def test_every_default_is_the_one_readme_gives(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    documented = _readme_defaults()
    config = _config(monkeypatch, tmp_path, "3.4.1.0")
    for option, (field, _, _, default) in OPTIONS.items():
        assert getattr(config, field) == default, option
        written = documented[option].strip("`").split()[0]
        assert written == str(default) or written == f"{default:g}", option
    assert documented["--locust-remote-workers"] == "0" and config.locust_remote_workers == 0
    assert (config.keep, config.sim, config.tap, config.docker_hosts) == (False, False, False, ())
    assert documented["--results"] == "`results`"
    assert config.results_root == tmp_path.resolve()  # _main passes --results


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_each_option_reaches_the_run_from_its_flag_and_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, option: str
) -> None:
    field, given, held, _ = OPTIONS[option]
    from_flag = _config(monkeypatch, tmp_path, "3.4.1.0", option, given)
    assert getattr(from_flag, field) == held
    monkeypatch.setenv("KPM_" + option[2:].replace("-", "_").upper(), given)
    from_environment = _config(monkeypatch, tmp_path, "3.4.1.0")
    assert getattr(from_environment, field) == held


def test_the_switches_and_the_repeatable_options_reach_the_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = _config(
        monkeypatch, tmp_path, "3.4.1.0", "--keep", "--sim", "--tap",
        "--image", "kong:3.6.1", "--scenario", "idle", "--scenario", "workers",
        "--docker-host", "unix:///run/a.sock", "--docker-host", "unix:///run/b.sock",
    )  # fmt: skip
    assert (config.keep, config.sim, config.tap) == (True, True, True)
    assert [t.image for t in config.targets] == ["kong/kong-gateway:3.4.1.0", "kong:3.6.1"]
    assert config.scenarios == ("idle", "workers")
    assert config.docker_hosts == ("unix:///run/a.sock", "unix:///run/b.sock")
    assert _config(monkeypatch, tmp_path, "3.4.1.0", "--no-tap").tap is False


def test_results_and_docker_hosts_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KPM_RESULTS", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("KPM_DOCKER_HOST", "unix:///run/a.sock unix:///run/b.sock")
    stage = Stage(_written)
    monkeypatch.setattr(common, "check_prerequisites", lambda *_: None)
    monkeypatch.setattr(pipeline, "run_matrix", stage)
    assert cli.main(["run", "3.4.1.0"]) == 0  # no --results
    (config,) = stage.configs
    assert config.results_root == (tmp_path / "elsewhere").resolve()
    assert config.docker_hosts == ("unix:///run/a.sock", "unix:///run/b.sock")


def test_without_results_or_its_variable_runs_go_under_results_here(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    stage = Stage(_written)
    monkeypatch.setattr(common, "check_prerequisites", lambda *_: None)
    monkeypatch.setattr(pipeline, "run_matrix", stage)
    assert cli.main(["run", "3.4.1.0"]) == 0
    assert stage.configs[0].results_root == tmp_path.resolve() / "results"


def test_ui_listens_on_8089_or_its_web_port(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("orchestration.load.require_free_port", lambda _port: None)
    assert _config(monkeypatch, tmp_path, "3.4.1.0", command="ui").web_port == 8089
    assert (
        _config(monkeypatch, tmp_path, "3.4.1.0", "--web-port", "9000", command="ui").web_port
        == 9000
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ui", "3.4.1.0", "--locust-workers", "2"], "the web UI runs one Locust process"),
        (["ui", "3.4.1.0", "--locust-remote-workers", "1"], "the web UI runs one Locust process"),
        (
            ["run", "3.4.1.0", "--locust-workers", "2", "--locust-remote-workers", "2"],
            "choose one",
        ),
        (
            ["run", "3.4.1.0", "--locust-remote-workers", "1", "--parallel", "2"],
            "--locust-remote-workers serves one version at a time",
        ),
        (
            [
                "run",
                "3.4.1.0",
                "--locust-workers",
                "2",
                "--locust-master-port",
                "5557",
                "--parallel",
                "2",
            ],
            "--locust-master-port names one port",
        ),
        (
            [
                "run",
                "3.4.1.0",
                "--locust-remote-workers",
                "2",
                "--locust-master-port",
                "5557",
                "--parallel",
                "2",
            ],
            "--locust-remote-workers serves one version at a time",
        ),
        (["run", "3.4.1.0", "--locust-workers", "60", "--users", "50"], "--users"),
        (["run", "3.4.1.0", "--locust-remote-workers", "60", "--users", "50"], "--users"),
        (["ui", "3.4.1.0", "--web-port", "0"], "--web-port must be between 1 and 65535"),
        (["ui", "3.4.1.0", "--web-port", "x"], "--web-port takes a number"),
        (["run", "3.4.1.0", "--locust-workers", "65"], "--locust-workers must be between 0 and 64"),
        (["run", "3.4.1.0", "--idle", "-1"], "--idle must be between 61 and"),
        (
            ["run", "3.4.1.0", "--idle", "60"],
            "--idle must be between 61 and 86400, got 60 (the idle scenario measures a gap longer "
            "than go-pdk's 60 s instance expiry; a shorter one would show nothing it is for)",
        ),
        (["run", "3.4.1.0", "--duration", "0"], "--duration must be between 1 and"),
        (["run", "3.4.1.0", "--go-image", "golang:1.22;x"], "--go-image: "),
        (["run", "3.4.1.0", "--docker-host", "ssh://far"], "ssh://far"),
        (["run", "3.4.1.0", "--scenario", "reload", "--scenario", "nope"], "unknown scenario"),
        (["run", "--image", "kong:3.6.1", "--image", "kong:3.6.1"], "a version is named twice"),
        (["ui", "--image", "kong:3.6.1", "--image", "kong:3.7.1"], "ui takes exactly one"),
        (["ui"], "name at least one version"),
        (["run", "--expect", "3.4.1.0=churn"], "name at least one version"),
        (["run", "3.4.1.0", "--expect", "3.4.1.0=churn"], "--expect only shapes the JUnit"),
    ],
)
def test_rules_between_options_exit_2_before_any_docker_work(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prerequisites: list[bool],
    capsys: pytest.CaptureFixture[str], args: list[str], message: str,
) -> None:  # fmt: skip
    monkeypatch.setattr("orchestration.load.require_free_port", lambda _port: None)
    stage = Stage(_written)
    assert _main(monkeypatch, tmp_path, stage, *args) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and message in error, error
    assert prerequisites == [] and stage.configs == []


def test_a_flag_or_variable_at_the_edge_of_its_range_is_taken(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = _config(
        monkeypatch, tmp_path, "3.4.1.0", "--locust-workers", "50", "--users", "50",
        "--locust-master-port", "5557",
    )  # fmt: skip
    assert (config.locust_workers, config.locust_master_port) == (50, 5557)
    remote = _config(monkeypatch, tmp_path, "3.4.1.0", "--locust-remote-workers", "3")
    assert (remote.locust_remote_workers, remote.locust_workers) == (3, 0)
    monkeypatch.setenv("KPM_LOCUST_MASTER_BIND", "10.0.0.1")
    assert _config(monkeypatch, tmp_path, "3.4.1.0").locust_master_bind == "10.0.0.1"
    flag = _config(monkeypatch, tmp_path, "3.4.1.0", "--locust-master-bind", "10.0.0.2")
    assert flag.locust_master_bind == "10.0.0.2"  # the flag over the environment
    parallel_port = _config(
        monkeypatch, tmp_path, "3.4.1.0", "--parallel", "2", "--locust-master-port", "5557"
    )
    assert parallel_port.parallel == 2  # a port without workers is no conflict


def test_a_switch_from_the_environment_and_its_flag_either_way(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for word, held in (("1", True), ("Yes", True), ("on", True), ("0", False), ("OFF", False)):
        monkeypatch.setenv("KPM_SIM", word)
        assert _config(monkeypatch, tmp_path, "3.4.1.0").sim is held, word
    monkeypatch.setenv("KPM_SIM", "1")
    assert _config(monkeypatch, tmp_path, "3.4.1.0", "--no-sim").sim is False  # flag over env
    monkeypatch.setenv("KPM_SIM", "no")
    assert _config(monkeypatch, tmp_path, "3.4.1.0", "--sim").sim is True
    monkeypatch.setenv("KPM_SIM", "")  # empty: unset, the default
    assert _config(monkeypatch, tmp_path, "3.4.1.0").sim is False


def test_repeatable_options_from_the_environment_are_separated_by_whitespace(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KPM_SCENARIO", " idle\tworkers ")
    monkeypatch.setenv("KPM_PLUGIN", "go python")
    monkeypatch.setenv("KPM_IMAGE", "kong:3.6.1 kong:3.7.1")
    config = _config(monkeypatch, tmp_path, "3.4.1.0")
    assert config.scenarios == ("idle", "workers")
    assert config.plugins == ("go", "python")
    assert [t.image for t in config.targets][1:] == ["kong:3.6.1", "kong:3.7.1"]
    flagged = _config(monkeypatch, tmp_path, "3.4.1.0", "--scenario", "soak", "--plugin", "js")
    assert (flagged.scenarios, flagged.plugins) == (("soak",), ("js",))  # the flag replaces them


def test_each_kind_of_option_is_flag_over_environment_over_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cases = {  # variable: (its value, a flag, the field, default, from the variable, from the flag)
        "KPM_REQUESTS": ("200", ["--requests", "300"], "requests", 1000, 200, 300),
        "KPM_IDLE": ("90", ["--idle", "120"], "idle", 75.0, 90.0, 120.0),
        "KPM_GO_IMAGE": ("golang:1.23", ["--go-image", "golang:1.24"], "go_image",
                         "golang:1.22", "golang:1.23", "golang:1.24"),
        "KPM_TAP": ("on", ["--no-tap"], "tap", False, True, False),
        "KPM_SCENARIO": ("idle soak", ["--scenario", "workers"], "scenarios", ("steady",),
                         ("idle", "soak"), ("workers",)),
    }  # fmt: skip
    for variable, (text, flag, field, default, from_env, from_flag) in cases.items():
        assert getattr(_config(monkeypatch, tmp_path, "3.4.1.0"), field) == default, variable
        monkeypatch.setenv(variable, text)
        assert getattr(_config(monkeypatch, tmp_path, "3.4.1.0"), field) == from_env, variable
        assert getattr(_config(monkeypatch, tmp_path, "3.4.1.0", *flag), field) == from_flag
        monkeypatch.delenv(variable)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "KPM_SIM",
            "maybe",
            "KPM_SIM='maybe': --sim is a switch: write 1, true, yes, on to turn it on, or 0, "
            "false, no, off to turn it off\n",
        ),
        ("KPM_USERS", "abc", "KPM_USERS='abc': --users takes a number between 1 and 10000"),
        ("KPM_REQUESTS", "0", "KPM_REQUESTS='0': --requests must be between 1 and 10000000"),
        ("KPM_IDLE", "60", "KPM_IDLE='60': --idle must be between 61 and 86400, got 60"),
        ("KPM_SCENARIO", "steady nope", "KPM_SCENARIO='steady nope': unknown scenario 'nope'"),
        ("KPM_PLUGIN_CONFIG", "[1]", "KPM_PLUGIN_CONFIG='[1]': --plugin-config must be a JSON"),
        ("KPM_GO_IMAGE", "golang;x", "KPM_GO_IMAGE='golang;x': --go-image: "),
        ("KPM_DOCKER_HOST", "ssh://far", "KPM_DOCKER_HOST='ssh://far': "),
        ("KPM_PLUGIN", "/no/such/dir", "KPM_PLUGIN='/no/such/dir': "),
        ("KPM_EXPECT", "3.4.1.0", "KPM_EXPECT='3.4.1.0': "),
    ],
)
def test_a_bad_variable_exits_2_naming_it_before_any_docker_work(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prerequisites: list[bool],
    capsys: pytest.CaptureFixture[str], variable: str, value: str, message: str,
) -> None:  # fmt: skip
    monkeypatch.setenv(variable, value)
    stage = Stage(_written)
    assert _main(monkeypatch, tmp_path, stage, "run", "3.4.1.0") == 2
    error = capsys.readouterr().err
    assert error.startswith("error: " + message), error
    assert prerequisites == [] and stage.configs == []


def test_readmes_options_table_is_the_one_the_declarations_write() -> None:
    """README's table between its markers is `python -m tests.cli_reference`'s (it rewrites it);
    a declaration changed without it fails here."""
    from cli_reference import README, readme_with_table

    current = README.read_text(encoding="utf-8")
    assert current == readme_with_table(current)
    stale = current.replace("| `--requests N` | 1000 |", "| `--requests N` | 999 |")
    assert stale != current and readme_with_table(stale) != stale


def test_every_option_of_the_measuring_commands_is_in_the_table_with_its_variable() -> None:
    from cli_reference import options_table

    from orchestration.config import OPTIONS

    table = options_table()
    for each in OPTIONS:
        assert f"| `{each.flag}" in table and f"`KPM_{each.name.upper()}`" in table, each.name


# --- the reference, --version and the commands that need no Docker, in-process --------------


def test_the_cli_reference_in_docs_is_what_help_prints() -> None:
    """docs/cli.md is every command's --help (python -m tests.cli_reference rewrites it); compared
    word by word, so another Python's line wrapping is no difference."""
    from cli_reference import REFERENCE, render

    assert REFERENCE.read_text(encoding="utf-8").split() == render().split()


def test_the_cli_reference_has_every_command() -> None:
    import argparse

    from cli_reference import COMMANDS

    (commands,) = [
        action
        for action in cli.build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    ]
    assert sorted(COMMANDS) == sorted(commands.choices)


def test_version_prints_the_tools_version(capsys: pytest.CaptureFixture[str]) -> None:
    from orchestration import __version__

    with pytest.raises(SystemExit) as stopped:
        cli.main(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out == f"kong-plugin-matrix {__version__}\n"


@pytest.mark.parametrize("args", [[], ["nope"], ["run", "--nope"], ["run", "--requests"]])
def test_usage_errors_exit_2_and_say_how_to_get_help(
    capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        cli.main(args)
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("usage: python -m orchestration")
    assert error.endswith(" (see --help)\n") and ": error: " in error


def test_versions_lists_every_known_version_as_text_json_or_the_default_matrix(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["versions", "--default"]) == 0
    assert capsys.readouterr().out.split("\n") == [*versions.DEFAULT_MATRIX, ""]
    assert cli.main(["versions", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [e["version"] for e in entries] == [v.version for v in versions.KNOWN_VERSIONS]
    first = versions.KNOWN_VERSIONS[0]
    assert entries[0] == {
        "version": first.version,
        "edition": first.edition,
        "image": first.image,
        "changelog": first.expected,
        "default_matrix": first.in_default_matrix,
        "aliases": [],
        "source": first.source,
    }
    newest = next(e for e in entries if e["version"] == versions.ALIASES["3.14.x"].version)
    assert newest["aliases"] == ["3.14.x"]
    assert cli.main(["versions", "--long"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [cell.strip() for cell in lines[0].split("|")[1:-1]] == [
        "version", "edition", "changelog", "default", "alias", "source",
    ]  # fmt: skip
    rows = {line.split("|")[1].strip(): line.split("|") for line in lines[2:]}
    assert len(rows) == len(versions.KNOWN_VERSIONS)
    for known in versions.KNOWN_VERSIONS:
        cells = [cell.strip() for cell in rows[known.version][1:-1]]
        default = "yes" if known.in_default_matrix else ""
        alias = " ".join(versions.aliases_of(known))
        assert cells == [known.version, known.edition, known.expected, default, alias, known.source]


def test_versions_fits_120_columns_and_one_version_shows_its_source_in_full(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["versions"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 120
    rows = {line.split(" | ")[0].removeprefix("| ").strip(): line for line in lines[2:-1]}
    assert list(rows) == [v.version for v in versions.KNOWN_VERSIONS]
    for known in versions.KNOWN_VERSIONS:
        source = rows[known.version].split(" | ")[-1]
        assert source == known.source or known.source.startswith(source.removesuffix(" ..."))
    assert lines[-1] == "The full source: `versions VERSION` (one) or `versions --long` (all)."
    newest = versions.ALIASES["3.4.x"]
    assert cli.main(["versions", "3.4.x"]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith(f"version: {newest.version}\nedition: enterprise\n")
    assert " ".join(shown.split("source: ", 1)[1].split()) == newest.source
    assert max(len(line) for line in shown.splitlines()) <= 120
    assert cli.main(["versions", "3.4.x", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["source"] == newest.source
    assert cli.main(["versions", "3.4.x", "--long"]) == 2
    assert "drop --default, --series and --long" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["3.4.1.0", "3.4.x"])  # default and no alias; neither
def test_one_version_is_a_field_a_line_its_source_wrapped_at_120(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    known = versions.lookup(name)
    assert cli.main(["versions", name]) == 0
    head, _, source = capsys.readouterr().out.rstrip("\n").partition("\nsource: ")
    assert head.split("\n") == [
        f"version: {known.version}",
        f"edition: {known.edition}",
        f"image: {known.image}",
        f"changelog: {known.expected}",
        f"default matrix: {'yes' if known.in_default_matrix else 'no'}",
        f"aliases: {' '.join(versions.aliases_of(known)) or '-'}",
    ]
    lines = f"source: {source}".split("\n")
    assert " ".join(" ".join(lines).split()) == f"source: {known.source}"
    assert all(len(line) <= 120 for line in lines)
    assert all(line.startswith("  ") and line[2] != " " for line in lines[1:])
    if len(known.source) > 120:  # 3.4.1.0's: wrapped at 120, not textwrap's 70
        assert len(lines) > 1 and len(lines[0]) > 100


def test_one_version_refuses_every_listing_switch(capsys: pytest.CaptureFixture[str]) -> None:
    for switch in ("--default", "--series", "--long"):
        assert cli.main(["versions", "3.4.1.0", switch]) == 2
        assert "drop --default, --series and --long" in capsys.readouterr().err


FACTS_LOG = Path(__file__).resolve().parent / "fixtures" / "facts_excerpt.log"


def test_collect_prints_one_logs_signals_as_json_and_several_as_a_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["collect", str(FACTS_LOG), "--json"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert (one["instance_starts"], one["rpc_closed_errors"]) == (1, 1)
    run = tmp_path / "run"
    for version in ("3.4.0.0", "3.4.1.0"):
        (run / version).mkdir(parents=True)
        (run / version / "kong.log").write_text(FACTS_LOG.read_text())
    assert cli.main(["collect", str(run), "--json"]) == 0
    several = json.loads(capsys.readouterr().out)
    assert sorted(several) == [str(run / v / "kong.log") for v in ("3.4.0.0", "3.4.1.0")]
    assert cli.main(["collect", str(run / "3.4.0.0"), str(FACTS_LOG)]) == 0
    table = capsys.readouterr().out.splitlines()
    cells = [[cell.strip() for cell in line.split("|")[1:-1]] for line in table]
    assert cells[0] == ["log", "plugin", *one]
    counts = ["" if value is None else str(value) for value in one.values()]
    assert cells[2:] == [
        [str(run / "3.4.0.0" / "kong.log"), "example-plugin", *counts],
        [str(FACTS_LOG), "example-plugin", *counts],
    ]


def test_collect_counts_every_plugin_server_a_bare_log_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "kong.log"
    lines = FACTS_LOG.read_text().splitlines()
    relayed = (
        "2023/11/21 22:33:08 [info] 2346#0: *1 [{name}:77] kpm-tap: instance started id=1 total=1"
    )
    log.write_text("\n".join([*lines, relayed.format(name="rate-tag")]) + "\n")
    assert cli.main(["collect", str(log), "--json"]) == 0
    both = json.loads(capsys.readouterr().out)
    assert list(both) == [f"{log} [example-plugin]", f"{log} [rate-tag]"]
    assert both[f"{log} [example-plugin]"]["instance_starts"] == 1
    assert both[f"{log} [rate-tag]"]["tap_instance_starts"] == 1
    # --plugin narrows it to one
    assert cli.main(["collect", str(log), "--json", "--plugin", "rate-tag"]) == 0
    assert json.loads(capsys.readouterr().out)["tap_instance_starts"] == 1


def test_collect_counts_the_plugin_a_run_folder_recorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A user plugin's run folder: plugin.json names the plugin (its capitals as written)."""
    folder = tmp_path / "run" / "3.4.1.0-RateTag"
    folder.mkdir(parents=True)
    relayed = (
        "2023/11/21 22:33:08 [info] 2346#0: *1 [ratetag:77] kpm-tap: "
        "instance started id={n} total={n}"
    )
    other = (
        "2023/11/21 22:33:08 [info] 2346#0: *1 [other:78] kpm-tap: instance started id=9 total=1"
    )
    (folder / "kong.log").write_text("\n".join([relayed.format(n=1), relayed.format(n=2), other]))
    (folder / "plugin.json").write_text(json.dumps({"log_name": "RateTag"}))
    assert cli.main(["collect", str(tmp_path / "run"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tap_instance_starts"] == 2


def test_collect_counts_the_plugin_it_is_told(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["collect", str(FACTS_LOG), "--json", "--plugin", "other-plugin"]) == 0
    assert json.loads(capsys.readouterr().out)["instance_starts"] == 0


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda root: root / "nope.log",
            "does not exist: pass a Kong log file or a results run folder",
        ),
        (lambda root: root, "holds no kong.log (expected <run>/<version>/kong.log)"),
    ],
)
def test_collect_without_a_log_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
    make: Callable[[Path], Path], message: str,
) -> None:  # fmt: skip
    assert cli.main(["collect", str(make(tmp_path))]) == 2
    assert capsys.readouterr().err == f"error: {make(tmp_path)} {message}\n"


def _finished_run(tmp_path: Path, *rows: Row) -> Path:
    config = RunConfig("r1", (), tmp_path)
    _written(config, *rows)
    return config.run_dir


def test_report_reprints_a_run_and_exits_as_the_run_did(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _finished_run(tmp_path / "good", _row("3.4.0.0"))
    assert cli.main(["report", str(good)]) == 0
    assert "| 3.4.0.0 " in capsys.readouterr().out
    assert cli.main(["report", str(good / "results.json")]) == 0
    bad = _finished_run(tmp_path / "bad", _row("3.4.0.0"), _row("3.4.1.0", "error", "error"))
    assert cli.main(["report", str(bad)]) == 1
    assert cli.main(["report", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.endswith(
        f"error: {tmp_path / 'none'} does not exist: pass a run folder (results/<run-id>) or its "
        "results.json\n"
    )


def test_report_defaults_to_results_latest(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(["report"]) == 2
    assert "error: results/latest does not exist" in capsys.readouterr().err


def test_report_html_draws_the_page_and_open_without_a_browser_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from orchestration import page

    run_dir = _finished_run(tmp_path, _row("3.4.0.0"))
    assert not (run_dir / page.PAGE_NAME).exists()
    assert cli.main(["report", str(run_dir / "results.json"), "--html"]) == 0
    assert capsys.readouterr().out == f"{run_dir / page.PAGE_NAME}\n"
    assert (run_dir / page.PAGE_NAME).is_file()
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    assert cli.main(["report", str(run_dir), "--open"]) == 0
    shown = capsys.readouterr()
    assert shown.out == f"{run_dir / page.PAGE_NAME}\n"
    assert shown.err == (
        f"no browser here to open it with; open {run_dir / page.PAGE_NAME} yourself\n"
    )


@pytest.mark.parametrize("display", ["DISPLAY", "WAYLAND_DISPLAY"])
def test_report_open_uses_the_browser_when_there_is_a_display(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    display: str,
) -> None:  # fmt: skip
    import webbrowser

    opened: list[str] = []

    class Browser:
        def open(self, url: str) -> bool:
            opened.append(url)
            return True

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv(display, ":0")
    monkeypatch.setattr(webbrowser, "get", Browser)
    run_dir = _finished_run(tmp_path, _row("3.4.0.0"))
    assert cli.main(["report", str(run_dir), "--open"]) == 0
    assert opened == [(run_dir / "report.html").resolve().as_uri()]
    assert "no browser" not in capsys.readouterr().err

    def no_browser() -> Browser:
        raise webbrowser.Error("none")

    monkeypatch.setattr(webbrowser, "get", no_browser)
    assert cli.main(["report", str(run_dir), "--open"]) == 0
    assert "no browser here" in capsys.readouterr().err


def test_report_to_a_folder_it_cannot_write_exits_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from orchestration import page

    def refused(_run_dir: Path, _run: RunResult) -> Path:
        raise PermissionError(13, "Permission denied")

    run_dir = _finished_run(tmp_path, _row("3.4.0.0"))
    monkeypatch.setattr(page, "write_page", refused)
    assert cli.main(["report", str(run_dir), "--html"]) == 2
    assert capsys.readouterr().err == (
        f"error: cannot write {run_dir / 'report.html'}: Permission denied; pass a folder you "
        "may write to\n"
    )


def test_report_junit_writes_the_file_and_says_where(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = _finished_run(tmp_path, _row("3.4.0.0"))
    junit_file = tmp_path / "junit.xml"
    assert cli.main(["report", str(run_dir), "--junit", str(junit_file)]) == 0
    assert capsys.readouterr().err == f"JUnit: {junit_file}\n"
    assert "<testsuite" in junit_file.read_text()
    assert cli.main(["report", str(run_dir), "--expect", "3.4.0.0=churn"]) == 2
    assert "--expect only shapes the JUnit report: add --junit FILE" in capsys.readouterr().err
    expect = ["--junit", str(junit_file), "--expect", "3.4.0.0=churn"]
    assert cli.main(["report", str(run_dir), *expect]) == 0  # the run's own exit, not JUnit's
    assert 'failures="1"' in junit_file.read_text()


def test_a_results_or_junit_place_that_cannot_be_one_is_named_in_full(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prerequisites: list[bool],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    taken = tmp_path / "taken"
    taken.write_text("a file")
    stage = Stage(_written)
    monkeypatch.setattr(pipeline, "run_matrix", stage)
    assert cli.main(["run", "3.4.1.0", "--results", str(taken / "results")]) == 2
    assert capsys.readouterr().err == (
        f"error: --results {taken / 'results'}: {taken} is a file; pass a folder for the run "
        "folders (it is made when missing)\n"
    )
    junit_file = Path("/proc/junit.xml")  # /proc is a folder nobody can make files in
    assert _main(monkeypatch, tmp_path, stage, "run", "3.4.1.0", "--junit", str(junit_file)) == 2
    with pytest.raises(OSError) as refused:
        (junit_file.parent / ".kpm-probe").mkdir()
    assert capsys.readouterr().err == (
        f"error: --junit {junit_file}: cannot write there ({refused.value.strerror}); pass a "
        "folder you may write to\n"
    )
    assert stage.configs == [] and prerequisites == []


def test_a_junit_file_that_fails_to_write_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from orchestration import junit

    def denied(*_: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(junit, "write", denied)
    run_dir = _finished_run(tmp_path, _row("3.4.0.0"))
    junit_file = tmp_path / "junit.xml"
    assert cli.main(["report", str(run_dir), "--junit", str(junit_file)]) == 2
    assert capsys.readouterr().err == (
        f"error: cannot write {junit_file}: Permission denied; pass a folder you may write to\n"
    )


# --- compare, merge, clean, bisect, selftest and the ui path, Docker stubbed -----------------


def _two_runs(tmp_path: Path, **changes: object) -> tuple[Path, Path]:
    from dataclasses import replace

    from runs import sim_run, write_folder

    rows = sim_run().versions
    old = write_folder(tmp_path / "old", "old-run", rows)
    steady_341 = [
        replace(row, **changes) if (row.version, row.scenario) == ("3.4.3.1", "steady") else row  # type: ignore[arg-type]
        for row in rows
    ]
    return old, write_folder(tmp_path / "new", "new-run", steady_341)


def test_compare_exits_0_when_nothing_got_worse_and_1_on_a_regression(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    same_old, same_new = _two_runs(tmp_path / "same")
    assert cli.main(["compare", str(same_old), str(same_new)]) == 0
    assert "| 3.4.3.1 " in capsys.readouterr().out
    old, new = _two_runs(tmp_path / "worse", verdict="churn", new_calls_per_request=0.9)
    assert cli.main(["compare", str(old), str(new), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["regressions"] >= 1


def test_compare_thresholds_are_read_from_their_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from runs import sim_run

    row = next(r for r in sim_run().versions if (r.version, r.scenario) == ("3.4.3.1", "steady"))
    assert row.p95_ms is not None and row.new_calls_per_request is not None
    slower = row.p95_ms * 1.5
    old, new = _two_runs(tmp_path, p95_ms=slower)
    assert cli.main(["compare", str(old), str(new)]) == 1  # default: 20% is a regression
    capsys.readouterr()
    assert cli.main(["compare", str(old), str(new), "--threshold-p95", "60%"]) == 0
    capsys.readouterr()
    more = row.new_calls_per_request + 0.05
    old_n, new_n = _two_runs(tmp_path / "n", new_calls_per_request=more)
    assert cli.main(["compare", str(old_n), str(new_n), "--threshold-new", "0.01"]) == 1
    capsys.readouterr()
    assert cli.main(["compare", str(old_n), str(new_n), "--threshold-new", "0.1"]) == 0
    capsys.readouterr()
    assert cli.main(["compare", str(old), str(new), "--threshold-rss", "x"]) == 2
    assert "--threshold-rss" in capsys.readouterr().err


def test_compare_html_writes_the_page_or_exits_2_for_a_missing_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = _two_runs(tmp_path)
    page_file = tmp_path / "compare.html"
    assert cli.main(["compare", str(old), str(new), "--html", str(page_file)]) == 0
    assert capsys.readouterr().err == f"Report page: {page_file}\n"
    assert page_file.read_text().startswith("<!DOCTYPE html>")
    missing = tmp_path / "no" / "page.html"
    assert cli.main(["compare", str(old), str(new), "--html", str(missing)]) == 2
    assert capsys.readouterr().err == (
        f"error: --html {missing}: the folder {missing.parent} does not exist\n"
    )


def test_merge_prints_the_table_and_where_the_merged_run_went(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from runs import sim_run, write_folder

    rows = sim_run().versions
    one = write_folder(tmp_path / "one", "job-1", [r for r in rows if r.version == "3.4.0.0"])
    two = write_folder(tmp_path / "two", "job-2", [r for r in rows if r.version != "3.4.0.0"])
    monkeypatch.chdir(tmp_path)
    assert cli.main(["merge", str(one), str(two)]) == 0
    shown = capsys.readouterr()
    assert "| 3.4.0.0 " in shown.out and "| 3.7.1.0 " in shown.out
    (merged,) = [p for p in (tmp_path / "results").iterdir() if p.name != "latest"]
    assert shown.err == f"Merged 2 runs, {len(rows)} rows: {merged}\n"
    monkeypatch.setenv("KPM_RESULTS", str(tmp_path / "env"))
    assert cli.main(["merge", str(one), str(two)]) == 0
    assert (tmp_path / "env" / "latest").is_dir()
    capsys.readouterr()
    assert cli.main(["merge", str(one), str(two), "--results", str(tmp_path / "flag")]) == 0
    assert (tmp_path / "flag" / "latest").is_dir()


def test_merge_warns_of_conflicts_and_different_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from runs import sim_run, write_folder

    rows = [r for r in sim_run().versions if r.version == "3.4.0.0"]
    one = write_folder(tmp_path / "one", "job-1", rows)
    two = tmp_path / "two"
    write_folder(two, "job-2", rows)
    data = json.loads((two / "results.json").read_text())
    data["config"] = {**data["config"], "requests": 5000}
    (two / "results.json").write_text(json.dumps(data))
    assert cli.main(["merge", str(one), str(two), "--results", str(tmp_path / "m")]) == 0
    error = capsys.readouterr().err.splitlines()
    assert error[0].startswith("warning: measured by more than one source, both rows kept: ")
    assert "3.4.0.0" in error[0]
    assert error[1].startswith("warning: the sources ran with different settings: requests ")
    assert " vs " in error[1]


def _survey(*leftovers: object) -> object:
    from orchestration import clean

    return clean.Survey(tuple(leftovers), alive=1, elsewhere=2, unowned=0, kept=0)  # type: ignore[arg-type]


def _leftover(name: str) -> object:
    from orchestration import clean

    return clean.Leftover("container", name, name, "r1", "host:1:2")


@pytest.fixture
def docker_checked(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """`clean`'s checks of Docker, stubbed: which were asked for what."""
    from orchestration import engines, stack

    asked: list[object] = []
    monkeypatch.setattr(stack, "check_docker", lambda: asked.append("docker"))
    monkeypatch.setattr(engines, "check_engines", lambda hosts: asked.append(tuple(hosts)))
    return asked


def test_clean_with_nothing_left_says_so_and_exits_0(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    docker_checked: list[object],
) -> None:
    from orchestration import clean

    surveyed: list[object] = []

    def survey(engines: tuple[Engine, ...]) -> object:
        surveyed.append(tuple(engine.host for engine in engines))
        return _survey()

    monkeypatch.setattr(clean, "survey", survey)
    assert cli.main(["clean"]) == 0
    assert capsys.readouterr().out == (
        "nothing to remove (left alone: 1 of running runs, 2 of other hosts)\n"
    )
    assert docker_checked == ["docker"] and surveyed == [(None,)]
    assert cli.main(["clean", "--docker-host", "unix:///run/a.sock"]) == 0
    assert docker_checked == ["docker", ("unix:///run/a.sock",)]
    assert surveyed[-1] == ("unix:///run/a.sock",)


def test_clean_dry_run_lists_and_removes_nothing(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    docker_checked: list[object],
) -> None:
    from orchestration import clean

    monkeypatch.setattr(clean, "survey", lambda engines: _survey(_leftover("a"), _leftover("b")))
    monkeypatch.setattr(clean, "remove", lambda _l: pytest.fail("removed on a dry run"))
    assert cli.main(["clean", "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "would remove container a (run r1)",
        "would remove container b (run r1)",
        "2 containers of 1 dead run; left alone: 1 of running runs, 2 of other hosts",
    ]


def test_clean_exits_1_when_something_could_not_be_removed(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    docker_checked: list[object],
) -> None:
    from orchestration import clean

    a, b = _leftover("a"), _leftover("b")
    monkeypatch.setattr(clean, "survey", lambda engines: _survey(a, b))
    monkeypatch.setattr(clean, "remove", lambda _l: [(a, None), (b, "in use")])
    assert cli.main(["clean"]) == 1
    shown = capsys.readouterr()
    assert shown.out.splitlines() == [
        "removed container a (run r1)",
        "2 containers of 1 dead run: 1 removed; left alone: 1 of running runs, 2 of other hosts",
    ]
    assert shown.err == "could not remove container b (run r1): in use\n"
    monkeypatch.setattr(clean, "remove", lambda _l: [(a, None), (b, None)])
    assert cli.main(["clean"]) == 0
    assert "2 removed;" in capsys.readouterr().out


def test_the_ui_checks_its_port_first_and_runs_the_ui_pipeline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prerequisites: list[bool]
) -> None:
    from orchestration import load
    from orchestration.owner import OWNER_ENV

    ports: list[int] = []
    monkeypatch.setattr(load, "require_free_port", ports.append)
    monkeypatch.setattr(pipeline, "run_matrix", lambda *_a, **_k: pytest.fail("not the ui"))
    ui = Stage(lambda config: _written(config, _row("3.4.1.0")))
    monkeypatch.setattr(pipeline, "run_ui", ui)
    monkeypatch.setenv(OWNER_ENV, "before")  # restored after the test
    assert cli.main(["ui", "3.4.1.0", "--web-port", "9001", "--results", str(tmp_path)]) == 0
    assert ports == [9001] and len(ui.configs) == 1 and prerequisites == [False]
    assert os.environ[OWNER_ENV].count(":") >= 2  # HOST:PID:STARTED, for `clean`


def test_a_run_announces_each_row_as_it_comes(capsys: pytest.CaptureFixture[str]) -> None:
    from dataclasses import replace

    row = replace(_row("3.4.1.0", verdict="churn"), new_calls_per_request=0.91234)
    common.announce(row)
    common.announce(replace(row, simulated=False, plugin="python", new_calls_per_request=None))
    common.announce(_row("3.6.0.0", "error", "error"))
    common.announce(replace(row, findings=("small-sample", "stale-config")))
    common.announce(replace(row, plugin="js", scenario="reload"))  # two rows of 3.4.1.0 apart
    assert capsys.readouterr().err.splitlines() == [
        "==> 3.4.1.0 [simulated]: churn, New()/request 0.912",
        "==> 3.4.1.0 python: churn, New()/request -",
        "==> 3.6.0.0 [simulated]: error: boom",
        "==> 3.4.1.0 [simulated]: churn, New()/request 0.912 [small-sample] [stale-config]",
        "==> 3.4.1.0 js reload [simulated]: churn, New()/request 0.912",
    ]


def test_progress_lines_go_to_stderr_with_the_kpm_prefix(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging

    logger = logging.getLogger("orchestration")
    monkeypatch.setattr(logger, "handlers", [])
    monkeypatch.setattr(logger, "level", logging.NOTSET)
    cli._show_progress()
    logging.getLogger("orchestration.stack").info("building %s", "3.4.1.0")
    logging.getLogger("orchestration.stack").debug("not shown")
    assert capsys.readouterr().err == "kpm: building 3.4.1.0\n"


def test_a_second_signal_says_the_teardown_goes_on(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import signal

    with pytest.raises(Interrupted) as stopped:
        cli._stop_on_first_signal(signal.SIGTERM, None)
    assert stopped.value.exit_code == 143
    for number in (signal.SIGINT, signal.SIGTERM):
        assert signal.getsignal(number) is cli._already_stopping
    cli._already_stopping(signal.SIGINT, None)
    assert capsys.readouterr().err == (
        "SIGINT again: already stopping, the teardown goes on (a kill -9 would leave "
        "containers: then run `python -m orchestration clean`)\n"
    )
    with pytest.raises(KeyboardInterrupt):
        cli._stop_on_first_signal(signal.SIGINT, None)


def test_closing_the_terminal_stops_the_run_like_sigterm() -> None:
    import signal

    with pytest.raises(Interrupted) as stopped:
        cli._stop_on_first_signal(signal.SIGHUP, None)
    assert (stopped.value.exit_code, str(stopped.value)) == (
        129,
        "interrupted by SIGHUP (the terminal closed)",
    )
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        assert signal.getsignal(number) is cli._already_stopping


class _GoneTerminal:
    """What stdout and stderr are once the terminal window closed: every write fails (EIO)."""

    writes = 0

    def write(self, text: str) -> int:
        _GoneTerminal.writes += 1
        raise OSError(errno.EIO, "Input/output error")

    def flush(self) -> None:
        raise OSError(errno.EIO, "Input/output error")

    def fileno(self) -> int:
        raise io.UnsupportedOperation("fileno")


def test_a_terminal_that_went_away_changes_nothing_in_the_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prerequisites: list[bool]
) -> None:
    """Found by closing a terminal during a run: the next print raised EIO in a worker thread,
    which made every row an error row (and, with SIGHUP unhandled, left the stack up)."""
    stage = Stage(lambda c: _written(c, _row("3.4.0.0")))
    monkeypatch.setattr(sys, "stdout", _GoneTerminal())
    monkeypatch.setattr(sys, "stderr", _GoneTerminal())
    _GoneTerminal.writes = 0
    assert _main(monkeypatch, tmp_path, stage, "run", "3.4.0.0") == 0
    assert len(stage.configs) == 1
    assert _GoneTerminal.writes == 2  # one on each: after that, nothing is written to either


def test_output_to_a_reader_that_quit_goes_to_dev_null_from_then_on() -> None:
    reader, writer = os.pipe()
    os.close(reader)
    stream = cli._OutputThatMayGo(os.fdopen(writer, "w", buffering=1))
    assert stream.write("lost\n") == 5  # EPIPE (SIGPIPE is ignored by Python)
    stream.flush()
    assert os.write(writer, b"x") == 1  # the descriptor now leads to /dev/null
    os.close(writer)


class _GoneStream:
    """A stream whose writes fail and whose descriptor cannot be had: no `fileno` at all
    (AttributeError), a closed file's (ValueError) or one the process does not hold (OSError)."""

    def __init__(self, fileno: Callable[[], int] | None) -> None:
        if fileno is not None:
            self.fileno = fileno

    def write(self, text: str) -> int:
        raise OSError(errno.EIO, "Input/output error")


def _closed() -> int:
    raise ValueError("I/O operation on closed file")


@pytest.mark.parametrize("fileno", [None, _closed, lambda: -1], ids=["none", "closed", "bad"])
def test_output_that_went_keeps_quiet_whatever_the_stream(
    fileno: Callable[[], int] | None,
) -> None:
    stream = cli._OutputThatMayGo(_GoneStream(fileno))
    assert stream.write("lost\n") == 5
    assert stream.write("and gone\n") == 9


class _Flushed(io.StringIO):
    flushes = 0

    def flush(self) -> None:
        self.flushes += 1


def test_output_that_may_go_is_the_stream_for_everything_else() -> None:
    inner = _Flushed()
    stream = cli._OutputThatMayGo(inner)
    stream.write("kept")
    stream.flush()
    assert inner.flushes == 1
    assert stream.getvalue() == "kept" and stream.isatty() is False


def test_main_keeps_an_ignored_signal_ignored(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prerequisites: list[bool]
) -> None:
    """nohup and `&` in a non-interactive shell start the process ignoring SIGINT."""
    import signal

    seen: dict[int, object] = {}

    def stage(config: RunConfig) -> RunResult:
        seen.update({n: signal.getsignal(n) for n in (signal.SIGINT, signal.SIGTERM)})
        return _written(config, _row("3.4.0.0"))

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    assert _main(monkeypatch, tmp_path, Stage(stage), "run", "3.4.0.0") == 0
    assert seen == {signal.SIGINT: signal.SIG_IGN, signal.SIGTERM: cli._stop_on_first_signal}


def test_the_prerequisites_are_docker_the_engines_and_offline_the_host_tools(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from orchestration import clean, engines, sim, stack

    asked: list[object] = []
    monkeypatch.setattr(stack, "check_docker", lambda daemon: asked.append(("docker", daemon)))
    monkeypatch.setattr(engines, "check_engines", lambda hosts: asked.append(("engines", hosts)))
    monkeypatch.setattr(sim, "check_host_tools", lambda: asked.append("host tools"))
    surveyed: list[object] = []

    def survey(**how: Any) -> object:
        surveyed.append({**how, "engines": tuple(engine.host for engine in how["engines"])})
        return _survey()

    monkeypatch.setattr(clean, "survey", survey)
    common.check_prerequisites(False)
    assert sorted(map(str, asked)) == ["('docker', True)", "('engines', ())"]
    assert surveyed == [{"with_processes": False, "with_images": False, "engines": (None,)}]
    asked.clear()
    common.check_prerequisites(True, ("unix:///run/a.sock",))
    assert sorted(map(str, asked)) == [
        "('docker', False)", "('engines', ('unix:///run/a.sock',))", "host tools",
    ]  # fmt: skip
    assert surveyed[-1] == {
        "with_processes": False, "with_images": False, "engines": ("unix:///run/a.sock",),
    }  # fmt: skip
    assert capsys.readouterr().err == ""


def test_leftovers_of_killed_runs_are_one_warning_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from orchestration import clean
    from orchestration.errors import EnvironmentProblem

    monkeypatch.setattr(clean, "survey", lambda **_how: _survey(_leftover("a")))
    common._warn_of_leftovers(("unix:///run/a.sock", "unix:///run/b.sock"))
    assert capsys.readouterr().err == (
        "warning: 1 container of 1 dead run are still in Docker (a run that was killed); remove "
        "them with: python -m orchestration clean --docker-host unix:///run/a.sock "
        "--docker-host unix:///run/b.sock\n"
    )

    def no_docker(**_how: object) -> object:
        raise EnvironmentProblem("no docker")

    monkeypatch.setattr(clean, "survey", no_docker)
    common._warn_of_leftovers()
    monkeypatch.setattr(clean, "survey", lambda **_how: _survey())
    common._warn_of_leftovers()
    assert capsys.readouterr().err == ""


def test_a_failed_prerequisite_is_exit_2_and_docker_is_named_first(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from orchestration import clean, engines, sim, stack
    from orchestration.errors import EnvironmentProblem

    def docker_down(daemon: bool) -> None:
        raise EnvironmentProblem("Docker is not running")

    def no_go() -> None:
        raise EnvironmentProblem("no Go here")

    monkeypatch.setattr(stack, "check_docker", docker_down)
    monkeypatch.setattr(engines, "check_engines", lambda hosts: None)
    monkeypatch.setattr(sim, "check_host_tools", no_go)
    monkeypatch.setattr(clean, "survey", lambda **_how: _survey())
    stage = Stage(_written)
    monkeypatch.setattr(pipeline, "run_matrix", stage)
    assert cli.main(["run", "3.4.1.0", "--sim", "--results", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "error: Docker is not running\n"
    assert stage.configs == []


def _verdict_by_release(config: RunConfig) -> RunResult:
    """Each version reads churn from 3.4.1.0 on, stable before (as the changelog has it)."""
    (target,) = config.targets
    churns = target.label >= "3.4.1.0"
    return _written(config, _row(target.label, verdict="churn" if churns else "stable"))


def test_bisect_names_the_first_version_that_reads_otherwise(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prerequisites: list[bool],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from orchestration import bisect

    stage = Stage(_verdict_by_release)
    args = ["bisect", "3.4.0.0", "3.4.2.1", "--sim", "--requests", "200"]
    assert _main(monkeypatch, tmp_path, stage, *args) == 0
    candidates = bisect.between("3.4.0.0", "3.4.2.1")
    shown = capsys.readouterr()
    around = bisect.changelog_around(candidates[1], candidates)
    assert shown.out.splitlines()[-1 - len(around) :] == [
        f"first version after 3.4.0.0 that reads otherwise than its stable: 3.4.1.0, found in "
        f"{len(stage.configs)} runs (binary search, which takes the verdict to change once in "
        "the range); ran: 3.4.0.0 stable, 3.4.2.1 churn, 3.4.1.1 churn, 3.4.1.0 churn",
        *(f"  {line}" for line in around),
    ]
    labels = " ".join(t.label for t in candidates)
    assert f"bisect: {len(candidates)} versions in order: {labels}\n" in shown.err
    assert "bisect: 3.4.0.0 reads stable (good end)\n" in shown.err
    assert "bisect: 3.4.2.1 reads churn (bad end)\n" in shown.err
    assert prerequisites == [True]
    steps = stage.configs
    assert [c.targets[0].label for c in steps] == ["3.4.0.0", "3.4.2.1", "3.4.1.1", "3.4.1.0"]
    assert len({c.run_id for c in steps}) == len(steps)  # each step is a run of its own
    assert all(c.requests == 200 and c.sim for c in steps)
    for config in steps:
        assert (config.run_dir / "summary.md").is_file()  # finished like a `run`


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bisect", "3.4.0.0"], "bisect needs GOOD and BAD, e.g. bisect 3.4.0.0 3.4.2.1"),
        (["bisect"], "bisect needs GOOD and BAD"),
        (
            ["bisect", "3.4.0.0", "--image", "kong:3.6.1"],
            "bisect takes GOOD BAD versions, or --image tags in order, not both",
        ),
        (
            ["bisect", "3.4.0.0", "3.4.2.1", "--scenario", "steady", "--scenario", "idle"],
            "bisect compares one scenario's verdict: name at most one --scenario",
        ),
    ],
)
def test_bisect_arguments_exit_2_before_any_docker_work(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prerequisites: list[bool],
    capsys: pytest.CaptureFixture[str], args: list[str], message: str,
) -> None:  # fmt: skip
    stage = Stage(_written)
    assert _main(monkeypatch, tmp_path, stage, *args) == 2
    assert capsys.readouterr().err.startswith(f"error: {message}")
    assert prerequisites == [] and stage.configs == []


def test_bisect_over_image_tags_takes_them_in_the_order_given(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prerequisites: list[bool],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    def by_image(config: RunConfig) -> RunResult:
        (target,) = config.targets
        verdict = "churn" if target.image.endswith("b") else "stable"
        return _written(config, _row(target.label, verdict=verdict))

    stage = Stage(by_image)
    images = ["--image", "example/kong:a", "--image", "example/kong:b"]
    assert _main(monkeypatch, tmp_path, stage, "bisect", *images) == 0
    assert [c.targets[0].image for c in stage.configs] == ["example/kong:a", "example/kong:b"]
    assert "otherwise than its stable: example/kong:b, found in 2 runs" in capsys.readouterr().out


def test_bisect_with_ends_that_agree_exits_1_with_both_verdicts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prerequisites: list[bool],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    stage = Stage(lambda config: _written(config, _row(config.targets[0].label)))  # all stable
    assert _main(monkeypatch, tmp_path, stage, "bisect", "3.4.0.0", "3.4.2.1", "--sim") == 1
    shown = capsys.readouterr()
    assert [c.targets[0].label for c in stage.configs] == ["3.4.0.0", "3.4.2.1"]
    assert shown.err.endswith(
        "error: bisect has no answer: 3.4.0.0 reads stable and 3.4.2.1 reads stable too; there "
        "is no change between the ends to find. Name as BAD a version that reads otherwise than "
        "GOOD\n"
    )
    assert "first version" not in shown.out


def _selftest_rows(wrong: str | None = None) -> Callable[..., RunResult]:
    """The selftest's run as the pipeline would write it; `wrong`'s go row reads stable."""
    from dataclasses import replace

    from test_selftest import _good_rows

    def run(config: RunConfig, **_: object) -> RunResult:
        rows = [
            replace(row, verdict="stable") if (row.version, row.plugin) == (wrong, "go") else row
            for row in _good_rows()
        ]
        return _written(config, *rows)

    return run


def test_selftest_passes_a_good_run_and_plans_every_built_in(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prerequisites: list[bool],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from orchestration import selftest

    jobs: list[tuple[str, str]] = []
    good = _selftest_rows()
    configs: list[RunConfig] = []

    def run_matrix(config: RunConfig, **kwargs: object) -> RunResult:
        configs.append(config)
        jobs.extend((j.target.label, j.plugin.label) for j in kwargs["jobs"])  # type: ignore[attr-defined]
        return good(config)

    checked: list[tuple[object, ...]] = []
    monkeypatch.setattr(pipeline, "run_matrix", run_matrix)
    monkeypatch.setattr(common, "check_prerequisites", lambda *given: checked.append(given))
    assert cli.main(["selftest", "--results", str(tmp_path)]) == 0
    assert jobs == list(selftest.planned())
    assert checked == [(True, ())]  # offline, always; the default engine
    shown = capsys.readouterr()
    run = run_files.load_run(configs[0].run_dir)
    assert shown.out.startswith(report.render_summary(run, "compact") + "\n")
    checks = selftest.evaluate(run, 1000)
    table = [[c.strip() for c in line.split("|")[1:-1]] for line in shown.out.splitlines()]
    assert table[-len(checks) - 2] == ["version", "plugin", "check", "result", "detail"]
    assert table[-len(checks) :] == [
        [c.version, c.plugin, c.what, "PASS", c.detail] for c in checks
    ]
    assert shown.err.endswith(f"selftest: {len(checks)} passed, 0 failed\n")


def test_selftest_fails_a_wrong_verdict(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prerequisites: list[bool],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setattr(pipeline, "run_matrix", _selftest_rows(wrong="3.4.1.0"))
    assert cli.main(["selftest", "--results", str(tmp_path)]) == 1
    shown = capsys.readouterr()
    failed = [line for line in shown.out.splitlines() if "| FAIL " in line]
    assert failed and all(line.startswith("| 3.4.1.0 ") for line in failed)
    assert shown.err.endswith(f" passed, {len(failed)} failed\n")


def test_bisect_takes_the_scenario_options_of_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prerequisites: list[bool]
) -> None:
    """README: every option of `run` applies to bisect; --scenario was refused as unknown."""
    stage = Stage(_verdict_by_release)
    args = ["bisect", "3.4.0.0", "3.4.2.1", "--scenario", "idle", "--idle", "65"]
    assert _main(monkeypatch, tmp_path, stage, *args) == 0
    assert {(c.scenarios, c.idle) for c in stage.configs} == {(("idle",), 65.0)}


# --- what the first mutation run of cli.py found unpinned --------------------------------


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--threshold-new", "5%", "--threshold-new takes a number >= 0 (e.g. 0.05), got '5%'"),
        ("--threshold-p95", "-1", "--threshold-p95 takes a number >= 0 (e.g. 0.25 or 25%)"),
        ("--threshold-rss", "x", "--threshold-rss takes a number >= 0 (e.g. 0.25 or 25%)"),
    ],
)
def test_compare_names_the_threshold_it_cannot_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, message: str
) -> None:
    """--threshold-new is absolute (no %); the other two are relative and take 25% too."""
    old, new = _two_runs(tmp_path)
    assert cli.main(["compare", str(old), str(new), f"{flag}={value}"]) == 2
    assert capsys.readouterr().err.startswith(f"error: {message}")
    assert cli.main(["compare", str(old), str(new), "--threshold-rss=30%"]) == 0


def test_compare_names_the_side_that_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = _two_runs(tmp_path)
    assert cli.main(["compare", str(tmp_path / "gone"), str(new)]) == 2
    assert capsys.readouterr().err.startswith(f"error: OLD {tmp_path / 'gone'} does not exist")
    assert cli.main(["compare", str(old), str(tmp_path / "gone")]) == 2
    assert capsys.readouterr().err.startswith(f"error: NEW {tmp_path / 'gone'} does not exist")


def test_compare_prints_the_markdown_once_and_an_unwritable_page_exits_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from orchestration import compare

    old, new = _two_runs(tmp_path)
    assert cli.main(["compare", str(old), str(new)]) == 0
    out = capsys.readouterr().out
    comparison = compare.compare(
        compare.load_side(old, "OLD"), compare.load_side(new, "NEW"), compare.Thresholds(),
        old, new,
    )  # fmt: skip
    assert out == compare.render_markdown(comparison)  # no blank line added after it

    def refused(_path: Path, _text: str) -> None:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(run_files, "write_atomic", refused)
    page_file = tmp_path / "page.html"
    assert cli.main(["compare", str(old), str(new), "--html", str(page_file)]) == 2
    assert capsys.readouterr().err == (
        f"error: cannot write {page_file}: Read-only file system; pass a folder you may write to\n"
    )


def test_json_output_is_indented_for_people(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["versions", "--json"]) == 0
    assert capsys.readouterr().out.startswith('[\n  {\n    "version": ')
    assert cli.main(["collect", str(FACTS_LOG), "--json"]) == 0
    assert capsys.readouterr().out.startswith('{\n  "')


def test_collect_reads_every_run_folder_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for run in ("a", "b"):
        (tmp_path / run / "3.4.0.0").mkdir(parents=True)
        (tmp_path / run / "3.4.0.0" / "kong.log").write_text(FACTS_LOG.read_text())
    assert cli.main(["collect", str(tmp_path / "a"), str(tmp_path / "b"), "--json"]) == 0
    assert sorted(json.loads(capsys.readouterr().out)) == [
        str(tmp_path / run / "3.4.0.0" / "kong.log") for run in ("a", "b")
    ]


def test_clean_removes_what_it_surveyed_and_counts_each_failure(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    docker_checked: list[object],
) -> None:
    from orchestration import clean

    found = (_leftover("a"), _leftover("b"), _leftover("c"))
    asked: list[object] = []

    def remove(leftovers: object) -> list[tuple[object, str | None]]:
        asked.append(leftovers)
        return [(found[0], "in use"), (found[1], "gone"), (found[2], None)]

    monkeypatch.setattr(clean, "survey", lambda engines: _survey(*found))
    monkeypatch.setattr(clean, "remove", remove)
    assert cli.main(["clean"]) == 1
    assert asked == [found]
    assert "3 containers of 1 dead run: 1 removed;" in capsys.readouterr().out


def test_a_headless_linux_never_starts_a_browser(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import webbrowser

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(webbrowser, "get", lambda: pytest.fail("a console browser would start"))
    assert report_command.open_in_browser(tmp_path / "report.html") is False


def test_selftest_announces_rows_and_counts_what_passed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prerequisites: list[bool],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from orchestration import selftest

    wrong = _selftest_rows(wrong="3.4.1.0")

    def run_matrix(config: RunConfig, **kwargs: object) -> RunResult:
        run = wrong(config)
        announce = kwargs["announce"]
        for row in run.versions:
            announce(row)  # type: ignore[operator]
        return run

    monkeypatch.setattr(pipeline, "run_matrix", run_matrix)
    assert cli.main(["selftest", "--results", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "==> 3.4.1.0 [simulated]: stable, New()/request 1.800\n" in err
    run = run_files.load_run(next(p for p in tmp_path.iterdir() if p.name != "latest"))
    checks = selftest.evaluate(run, 1000)
    failed = sum(not c.passed for c in checks)
    assert err.endswith(f"selftest: {len(checks) - failed} passed, {failed} failed\n")


def test_a_run_says_where_its_results_are(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prerequisites: list[bool],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    stage = Stage(lambda config: _written(config, _row("3.4.0.0")))
    assert _main(monkeypatch, tmp_path, stage, "run", "3.4.0.0") == 0
    shown = capsys.readouterr()
    assert f"Results: {stage.configs[0].run_dir}\n" in shown.err
    assert "Results:" not in shown.out


def test_a_run_prints_the_compact_table_and_the_full_one_with_wide(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prerequisites: list[bool],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    cases: tuple[tuple[tuple[str, ...], report.ColumnSet], ...] = (
        ((), "compact"),
        (("--wide",), "full"),
    )
    for args, columns in cases:
        stage = Stage(lambda config: _written(config, _row("3.4.0.0")))
        assert _main(monkeypatch, tmp_path, stage, "run", "3.4.0.0", *args) == 0
        run = run_files.load_run(stage.configs[0].run_dir)
        assert capsys.readouterr().out == report.render_summary(run, columns) + "\n", columns
    assert report.render_summary(run, "compact") != report.render_summary(run, "full")


def test_bisect_announces_each_step_and_checks_the_engines_it_was_given(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engines: list[object] = []
    monkeypatch.setattr(common, "check_prerequisites", lambda sim, hosts=(): engines.append(hosts))

    def announced(config: RunConfig, **kwargs: object) -> RunResult:
        run = _verdict_by_release(config)
        kwargs["announce"](run.versions[0])  # type: ignore[operator]
        return run

    monkeypatch.setattr(pipeline, "run_matrix", announced)
    args = ["bisect", "3.4.0.0", "3.4.2.1", "--docker-host", "unix:///run/a.sock"]
    assert cli.main([*args, "--results", str(tmp_path)]) == 0
    assert engines == [("unix:///run/a.sock",)]
    assert "==> 3.4.0.0 [simulated]: stable, New()/request -\n" in capsys.readouterr().err


def test_bisect_without_bad_says_both_ways_to_call_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prerequisites: list[bool],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    assert _main(monkeypatch, tmp_path, Stage(_written), "bisect", "3.4.0.0") == 2
    assert capsys.readouterr().err == (
        "error: bisect needs GOOD and BAD, e.g. bisect 3.4.0.0 3.4.2.1 (or --image tags in "
        "order, the first good, the last bad)\n"
    )


def test_merge_warnings_list_every_conflict_and_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from runs import sim_run, write_folder

    rows = [r for r in sim_run().versions if r.version in {"3.4.0.0", "3.6.0.0"}]
    one = write_folder(tmp_path / "one", "job-1", rows)
    two = write_folder(tmp_path / "two", "job-2", rows)
    data = json.loads((two / "results.json").read_text())
    requests, users = data["config"]["requests"], data["config"]["users"]
    data["config"] = {**data["config"], "requests": 5000, "users": 7}
    (two / "results.json").write_text(json.dumps(data))
    assert cli.main(["merge", str(one), str(two), "--results", str(tmp_path / "m")]) == 0
    error = capsys.readouterr().err.splitlines()
    labels = ", ".join(sorted(report.short_label(row) for row in rows))
    assert error[0] == f"warning: measured by more than one source, both rows kept: {labels}"
    assert error[1] == (
        f"warning: the sources ran with different settings: requests {requests} vs 5000; "
        f"users {users} vs 7"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["ui", "3.4.1.0", "--locust-workers", "2"],
            "the web UI runs one Locust process: --locust-workers and --locust-remote-workers "
            "are for run and matrix",
        ),
        (
            ["run", "3.4.1.0", "--locust-workers", "2", "--locust-remote-workers", "2"],
            "--locust-workers starts workers here, --locust-remote-workers waits for workers "
            "started elsewhere: choose one",
        ),
        (
            ["run", "3.4.1.0", "--locust-remote-workers", "1", "--parallel", "2"],
            "--locust-remote-workers serves one version at a time (each version has a master "
            "of its own): leave out --parallel",
        ),
        (
            ["run", "3.4.1.0", "--locust-workers", "2", "--locust-master-port", "5557",
             "--parallel", "2"],
            "--locust-master-port names one port: leave out --parallel, or the port",
        ),
        (
            ["run", "3.4.1.0", "--expect", "3.4.1.0=churn"],
            "--expect only shapes the JUnit report: add --junit FILE",
        ),
    ],
)  # fmt: skip
def test_the_rules_between_options_say_what_to_do_in_full(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prerequisites: list[bool],
    capsys: pytest.CaptureFixture[str], args: list[str], message: str,
) -> None:  # fmt: skip
    monkeypatch.setattr("orchestration.load.require_free_port", lambda _port: None)
    assert _main(monkeypatch, tmp_path, Stage(_written), *args) == 2
    assert capsys.readouterr().err == f"error: {message}\n"


def test_a_run_announces_rows_checks_its_engines_and_writes_junit_even_when_interrupted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engines: list[object] = []
    monkeypatch.setattr(common, "check_prerequisites", lambda sim, hosts=(): engines.append(hosts))

    def announced(config: RunConfig, **kwargs: object) -> RunResult:
        run = _written(config, _row("3.4.1.0", verdict="churn"))
        kwargs["announce"](run.versions[0])  # type: ignore[operator]
        return run

    junit_file = tmp_path / "junit.xml"
    monkeypatch.setattr(pipeline, "run_matrix", announced)
    args = ["run", "3.4.1.0", "--docker-host", "unix:///run/a.sock", "--junit", str(junit_file)]
    assert cli.main([*args, "--expect", "3.4.1.0=stable", "--results", str(tmp_path)]) == 0
    assert engines == [("unix:///run/a.sock",)]
    err = capsys.readouterr().err
    assert "==> 3.4.1.0 [simulated]: churn, New()/request -\n" in err
    assert f"JUnit: {junit_file}\n" in err
    assert 'failures="1"' in junit_file.read_text()  # --expect reached the report

    def interrupted(config: RunConfig, **_: object) -> RunResult:
        _written(config, _row("3.4.1.0", "interrupted", "interrupted"))
        raise Interrupted(15, "interrupted by SIGTERM")

    junit_file.unlink()
    monkeypatch.setattr(pipeline, "run_matrix", interrupted)
    assert cli.main([*args, "--results", str(tmp_path)]) == 143
    assert "3.4.1.0" in junit_file.read_text()
    assert cli.main([*args, "--expect", "9.9.9.9=churn", "--results", str(tmp_path)]) == 2
    assert "(it has: 3.4.1.0)" in capsys.readouterr().err


def test_the_built_ins_take_every_scenario_and_workers_are_held_to_the_users_given(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    scenarios = ["--scenario", "reload", "--scenario", "kill-server", "--scenario", "overhead"]
    go = _config(monkeypatch, tmp_path, "3.4.1.0", "--plugin", "go", *scenarios)
    assert go.scenarios == ("reload", "kill-server", "overhead")
    python = _config(monkeypatch, tmp_path, "3.4.1.0", "--plugin", "python", *scenarios[:2])
    assert python.plugins == ("python",)
    workers = _config(monkeypatch, tmp_path, "3.4.1.0", "--locust-workers", "60", "--users", "60")
    assert (workers.locust_workers, workers.users) == (60, 60)


def test_a_plugin_config_that_is_not_an_object_says_what_it_got(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prerequisites: list[bool],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    assert (
        _main(monkeypatch, tmp_path, Stage(_written), "run", "3.4.1.0", "--plugin-config", "[1]")
        == 2
    )
    assert capsys.readouterr().err == (
        "error: --plugin-config must be a JSON object (the plugin's config fields), got list: [1]\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--scenario", "nope"],
            "unknown scenario 'nope'; choose from: steady, reload, kill-server, idle, workers, "
            "overhead, soak (repeat --scenario for several)",
        ),
        (
            ["--scenario", "idle", "--scenario", "soak", "--scenario", "idle"],
            "a scenario is named twice: idle soak idle",
        ),
        (
            ["--plugin", "js", "--scenario", "kill-server"],
            "--scenario kill-server cannot measure the plugin 'js': it needs the server's process "
            "name, which is the plugin's only for Go. Use --scenario steady, idle, workers or "
            "soak with it (or a built-in Go plugin for this scenario)",
        ),
    ],
)
def test_scenario_refusals_in_full(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prerequisites: list[bool],
    capsys: pytest.CaptureFixture[str], args: list[str], message: str,
) -> None:  # fmt: skip
    assert _main(monkeypatch, tmp_path, Stage(_written), "run", "3.4.1.0", *args) == 2
    assert capsys.readouterr().err == f"error: {message}\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["run", "3.4.1.0", "3.6.0.0", "3.4.1.0"],
            "a version is named twice: 3.4.1.0 3.6.0.0 3.4.1.0",
        ),
        (["ui", "3.4.1.0", "3.6.0.0"], "ui takes exactly one version (or one --image)"),
    ],
)
def test_version_refusals_in_full(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prerequisites: list[bool],
    capsys: pytest.CaptureFixture[str], args: list[str], message: str,
) -> None:  # fmt: skip
    assert _main(monkeypatch, tmp_path, Stage(_written), *args) == 2
    assert capsys.readouterr().err == f"error: {message}\n"
