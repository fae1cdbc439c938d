"""Tests for orchestration/plugins.py and the modules behind it (plugin_sources, kinds/,
plugin_images, plugin_dumps, plugin_config, host_fetch): --plugin values, images, dumps,
--plugin-config."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from python_on_whales import DockerClient

from orchestration import host_fetch, pipeline, plugin_images, plugins, sim
from orchestration.config import RunConfig
from orchestration.contract import declarative_template
from orchestration.engine import Engine
from orchestration.errors import (
    ConfigError,
    EnvironmentProblem,
    ImageUnavailable,
    ReadyTimeout,
    StackError,
)
from orchestration.kinds import KINDS, kind_named
from orchestration.kinds import go as go_kind
from orchestration.kinds import js as js_kind
from orchestration.kinds import python as python_kind
from orchestration.plugins import (
    PluginDump,
    PluginSource,
    build_plugin_image,
    cached_dump,
    dump_plugin,
    go_image_for,
    parse_dump,
    plugin_image_tag,
    resolve_plugins,
    run_in_image,
    validate_plugin_config,
)
from orchestration.stack import Stack, StackSpec, project_name_for
from orchestration.versions import target_for_version

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURE = REPO_ROOT / "tests" / "plugins" / "rate-tag"
GO_PDK_06 = REPO_ROOT / "tests" / "plugins" / "go-pdk-06"
PYTHON_SERVER = """\
import kong_pdk.pdk.kong as kong

class Plugin(object):
    def __init__(self, config):
        self.config = config

if __name__ == "__main__":
    from kong_pdk.cli import start_dedicated_server
    start_dedicated_server("my-py", Plugin, "1.0", 5, [])
"""
JS_PLUGIN = "class P {}\nmodule.exports = { Plugin: P, Version: '1.0' }\n"


def _write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


# --- resolve_plugins ----------------------------------------------------------------------


def test_builtins_by_name_and_all_in_order() -> None:
    named = resolve_plugins(["js", "go-latest"], REPO_ROOT)
    every = resolve_plugins(["all"], REPO_ROOT)

    assert [(s.label, s.kind) for s in named] == [("js", "js"), ("go-latest", "go")]
    assert [s.label for s in every] == ["go", "go-latest", "python", "js"]
    assert [s.kind for s in every] == ["go", "go", "python", "js"]
    assert all(s.builtin for s in every)
    go, go_latest = every[0], every[1]
    assert go.path == go_latest.path == REPO_ROOT / "plugins" / "example-plugin"
    assert (go.go_modfile, go_latest.go_modfile) == ("go.mod", "latest.mod")
    assert go_kind.directive(go) == (1, 21)
    assert every[2].entry == "python-plugin.py"


def test_go_latest_modfile_pins_the_newest_go_pdk() -> None:
    latest = (REPO_ROOT / "plugins" / "example-plugin" / "latest.mod").read_text()
    current = (REPO_ROOT / "plugins" / "example-plugin" / "go.mod").read_text()

    assert "github.com/Kong/go-pdk v0.11.2" in latest
    assert "github.com/Kong/go-pdk v0.10.0" in current


def test_a_go_directory_is_a_go_plugin_named_after_it() -> None:
    (source,) = resolve_plugins([str(FIXTURE)], REPO_ROOT)

    assert source == PluginSource("rate-tag", "go", FIXTURE, False, "go.mod", "rate-tag")


def test_a_python_directory_runs_its_dedicated_server_script(tmp_path: Path) -> None:
    directory = _write(tmp_path / "my-py", {"server.py": PYTHON_SERVER, "helper.py": "x = 1\n"})

    (source,) = resolve_plugins([str(directory)], REPO_ROOT)

    assert (source.label, source.kind, source.entry) == ("my-py", "python", "server.py")


@pytest.mark.parametrize(
    "files",
    [
        {"package.json": '{"dependencies": {"kong-pdk": "0.6.0"}}', "index.js": "x"},
        {"hello.js": JS_PLUGIN},
        {"hello.js": "const pdk = require('kong-pdk')\n"},
    ],
    ids=["package", "exports-plugin", "requires-kong-pdk"],
)
def test_a_js_directory_is_a_js_plugin(tmp_path: Path, files: dict[str, str]) -> None:
    (source,) = resolve_plugins([str(_write(tmp_path / "my-js", files))], REPO_ROOT)

    assert (source.label, source.kind) == ("my-js", "js")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "absent", "no such directory"),
        (lambda tmp: _write(tmp, {"main.go": "package main"}) / "main.go", "is a file"),
        (lambda tmp: _write(tmp / "empty", {"README": "hi"}), "no plugin found"),
        (
            lambda tmp: _write(tmp / "nopdk", {"go.mod": "module x\n", "main.go": "package main"}),
            "no plugin found",
        ),
        (
            lambda tmp: _write(
                tmp / "mixed",
                {
                    "go.mod": "module x\n",
                    "main.go": 'package main\nimport "github.com/Kong/go-pdk/server"\n',
                    "server.py": PYTHON_SERVER,
                },
            ),
            "several kinds",
        ),
        (
            lambda tmp: _write(tmp / "py", {"p.py": "import kong_pdk\nclass Plugin: pass\n"}),
            "no .py starts a dedicated server",
        ),
        (
            lambda tmp: _write(tmp / "py2", {"a.py": PYTHON_SERVER, "b.py": PYTHON_SERVER}),
            "several .py files",
        ),
        (lambda tmp: _write(tmp / "bad name", {"hello.js": JS_PLUGIN}), "letters, digits"),
    ],
    ids=[
        "missing",
        "file",
        "no-plugin",
        "go-without-pdk",
        "ambiguous",
        "py-no-server",
        "py-two-servers",
        "bad-name",
    ],
)
def test_bad_plugin_directories_say_what_is_wrong(tmp_path: Path, make: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_plugins([str(make(tmp_path))], REPO_ROOT)


@pytest.mark.parametrize("values", [["go", "go"], ["all", "python"], [str(FIXTURE), str(FIXTURE)]])
def test_a_plugin_given_twice_is_refused(values: list[str]) -> None:
    with pytest.raises(ConfigError, match="given twice"):
        resolve_plugins(values, REPO_ROOT)


def test_two_directories_with_one_name_are_refused(tmp_path: Path) -> None:
    first = _write(tmp_path / "a" / "same", {"hello.js": JS_PLUGIN})
    second = _write(tmp_path / "b" / "same", {"hello.js": JS_PLUGIN})

    with pytest.raises(ConfigError, match="rename one directory"):
        resolve_plugins([str(first), str(second)], REPO_ROOT)


# --- images without Docker ------------------------------------------------------------------


def test_the_golang_image_meets_the_go_directive(tmp_path: Path) -> None:
    newer = _write(
        tmp_path / "newer",
        {
            "go.mod": "module x\n\ngo 1.24.1\n",
            "main.go": 'package main\nimport "github.com/Kong/go-pdk"\n',
        },
    )
    (source,) = resolve_plugins([str(newer)], REPO_ROOT)
    (example,) = resolve_plugins(["go"], REPO_ROOT)

    assert go_image_for(source, "golang:1.22") == "golang:1.24"
    assert go_image_for(source, "golang:1.25-bookworm") == "golang:1.25-bookworm"
    assert go_image_for(example, "golang:1.22") == "golang:1.22"
    assert (
        go_image_for(source, "kong-plugin-matrix/go-builder:abc")
        == "kong-plugin-matrix/go-builder:abc"
    )


def test_the_image_tag_follows_the_plugin_files(tmp_path: Path) -> None:
    directory = _write(tmp_path / "my-js", {"hello.js": JS_PLUGIN})
    (source,) = resolve_plugins([str(directory)], REPO_ROOT)
    bases = {"kong_image": "k", "go_image": "g", "kind_image": "n", "sim": True}

    before = plugin_image_tag(source, engine=Engine(), **bases)  # type: ignore[arg-type]
    again = plugin_image_tag(source, engine=Engine(), **bases)  # type: ignore[arg-type]
    (directory / "hello.js").write_text(JS_PLUGIN + "// edited\n")
    edited = plugin_image_tag(source, engine=Engine(), **bases)  # type: ignore[arg-type]

    assert before == again
    assert before.startswith("kong-plugin-matrix:plugin-my-js-sim-")
    assert edited != before


def test_a_moved_registry_tag_gets_a_new_plugin_image(monkeypatch: pytest.MonkeyPatch) -> None:
    """`kong:latest` pulled anew has another id: the plugin image's tag must change with it."""
    ids = {"kong:latest": "sha256:aaa", "g": "sha256:g", "n": "sha256:n"}
    monkeypatch.setattr(Engine, "identity", lambda engine, image: f"{image}@{ids[image]}")
    (source,) = resolve_plugins(["go"], REPO_ROOT)
    bases = {"kong_image": "kong:latest", "go_image": "g", "kind_image": "n", "sim": False}

    before = plugin_image_tag(source, engine=Engine(), **bases)  # type: ignore[arg-type]
    ids["kong:latest"] = "sha256:bbb"
    after = plugin_image_tag(source, engine=Engine(), **bases)  # type: ignore[arg-type]
    simulated = plugin_image_tag(source, engine=Engine(), **{**bases, "sim": True})  # type: ignore[arg-type]

    assert before != after
    assert ":plugin-go-" in before and ":plugin-go-sim-" in simulated


