"""Tests for orchestration/plugins.py: --plugin values, images, dumps, --plugin-config."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from python_on_whales import DockerClient

from orchestration import plugins, sim
from orchestration.errors import ConfigError, ImageUnavailable, StackError
from orchestration.plugins import (
    PluginDump,
    PluginSource,
    build_plugin_image,
    cached_dump,
    check_server_listens,
    dump_plugin,
    go_image_for,
    parse_dump,
    plugin_image_tag,
    resolve_plugins,
    run_in_image,
    validate_plugin_config,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURE = REPO_ROOT / "tests" / "plugins" / "rate-tag"
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
    assert go.go_directive == (1, 21)
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
    bases = {"kong_image": "k", "go_image": "g", "node_image": "n", "sim": True}

    before = plugin_image_tag(source, repo_root=REPO_ROOT, **bases)  # type: ignore[arg-type]
    again = plugin_image_tag(source, repo_root=REPO_ROOT, **bases)  # type: ignore[arg-type]
    (directory / "hello.js").write_text(JS_PLUGIN + "// edited\n")
    edited = plugin_image_tag(source, repo_root=REPO_ROOT, **bases)  # type: ignore[arg-type]

    assert before == again
    assert before.startswith("kong-plugin-matrix:plugin-my-js-sim-")
    assert edited != before


def test_a_moved_registry_tag_gets_a_new_plugin_image(monkeypatch: pytest.MonkeyPatch) -> None:
    """`kong:latest` pulled anew has another id: the plugin image's tag must change with it."""
    import orchestration.plugins as plugins_module

    ids = {"kong:latest": "sha256:aaa", "g": "sha256:g", "n": "sha256:n"}
    monkeypatch.setattr(plugins_module, "image_identity", lambda image, *_: f"{image}@{ids[image]}")
    (source,) = resolve_plugins(["go"], REPO_ROOT)
    bases = {"kong_image": "kong:latest", "go_image": "g", "node_image": "n", "sim": False}

    before = plugin_image_tag(source, repo_root=REPO_ROOT, **bases)  # type: ignore[arg-type]
    ids["kong:latest"] = "sha256:bbb"
    after = plugin_image_tag(source, repo_root=REPO_ROOT, **bases)  # type: ignore[arg-type]
    simulated = plugin_image_tag(source, repo_root=REPO_ROOT, **{**bases, "sim": True})  # type: ignore[arg-type]

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
        monkeypatch.setattr(plugins, "_image_id", lambda tag, host=None: self.ids.get(tag))
        monkeypatch.setattr(plugins, "run_in_image", self.run)

    def run(self, image: str, command: list[str], **_: object) -> str:
        self.runs += 1
        return self.output


def _rate_tag() -> PluginSource:
    return {s.label: s for s in resolve_plugins([str(FIXTURE)], REPO_ROOT)}["rate-tag"]


def test_a_dump_is_asked_once_per_image_id(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    engine = _Engine(monkeypatch, json.dumps(GO_DUMP))
    first = cached_dump("img", _rate_tag(), cache=tmp_path)
    again = cached_dump("img", _rate_tag(), cache=tmp_path)
    assert (engine.runs, again) == (1, first)
    assert first.schema["fields"][1] == {"limit": {"type": "integer"}}

    engine.ids["img"] = "sha256:bbb"  # rebuilt under the same tag: asked again
    engine.output = json.dumps(dict(GO_DUMP, SocketPath="/other.socket"))
    assert cached_dump("img", _rate_tag(), cache=tmp_path).socket == "/other.socket"
    assert engine.runs == 2
    assert len(list(tmp_path.glob("*.json"))) == 2


def test_a_kept_dump_that_is_not_a_dump_is_asked_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    engine = _Engine(monkeypatch, json.dumps(GO_DUMP))
    cached_dump("img", _rate_tag(), cache=tmp_path)
    (kept,) = tmp_path.glob("*.json")
    kept.write_text('{"Plugins": ')  # cut short

    assert cached_dump("img", _rate_tag(), cache=tmp_path).plugin_name == "rate-tag"
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
            cached_dump(image, _rate_tag(), cache=tmp_path)
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
        assert cached_dump("img", _rate_tag(), cache=blocked / "dumps").protocol == "ProtoBuf:1"
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
}


@pytest.fixture(scope="module")
def sim_images() -> Iterator[sim.SimImages]:
    yield sim.build_sim_images(SIM_VERSION, repo_root=REPO_ROOT)


def _built(source: PluginSource, sim_images: sim.SimImages) -> str:
    return build_plugin_image(
        source,
        kong_image=sim_images.kong_image,
        go_image=sim_images.go_image,
        sim=True,
        repo_root=REPO_ROOT,
    )


@pytest.mark.docker
@pytest.mark.parametrize("label", list(EXPECTED))
def test_each_plugin_image_dumps_what_kong_needs(label: str, sim_images: sim.SimImages) -> None:
    source = {s.label: s for s in resolve_plugins(["all", str(FIXTURE)], REPO_ROOT)}[label]
    image = _built(source, sim_images)
    dump = dump_plugin(image, source)

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
            image, ["/bin/sh", "-c", "test -x /usr/local/bin/kpm-tap && echo tap"], what="kpm-tap"
        )
        == "tap\n"
    )
    if source.kind != "go":
        check_server_listens(image, source, dump)
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
    asked = cached_dump(image, source, cache=tmp_path)
    assert len(list(tmp_path.glob("*.json"))) == 1
    assert asked == dump_plugin(image, source)

    def no_docker_run(*args: object, **kwargs: object) -> str:
        raise AssertionError("the image was asked again")

    monkeypatch.setattr(plugins, "run_in_image", no_docker_run)
    assert cached_dump(image, source, cache=tmp_path) == asked
    assert plugins._image_id(image) == DockerClient().image.inspect(image).id
    assert plugins._image_id("kong-plugin-matrix:no-such-image") is None


@pytest.mark.docker
def test_a_server_that_never_listens_fails_the_check(sim_images: sim.SimImages) -> None:
    (source,) = resolve_plugins(["python"], REPO_ROOT)
    image = _built(source, sim_images)
    dump = dump_plugin(image, source)
    elsewhere = PluginDump(**{**dump.__dict__, "socket": "/usr/local/kong/elsewhere.sock"})

    with pytest.raises(StackError, match=r"no socket at /usr/local/kong/elsewhere\.sock"):
        check_server_listens(image, source, elsewhere, timeout_s=2)


def test_pdk_pins_are_exact() -> None:
    requirements = (REPO_ROOT / plugins.PYTHON_PDK_REQUIREMENTS).read_text()
    package = json.loads((REPO_ROOT / plugins.JS_PDK_FILES[0]).read_text())

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
    assert plugins.process_name_of(kind, start_command) == name  # type: ignore[arg-type]


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
        plugins._fetch(failing, what="the Python PDK (kong-pdk) from PyPI")
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
