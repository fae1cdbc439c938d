"""Every test runs with none of the developer's KPM_* settings (a KPM_REQUESTS in someone's shell
must not change what a test measures); tests that want one set it themselves."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _no_kpm_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("KPM_")]:
        monkeypatch.delenv(name)