def test_debian_mirror_comes_from_apts_sources(tmp_path: Path) -> None:
    listed = tmp_path / "sources.list"
    listed.write_text(
        "deb http://security.debian.org/ bookworm-security main\n"
        "deb [arch=amd64] http://mirror.example/debian bookworm main\n"
    )
    deb822 = tmp_path / "sources.list.d"
    _write(deb822, {"debian.sources": "Types: deb\nURIs: http://other.example/debian\n"})

    assert sim.debian_mirror((listed,)) == "http://mirror.example/debian"
    assert sim.debian_mirror((tmp_path / "none", deb822)) == "http://other.example/debian"
    assert sim.debian_mirror((tmp_path / "none",)) == sim.DEFAULT_DEBIAN_MIRROR


# --- parse_dump ---------------------------------------------------------------------------

GO_DUMP: dict[str, Any] = {
    "Protocol": "ProtoBuf:1",
    "SocketPath": "/usr/local/kong/rate-tag.socket",
    "Plugins": [
        {
            "Name": "rate-tag",
            "Phases": ["access", "log"],
            "Version": "1.2.3",
            "Priority": 900,
            "Schema": {
                "name": "rate-tag",
                "fields": [
                    {
                        "config": {
                            "type": "record",
                            "fields": [{"tag": {"type": "string"}}, {"limit": {"type": "integer"}}],
                        }
                    }
                ],
            },
        }
    ],
}


def _parse(output: str, label: str = "rate-tag") -> PluginDump:
    source = {s.label: s for s in resolve_plugins(["all", str(FIXTURE)], REPO_ROOT)}[label]
    return parse_dump(output, source, start_command="start", query_command="query")


def test_a_go_pdk_dump_is_read() -> None:
    dump = _parse(json.dumps(GO_DUMP))

    assert (dump.server_name, dump.plugin_name, dump.protocol) == (
        "rate-tag",
        "rate-tag",
        "ProtoBuf:1",
    )
    assert (dump.phases, dump.priority, dump.version) == (("access", "log"), 900, "1.2.3")
    assert dump.socket == "/usr/local/kong/rate-tag.socket"
    assert dump.schema["fields"][1] == {"limit": {"type": "integer"}}


def test_python_and_js_dumps_are_lists_spoken_in_msgpack() -> None:
    info = dict(GO_DUMP["Plugins"][0], Name="python-plugin")
    python = _parse(json.dumps([info]), "python")
    js = _parse(json.dumps([dict(info, Name="js-plugin")]), "js")

    assert (python.protocol, python.socket) == ("MsgPack:1", "/usr/local/kong/python-plugin.sock")
    assert (js.plugin_name, js.socket) == ("js-plugin", "/usr/local/kong/js_pluginserver.sock")


def _go_plugin(directory: Path, go_mod: str, go_sum: str = "") -> PluginSource:
    files = {"go.mod": go_mod, "main.go": 'package main\nimport "github.com/Kong/go-pdk/server"\n'}
    (source,) = resolve_plugins([str(_write(directory, {**files, "go.sum": go_sum}))], REPO_ROOT)
    return source


def test_go_pdk_06_dumps_a_bare_list_and_listens_on_its_own_socket() -> None:
    # go-pdk v0.6.1's -dump, as its server/server.go prints it: no Protocol, no SocketPath.
    info = dict(GO_DUMP["Plugins"][0], Name="go-pdk-06")
    (source,) = resolve_plugins([str(GO_PDK_06)], REPO_ROOT)
    start, query = plugins.commands_for(source)

    dump = parse_dump(json.dumps([info]), source, start_command=start, query_command=query)

    assert dump.protocol == "MsgPack:1"
    assert dump.socket == "/usr/local/kong/go-pdk-06.socket"  # go-pdk's <prefix>/<binary>.socket


