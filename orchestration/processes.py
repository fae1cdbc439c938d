"""Processes this tool starts, and the signals that stop a run: one place for both.

A run is stopped by SIGINT (Ctrl-C), SIGTERM or SIGHUP (the terminal closed): `STOP_SIGNALS`.
Teardown holds them (`signals_held`) so a second Ctrl-C cannot leave a stack running; a process
started for a teardown runs in a session of its own (`run_in_own_session`). Children a worker
thread is blocked on (a `compose build`, a Locust) are stopped by their command line
(`stop_descendants`) or by their process group (`signal_group`). Host tools (docker, go, file,
debootstrap) run through `run_host_command`, which turns a failure into an error that says what
to do.

Standard library only (psutil when stopping descendants): every other module may import this one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType

from orchestration.errors import EnvironmentProblem, MatrixError

LOGGER = logging.getLogger(__name__)

# SIGHUP: the terminal the run was started in closed (its window, an ssh session that dropped).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
STOP_GRACE_S = 5.0  # how long a stopped child may take to exit before SIGKILL
COMMAND_TIMEOUT_S = 15.0


def run_host_command(
    command: list[str],
    *,
    problem: str,
    remedy: str = "",
    timeout_s: float | None = None,
    error: type[MatrixError] = EnvironmentProblem,
) -> str:
    """Run a host tool and return its output; `error` (by default EnvironmentProblem, which
    stops the run), saying what to do, if it fails."""
    timeout_s = COMMAND_TIMEOUT_S if timeout_s is None else timeout_s
    shown = " ".join(command)
    advice = f"; {remedy}" if remedy else ""
    try:
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        raise error(f"{problem}: `{shown}` gave no answer in {timeout_s:.0f}s{advice}") from None
    if completed.returncode != 0:
        detail = last_lines(completed.stderr or completed.stdout, 3)
        raise error(
            f"{problem} (`{shown}`: {detail or f'exit code {completed.returncode}'}){advice}"
        )
    return completed.stdout


def run_in_own_session(command: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    """Run `command` in a session of its own, made before it is executed, so no Ctrl-C or
    SIGTERM sent to our process group reaches it (for a teardown). One that comes between the
    fork and the new session meets our own handlers, copied into the child, not the command's;
    one that killed it anyway (a negative exit) runs it once more. Output captured; raises
    subprocess.TimeoutExpired."""
    for _attempt in range(2):
        completed = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            start_new_session=True,
        )
        if completed.returncode >= 0:
            break
    return completed


def last_lines(text: str | None, count: int) -> str:
    """The last `count` lines of `text` that are not blank."""
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return "\n".join(lines[-count:])


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold the stop signals during the block, then deliver the first that came.

    Teardown runs inside this: a second Ctrl-C must not leave a stack running. Only the
    main thread receives signals, so elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(signal_number: int, _frame: FrameType | None) -> None:
        received.append(signal_number)

    previous = {number: signal.signal(number, hold) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if received:
            LOGGER.warning(
                "signal %d was held until teardown finished; acting on it now", received[0]
            )
            signal.raise_signal(received[0])


def signal_group(group_id: int, signal_number: int) -> None:
    """Send `signal_number` to a process group; nothing if the whole group has already exited."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group_id, signal_number)


def signal_descendants(matches: Callable[[list[str]], bool], signal_number: int) -> int:
    """Send `signal_number` to this process's descendants whose command line `matches`.

    Used to stop our own children (a `compose build`, a Locust) that a worker thread is
    blocked on. A process that is its own group leader gets the signal for its whole
    group. Returns how many were signalled.
    """
    import psutil  # only needed on the way out of an interrupted run

    signalled = 0
    for child in psutil.Process().children(recursive=True):
        try:
            command: list[str] = child.cmdline()
            if not matches(command):
                continue
            pid: int = child.pid
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal_number)
            else:
                os.kill(pid, signal_number)
            signalled += 1
        except (psutil.Error, ProcessLookupError):
            continue  # it exited meanwhile
    return signalled


def stop_descendants(matches: Callable[[list[str]], bool], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM our descendants whose command line `matches`; SIGKILL those still there after
    `grace_s` (a build that takes its time to cancel must not outlive the run)."""
    signal_descendants(matches, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not signal_descendants(matches, 0):  # signal 0: only asks whether they are there
            return
        time.sleep(0.1)
    signal_descendants(matches, signal.SIGKILL)
