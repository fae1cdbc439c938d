"""Who owns a run's stacks and child processes: the harness process, named so it can be checked.

`HOST:PID:STARTED` goes into a label on every Docker object a run creates and into the
environment (`KPM_OWNER`) of every process it starts; `clean` removes what belongs to owners that
no longer run (see orchestration/clean.py).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Literal

OWNER_ENV = "KPM_OWNER"
START_TIME_TOLERANCE_S = 1.0  # /proc's start times are in clock ticks; never off by a second

Liveness = Literal["alive", "dead", "elsewhere"]


@dataclass(frozen=True)
class Owner:
    """The harness process that owns a run's stacks and children."""

    host: str
    pid: int
    started: float  # the process's start time, seconds since the epoch

    @property
    def text(self) -> str:
        return f"{self.host}:{self.pid}:{self.started:.2f}"

    @classmethod
    def current(cls) -> Owner:
        return cls(socket.gethostname(), os.getpid(), _start_time(os.getpid()) or 0.0)

    @classmethod
    def parse(cls, text: str) -> Owner | None:
        """The owner a label or variable names; None for an empty or malformed text."""
        host, _, rest = text.rpartition(":")
        host, _, pid = host.rpartition(":")
        try:
            return cls(host, int(pid), float(rest)) if host else None
        except ValueError:
            return None

    def liveness(self, this_host: str) -> Liveness:
        if self.host != this_host:
            return "elsewhere"
        started = _start_time(self.pid)
        alive = started is not None and abs(started - self.started) < START_TIME_TOLERANCE_S
        return "alive" if alive else "dead"


def _start_time(pid: int) -> float | None:
    import psutil

    try:
        created: float = psutil.Process(pid).create_time()
    except psutil.Error:
        return None
    return created
