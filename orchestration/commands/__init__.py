"""The commands of `python -m orchestration`, each a small unit: its arguments and its run.

A module here exports one `Command` per command it serves; orchestration/cli.py lists them,
builds the parser from them and the declared options (orchestration/config.py), and calls the
chosen one's `run`. Nothing here turns an exception into an exit code: cli.main does.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass


def _no_arguments(_parser: argparse.ArgumentParser) -> None:
    """A command whose only arguments are declared options."""


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    run: Callable[[argparse.Namespace], int]  # the exit code: 0 all went well, 1 something did not
    # Its positional arguments and the flags only it has; the declared options that name it in
    # their `commands` are added beside them.
    arguments: Callable[[argparse.ArgumentParser], None] = _no_arguments
    description: str | None = None
