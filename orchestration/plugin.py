"""The plugin's contract with the harness, in one place: its name, route, headers and counter.

The example plugin (plugins/example-plugin) counts its `New()` calls, logs the count on every
request as `New() has been called N times` (a debug line the collector reads), and marks its
responses with `X-Example-Message: New() calls: N`, so a client can tell the plugin ran and read
its own count. It echoes its configured `message` in `X-Example-Config`, so a client can tell which
configuration the running instance has. kong.yml puts it on the `/hello` route; `/hello-lua` is the
same route with a bundled Lua plugin (response-transformer) setting the marker header instead.
"""

from __future__ import annotations

import http.client
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import NamedTuple

PROBE_TIMEOUT_S = 10.0
# kpm-tap (images/kong-sim/cmd/kpm-tap), in the plugin image: Kong starts it as the plugin server,
# and it starts the plugin behind it, counting on its stdout what crosses the socket.
TAP_COMMAND = "/usr/local/bin/kpm-tap"
# Loopback only, and never through an HTTP proxy a user may have configured.
LOOPBACK_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class PluginContract:
    name: str = "example-plugin"  # the plugin server's name (KONG_PLUGINSERVER_NAMES)
    route: str = "/hello"
    lua_route: str = "/hello-lua"  # the same work by a bundled Lua plugin, no plugin server
    marker_header: str = "X-Example-Message"
    config_header: str = "X-Example-Config"
    counter_in_header: re.Pattern[str] = re.compile(r"New\(\) calls: (\d+)")
    server_command: str = "/usr/local/bin/example-plugin"  # the plugin server, as Kong starts it
    protocol: str = "ProtoBuf:1"  # what its `-dump` says in "Protocol"
    # Kong's socket for it: /usr/local/kong/NAME.socket on 3.4-3.8, <prefix>/NAME.socket on 3.9+
    # (the same path: the images keep the default prefix).
    socket: str = "/usr/local/kong/example-plugin.socket"

    def start_command(self, *, tap: bool) -> str:
        """KONG_PLUGINSERVER_<NAME>_START_CMD: the plugin server, or kpm-tap in front of it."""
        if not tap:
            return self.server_command
        tap_flags = f"-listen {self.socket} -protocol {self.protocol}"
        return f"{TAP_COMMAND} {tap_flags} -- {self.server_command}"

    def probe_path(self, purpose: str) -> str:
        """The route, marked with why it was asked, so the probe stands out in the access log."""
        return f"{self.route}?kpm-probe={purpose}"

    def counter_from(self, marker: str | None) -> int | None:
        """The plugin's New() count in its marker header, or None when it holds none."""
        match = self.counter_in_header.search(marker or "")
        return int(match.group(1)) if match else None


EXAMPLE = PluginContract()


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
    marker = get(contract.marker_header)
    return Answer(status, marker, contract.counter_from(marker), get(contract.config_header), None)
