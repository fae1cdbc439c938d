"""Nox sessions: one per Kong version, the matrix, the Locust UI, and the project's own checks.

The harness sessions call `python -m orchestration` in the environment nox itself runs in (the
set-up command installs both there), so switching from one version's session to another builds
no Python environment at all. Tests and lint get their own reused virtualenv.
"""

from __future__ import annotations

import importlib.util
import signal
import sys
from pathlib import Path

import nox
from nox.command import CommandFailed

sys.path.insert(0, str(Path(__file__).resolve().parent))
from orchestration.under_nox import child_command, signals_passed_on
from orchestration.versions import ALIASES, KNOWN_VERSIONS

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_venv = "yes"

# Our Go modules: the example plugin, kong-sim, and every Go plugin fixture the tests run.
GO_MODULES = (
    "plugins/example-plugin",
    "images/kong-sim",
    *sorted(str(mod.parent) for mod in Path("tests/plugins").glob("*/go.mod")),
)


def _harness(session: nox.Session, *args: str) -> None:
    """Run the CLI with the interpreter nox runs on; posargs go to the CLI."""
    _run_module(session, "orchestration", *args, *session.posargs)


def _run_module(session: nox.Session, module: str, *args: str) -> None:
    """`python -m MODULE ARGS` in a session of its own, with nox passing Ctrl-C, SIGTERM and
    SIGHUP on and waiting, however long the teardown takes (see orchestration/under_nox.py)."""
    if any(importlib.util.find_spec(m) is None for m in ("locust", "python_on_whales", "tabulate")):
        session.error(
            "kong-plugin-matrix is not installed next to nox. Run the set-up once: "
            "python -m pip install -e .   (see README.md)"
        )
    with signals_passed_on() as received:
        try:
            session.run(*child_command(sys.executable, module, *args), external=True)
        except CommandFailed:
            if received.first is None:
                raise
    if received.first in (signal.SIGTERM, signal.SIGHUP):  # the terminal closed: 129
        raise SystemExit(128 + received.first)
    if received.first is not None:
        raise KeyboardInterrupt  # nox reports the session interrupted and exits 130


def _version_session(name: str, about: str) -> None:
    def measure(session: nox.Session) -> None:
        _harness(session, "run", name)

    measure.__doc__ = f"Measure Kong {about}; -- --sim runs it offline."
    nox.session(name=f"kong-{name}", venv_backend="none")(measure)


for _entry in KNOWN_VERSIONS:
    _version_session(_entry.version, f"{_entry.version} (changelog: {_entry.expected})")
for _alias, _entry in ALIASES.items():
    _version_session(_alias, f"{_alias}, now {_entry.version} (changelog: {_entry.expected})")


@nox.session(venv_backend="none")
def matrix(session: nox.Session) -> None:
    """Measure the default matrix, one version after another (-- 3.4.0.0 3.4.1.0 for just those)."""
    _harness(session, "matrix")


@nox.session(venv_backend="none")
def ui(session: nox.Session) -> None:
    """Bring one version up and open Locust's web UI on 127.0.0.1 (nox -s ui -- 3.4.1.0)."""
    _harness(session, "ui")


@nox.session(venv_backend="none")
def collect(session: nox.Session) -> None:
    """Count the churn signals in a Kong log you already have (nox -s collect -- kong.log)."""
    _harness(session, "collect")


@nox.session(venv_backend="none")
def compare(session: nox.Session) -> None:
    """Compare two runs per version and scenario; exits 1 on a regression (-- OLD NEW)."""
    _harness(session, "compare")


@nox.session(venv_backend="none")
def merge(session: nox.Session) -> None:
    """Merge results folders from several machines or CI jobs into one run (-- DIR...)."""
    _harness(session, "merge")


@nox.session(venv_backend="none")
def bisect(session: nox.Session) -> None:
    """The first version whose verdict differs from GOOD's (nox -s bisect -- 3.4.0.0 3.4.2.1)."""
    _harness(session, "bisect")


@nox.session(venv_backend="none")
def clean(session: nox.Session) -> None:
    """Remove what killed runs left in Docker (-- --dry-run only lists it)."""
    _harness(session, "clean")


@nox.session(venv_backend="none")
def pull(session: nox.Session) -> None:
    """Pull the registry images a real run builds on, before it (-- 3.4.1.0 --plugin js)."""
    _harness(session, "pull")


@nox.session(venv_backend="none")
def versions(session: nox.Session) -> None:
    """List the known Kong versions and what their changelogs say."""
    _harness(session, "versions")


@nox.session(venv_backend="none")
def selftest(session: nox.Session) -> None:
    """Offline control: 3.4.0.0, 3.4.1.0, 3.6.0.0, 3.9.0.0 on kong-sim read as changelogs say."""
    _harness(session, "selftest")


@nox.session(venv_backend="none")
def bench(session: nox.Session) -> None:
    """Benchmarks, offline with --sim (about 10 minutes); writes docs/benchmarks.md."""
    _run_module(session, "bench", *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite, Docker tests included (-- -m 'not docker' skips those)."""
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)


@nox.session
def mutants(session: nox.Session) -> None:
    """Mutation testing of the core (mutmut); prints the score per module (-- versions config)."""
    session.install("-e", ".[dev]", "mutmut>=3.8,<4")
    session.run("python", "-m", "tests.mutants", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff, mypy --strict, gofmt and go vet."""
    session.install("-e", ".[dev]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")
    for module in GO_MODULES:
        if Path(module, "go.mod").exists():
            unformatted = session.run("gofmt", "-l", module, external=True, silent=True)
            if unformatted:
                session.error(f"gofmt would change: {unformatted}")
            with session.chdir(module):
                session.run("go", "vet", "./...", external=True)


@nox.session(venv_backend="none")
def soak(session: nox.Session) -> None:
    """Chaos soak: 100 short --sim runs, one fault each; writes docs/reliability.md."""
    _run_module(
        session, "tests.chaos", "--runs", "100", "--report", "docs/reliability.md", *session.posargs
    )
