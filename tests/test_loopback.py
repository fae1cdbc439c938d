"""orchestration/loopback.py: the one rule for where traffic and Docker engines may be."""

from __future__ import annotations

import pytest

from orchestration.engines import parse_docker_host
from orchestration.errors import UsageError
from orchestration.load import require_loopback
from orchestration.loopback import is_loopback

NOT_LOOPBACK = [
    "10.0.0.1",  # private ranges
    "172.17.0.1",  # Docker's default bridge gateway
    "192.168.1.5",
    "::ffff:10.0.0.1",  # IPv4-mapped private
    "::ffff:127.0.0.1",  # not how this tool names loopback: refused, not guessed at
    "8.8.8.8",  # public
    "2001:db8::1",
    "127.0.0.1.example.com",
    "0.0.0.0",
    "",
]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_loopback_is_admitted_everywhere(host: str) -> None:
    assert is_loopback(host)
    url_host = f"[{host}]" if ":" in host else host
    require_loopback(f"http://{url_host}:8000")
    assert parse_docker_host(f"tcp://{url_host}:2375") == f"tcp://{url_host}:2375"


@pytest.mark.parametrize("host", NOT_LOOPBACK)
def test_every_other_address_is_refused_everywhere(host: str) -> None:
    assert not is_loopback(host)
    url_host = f"[{host}]" if ":" in host else host
    with pytest.raises(UsageError, match="not an http"):
        require_loopback(f"http://{url_host}:8000")
    with pytest.raises(UsageError, match="--docker-host"):
        parse_docker_host(f"tcp://{url_host}:2375")
