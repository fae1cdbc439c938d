#!/usr/bin/env python3
"""The example plugin in Python (kong-pdk on PyPI), written like the PDK's own examples.

Same contract as plugins/example-plugin: count how often the plugin server
constructs an instance (the PDK calls `Plugin(config)` once per StartInstance,
as go-pdk calls New()), log the count at debug through kong.log, and mark the
response with the count and the configured message. It runs as a dedicated
server (start_dedicated_server), the embedded server Kong's docs describe.
"""

import threading

import kong_pdk.pdk.kong as kong

Schema = ({"message": {"type": "string"}},)

version = "0.1.0"
# Above request-termination's (2), so access runs before that plugin ends the request.
priority = 1000

_new_calls = 0
_new_calls_lock = threading.Lock()


class Plugin(object):
    def __init__(self, config):
        global _new_calls
        with _new_calls_lock:
            _new_calls += 1
        self.config = config

    def access(self, kong: kong.kong):
        calls = _new_calls
        kong.log.debug("New() has been called %d times" % calls)
        kong.response.set_header("X-Example-Message", "New() calls: %d" % calls)
        kong.response.set_header("X-Example-Config", self.config.get("message") or "")


if __name__ == "__main__":
    from kong_pdk.cli import start_dedicated_server

    start_dedicated_server("python-plugin", Plugin, version, priority, Schema)
