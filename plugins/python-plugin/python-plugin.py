#!/usr/bin/env python3
"""The example plugin in Python (kong-pdk on PyPI), written like the PDK's own examples.

Same contract as plugins/example-plugin: count how often the plugin server
constructs an instance (the PDK calls `Plugin(config)` once per StartInstance,
as go-pdk calls New()), log the count at debug through kong.log, and mark the
response with the count and the configured message. It runs as a dedicated
server (start_dedicated_server), the embedded server Kong's docs describe.
"""

import threading

from kong_pdk.pdk import kong as pdk

Schema = ({"message": {"type": "string"}},)

version = "0.1.0"
# Any priority runs: the route is proxied to an upstream, not answered by a bundled plugin.
priority = 1000


class Counter:
    """Constructor calls in this plugin-server process (the server runs instances in threads)."""

    def __init__(self):
        self.value = 0
        self._lock = threading.Lock()

    def add(self):
        with self._lock:
            self.value += 1


new_calls = Counter()


class Plugin:
    def __init__(self, config):
        new_calls.add()
        self.config = config

    def access(self, kong: pdk.kong):
        calls = new_calls.value
        kong.log.debug(f"New() has been called {calls} times")
        kong.response.set_header("X-Example-Message", f"New() calls: {calls}")
        kong.response.set_header("X-Example-Config", self.config.get("message") or "")


if __name__ == "__main__":
    from kong_pdk.cli import start_dedicated_server

    start_dedicated_server("python-plugin", Plugin, version, priority, Schema)