@pytest.mark.parametrize(
    ("go_mod", "version"),
    [
        ("module x\n\nrequire github.com/Kong/go-pdk v0.6.1\n", "v0.6.1"),
        ("module x\n\nrequire (\n\tgithub.com/Kong/go-pdk v0.11.2 // indirect\n)\n", "v0.11.2"),
        (
            "module x\nrequire github.com/Kong/go-pdk v0.5.0\n"
            "replace github.com/Kong/go-pdk => github.com/Kong/go-pdk v0.10.0\n",
            "v0.10.0",
        ),
        (
            "module x\nrequire github.com/Kong/go-pdk v0.5.0\n"
            "replace github.com/Kong/go-pdk v0.5.0 => ../go-pdk\n",
            None,
        ),
        ("module x\n", None),
    ],
    ids=["require", "block", "replaced-by-version", "replaced-by-directory", "none"],
)
def test_the_go_pdk_version_is_what_go_mod_selects(
    tmp_path: Path, go_mod: str, version: str | None
) -> None:
    assert go_kind.pdk_version(_go_plugin(tmp_path / "p", go_mod)) == version


def test_a_go_pluginserver_era_go_pdk_is_refused_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        _go_plugin(tmp_path / "old", "module x\ngo 1.13\nrequire github.com/Kong/go-pdk v0.5.0\n")

    message = str(refused.value)
    assert "go.mod requires go-pdk v0.5.0" in message
    assert "go-pluginserver, which Kong 3.0 removed" in message
    assert "The oldest go-pdk that runs is v0.6.0" in message
    _go_plugin(tmp_path / "first", "module x\nrequire github.com/Kong/go-pdk v0.6.0\n")  # runs


@pytest.mark.parametrize(
    ("go_mod", "go_sum", "tags"),
    [
        ("require github.com/Kong/go-pdk v0.6.1\n", "", "safe"),  # go-pdk v0.6 brings codec v1.2.1
        (
            "require github.com/Kong/go-pdk v0.6.1\n",
            "github.com/ugorji/go/codec v1.2.1/go.mod h1:x=\n"
            "github.com/ugorji/go/codec v1.2.2 h1:x=\n",
            "safe",
        ),
        (
            "require github.com/Kong/go-pdk v0.6.1\n",
            "github.com/ugorji/go/codec v1.2.1 h1:x=\ngithub.com/ugorji/go/codec v1.2.3 h1:x=\n",
            "",
        ),
        ("require github.com/Kong/go-pdk v0.10.0\n", "", ""),
    ],
    ids=["msgpack-era", "old-codec-summed", "new-codec-summed", "protobuf-era"],
)
def test_an_old_ugorji_codec_builds_with_its_safe_tag(
    tmp_path: Path, go_mod: str, go_sum: str, tags: str
) -> None:
    source = _go_plugin(tmp_path / "p", "module x\n" + go_mod, go_sum)
    assert go_kind.build_tags(source) == tags


def test_the_fixtures_build_tags() -> None:
    (old, new) = resolve_plugins([str(GO_PDK_06), str(FIXTURE)], REPO_ROOT)
    (example,) = resolve_plugins(["go"], REPO_ROOT)

    tags = [go_kind.build_tags(source) for source in (old, new, example)]
    assert tags == ["safe", "", ""]


def test_kong_lowercases_the_server_name_and_keeps_the_plugins() -> None:
    dump = _parse(json.dumps(dict(GO_DUMP, Plugins=[dict(GO_DUMP["Plugins"][0], Name="RateTag")])))

    assert (dump.server_name, dump.plugin_name) == ("ratetag", "RateTag")


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("getting plugin info: boom", "did not print JSON"),
        ('{"hello": 1}', "no plugin info table"),
        ("[]", "dumps 0 plugins"),
        ('[{"Name": "a"}, {"Name": "b"}]', "dumps 2 plugins"),
        ('[{"Name": "a", "Phases": "access", "Priority": 1, "Schema": {}}]', "no list of Phases"),
        ('[{"Name": "a", "Phases": [], "Priority": 1, "Schema": {"fields": []}}]', "no `config`"),
    ],
)
def test_a_bad_dump_is_a_clear_error(output: str, message: str) -> None:
    with pytest.raises(StackError, match=message):
        _parse(output, "js")


# --- cached_dump ---------------------------------------------------------------------------


