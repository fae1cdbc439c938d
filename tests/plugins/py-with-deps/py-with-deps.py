#!/usr/bin/env python3
# mypy: ignore-errors
# (a user's plugin, type-checked by no one: kong_pdk lives in the plugin image, not here)
"""A test fixture shaped like a user's Python plugin with a dependency of its own: it imports
`six` (requirements.txt), which the plugin image must carry, and sets a header with it."""

import six
from kong_pdk.pdk import kong as pdk

Schema = ({"message": {"type": "string"}},)

version = "0.1.0"
priority = 10


class Plugin:
    def __init__(self, config):
        self.config = config

    def access(self, kong: pdk.kong):
        kong.response.set_header("X-Py-With-Deps", six.ensure_str(self.config.get("message") or ""))


if __name__ == "__main__":
    from kong_pdk.cli import start_dedicated_server

    start_dedicated_server("py-with-deps", Plugin, version, priority, Schema)
