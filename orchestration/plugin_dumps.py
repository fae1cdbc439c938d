"""Asking a plugin image what Kong would ask: its query command's dump (cached by image ID)."""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestration import plugin_images
from orchestration.engine import Engine
from orchestration.errors import StackError
from orchestration.host_fetch import describe_output
from orchestration.kinds import kind_of
from orchestration.kinds.base import PluginSource

LOGGER = logging.getLogger(__name__)

# What a plugin image's query command printed, by image ID: the dump is a function of the image.
DUMP_CACHE_DIR = Path(".cache/dumps")
PROTOBUF = "ProtoBuf:1"
MSGPACK = "MsgPack:1"


@dataclass(frozen=True)
class PluginDump:
    """What Kong learns from the plugin's query command, and how Kong must run it."""

    server_name: str  # the KONG_PLUGINSERVER_NAMES entry, lowercased as Kong does
    plugin_name: str  # the KONG_PLUGINS entry and kong.yml's plugin name
    protocol: str  # ProtoBuf:1 (go-pdk) or MsgPack:1 (Python, JavaScript)
    phases: tuple[str, ...]
    priority: int
    version: str | None
    schema: Mapping[str, Any]  # the `config` record, in Kong's schema format
    start_command: str  # KONG_PLUGINSERVER_<NAME>_START_CMD
    query_command: str  # KONG_PLUGINSERVER_<NAME>_QUERY_CMD
    socket: str  # KONG_PLUGINSERVER_<NAME>_SOCKET: where the server listens


def commands_for(source: PluginSource) -> tuple[str, str]:
    """(start command, query command) as Kong must be given them."""
    return kind_of(source).commands(source)


def dump_plugin(image: str, source: PluginSource, engine: Engine) -> PluginDump:
    """Run the plugin's query command in `image` on `engine` as Kong does and read what it
    says."""
    start, query = commands_for(source)
    output = _ask(image, source, query, engine)
    return parse_dump(output, source, start_command=start, query_command=query)


def _ask(image: str, source: PluginSource, query: str, engine: Engine) -> str:
    what = f"the query command of plugin {source.label}"
    return plugin_images.run_in_image(image, query.split(), what=what, engine=engine)


def cached_dump(image: str, source: PluginSource, engine: Engine, *, cache: Path) -> PluginDump:
    """`dump_plugin`, asked once per image: the output is kept under `cache`, named by the
    image's ID and the query command, and read back (one `docker image inspect` instead of a
    `docker run`) while that image exists. Only output that parses as a dump is kept."""
    start, query = commands_for(source)
    image_id = plugin_images.image_id(image, engine)
    if image_id is None:  # not on the engine: let the run say so as it always has
        return dump_plugin(image, source, engine)
    key = hashlib.sha256(f"{image_id}\0{query}".encode()).hexdigest()[:32]
    kept = cache / f"{key}.json"
    try:
        return parse_dump(kept.read_text(), source, start_command=start, query_command=query)
    except (OSError, StackError):  # not kept yet, unreadable, or not a dump: ask the image
        pass
    output = _ask(image, source, query, engine)
    dump = parse_dump(output, source, start_command=start, query_command=query)
    _keep(kept, output)
    return dump


def _keep(path: Path, text: str) -> None:
    """Write `text` to `path` whole or not at all (a concurrent run may write the same file)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            "w", dir=path.parent, prefix=".dump-", suffix=".tmp", delete=False
        ) as partial:
            partial.write(text)
        Path(partial.name).replace(path)
    except OSError as error:  # a read-only checkout still runs, asking the image every time
        LOGGER.info("could not keep the plugin dump in %s: %s", path, error)


def parse_dump(
    output: str, source: PluginSource, *, start_command: str, query_command: str
) -> PluginDump:
    """The dump of one plugin: go-pdk's object (Protocol, SocketPath, Plugins), or a list of
    plugin infos, which Kong takes for MsgPack:1 (the Python and JavaScript servers, go-pdk
    v0.6), whose socket the plugin's kind knows."""
    try:
        parsed = json.loads(output)
    except ValueError:
        raise StackError(
            f"the query command of plugin {source.label} (`{query_command}`) did not print JSON: "
            f"{describe_output(output)}"
        ) from None
    if isinstance(parsed, dict) and isinstance(parsed.get("Plugins"), list):
        protocol = str(parsed.get("Protocol") or PROTOBUF)
        infos, socket = parsed["Plugins"], str(parsed.get("SocketPath") or "")
    elif isinstance(parsed, list):
        protocol, infos, socket = MSGPACK, parsed, ""
    else:
        raise StackError(
            f"the query command of plugin {source.label} printed no plugin info table: "
            f"{output.strip()[:300]!r}"
        )
    if len(infos) != 1:
        names = [info.get("Name") for info in infos if isinstance(info, dict)]
        raise StackError(
            f"plugin {source.label}: its server dumps {len(infos)} plugins ({names}), one is "
            "measured at a time: keep one plugin per directory"
        )
    info = _plugin_info(infos[0], source)
    name = info["Name"]
    return PluginDump(
        # Kong lowercases plugin-server names (process.lua 3.4, conf_loader 3.9) and tags the
        # server's relayed lines with that; KONG_PLUGINS and the dump's Name keep their case.
        server_name=name.lower(),
        plugin_name=name,
        protocol=protocol,
        phases=tuple(info["Phases"]),
        priority=info["Priority"],
        version=info.get("Version"),
        schema=_config_schema(info, source),
        start_command=start_command,
        query_command=query_command,
        socket=socket or kind_of(source).default_socket(name, start_command),
    )


def _plugin_info(info: object, source: PluginSource) -> dict[str, Any]:
    problems = []
    if not isinstance(info, dict):
        problems.append("not an object")
    else:
        if not isinstance(info.get("Name"), str) or not info["Name"]:
            problems.append("no Name")
        phases = info.get("Phases")
        if not isinstance(phases, list) or not all(isinstance(p, str) for p in phases):
            problems.append("no list of Phases")
        if not isinstance(info.get("Priority"), int) or isinstance(info.get("Priority"), bool):
            problems.append("no integer Priority")
        if not isinstance(info.get("Schema"), dict):
            problems.append("no Schema")
    if problems:
        raise StackError(
            f"plugin {source.label}: its dump is not a plugin info table ({', '.join(problems)}): "
            f"{json.dumps(info)[:300]}"
        )
    assert isinstance(info, dict)
    return info


def _config_schema(info: Mapping[str, Any], source: PluginSource) -> Mapping[str, Any]:
    for field in info["Schema"].get("fields") or []:
        if isinstance(field, dict) and isinstance(field.get("config"), dict):
            config: Mapping[str, Any] = field["config"]
            return config
    raise StackError(f"plugin {source.label}: its dumped schema has no `config` record")
