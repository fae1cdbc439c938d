from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path

import pytest

from orchestration.config import RunConfig, new_run_id, option_named
from orchestration.errors import UsageError
from orchestration.options import RUN_COMMANDS, Bound, Option, option, options_of
from orchestration.versions import target_for_version


def resolve(name: str, flag: str | None, environ: dict[str, str] | None = None) -> object:
    """An option's value as the CLI takes it: the flag's text, else KPM_<OPTION>, else the
    default."""
    return option_named(name).value(flag, environ or {})


def test_a_check_handed_in_from_above_runs_on_every_value_and_is_named_like_its_own() -> None:
    """--plugin's check lives above the configuration (it needs the plugin kinds): handed in, it
    sees the flag's, the variable's and the default's value, and its failure names the variable
    the value came from."""
    seen: list[object] = []

    def resolving(names: tuple[str, ...]) -> str:
        seen.append(names)
        if "bad" in names:
            raise UsageError("no such plugin")
        return "resolved"

    plugin = option_named("plugin")
    assert plugin.value(["js"], {}, resolving) == "resolved"
    assert plugin.value(None, {"KPM_PLUGIN": "python js"}, resolving) == "resolved"
    assert plugin.value(None, {}, resolving) == "resolved"
    assert seen == [("js",), ("python", "js"), ("go",)]
    with pytest.raises(UsageError, match=r"^KPM_PLUGIN='bad': no such plugin$"):
        plugin.value(None, {"KPM_PLUGIN": "bad"}, resolving)
    assert plugin.value(None, {"KPM_PLUGIN": "bad"}) == ("bad",)  # nothing handed in


def test_flag_beats_environment_beats_default() -> None:
    env = {"KPM_REQUESTS": "200"}
    assert resolve("requests", "50", env) == 50
    assert resolve("requests", None, env) == 200
    assert resolve("requests", None, {}) == 1000


@pytest.mark.parametrize(
    ("option", "value"),
    [("requests", 0), ("requests", -5), ("users", 0), ("ready_timeout", 0.0), ("workers", 65)],
)
def test_out_of_range_names_the_option_and_range(option: str, value: float) -> None:
    with pytest.raises(UsageError) as raised:
        resolve(option, str(value))
    assert "--" + option.replace("_", "-") in str(raised.value)
    assert "between" in str(raised.value)


def test_environment_is_checked_too() -> None:
    with pytest.raises(UsageError, match="--users"):
        resolve("users", None, {"KPM_USERS": "abc"})


def test_not_a_number() -> None:
    with pytest.raises(UsageError, match="--requests takes a number between 1 and"):
        resolve("requests", "abc")


