"""The plugin's contract with the harness, in one place: its names, route, headers and counter.

Any plugin (`--plugin`) runs on `/hello`; what Kong needs to start it (its plugin server's name,
start and query commands, socket, protocol) comes from its own dump. The built-in plugins keep the
example plugin's contract below and report their own New() count; a user's plugin reports nothing
(`marker_header` None): kpm-tap's counts are then all the harness knows.

The example plugin (plugins/example-plugin) counts its `New()` calls, logs the count on every
request as `New() has been called N times` (a debug line the collector reads), and marks its
responses with `X-Example-Message: New() calls: N`, so a client can tell the plugin ran and read
its own count. It echoes its configured `message` in `X-Example-Config`, so a client can tell which
configuration the running instance has. kong.yml puts it on the `/hello` route; `/hello-lua` is the
same route with a bundled Lua plugin (response-transformer) setting the marker header instead.
"""

from __future__ import annotations

import http.client
import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

import yaml

from orchestration.errors import StackError

PROBE_TIMEOUT_S = 10.0
KONG_YML = "images/kong.yml"
# kpm-tap (images/kong-sim/cmd/kpm-tap), in the plugin image: Kong starts it as the plugin server,
# and it starts the plugin behind it, counting on its stdout what crosses the socket.
TAP_COMMAND = "/usr/local/bin/kpm-tap"
TAP_PREFIX = "/tmp/kpm-tap"  # where the tap has the real server put its socket
# Loopback only, and never through an HTTP proxy a user may have configured.
LOOPBACK_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class PluginContract:
    name: str = "example-plugin"  # the plugin server's name (KONG_PLUGINSERVER_NAMES)
    route: str = "/hello"
    lua_route: str = "/hello-lua"  # the same work by a bundled Lua plugin, no plugin server
    # None: the plugin sets no header of ours (a user's plugin): only kpm-tap sees its instances
    marker_header: str | None = "X-Example-Message"
    config_header: str | None = "X-Example-Config"
    counter_in_header: re.Pattern[str] = re.compile(r"New\(\) calls: (\d+)")
    server_command: str = "/usr/local/bin/example-plugin"  # the plugin server, as Kong starts it
    protocol: str = "ProtoBuf:1"  # what its `-dump` says in "Protocol"
    # Kong's socket for it: /usr/local/kong/NAME.socket on 3.4-3.8, <prefix>/NAME.socket on 3.9+
    # (the same path: the images keep the default prefix).
    socket: str = "/usr/local/kong/example-plugin.socket"
    plugin_name: str = "example-plugin"  # the plugin's name for Kong (KONG_PLUGINS, kong.yml)
    query_command: str = "/usr/local/bin/example-plugin -dump"
    phases: tuple[str, ...] = ("access",)
    priority: int | None = None  # its dump's; None where not known (the template)
    label: str = "go"  # the row's name for it: a built-in's name, or the user's folder
    config_json: str = "{}"  # its `config` in the declarative config (JSON, so it stays frozen)
    # `id` in the declarative config: fixed, so POST /config can send the same plugin back
    plugin_id: str = field(default="ddc8f06e-572c-4b25-ab9b-23c5d3950cc2")
    # the server's process name in /proc (comm): a Go binary's own, Python's and Node's otherwise
    process_name: str = "example-plugin"

    @property
    def log_name(self) -> str:
        """The name to find its lines under in Kong's log: the plugin's name as written when Kong's
        lowercased server name is that (the collector then finds both spellings), else the
        server's name."""
        if self.plugin_name.lower() == self.name.lower():
            return self.plugin_name
        return self.name

    def facts(self) -> dict[str, Any]:
        """What Kong learned from the plugin's dump and how it runs it: plugin.json."""
        return {
            "server_name": self.name,
            "plugin_name": self.plugin_name,
            "log_name": self.log_name,
            "priority": self.priority,
            "phases": list(self.phases),
            "protocol": self.protocol,
            "label": self.label,
            "reports_new_calls": self.reports_new_calls,
        }

    @property
    def reports_new_calls(self) -> bool:
        """Whether the plugin logs and sends its own New() count (the built-ins do)."""
        return self.marker_header is not None

    def start_command(self, *, tap: bool) -> str:
        """KONG_PLUGINSERVER_<NAME>_START_CMD: the plugin server, or kpm-tap in front of it."""
        if not tap:
            return self.server_command
        # The tap starts the server with `--kong-prefix TAP_PREFIX`; the server names its socket
        # there as it would in Kong's prefix (go-pdk NAME.socket, Python and JS PDKs NAME.sock).
        server_socket = f"{TAP_PREFIX}/{PurePosixPath(self.socket).name}"
        tap_flags = (
            f"-listen {self.socket} -protocol {self.protocol} -private-prefix {TAP_PREFIX} "
            f"-server-socket {server_socket}"
        )
        return f"{TAP_COMMAND} {tap_flags} -- {self.server_command}"

    def kong_environment(self, *, tap: bool) -> dict[str, str]:
        """The KONG_* variables that make Kong run this plugin (Kong's own names for them)."""
        prefix = "KONG_PLUGINSERVER_" + re.sub(r"\W", "_", self.name).upper()
        return {
            "KONG_PLUGINS": f"bundled,{self.plugin_name}",
            "KONG_PLUGINSERVER_NAMES": self.name,
            f"{prefix}_START_CMD": self.start_command(tap=tap),
            # Required on 3.4-3.8: how Kong learns the plugin's schema and priority.
            f"{prefix}_QUERY_CMD": self.query_command,
            f"{prefix}_SOCKET": self.socket,
        }

    def declarative(self, template: dict[str, Any]) -> dict[str, Any]:
        """`template` (images/kong.yml) with this plugin, its id and config on the plugin route."""
        config = json.loads(self.config_json)
        services = []
        for service in template.get("services", []):
            routes = []
            for route in service.get("routes", []):
                plugins = [
                    {"name": self.plugin_name, "id": self.plugin_id, "config": config}
                    if entry.get("name") == EXAMPLE_PLUGIN_NAME
                    else entry
                    for entry in route.get("plugins", [])
                ]
                routes.append({**route, "plugins": plugins})
            services.append({**service, "routes": routes})
        return {**template, "services": services}

    def probe_path(self, purpose: str) -> str:
        """The route, marked with why it was asked, so the probe stands out in the access log."""
        return f"{self.route}?kpm-probe={purpose}"

    def counter_from(self, marker: str | None) -> int | None:
        """The plugin's New() count in its marker header, or None when it holds none."""
        match = self.counter_in_header.search(marker or "")
        return int(match.group(1)) if match else None


