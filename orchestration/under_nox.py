"""How the nox sessions run the harness, so that a Ctrl-C never cuts its teardown short.

Nox answers Ctrl-C by giving its child 0.3 s, then SIGTERM, then SIGKILL 0.2 s later, while a
Kong stack takes seconds to come down. So a harness session runs its command in two halves:

- in nox's own process, `signals_passed_on()` replaces nox's reaction to SIGINT, SIGTERM and
  SIGHUP (the terminal closed) for the length of the command: each signal is passed on, once,
  to the child, and nox keeps waiting until the child has finished; afterwards the session ends
  the way the child did (Ctrl-C: nox reports the session interrupted and exits 130; SIGTERM:
  exit 143; SIGHUP: 129);
- the child, `python -m orchestration.under_nox MODULE ARGS...`, first leaves nox's session
  (`setsid`), so a terminal's Ctrl-C reaches it only through nox, exactly once per key press, then
  runs `python -m MODULE ARGS...`.
Nothing here talks to Docker; the CLI behaves as it does when run by hand.
"""

from __future__ import annotations

import contextlib
import os
import runpy
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import FrameType

from orchestration.processes import STOP_SIGNALS

PASSED_ON = STOP_SIGNALS  # SIGHUP among them: the terminal closed
ENTRY = "orchestration.under_nox"


@dataclass
class Received:
    """The signals nox's process received while the child ran, in order."""

    signals: list[int] = field(default_factory=list)

    @property
    def first(self) -> int | None:
        return self.signals[0] if self.signals else None


def child_command(python: str, module: str, *args: str) -> list[str]:
    """The command nox runs: `python -m orchestration.under_nox MODULE ARGS...`."""
    return [python, "-m", ENTRY, module, *args]


def _children_running_entry() -> list[int]:
    """Our direct children that run this module (the command nox started)."""
    import psutil  # a dependency of the package; only needed once a signal came

    found = []
    for child in psutil.Process().children(recursive=False):
        with contextlib.suppress(psutil.Error):
            if ENTRY in child.cmdline():
                found.append(child.pid)
    return found


@contextlib.contextmanager
def signals_passed_on() -> Iterator[Received]:
    """While the block runs (nox waiting for its child), SIGINT and SIGTERM go to the child.

    The handler never raises, so nox's wait for the child simply goes on. Only the main thread
    can install handlers; nox runs sessions there.
    """
    received = Received()

    def pass_on(signal_number: int, _frame: FrameType | None) -> None:
        received.signals.append(signal_number)
        for pid in _children_running_entry():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal_number)

    previous = {number: signal.signal(number, pass_on) for number in PASSED_ON}
    try:
        yield received
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def main(argv: list[str]) -> None:
    """Leave nox's session, then run `python -m MODULE ARGS...` in this process."""
    if not argv:
        sys.exit(f"usage: python -m {ENTRY} MODULE [ARGS...]")
    with contextlib.suppress(PermissionError):  # already a group leader: already on its own
        os.setsid()
    module, *args = argv
    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        # Done, results written: a late Ctrl-C must not turn the exit status into a crash.
        for number in PASSED_ON:
            signal.signal(number, signal.SIG_IGN)


if __name__ == "__main__":
    main(sys.argv[1:])