def test_run_ids_are_unique_and_sortable() -> None:
    ids = {new_run_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{6}", i) for i in ids), ids


@pytest.fixture
def _five_hours_west(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with monkeypatch.context() as patch:
        patch.setenv("TZ", "EST+05")  # POSIX form: needs no time zone database
        time.tzset()
        yield
    time.tzset()


@pytest.mark.usefixtures("_five_hours_west")
def test_run_ids_are_in_utc_whatever_the_machines_zone() -> None:
    before = time.strftime("%Y%m%d-%H%M", time.gmtime())
    run_id = new_run_id()
    assert run_id[: len(before)] in {before, time.strftime("%Y%m%d-%H%M", time.gmtime())}


def test_bounds_include_both_ends() -> None:
    assert resolve("workers", "64") == 64
    assert resolve("workers", "1") == 1
    assert resolve("spawn_rate", "0.1") == 0.1


@pytest.mark.parametrize(
    ("option", "raw", "kind", "message"),
    [
        ("spawn_rate", "0.05", float, "--spawn-rate must be between 0.1 and 10000, got 0.05"),
        ("workers", "65", int, "--workers must be between 1 and 64, got 65"),
        ("ready_timeout", "0", float, "--ready-timeout must be between 1 and 3600, got 0"),
    ],
)
def test_range_errors_print_numbers_as_written(
    option: str, raw: str, kind: type[float], message: str
) -> None:
    assert option_named(option).kind == kind.__name__
    with pytest.raises(UsageError) as raised:
        resolve(option, raw)
    assert str(raised.value) == message


def test_config_json_has_paths_as_text_and_targets_as_objects(tmp_path: Path) -> None:
    config = RunConfig("r", (target_for_version("3.4.1.0"),), tmp_path, repo_root=tmp_path / "repo")
    data = json.loads(json.dumps(config.to_dict()))
    assert set(data) == {field.name for field in fields(RunConfig)}
    assert data["results_root"] == str(tmp_path)
    assert data["repo_root"] == str(tmp_path / "repo")
    assert data["targets"] == [
        {
            "label": "3.4.1.0",
            "image": "kong/kong-gateway:3.4.1.0",
            "expected": "affected",
            "source": target_for_version("3.4.1.0").source,
            "version": "3.4.1.0",
            "alias": None,
        }
    ]
    assert data["requests"] == 1000


def test_an_idle_gap_within_go_pdks_expiry_is_refused_with_the_reason() -> None:
    from orchestration.config import GO_PDK_EXPIRY_S

    assert resolve("idle", str(GO_PDK_EXPIRY_S + 1)) == GO_PDK_EXPIRY_S + 1
    with pytest.raises(UsageError) as refused:
        resolve("idle", "5")
    assert str(refused.value) == (
        "--idle must be between 61 and 86400, got 5 (the idle scenario measures a gap longer "
        "than go-pdk's 60 s instance expiry; a shorter one would show nothing it is for)"
    )
    bound = option_named("requests").bound
    assert bound is not None and bound.why == ""  # plain ranges say no more


# --- orchestration/options.py on its own: how a dataclass's fields become options -------------
# config.py calls `option` and `options_of` while it is imported, where mutmut can neither switch
# a mutant on nor see it; these call them on a dataclass of their own.


@dataclass(frozen=True)
class _Settings:
    requests: int = field(default=1000, metadata=option("requests per version", bound=Bound(1, 9)))
    idle: float = field(default=75.0, metadata=option("idle seconds"))
    keep: bool = field(default=False, metadata=option("keep the stack"))
    go_image: str = field(default="golang:1.22", metadata=option("Go image", metavar="IMAGE"))
    results_root: Path = field(
        default=Path("results"), metadata=option("the results", name="results")
    )
    scenarios: tuple[str, ...] = field(
        default=("steady",), metadata=option("a scenario", name="scenario", commands={"run"})
    )
    plugin_config: str = field(default="{}", metadata=option("a JSON object", kind="path"))
    run_id: str = ""  # no metadata: not an option


def test_option_is_the_fields_metadata_with_its_help_and_declarations() -> None:
    bound = Bound(1, 2)
    assert option("how many", bound=bound, metavar="N") == {
        "option": {"help": "how many", "bound": bound, "metavar": "N"}
    }


def test_each_declared_field_is_an_option_of_its_name_kind_and_default() -> None:
    found = {each.field: each for each in options_of(_Settings)}
    assert list(found) == [
        "requests", "idle", "keep", "go_image", "results_root", "scenarios", "plugin_config",
    ]  # fmt: skip
    shape = {f: (o.name, o.kind, o.default, o.help) for f, o in found.items()}
    assert shape == {
        "requests": ("requests", "int", 1000, "requests per version"),
        "idle": ("idle", "float", 75.0, "idle seconds"),
        "keep": ("keep", "switch", False, "keep the stack"),
        "go_image": ("go_image", "text", "golang:1.22", "Go image"),
        "results_root": ("results", "path", Path("results"), "the results"),
        "scenarios": ("scenario", "list", ("steady",), "a scenario"),
        "plugin_config": ("plugin_config", "path", "{}", "a JSON object"),  # kind as declared
    }
    assert found["requests"].bound == Bound(1, 9) and found["idle"].bound is None
    assert found["go_image"].metavar == "IMAGE" and found["keep"].metavar is None
    assert found["scenarios"].commands == {"run"} and found["keep"].commands == RUN_COMMANDS


def test_an_option_knows_its_flag_and_variable_from_its_name() -> None:
    (results,) = (o for o in options_of(_Settings) if o.field == "results_root")
    assert (results.flag, results.variable) == ("--results", "KPM_RESULTS")
    docker = Option("docker_host", "where", (), "list")
    assert (docker.flag, docker.variable) == ("--docker-host", "KPM_DOCKER_HOST")


def test_a_number_without_a_range_is_parsed_as_its_kind_and_any_value_taken() -> None:
    count = Option("count", "how many", 1, "int")
    ratio = Option("ratio", "how much", 0.5, "float")
    assert count.value("-3", {}) == -3 and type(count.value("3", {})) is int
    assert ratio.value("1e9", {}) == 1e9 and type(ratio.value("2", {})) is float
    with pytest.raises(UsageError) as error:
        count.value("2.5", {})  # a whole number only
    assert str(error.value) == "--count takes a number, got '2.5'"
    with pytest.raises(UsageError) as error:
        ratio.value("", {})
    assert str(error.value) == "--ratio takes a number, got ''"


def test_values_of_reads_the_environment_given_and_only_the_commands_options() -> None:
    import argparse

    from orchestration.options import values_of

    count = Option("count", "how many", 1, "int", commands=frozenset({"run"}))
    ratio = Option("ratio", "how much", 0.5, "float", commands=frozenset({"report"}))
    bare = argparse.Namespace()  # a parser that never declared --count: as not given
    assert values_of(bare, "run", (count, ratio), {"KPM_COUNT": "3"}) == {"count": 3}
    assert values_of(argparse.Namespace(count="4"), "run", (count,), {"KPM_COUNT": "3"}) == {
        "count": 4
    }
    assert values_of(bare, "report", (count, ratio), {}) == {"ratio": 0.5}