EXAMPLE = PluginContract()
EXAMPLE_PLUGIN_NAME = EXAMPLE.plugin_name  # its entry in images/kong.yml, the template


class Answer(NamedTuple):
    """One response as the plugin's contract reads it."""

    status: int | None  # None: no HTTP answer came back
    marker: str | None  # the marker header, when present: the plugin ran
    counter: int | None  # the plugin's New() count from it
    config: str | None  # the configured message the running instance echoes
    error: str | None  # why no HTTP answer came back


def ask(
    base_url: str,
    path: str,
    contract: PluginContract = EXAMPLE,
    timeout_s: float = PROBE_TIMEOUT_S,
) -> Answer:
    """GET `base_url + path` once (always a loopback URL) and read the plugin's headers."""
    try:
        with LOOPBACK_OPENER.open(base_url + path, timeout=timeout_s) as response:
            return _answer(response.status, response.headers, contract)
    except urllib.error.HTTPError as error:
        return _answer(error.code, error.headers, contract)
    except (OSError, http.client.HTTPException) as error:
        return Answer(None, None, None, None, str(getattr(error, "reason", error)))


def _answer(status: int, headers: object, contract: PluginContract) -> Answer:
    get = getattr(headers, "get", lambda _name: None)
    marker = get(contract.marker_header) if contract.marker_header else None
    config = get(contract.config_header) if contract.config_header else None
    return Answer(status, marker, contract.counter_from(marker), config, None)


def declarative_template(repo_root: Path) -> dict[str, Any]:
    """images/kong.yml, the declarative config every plugin's is made from (`declarative`)."""
    path = repo_root / KONG_YML
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise StackError(f"cannot read the declarative config {path}: {error}") from None
    if not isinstance(loaded, dict):
        raise StackError(f"{path} is not a declarative configuration (a mapping)")
    return loaded
