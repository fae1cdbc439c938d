"""The command line: `python -m orchestration {run,matrix,ui,collect,report,compare,merge,...}`.

The door: it builds the parser from the commands (orchestration/commands/) and the declared
options (orchestration/config.py), calls the chosen command, and is the only place exceptions
become exit codes: 0 every version ran, 1 some version errored, 2 bad usage or a missing
prerequisite (checked before any Docker work), 128+N on signal N (130 for Ctrl-C, 143 for
SIGTERM, 129 when the terminal closed: SIGHUP).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType
from typing import Any

from orchestration import __version__
from orchestration.commands import Command
from orchestration.commands.bisect import BISECT
from orchestration.commands.clean import CLEAN
from orchestration.commands.collect import COLLECT
from orchestration.commands.compare import COMPARE
from orchestration.commands.measure import MATRIX, RUN, SELFTEST, UI
from orchestration.commands.merge import MERGE
from orchestration.commands.pull import PULL
from orchestration.commands.report import REPORT
from orchestration.commands.versions import VERSIONS
from orchestration.config import OPTIONS
from orchestration.errors import Interrupted, MatrixError
from orchestration.options import add_options
from orchestration.processes import STOP_SIGNALS  # SIGHUP among them: the terminal closed

# In the order --help lists them.
COMMANDS: tuple[Command, ...] = (
    RUN,
    MATRIX,
    UI,
    BISECT,
    PULL,
    SELFTEST,
    COLLECT,
    CLEAN,
    REPORT,
    COMPARE,
    MERGE,
    VERSIONS,
)
_BY_NAME = {command.name: command for command in COMMANDS}


class _Parser(argparse.ArgumentParser):
    """argparse, but its errors say how to get help and exit 2 like ours."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m orchestration",
        description="Does Kong version X churn my Go plugin's instances, and how badly?",
        epilog="Every option of a command can also come from the environment as KPM_<OPTION> "
        "(shown beside it in the command's --help); a flag wins over the environment, which "
        "wins over the default.",
    )
    parser.add_argument("--version", action="version", version=f"kong-plugin-matrix {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command in COMMANDS:
        sub = commands.add_parser(command.name, help=command.help, description=command.description)
        command.arguments(sub)
        add_options(sub, command.name, OPTIONS)
    return parser


class _OutputThatMayGo:
    """stdout or stderr, whose reader may go while the run goes on: a closed terminal (EIO), a
    pipe whose reader quit (EPIPE). The first write that fails sends the descriptor to
    /dev/null; the run then tears down and writes its results files as it would have."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._gone = False

    def write(self, text: str) -> int:
        if not self._gone:
            try:
                return int(self._stream.write(text))
            except OSError:
                self._went()
        return len(text)

    def flush(self) -> None:
        if not self._gone:
            try:
                self._stream.flush()
            except OSError:
                self._went()

    def _went(self) -> None:
        self._gone = True
        with contextlib.suppress(OSError, ValueError, AttributeError):
            nowhere = os.open(os.devnull, os.O_WRONLY)
            os.dup2(nowhere, self._stream.fileno())  # what is still buffered goes there too
            os.close(nowhere)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _stop_on_first_signal(signal_number: int, _frame: FrameType | None) -> None:
    """The first Ctrl-C, SIGTERM or SIGHUP stops the run; later ones must not cut its teardown
    short."""
    for number in STOP_SIGNALS:
        signal.signal(number, _already_stopping)
    if signal_number == signal.SIGINT:
        raise KeyboardInterrupt
    raise Interrupted(signal_number)


def _already_stopping(signal_number: int, _frame: FrameType | None) -> None:
    print(
        f"{signal.Signals(signal_number).name} again: already stopping, the teardown goes on "
        "(a kill -9 would leave containers: then run `python -m orchestration clean`)",
        file=sys.stderr,
        flush=True,
    )


def _show_progress() -> None:
    """Stage progress (building, waiting, sending, tearing down) as `kpm:` lines on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("kpm: %(message)s"))
    logger = logging.getLogger("orchestration")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if not isinstance(stream, _OutputThatMayGo):
            setattr(sys, name, _OutputThatMayGo(stream))
    for number in STOP_SIGNALS:
        if signal.getsignal(number) is not signal.SIG_IGN:  # started to ignore it: keep that
            signal.signal(number, _stop_on_first_signal)
    _show_progress()
    try:
        code = _BY_NAME[args.command].run(args)
    except KeyboardInterrupt:
        print("interrupted by SIGINT (Ctrl-C); every stack started was torn down", file=sys.stderr)
        return 130
    except MatrixError as error:
        prefix = "" if error.exit_code > 128 else "error: "  # an interrupt is no error
        print(f"{prefix}{error}", file=sys.stderr)
        return error.exit_code
    _done_listening()
    return code


def _done_listening() -> None:
    """The work is done and shown: a signal from now on must not change how it ended."""
    for number in STOP_SIGNALS:
        if signal.getsignal(number) is not signal.SIG_IGN:
            signal.signal(number, signal.SIG_IGN)