class _Engine:
    """Stands in for Docker in cached_dump: which image ID a tag has, what the query prints."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, output: str) -> None:
        self.ids = {"img": "sha256:aaa"}
        self.output, self.runs = output, 0
        monkeypatch.setattr(plugin_images, "image_id", lambda tag, engine: self.ids.get(tag))
        monkeypatch.setattr(plugin_images, "run_in_image", self.run)

    def run(self, image: str, command: list[str], **_: object) -> str:
        self.runs += 1
        return self.output


def _rate_tag() -> PluginSource:
    return {s.label: s for s in resolve_plugins([str(FIXTURE)], REPO_ROOT)}["rate-tag"]


def test_a_dump_is_asked_once_per_image_id(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    engine = _Engine(monkeypatch, json.dumps(GO_DUMP))
    first = cached_dump("img", _rate_tag(), Engine(), cache=tmp_path)
    again = cached_dump("img", _rate_tag(), Engine(), cache=tmp_path)
    assert (engine.runs, again) == (1, first)
    assert first.schema["fields"][1] == {"limit": {"type": "integer"}}

    engine.ids["img"] = "sha256:bbb"  # rebuilt under the same tag: asked again
    engine.output = json.dumps(dict(GO_DUMP, SocketPath="/other.socket"))
    assert cached_dump("img", _rate_tag(), Engine(), cache=tmp_path).socket == "/other.socket"
    assert engine.runs == 2
    assert len(list(tmp_path.glob("*.json"))) == 2


def test_a_kept_dump_that_is_not_a_dump_is_asked_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    engine = _Engine(monkeypatch, json.dumps(GO_DUMP))
    cached_dump("img", _rate_tag(), Engine(), cache=tmp_path)
    (kept,) = tmp_path.glob("*.json")
    kept.write_text('{"Plugins": ')  # cut short

    assert cached_dump("img", _rate_tag(), Engine(), cache=tmp_path).plugin_name == "rate-tag"
    assert engine.runs == 2
    assert json.loads(kept.read_text()) == GO_DUMP


@pytest.mark.parametrize(
    ("image", "output"),
    [("img", "panic: boom"), ("gone", json.dumps(GO_DUMP))],
    ids=["output-that-is-not-a-dump", "an-image-the-engine-lacks"],
)
def test_nothing_is_kept_and_the_image_is_asked_every_time(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, image: str, output: str
) -> None:
    engine = _Engine(monkeypatch, output)
    for _ in range(2):
        try:
            cached_dump(image, _rate_tag(), Engine(), cache=tmp_path)
        except StackError as error:
            assert output == "panic: boom" and "did not print JSON" in str(error)
    assert engine.runs == 2
    assert not list(tmp_path.iterdir())


def test_a_cache_that_cannot_be_written_still_gives_the_dump(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    engine = _Engine(monkeypatch, json.dumps(GO_DUMP))
    blocked = tmp_path / "file"
    blocked.write_text("")
    for _ in range(2):
        dump = cached_dump("img", _rate_tag(), Engine(), cache=blocked / "dumps")
        assert dump.protocol == "ProtoBuf:1"
    assert engine.runs == 2


# --- validate_plugin_config ---------------------------------------------------------------

SCHEMA: dict[str, Any] = {
    "type": "record",
    "fields": [
        {"tag": {"type": "string", "required": True}},
        {"limit": {"type": "integer", "between": [0, 100]}},
        {"ratio": {"type": "number"}},
        {"on": {"type": "boolean"}},
        {"names": {"type": "array", "elements": {"type": "string"}}},
        {"codes": {"type": "set", "elements": {"type": "integer"}}},
        {"headers": {"type": "map", "keys": {"type": "string"}, "values": {"type": "integer"}}},
        {
            "inner": {
                "type": "record",
                "fields": [{"mode": {"type": "string", "one_of": ["a", "b"]}}],
            }
        },
    ],
}
DUMP = PluginDump("p", "p", "MsgPack:1", ("access",), 1, "1", SCHEMA, "s", "q", "/s")


def test_a_config_that_fits_the_schema_passes() -> None:
    validate_plugin_config(
        {
            "tag": "x",
            "limit": 3.0,
            "ratio": 1,
            "on": False,
            "names": ["a"],
            "codes": [1],
            "headers": {"h": 2},
            "inner": {"mode": "b"},
        },
        DUMP,
    )
    validate_plugin_config({"tag": "x", "limit": None}, DUMP)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"tag": "x", "extra": 1}, r"config\.extra is not a field of plugin p \(its fields: tag,"),
        ({}, r"config\.tag is required by plugin p"),
        ({"tag": 5}, r"config\.tag of plugin p must be a string, got 5"),
        ({"tag": "x", "limit": "3"}, r"config\.limit .* must be an integer, got \"3\""),
        ({"tag": "x", "limit": True}, r"must be an integer, got true"),
        ({"tag": "x", "limit": 2.5}, r"must be an integer, got 2.5"),
        ({"tag": "x", "limit": 101}, r"must be between 0 and 100, got 101"),
        ({"tag": "x", "ratio": "1"}, r"config\.ratio .* must be a number"),
        ({"tag": "x", "on": "yes"}, r"config\.on .* must be true or false"),
        ({"tag": "x", "names": "a"}, r"must be a JSON array \(array\)"),
        ({"tag": "x", "names": ["a", 2]}, r"config\.names\[1\] .* must be a string"),
        ({"tag": "x", "codes": ["1"]}, r"config\.codes\[0\] .* must be an integer"),
        ({"tag": "x", "headers": []}, r"must be a JSON object \(map\)"),
        ({"tag": "x", "headers": {"h": "v"}}, r"config\.headers\[\"h\"\] .* must be an integer"),
        ({"tag": "x", "inner": 1}, r"config\.inner .* must be a JSON object \(record\)"),
        ({"tag": "x", "inner": {"mode": "c"}}, r"config\.inner\.mode .* must be one of"),
        ({"tag": "x", "inner": {"x": 1}}, r"config\.inner\.x is not a field"),
    ],
)
def test_a_config_that_does_not_fit_names_the_field(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_plugin_config(config, DUMP)


# --- the images, under --sim (Docker) -----------------------------------------------------

SIM_VERSION = "3.6.0.0"
EXPECTED = {  # label: (server name, plugin name, protocol, phases, priority, socket)
    "go": (
        "example-plugin",
        "example-plugin",
        "ProtoBuf:1",
        ("access",),
        1000,
        "/usr/local/kong/example-plugin.socket",
    ),
    "go-latest": (
        "example-plugin",
        "example-plugin",
        "ProtoBuf:1",
        ("access",),
        1000,
        "/usr/local/kong/example-plugin.socket",
    ),
    "python": (
        "python-plugin",
        "python-plugin",
        "MsgPack:1",
        ("access",),
        1000,
        "/usr/local/kong/python-plugin.sock",
    ),
    "js": (
        "js-plugin",
        "js-plugin",
        "MsgPack:1",
        ("access",),
        1000,
        "/usr/local/kong/js_pluginserver.sock",
    ),
    "rate-tag": (
        "rate-tag",
        "rate-tag",
        "ProtoBuf:1",
        ("access", "log"),
        900,
        "/usr/local/kong/rate-tag.socket",
    ),
    # go-pdk v0.6.1: MessagePack, on go-pdk's own socket (never the JS server's)
    "go-pdk-06": (
        "go-pdk-06",
        "go-pdk-06",
        "MsgPack:1",
        ("access",),
        10,
        "/usr/local/kong/go-pdk-06.socket",
    ),
    # their dependencies (six, ms) installed: the query command imports them
    "py-with-deps": (
        "py-with-deps",
        "py-with-deps",
        "MsgPack:1",
        ("access",),
        10,
        "/usr/local/kong/py-with-deps.sock",
    ),
    "js-with-deps": (
        "js-with-deps",
        "js-with-deps",
        "MsgPack:1",
        ("access",),
        10,
        "/usr/local/kong/js_pluginserver.sock",
    ),
}
USER_FIXTURES = [
    str(REPO_ROOT / "tests" / "plugins" / name)
    for name in ("rate-tag", "go-pdk-06", "py-with-deps", "js-with-deps")
]


@pytest.fixture(scope="module")
def sim_images() -> Iterator[sim.SimImages]:
    yield sim.build_sim_images(SIM_VERSION, Engine())


def _built(source: PluginSource, sim_images: sim.SimImages) -> str:
    return build_plugin_image(
        source,
        kong_image=sim_images.kong_image,
        go_image=sim_images.go_image,
        sim=True,
        engine=Engine(),
    )


@pytest.mark.docker
@pytest.mark.parametrize("label", list(EXPECTED))
def test_each_plugin_image_dumps_what_kong_needs(label: str, sim_images: sim.SimImages) -> None:
    source = {s.label: s for s in resolve_plugins(["all", *USER_FIXTURES], REPO_ROOT)}[label]
    image = _built(source, sim_images)
    dump = dump_plugin(image, source, Engine())

    assert (
        dump.server_name,
        dump.plugin_name,
        dump.protocol,
        dump.phases,
        dump.priority,
        dump.socket,
    ) == EXPECTED[label]
    assert (
        run_in_image(
            image,
            ["/bin/sh", "-c", "test -x /usr/local/bin/kpm-tap && echo tap"],
            what="kpm-tap",
            engine=Engine(),
        )
        == "tap\n"
    )
    # One that outlives its time is removed (docker rm -f in a session of its own)
    with pytest.raises(StackError, match="gave no answer within 1s"):
        run_in_image(
            image, ["/bin/sh", "-c", "sleep 60"], what="a sleep", engine=Engine(), timeout_s=1
        )
    left = subprocess.run(
        ["docker", "ps", "--all", "--quiet", "--filter", "name=kpm-plugin-"],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    assert left.stdout == ""
    # That each kind's server listens where its dump says is Kong's to find, in a stack:
    # tests/test_user_plugins.py runs py-hello and js-hello under Kong; the failure is below.
    assert (
        _built(source, sim_images)  # the same sources: the same tag, nothing rebuilt
        == image
    )


@pytest.mark.docker
def test_a_built_image_is_dumped_once(
    sim_images: sim.SimImages, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    source = _rate_tag()
    image = _built(source, sim_images)
    asked = cached_dump(image, source, Engine(), cache=tmp_path)
    assert len(list(tmp_path.glob("*.json"))) == 1
    assert asked == dump_plugin(image, source, Engine())

    def no_docker_run(*args: object, **kwargs: object) -> str:
        raise AssertionError("the image was asked again")

    monkeypatch.setattr(plugin_images, "run_in_image", no_docker_run)
    assert cached_dump(image, source, Engine(), cache=tmp_path) == asked
    assert plugin_images.image_id(image, Engine()) == DockerClient().image.inspect(image).id
    assert plugin_images.image_id("kong-plugin-matrix:no-such-image", Engine()) is None


@pytest.mark.docker
def test_a_server_that_never_listens_where_kong_looks_fails_the_wait(
    sim_images: sim.SimImages, tmp_path: Path
) -> None:
    """Whether the plugin server listens where its dump says is checked on the live path: Kong
    (kong-sim) is given the socket and the stack's readiness wait names it when nothing answers."""
    (source,) = resolve_plugins(["python"], REPO_ROOT)
    engine = Engine()
    image, contract = plugins.prepared(
        source,
        kong_image=sim_images.kong_image,
        go_image=sim_images.go_image,
        sim=True,
        engine=engine,
    )
    elsewhere = dataclasses.replace(contract, socket="/usr/local/kong/elsewhere.sock")
    run_id = f"listen-{uuid.uuid4().hex[:8]}"
    spec = StackSpec(
        version=SIM_VERSION,
        kong_image=sim_images.kong_image,
        go_image=sim_images.go_image,
        image_tag=image,
        workers=1,
        project_name=project_name_for(run_id, SIM_VERSION),
        run_id=run_id,
        env_file=tmp_path / "compose.env",
        plugin=elsewhere,
        declarative_json=json.dumps(elsewhere.declarative(declarative_template(REPO_ROOT))),
        engine=engine,
    )

    with pytest.raises(ReadyTimeout) as raised, Stack(spec) as stack:
        stack.wait_ready(timeout_s=15)

    assert "over /usr/local/kong/elsewhere.sock" in str(raised.value)
    assert "Check that the server starts and listens on that socket" in str(raised.value)


