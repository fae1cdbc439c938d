"""orchestration/options.py on its own: how a dataclass's fields become options.

config.py calls `option` and `options_of` while it is imported, where mutmut can neither switch a
mutant on nor see it; these tests call them on a dataclass of their own, so a mistake in how a
declaration is read fails here and not only in every command at once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from orchestration.errors import UsageError
from orchestration.options import RUN_COMMANDS, Bound, Option, option, options_of


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
