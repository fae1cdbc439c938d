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
    "--ready-timeout": ("ready_timeout_s", "31.5", 31.5, 240.0),
    "--load-timeout": ("load_timeout_s", "61", 61.0, 600.0),
    "--parallel": ("parallel", "2", 2, 1),
    "--changes": ("changes", "5", 5, 3),
    "--idle": ("idle_s", "0.5", 0.5, 75.0),
    "--duration": ("duration_s", "9", 9.0, 600.0),
    "--locust-workers": ("locust_workers", "2", 2, 0),
    "--locust-master-port": ("locust_master_port", "5557", 5557, 0),
    "--locust-master-bind": ("locust_master_bind", "0.0.0.0", "0.0.0.0", "127.0.0.1"),
    "--go-image": ("go_image", "golang:1.23", "golang:1.23", "golang:1.22"),
}


def _config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *args: str, command: str = "run"
) -> RunConfig:
    stage = Stage(_written)
    monkeypatch.setattr(cli, "_check_prerequisites", lambda *_: None)
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
    monkeypatch.setattr(cli, "_check_prerequisites", lambda *_: None)
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
    monkeypatch.setattr(cli, "_check_prerequisites", lambda *_: None)
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
        (["run", "3.4.1.0", "--idle", "-1"], "--idle must be between 0 and"),
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