def test_pdk_pins_are_exact() -> None:
    requirements = (REPO_ROOT / python_kind.PDK_REQUIREMENTS).read_text()
    package = json.loads((REPO_ROOT / js_kind.PDK_FILES[0]).read_text())

    assert "kong-pdk==0.36 --hash=sha256:" in requirements
    assert package["dependencies"] == {"kong-pdk": "0.6.0"}


@pytest.mark.parametrize(
    ("kind", "start_command", "name"),
    [
        ("go", "/usr/local/bin/my-plugin", "my-plugin"),
        ("go", "/usr/local/bin/my-plugin -kong-prefix /tmp", "my-plugin"),
        ("python", "python3 /usr/local/bin/py-hello.py", "python3"),
        ("js", "/usr/local/bin/kong-js-pluginserver --plugins-directory /p", "node"),
    ],
)
def test_the_servers_process_name_is_what_proc_shows(
    kind: str, start_command: str, name: str
) -> None:
    """kill-server and the memory sampler find the server by it (comm)."""
    assert plugins.process_name_of(kind, start_command) == name


NAMED = PluginDump("srv", "rate-tag", "MsgPack:1", ("access",), 1, "1", SCHEMA, "s", "q", "/s")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"tag": "x", "names": {"a": 1}}, 'config.names of plugin rate-tag must be a JSON array '
         '(array), got {"a": 1}'),
        ({"tag": "x", "names": [1]}, "config.names[0] of plugin rate-tag must be a string, got 1"),
        ({"tag": "x", "headers": ["v"]}, 'config.headers of plugin rate-tag must be a JSON object '
         '(map), got ["v"]'),
        ({"tag": "x", "headers": {"h": "v"}}, 'config.headers["h"] of plugin rate-tag must be an '
         'integer, got "v"'),
        ({"tag": "x", "inner": [2]}, "config.inner of plugin rate-tag must be a JSON object "
         "(record), got [2]"),
        ({"tag": "x", "inner": {"mode": "c"}}, 'config.inner.mode of plugin rate-tag must be one '
         'of ["a", "b"], got "c"'),
        ({"tag": "x", "limit": -1}, "config.limit of plugin rate-tag must be between 0 and 100, "
         "got -1"),
        ({"tag": "x", "limit": 101}, "config.limit of plugin rate-tag must be between 0 and 100, "
         "got 101"),
        ({"tag": "x", "codes": [1, "2"]}, 'config.codes[1] of plugin rate-tag must be an integer, '
         'got "2"'),
        ({}, "config.tag is required by plugin rate-tag (a string) but was not given"),
    ],
)  # fmt: skip
def test_each_wrong_config_is_told_in_full(config: dict[str, Any], message: str) -> None:
    """The field's path, the plugin's name (not its server's), what was expected and the value
    as JSON."""
    with pytest.raises(ConfigError) as raised:
        validate_plugin_config(config, NAMED)
    assert str(raised.value) == f"--plugin-config: {message}"


