"""Tests for orchestration.contract: what Kong is told about a plugin, its declarative config."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from orchestration.contract import EXAMPLE, PluginContract, declarative_template
from orchestration.errors import StackError
from orchestration.stack import StackSpec, write_service_env_file

REPO = Path(__file__).resolve().parents[1]
PYTHON = PluginContract(
    name="python-plugin",
    plugin_name="py-hello",
    server_command="/usr/local/bin/python-plugin.py",
    query_command="/usr/local/bin/python-plugin.py --dump",
    protocol="MsgPack:1",
    socket="/usr/local/kong/python-plugin.sock",
    label="python",
    config_json='{"message":"it\'s here"}',
)


def test_kong_is_told_the_server_by_its_name_with_every_non_word_character_as_underscore() -> None:
    env = PYTHON.kong_environment(tap=False)
    assert env == {
        "KONG_PLUGINS": "bundled,py-hello",
        "KONG_PLUGINSERVER_NAMES": "python-plugin",
        "KONG_PLUGINSERVER_PYTHON_PLUGIN_START_CMD": "/usr/local/bin/python-plugin.py",
        "KONG_PLUGINSERVER_PYTHON_PLUGIN_QUERY_CMD": "/usr/local/bin/python-plugin.py --dump",
        "KONG_PLUGINSERVER_PYTHON_PLUGIN_SOCKET": "/usr/local/kong/python-plugin.sock",
    }
    tapped = PYTHON.kong_environment(tap=True)["KONG_PLUGINSERVER_PYTHON_PLUGIN_START_CMD"]
    assert tapped == (
        "/usr/local/bin/kpm-tap -listen /usr/local/kong/python-plugin.sock -protocol MsgPack:1 "
        "-private-prefix /tmp/kpm-tap -server-socket /tmp/kpm-tap/python-plugin.sock "
        "-- /usr/local/bin/python-plugin.py"
    )


def test_the_declarative_config_puts_the_plugin_where_the_example_was() -> None:
    template = declarative_template(REPO)
    made = PYTHON.declarative(template)
    (hello,) = [r for s in made["services"] for r in s["routes"] if r["name"] == "hello"]
    names = [entry["name"] for entry in hello["plugins"]]
    assert names == ["py-hello"]
    assert hello["plugins"][0] == {
        "name": "py-hello",
        "id": EXAMPLE.plugin_id,
        "config": {"message": "it's here"},
    }
    # the Lua route is left alone, and so is the template
    assert [r for s in made["services"] for r in s["routes"] if r["name"] == "hello-lua"] == [
        r for s in template["services"] for r in s["routes"] if r["name"] == "hello-lua"
    ]
    assert EXAMPLE.declarative(template) == template


def test_only_the_built_ins_report_their_own_count() -> None:
    assert EXAMPLE.reports_new_calls
    assert not replace(PYTHON, marker_header=None).reports_new_calls


def test_the_kong_env_file_takes_json_with_a_quote_and_refuses_what_it_cannot_carry(
    tmp_path: Path,
) -> None:
    spec = StackSpec(
        version="3.4.1.0",
        kong_image="k",
        go_image="g",
        image_tag="i",
        workers=4,
        project_name="p",
        run_id="r",
        env_file=tmp_path / "compose.env",
        plugin=PYTHON,
        declarative_json=json.dumps({"message": "it's $HOME"}),
    )
    variables = spec.kong_variables()
    path = write_service_env_file(spec.kong_env_file, variables)
    line = path.read_text().splitlines()[-1]
    assert line == """KONG_DECLARATIVE_CONFIG_STRING='{"message": "it\\u0027s $HOME"}'"""
    assert json.loads(line.split("=", 1)[1].strip("'")) == {"message": "it's $HOME"}
    assert spec.compose_variables()["KPM_KONG_ENV"] == str(path.resolve())
    for bad in ("a'b", "a\nb"):
        with pytest.raises(StackError, match="quote or a line break"):
            write_service_env_file(tmp_path / "x.env", {"KONG_X": bad})


def test_a_template_without_services_routes_or_plugins_is_taken_as_it_is() -> None:
    """A user's kong.yml may leave any of them out; nothing is added and nothing fails."""
    assert PYTHON.declarative({"_format_version": "3.0"}) == {
        "_format_version": "3.0",
        "services": [],
    }
    bare = {"services": [{"name": "s"}, {"name": "t", "routes": [{"name": "r"}]}]}
    assert PYTHON.declarative(bare) == {
        "services": [
            {"name": "s", "routes": []},
            {"name": "t", "routes": [{"name": "r", "plugins": []}]},
        ]
    }
