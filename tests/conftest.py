"""Every test runs with none of the developer's KPM_* settings (a KPM_REQUESTS in someone's shell
must not change what a test measures; tests that want one set it themselves), and leaves the
process's signal handlers as it found them. Under mutmut (nox -s mutants) a child process runs
the mutant under test like the test itself, but never mutmut's coverage bookkeeping."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _no_kpm_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("KPM_")]:
        monkeypatch.delenv(name)


def pytest_configure(config: pytest.Config) -> None:
    """A suite started as a background job of a non-interactive shell (`.ci/run ... &`) inherits
    SIGINT ignored, and Python then leaves it so: the tests that send themselves a Ctrl-C would
    wait for it forever. Give SIGINT Python's own handler back."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _signal_handlers_restored() -> Iterator[None]:
    """A test that runs `cli.main` in-process installs its handlers; the next test starts clean."""
    stop_signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    saved = {number: signal.getsignal(number) for number in stop_signals}
    yield
    for number, handler in saved.items():
        signal.signal(number, handler)


@pytest.fixture(autouse=True)
def _mutmut_stats_stay_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """mutmut's first pass records which tests call which function, in this process only; a
    child (`python -m orchestration` in a tmp dir) inheriting that mode would look for mutmut's
    configuration there and fail. Without the variable the child runs the original code, while
    this process keeps its own copy of the mode."""
    if os.environ.get("MUTANT_UNDER_TEST") == "stats":
        monkeypatch.delenv("MUTANT_UNDER_TEST")