def test_the_ends_of_a_range_defaults_and_key_schemas_are_kept() -> None:
    for limit in (0, 100, 0.0):
        validate_plugin_config({"tag": "x", "limit": limit}, NAMED)
    schema = {
        "fields": [
            {"id": {"type": "string", "required": True, "default": "x"}},  # Kong fills it in
            {"anything": {"required": True, "default": 3}},
            {"m": {"type": "map", "keys": {"type": "string", "one_of": ["k"]}}},
        ]
    }
    dump = replace_schema(NAMED, schema)
    validate_plugin_config({}, dump)
    validate_plugin_config({"m": {"k": 1}}, dump)
    with pytest.raises(ConfigError) as raised:
        validate_plugin_config({"m": {"j": 1}}, dump)
    assert str(raised.value) == (
        '--plugin-config: config.m key "j" of plugin rate-tag must be one of ["k"], got "j"'
    )
    untyped = replace_schema(NAMED, {"fields": [{"v": {"required": True}}]})
    with pytest.raises(ConfigError, match=r"config\.v is required by plugin rate-tag \(a value\)"):
        validate_plugin_config({}, untyped)
    with pytest.raises(ConfigError) as raised:
        validate_plugin_config({"x": 1}, replace_schema(NAMED, {"fields": []}))
    assert str(raised.value).endswith(
        "config.x is not a field of plugin rate-tag (its fields: none)"
    )


def replace_schema(dump: PluginDump, schema: dict[str, Any]) -> PluginDump:
    from dataclasses import replace

    return replace(dump, schema=schema)


def test_a_plugin_given_twice_is_told_why_in_full(tmp_path: Path) -> None:
    def refusal(values: list[str]) -> str:
        with pytest.raises(ConfigError) as raised:
            resolve_plugins(values, REPO_ROOT)
        return str(raised.value)

    assert refusal(["go", "go"]) == "--plugin 'go' is given twice (values: go go)"
    assert refusal(["all", "js"]) == (
        "--plugin 'js' is given twice (`all` already holds the built-ins) (values: all js)"
    )
    # a folder named like a built-in is another plugin with the same row label, `all` or not
    folder = _write(tmp_path / "go", {"hello.js": JS_PLUGIN})
    builtin = plugins.builtin_plugins(REPO_ROOT)["go"].path
    assert refusal(["all", str(folder)]) == (
        f"--plugin 'go' is given twice: {builtin} and {folder.resolve()} both give the row label "
        f"'go'; rename one directory (values: all {folder})"
    )


def test_the_go_built_ins_build_the_example_plugins_binary() -> None:
    """Kong knows the binary's name as the plugin's (KONG_PLUGINS, kong.yml): example-plugin."""
    builtins = plugins.builtin_plugins(REPO_ROOT)
    assert builtins["go"].entry == builtins["go-latest"].entry == "example-plugin"
    assert builtins["js"].entry == ""  # kong-js-pluginserver finds the plugin in its folder


def test_a_pdk_that_cannot_be_fetched_is_that_plugins_error(tmp_path: Path) -> None:
    failing = [sys.executable, "-c", "import sys; sys.exit('ERROR: No matching distribution')"]
    with pytest.raises(ImageUnavailable) as caught:
        host_fetch.fetch_pdk(failing, what="the Python PDK (kong-pdk) from PyPI")
    assert str(caught.value) == (
        f"could not fetch the Python PDK (kong-pdk) from PyPI (`{' '.join(failing)}`: ERROR: No "
        "matching distribution); check this machine's network"
    )


def test_each_built_in_is_the_plugin_folder_of_its_kind() -> None:
    """What `plugin_from_directory` tells from each built-in's folder is what the table says."""
    for label, source in plugins.builtin_plugins(REPO_ROOT).items():
        found = plugins.plugin_from_directory(source.path)
        assert source.path.parent == REPO_ROOT / "plugins", label
        assert (found.kind, found.entry) == (source.kind, source.entry), label


# --- a plugin's own dependencies ---------------------------------------------------------------

PY_WITH_DEPS = REPO_ROOT / "tests" / "plugins" / "py-with-deps"
JS_WITH_DEPS = REPO_ROOT / "tests" / "plugins" / "js-with-deps"
# What kong-js-pluginserver printed for js-with-deps before its dependency was installed.
JS_DUMP_WITHOUT_MS = (
    "2026-12-07T21:01:56.757Z \x1b[0m\n\x1b[1A\x1b[K\n\x1b[1A2026-12-07T21:01:56.757Z \x1b[0m"
    '\x1b[43m\x1b[30m[WARN]\x1b[0m \x1b[0m\x1b[33merror loading plugin "index" from '
    "/usr/local/lib/kpm-plugins/js-with-deps/index.js: Error: Cannot find module 'ms'\n"
    "Require stack:\n- /usr/local/lib/kpm-plugins/js-with-deps/index.js\n"
    "    at Function.Module._resolveFilename (node:internal/modules/cjs/loader:1140:15)"
    "\x1b[0m\n[]\n"
)
PY_TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/usr/local/lib/kpm-plugin/py-with-deps.py", line 5, in <module>\n'
    "    import six\nModuleNotFoundError: No module named 'six'\n"
)


def test_requirements_are_read_without_what_the_image_carries(tmp_path: Path) -> None:
    directory = _write(
        tmp_path / "p",
        {
            "requirements.txt": "# ours\nkong-pdk==0.36 \\\n    --hash=sha256:abc\n"
            "six==1.16.0  # pinned\nGevent>=22\nzope.interface\n-r more.txt\n./vendored\n",
            "pyproject.toml": '[project]\nname = "p"\ndependencies = ["attrs>=23", "msgpack"]\n',
        },
    )

    assert python_kind.requirements(directory) == [
        "six==1.16.0",
        f"-r {directory / 'more.txt'}",
        str(directory / "vendored"),
        "attrs>=23",
    ]
    assert python_kind.requirements(_write(tmp_path / "none", {"p.py": "x"})) == []


def test_a_python_plugin_with_only_the_pdk_fetches_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fetch(*args: object, **kwargs: object) -> None:
        raise AssertionError("fetched")

    monkeypatch.setattr(host_fetch, "fetch_dependencies", no_fetch)
    for name in ("python", "js"):
        (source,) = resolve_plugins([name], REPO_ROOT)
        assert plugins.plugin_dependencies(source, REPO_ROOT) is None
    (js,) = resolve_plugins([str(REPO_ROOT / "plugins" / "js-plugin")], REPO_ROOT)
    assert plugins.plugin_dependencies(js, REPO_ROOT) is None  # package.json, no dependencies


def _fail_with(monkeypatch: pytest.MonkeyPatch, stderr: str) -> list[list[str]]:
    commands: list[list[str]] = []

    def run(command: list[str], **kwargs: Any) -> Any:
        commands.append(command)
        return subprocess.CompletedProcess(command, 1, "", stderr)

    monkeypatch.setattr(subprocess, "run", run)
    return commands


