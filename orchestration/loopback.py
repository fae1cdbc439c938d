"""The one loopback rule: this tool sends load and probes, and talks to Docker engines, on this
machine's loopback only (127.0.0.1, localhost, ::1). Every address check in the package is this
one; private ranges (10.x, 172.16-31.x, 192.168.x) and their IPv4-mapped forms are not loopback.
"""

from __future__ import annotations

LOOPBACK = "127.0.0.1"  # where Compose publishes Kong's ports, and what the probes ask
LOOPBACK_HOSTS = frozenset({LOOPBACK, "localhost", "::1"})


def is_loopback(host: str | None) -> bool:
    """Whether `host` (a URL's hostname, brackets removed) names this machine's loopback."""
    return host in LOOPBACK_HOSTS


def allowed() -> str:
    """The hosts the rule admits, for messages."""
    return ", ".join(sorted(LOOPBACK_HOSTS))
