"""The exceptions the harness raises. Only `cli.main` turns them into exit codes."""

from __future__ import annotations


class MatrixError(Exception):
    """Base class: something the user can act on, with a message that says what."""

    exit_code = 1


class UsageError(MatrixError):
    """Bad input on the command line (unknown version, bad number): nothing was run."""

    exit_code = 2


class ConfigError(UsageError):
    """A value the user gave is wrong (a --plugin directory, a --plugin-config): nothing was run."""


class EnvironmentProblem(MatrixError):
    """A prerequisite is missing (Docker, the daemon, the Compose plugin, Locust)."""

    exit_code = 2


class StackError(MatrixError):
    """Building, starting or stopping one version's stack failed."""


class ImageUnavailable(StackError):
    """A base image could not be pulled or built (missing tag, no registry).

    `build_output` holds the build's own lines, for a log file next to the results.
    """

    def __init__(self, message: str, build_output: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.build_output = build_output


class ReadyTimeout(StackError):
    """Kong or the plugin never answered within the readiness budget."""

    def __init__(self, message: str, last_log_lines: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.last_log_lines = last_log_lines


class KongDied(StackError):
    """Kong's container stopped while a load ran (killed, crashed, out of memory): no verdict,
    and nothing to blame on the plugin. `last_log_lines` are Kong's own last words."""

    def __init__(self, message: str, last_log_lines: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.last_log_lines = last_log_lines


class LoadError(MatrixError):
    """Locust could not run or its output could not be read."""


class Interrupted(MatrixError):
    """The run was stopped by SIGINT, SIGTERM or SIGHUP; `signal_number` says which."""

    def __init__(self, signal_number: int, message: str | None = None) -> None:
        super().__init__(message or f"interrupted by {signal_name(signal_number)}")
        self.signal_number = signal_number
        self.exit_code = 128 + signal_number


def signal_name(signal_number: int) -> str:
    """`SIGINT (Ctrl-C)`, `SIGTERM`, `SIGHUP (the terminal closed)`, or `signal N`."""
    names = {1: "SIGHUP (the terminal closed)", 2: "SIGINT (Ctrl-C)", 15: "SIGTERM"}
    return names.get(signal_number, f"signal {signal_number}")