@pytest.mark.parametrize(
    ("files", "stderr", "message"),
    [
        (
            {"requirements.txt": "six==1.16.0\nno-such-thing==9\n"},
            "ERROR: Could not find a version that satisfies the requirement no-such-thing==9 "
            "(from versions: none)\nERROR: No matching distribution found for no-such-thing==9\n",
            r"requirements.txt asks for package no-such-thing==9 that PyPI cannot give this "
            r"machine: ERROR: Could not find a version that satisfies the requirement "
            r"no-such-thing==9 \(from versions: none\)\. Fix the name or version there",
        ),
        (
            {"package.json": '{"dependencies": {"no-such-thing": "1.0.0"}}', "index.js": JS_PLUGIN},
            "npm error code E404\nnpm error 404 Not Found - GET https://registry.npmjs.org/"
            "no-such-thing - Not found\nnpm error 404\nnpm error 404  'no-such-thing@1.0.0' is "
            "not in this registry.\n",
            r"package.json asks for package no-such-thing@1.0.0 that npm's registry cannot",
        ),
        (
            {"package.json": '{"dependencies": {"ms": "99.0.0"}}', "index.js": JS_PLUGIN},
            "npm error code ETARGET\nnpm error notarget No matching version found for ms@99.0.0.\n",
            r"package.json asks for package ms@99.0.0 that npm's registry cannot give this "
            r"machine: npm error code ETARGET",
        ),
    ],
    ids=["pip", "npm-404", "npm-no-version"],
)
def test_a_dependency_that_cannot_be_had_is_refused_naming_file_and_package(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    files: dict[str, str],
    stderr: str,
    message: str,
) -> None:
    if "package.json" in files:
        monkeypatch.setattr(shutil, "which", lambda _name: "/usr/bin/npm")
    else:
        files = {**files, "server.py": PYTHON_SERVER}
    directory = _write(tmp_path / "p", files)
    commands = _fail_with(monkeypatch, stderr)

    with pytest.raises(ConfigError, match=message):
        resolve_plugins([str(directory)], tmp_path)  # resolving the plugin: before any build
    assert len(commands) == 1
    assert not list((tmp_path / ".cache" / "deps").iterdir())  # nothing half-fetched is kept


