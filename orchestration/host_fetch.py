"""Fetching on this machine what plugin builds need (builds reach no PyPI or npm): a cached
folder filled once, a PDK download, a plugin's dependencies; and telling a failed command's
output in one line a person can act on."""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from orchestration.errors import ConfigError, EnvironmentProblem, ImageUnavailable
from orchestration.processes import run_host_command

LOGGER = logging.getLogger(__name__)

PDK_CACHE_DIR = Path(".cache/pdk")
DEPENDENCY_CACHE_DIR = Path(".cache/deps")
FETCH_TIMEOUT_S = 600.0
ANSI_ESCAPE_RE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07]*\x07|[@-Z\\-_])")
EXCEPTION_LINE_RE = re.compile(r"^(?:[A-Za-z_][\w.]*(?:Error|Exception)|Error)\b:?")
ERROR_WORD_RE = re.compile(r"\berror\b", re.IGNORECASE)
UNREACHABLE_RE = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Temporary failure in name "
    r"resolution|\b(?:ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT|ENETUNREACH)\b"
)
MISSING_PACKAGE_RE = {
    "pip": re.compile(r"No matching distribution found for (?P<package>[^\s;]+)"),
    "npm": re.compile(
        r"'(?P<package>[^'\s]+?)' is not in (?:this|the npm) registry"
        r"|No matching version found for (\S+?)\.?$",
        re.MULTILINE,
    ),
}


def pins_key(pins: list[Path]) -> bytes:
    """What a cached folder fetched from these pin files is keyed by."""
    return b"".join(hashlib.sha256(p.read_bytes()).digest() for p in pins)


def cached(
    repo_root: Path,
    kind: str,
    key: bytes,
    fetch: Callable[[Path], None],
    cache_dir: Path = PDK_CACHE_DIR,
) -> Path:
    """`<cache_dir>/<kind>-<hash of key>/`, filled by `fetch(folder)` once (atomically)."""
    digest = hashlib.sha256(key)
    folder = repo_root / cache_dir / f"{kind}-{digest.hexdigest()[:12]}"
    if folder.is_dir():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{kind}-", dir=folder.parent))
    try:
        started = time.monotonic()
        fetch(partial)
        partial.rename(folder)
        LOGGER.info("fetched %s into %s in %.1fs", kind, folder, time.monotonic() - started)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder


def fetch_pdk(command: list[str], *, what: str) -> None:
    """A PDK download on this machine; a failure is that plugin's error row (ImageUnavailable)."""
    run_host_command(
        command,
        problem=f"could not fetch {what}",
        remedy="check this machine's network",
        timeout_s=FETCH_TIMEOUT_S,
        error=ImageUnavailable,
    )


def require_npm(why: str) -> None:
    """EnvironmentProblem when npm is not on PATH; `why` says what needed it."""
    if shutil.which("npm") is None:
        raise EnvironmentProblem(
            f"{why}, but npm is not on PATH: apt-get install npm (or install Node.js)"
        )


def fetch_dependencies(command: list[str], *, cwd: Path, declared_in: Path, kind: str) -> None:
    """Run pip or npm on this machine: a package it cannot find is the plugin's ConfigError
    (naming the file and the package), an unreachable registry this machine's problem."""
    registry = "PyPI" if kind == "pip" else "npm's registry"
    try:
        completed = subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, timeout=FETCH_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise EnvironmentProblem(
            f"fetching the dependencies of {declared_in} from {registry} took over "
            f"{FETCH_TIMEOUT_S:.0f}s (`{' '.join(command)}`): check this machine's network"
        ) from None
    if completed.returncode == 0:
        return
    output = strip_terminal_codes(completed.stderr + "\n" + completed.stdout)
    if UNREACHABLE_RE.search(output):
        raise EnvironmentProblem(
            f"could not reach {registry} from this machine to fetch the dependencies of "
            f"{declared_in}: {first_error_line(output)}"
        )
    missing = MISSING_PACKAGE_RE[kind].search(output)
    package = next(filter(None, missing.groups()), None) if missing else None
    what = f"package {package}" if package else "a package"
    raise ConfigError(
        f"{declared_in} asks for {what} that {registry} cannot give this machine: "
        f"{first_error_line(output)}. Fix the name or version there"
    )


def strip_terminal_codes(text: str) -> str:
    """`text` without terminal escape sequences (colours, cursor moves: Node's loggers)."""
    return ANSI_ESCAPE_RE.sub("", text)


def first_error_line(text: str) -> str:
    """The line that says what went wrong: the first that starts with an exception's name
    (Python's traceback ends in one), else the first that mentions an error, else the last."""
    lines = [line.strip() for line in strip_terminal_codes(text).splitlines() if line.strip()]
    for pattern in (EXCEPTION_LINE_RE, ERROR_WORD_RE):
        for line in lines:
            if pattern.search(line):
                return line
    return lines[-1] if lines else "(no output)"


def describe_output(output: str) -> str:
    """A failed command's output in one line a person can act on: its first real error line
    and, when another, its last line; terminal codes removed, nothing cut in the middle."""
    lines = [line.strip() for line in strip_terminal_codes(output).splitlines() if line.strip()]
    if not lines:
        return "(no output)"
    first = first_error_line(output)
    return first if first == lines[-1] else f"{first} (its last line: {lines[-1]})"
