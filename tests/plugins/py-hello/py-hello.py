#!/usr/bin/env python3
# mypy: ignore-errors
# (a user's plugin, type-checked by no one: kong_pdk lives in the plugin image, not here)
"""A test plugin in the shape of kong-python-pdk's examples/py-hello.py: priority 0 and one
access handler that greets the client in a header. Priority 0 runs after every bundled plugin."""

from kong_pdk.pdk import kong

Schema = ({"message": {"type": "string"}},)

version = "0.1.0"
priority = 0


class Plugin:
    def __init__(self, config):
        self.config = config

    def access(self, kong: kong.kong):
        host, err = kong.request.get_header("host")
        if err:
            kong.log.err(err)
        message = self.config.get("message") or "hello"
        kong.response.set_header("x-hello-from-python", f"Python says {message} to {host}")


if __name__ == "__main__":
    from kong_pdk.cli import start_dedicated_server

    start_dedicated_server("py-hello", Plugin, version, priority, Schema)