def test_an_unreachable_registry_is_this_machines_problem(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    directory = _write(tmp_path / "p", {"requirements.txt": "six\n", "server.py": PYTHON_SERVER})
    _fail_with(
        monkeypatch,
        "WARNING: Retrying ... NewConnectionError: Failed to establish a new connection\n"
        "ERROR: No matching distribution found for six\n",
    )

    with pytest.raises(EnvironmentProblem, match="could not reach PyPI from this machine"):
        resolve_plugins([str(directory)], tmp_path)


def test_a_compiled_wheel_is_refused_and_the_images_own_are_dropped(tmp_path: Path) -> None:
    for wheel in ("six-1.16.0-py2.py3-none-any.whl", "greenlet-3.0.3-cp311-cp311-linux.whl"):
        (tmp_path / wheel).write_text("")
    python_kind.keep_pure_wheels(tmp_path, tmp_path / "requirements.txt")  # greenlet: the image's
    assert [p.name for p in tmp_path.iterdir()] == ["six-1.16.0-py2.py3-none-any.whl"]

    (tmp_path / "ujson-5.9.0-cp311-cp311-manylinux_2_17_x86_64.whl").write_text("")
    with pytest.raises(ConfigError, match=r"requirements.txt needs ujson 5.9.0, which comes only"):
        python_kind.keep_pure_wheels(tmp_path, tmp_path / "requirements.txt")


def test_the_fixtures_dependencies_are_declared_as_users_write_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fetched: list[tuple[list[str], dict[str, str]]] = []

    def fetch(command: list[str], *, cwd: Path, declared_in: Path, kind: str) -> None:
        folder = Path(command[command.index("--prefix") + 1]) if kind == "npm" else cwd
        seen = {p.name: p.read_text() for p in Path(command[-1]).parent.glob("*") if p.is_file()}
        if kind == "npm":
            seen = {p.name: p.read_text() for p in folder.glob("*.json")}
        fetched.append((command, seen))

    monkeypatch.setattr(host_fetch, "fetch_dependencies", fetch)
    monkeypatch.setattr(python_kind, "keep_pure_wheels", lambda *args: None)
    monkeypatch.setattr(shutil, "which", lambda _name: "/usr/bin/npm")
    resolve_plugins([str(PY_WITH_DEPS), str(JS_WITH_DEPS)], tmp_path)

    (pip, pip_files), (npm, npm_files) = fetched
    assert pip[1:4] == ["-m", "pip", "wheel"] and pip_files == {"requirements.txt": "six==1.16.0\n"}
    assert npm[:2] == ["npm", "install"] and "--ignore-scripts" in npm
    assert json.loads(npm_files["package.json"])["dependencies"] == {"ms": "2.1.3"}
    cached = sorted(p.name.rsplit("-", 1)[0] for p in (tmp_path / ".cache" / "deps").iterdir())
    assert cached == ["js-deps-js-with-deps", "python-deps-py-with-deps"]


@pytest.mark.parametrize(
    ("output", "line"),
    [
        (
            JS_DUMP_WITHOUT_MS,
            '2026-12-07T21:01:56.757Z [WARN] error loading plugin "index" from '
            "/usr/local/lib/kpm-plugins/js-with-deps/index.js: Error: Cannot find module 'ms' "
            "(its last line: [])",
        ),
        (PY_TRACEBACK, "ModuleNotFoundError: No module named 'six'"),
        ("\x1b[31mpanic: boom\x1b[0m\n", "panic: boom"),
        ("", "(no output)"),
    ],
    ids=["js-ansi", "python-traceback", "no-error-word", "empty"],
)
def test_a_failed_commands_output_is_told_by_its_first_real_error_line(
    output: str, line: str
) -> None:
    assert plugins.describe_output(output) == line


def test_a_query_that_prints_no_json_is_told_without_terminal_codes() -> None:
    with pytest.raises(StackError) as caught:
        _parse(JS_DUMP_WITHOUT_MS, "js")

    assert "\x1b" not in str(caught.value)
    assert str(caught.value).endswith("Error: Cannot find module 'ms' (its last line: [])")


def test_the_image_tag_follows_the_fetched_dependencies(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (source,) = resolve_plugins(["python"], REPO_ROOT)
    bases = {"kong_image": "k", "go_image": "g", "kind_image": "n", "sim": True}
    without = plugin_image_tag(source, engine=Engine(), **bases)  # type: ignore[arg-type]

    monkeypatch.setattr(plugin_images, "plugin_dependencies", lambda *args: tmp_path / "deps-1")
    first = plugin_image_tag(source, engine=Engine(), **bases)  # type: ignore[arg-type]
    monkeypatch.setattr(plugin_images, "plugin_dependencies", lambda *args: tmp_path / "deps-2")
    second = plugin_image_tag(source, engine=Engine(), **bases)  # type: ignore[arg-type]

    assert len({without, first, second}) == 3


@pytest.mark.docker
@pytest.mark.parametrize(("version", "verdict"), [("3.4.1.0", "churn"), ("3.6.0.0", "stable")])
@pytest.mark.parametrize("fixture", ["go-pdk-06", "py-with-deps", "js-with-deps"])
def test_an_old_go_pdk_and_plugins_with_dependencies_read_true_under_sim(
    tmp_path: Path, fixture: str, version: str, verdict: str
) -> None:
    (source,) = resolve_plugins([str(REPO_ROOT / "tests" / "plugins" / fixture)], REPO_ROOT)
    target = target_for_version(version)
    config = RunConfig(
        run_id=f"deps-{fixture}-{version}",
        targets=(target,),
        results_root=tmp_path,
        sim=True,
        requests=300,
    )
    config.run_dir.mkdir(parents=True)

    row = pipeline.measure_job(pipeline.Job(target, "steady", source), config)

    assert row.status == "ok", row.error
    assert (row.plugin, row.counted_by, row.verdict, row.failures) == (fixture, "tap", verdict, 0)


def test_every_problem_of_a_config_is_named_at_once() -> None:
    """One fix and retry, not one per problem: the check goes on past the first."""
    config = {"tag": 5, "limit": 101, "extra": 1, "names": ["a", 2, 3], "inner": {"mode": "c"}}
    with pytest.raises(ConfigError) as raised:
        validate_plugin_config(config, DUMP)
    assert str(raised.value) == (
        "--plugin-config has 6 problems for plugin p: "
        "(1) config.extra is not a field of plugin p (its fields: tag, limit, ratio, on, names, "
        "codes, headers, inner); "
        "(2) config.tag of plugin p must be a string, got 5; "
        "(3) config.limit of plugin p must be between 0 and 100, got 101; "
        "(4) config.names[1] of plugin p must be a string, got 2; "
        "(5) config.names[2] of plugin p must be a string, got 3; "
        '(6) config.inner.mode of plugin p must be one of ["a", "b"], got "c"'
    )
    with pytest.raises(ConfigError) as raised:  # a value of the wrong kind is one problem
        validate_plugin_config({"names": "a"}, DUMP)
    assert str(raised.value).startswith("--plugin-config has 2 problems for plugin p: (1) ")
    assert "names of plugin p must be a JSON array (array)" in str(raised.value)
    assert "config.tag is required" in str(raised.value)


# --- the kinds: one protocol, one module and one Dockerfile target each -----------------------


def test_each_kind_is_a_target_of_the_plugin_dockerfile() -> None:
    dockerfile = (REPO_ROOT / "images" / "plugins" / "Dockerfile").read_text()
    targets = re.findall(r"^FROM \S+ AS (\S+)$", dockerfile, re.MULTILINE)

    assert [kind.name for kind in KINDS] == ["go", "python", "js"]
    assert {kind.name for kind in KINDS} <= set(targets)


def test_no_module_outside_the_kinds_asks_which_kind_a_plugin_is() -> None:
    """What differs by kind is asked of the kind (orchestration/kinds), never branched on."""
    names = "|".join(kind.name for kind in KINDS)
    asking = re.compile(
        rf"""\bkind\s*(?:==|!=)\s*["'](?:{names})["']"""
        rf"""|\.kind\s+(?:not\s+)?in\s*[(\[{{]\s*["'](?:{names})["']"""
    )
    package = REPO_ROOT / "orchestration"
    found = [
        f"{path.relative_to(package)}:{number}: {line.strip()}"
        for path in sorted(package.rglob("*.py"))
        if "kinds" not in path.relative_to(package).parts
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if asking.search(line)
    ]
    assert found == []


def test_an_unknown_kind_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"no plugin kind 'rust': the kinds are go, python, js"):
        kind_named("rust")


def test_prepare_fetches_each_pdk_fetched_on_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    fetched: list[str] = []
    for kind in KINDS:
        monkeypatch.setattr(kind, "fetch_pdk", lambda name=kind.name: fetched.append(name))

    timings = plugins.prepare(sim_base=False)

    assert list(timings) == ["python-pdk", "js-pdk"]  # go-pdk: the Go build fetches it
    assert fetched == ["python", "js"]


@pytest.mark.parametrize(
    ("value", "staged"),
    [
        ("go", {"plugin/main.go", "plugin/go.mod", "plugin/latest.mod"}),
        ("python", {"plugin/python-plugin.py", "pdk/kong_pdk-0.36-py3-none-any.whl"}),
        ("js", {"plugin/js-plugin/package.json", "pdk/node_modules/kong-pdk/package.json"}),
    ],
)
def test_each_kind_stages_what_its_target_copies(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str, staged: set[str]
) -> None:
    """The context the Dockerfile's header describes: plugin/, gomodcache/, pdk/, tap/ always;
    the PDK (faked here: no network) and the plugin where its kind's target looks."""
    pdk = _write(tmp_path / "pdk", {"kong_pdk-0.36-py3-none-any.whl": ""})
    _write(pdk / "node_modules" / "kong-pdk", {"package.json": "{}"})
    for kind in KINDS:
        monkeypatch.setattr(kind, "fetch_pdk", lambda: pdk)
    (source,) = resolve_plugins([value], REPO_ROOT)
    context = tmp_path / "context"

    plugins.stage_context(source, context, offline_modules=False)

    files = {p.relative_to(context).as_posix() for p in context.rglob("*") if p.is_file()}
    assert staged <= files
    assert {"Dockerfile", "install-runtime.sh", "upstream.conf", "tap/go.mod"} <= files
    assert all((context / folder).is_dir() for folder in ("plugin", "gomodcache", "pdk"))


def test_a_folder_without_a_plugin_is_told_what_each_kind_looks_like(tmp_path: Path) -> None:
    def refusal(path: Path) -> str:
        with pytest.raises(ConfigError) as raised:
            plugins.plugin_from_directory(path)
        return str(raised.value)

    empty = _write(tmp_path / "empty", {"main.go": "package main"})
    assert refusal(empty) == (
        f"--plugin {empty}: no plugin found. Expected a Go main package on go-pdk (go.mod and a "
        ".go file `package main` importing github.com/Kong/go-pdk), a Python plugin (a .py "
        "importing kong_pdk) or a JavaScript plugin (package.json or a .js using kong-pdk / "
        "exporting Plugin)"
    )
    assert refusal(empty / "main.go") == (
        f"--plugin {empty / 'main.go'} is a file: give the plugin's directory (the one holding "
        "go.mod, the Python server script or package.json)"
    )
