"""The chaos soak: short `--sim` runs, each hit by one fault at a random moment, then checked.

    python -m tests.chaos --runs 100 --seed 7 --report docs/reliability.md     (nox -s soak)

Each run is `run <version>` or `matrix --parallel 2 <two versions>` with a few hundred requests.
One fault hits it after a delay drawn from a seeded RNG (the seed is printed; `--seed` replays the
same plan, `--only N` just run N of it), counted from the run's start, or, for a fault whose target
lives only while the load does (the plugin server, a Locust), from the run's first `sending` line:
a run's load lasts under a second in kong-sim, so a delay from the start lands after it about as
often as in it, and a fault that misses its target proves nothing. The faults: SIGINT to the
harness's process group (a terminal's Ctrl-C), SIGTERM or SIGKILL to the harness alone, `docker
kill` of a Kong container, SIGKILL of the plugin server inside it (from the host: kong-sim images
have no shell), SIGKILL of a Locust's process group. A fault whose target does not exist yet waits
for it (bounded); the moment recorded is the stage the run was in when the fault really hit, read
from its `kpm:` progress lines (the later one, if a line came while the fault was being sent).

After each run (and `python -m orchestration clean` after a SIGKILL of the harness, or a run the
soak had to kill) the soak records: what of the run is left (containers, networks, volumes,
Locusts, processes carrying its owner), results folders that `report` or `collect` cannot read,
half-written results files, leftover `.*.tmp` files (allowed after a SIGKILL, only counted), and
wrong verdicts (see `verdict_problem`). Every run is bounded (`RUN_TIMEOUT_S`); a hung one is
killed, cleaned and counted as a failure.

It lives beside the tests, not under bench/, because it is a test (tests/test_chaos.py runs six
runs of it) and reuses the Docker tests' helpers in tests/test_reliability.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

if __package__ == "tests":  # `python -m tests.chaos`: find the helpers the way pytest does
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import psutil
from test_reliability import (
    REPO,
    CliRun,
    Runs,
    _cli_env,
    _leftovers,
    _locusts_writing_to,
    _plugin_pid,
    _run_ids,
)

from orchestration.owner import OWNER_ENV, Owner
from orchestration.report import render_csv
from orchestration.stack import RUN_LABEL

FAULTS = (
    "SIGINT group",
    "SIGTERM harness",
    "SIGKILL harness",
    "docker kill Kong",
    "kill plugin server",
    "kill Locust",
    "panicking plugin",
)
# The plugin of the "panicking plugin" runs: it panics on some requests, ending its server.
PANICKING_PLUGIN = str(Path(__file__).resolve().parent / "plugins" / "go-panics-sometimes")
# Requests for it: enough that it panics during the load (every 150th request it sees).
PANICKING_REQUESTS = 600
HARD_KILLS = ("SIGKILL harness",)  # the harness cannot clean up: `clean` must
VERSIONS = ("3.4.0.0", "3.4.1.0", "3.6.0.0")
REQUESTS = (200, 300, 400, 500)
# Seconds from start to exit of an unfaulted run on a 2-core machine (images cached): delays are
# drawn within these, so faults land across every stage.
SPAN_S = {"run": 2.6, "matrix": 4.5}
# Faults counted from the first `sending` line, their delays drawn within LOAD_SPAN_S, their runs'
# requests from LOAD_REQUESTS: kong-sim serves ~1500 requests/s on 2 cores (rows' rps), so 500
# requests last ~0.33 s, more than the span plus the ~0.1 s a `docker top` takes. (With 400 and a
# 0.3 s span, 3 of 10 plugin-server kills of a 70-run soak landed after the load.)
LOAD_FAULTS = ("kill plugin server", "kill Locust")
LOAD_MARK = ": sending "
LOAD_SPAN_S = 0.15
LOAD_REQUESTS = (500, 600)
MATRIX_SHARE = 0.25
HARNESS_OPTIONS = ("--sim", "--ready-timeout", "60", "--load-timeout", "60")
RUN_TIMEOUT_S = 150.0  # well above a run's own bounds (60 s ready, 60 s load, 15 s log settle)
TARGET_WAIT_S = 30.0  # how long a fault waits for its target to exist
COMMAND_TIMEOUT_S = 120.0
STAGES = (
    *("starting", "preparing images", "waiting for Kong", "sending", "tearing down"),
    *("finished", "done"),
)
MISSED = "missed"
VERSION_LABEL = "io.kong-plugin-matrix.kong-version"
# progress text -> stage; the newest matching line names the stage
STAGE_MARKS = (
    ("==> ", "finished"),
    ("Results: ", "done"),  # the table is out: a signal now must not change the exit
    ("interrupted by", "finished"),
    ("tearing down", "tearing down"),
    (LOAD_MARK, "sending"),
    (" is ready at ", "waiting for Kong"),
    (": waiting for Kong", "waiting for Kong"),
    (": preparing images", "preparing images"),
    ("kpm: reusing", "preparing images"),
    ("kpm: building", "preparing images"),
    ("kpm: built", "preparing images"),
)
CSV_HEADER = render_csv(()).rstrip("\n")  # what every results.csv starts with
VERDICT_LINE = "Verdict: `churn` at >="


@dataclass(frozen=True)
class Planned:
    """One run of the soak, fixed by the seed."""

    index: int
    fault: str
    command: str  # run or matrix
    versions: tuple[str, ...]
    requests: int
    delay_s: float  # from the start, or from the first LOAD_MARK line for a LOAD_FAULTS fault
    pick: int  # which version's container or Locust, when there are two

    def args(self) -> list[str]:
        parallel = ["--parallel", "2"] if self.command == "matrix" else []
        requests = ["--requests", str(self.requests)]
        plugin = ["--plugin", PANICKING_PLUGIN] if self.fault == "panicking plugin" else []
        return [self.command, *self.versions, *parallel, *requests, *plugin, *HARNESS_OPTIONS]

    def describe(self) -> str:
        return f"{self.command} {' '.join(self.versions)} --requests {self.requests}"


def plan(seed: int, runs: int) -> list[Planned]:
    """`runs` runs; every block of len(FAULTS) has each fault once, in a shuffled order."""
    rng = random.Random(seed)
    planned = []
    faults: list[str] = []
    for index in range(runs):
        if not faults:
            faults = rng.sample(FAULTS, len(FAULTS))
        matrix = rng.random() < MATRIX_SHARE
        command = "matrix" if matrix else "run"
        versions = tuple(rng.sample(VERSIONS, 2 if matrix else 1))
        fault = faults.pop()
        load = fault in LOAD_FAULTS
        requests = rng.choice(LOAD_REQUESTS if load else REQUESTS)
        planned.append(
            Planned(
                index=index,
                fault=fault,
                command=command,
                versions=versions,
                requests=PANICKING_REQUESTS if fault == "panicking plugin" else requests,
                delay_s=round(rng.uniform(0, LOAD_SPAN_S if load else SPAN_S[command]), 2),
                pick=rng.randrange(len(versions)),
            )
        )
    return planned


# --- where the run is ----------------------------------------------------------------------


def stage_of(lines: Sequence[str], version: str | None = None) -> str:
    """The stage the newest progress line names (of `version` only, if given)."""
    for line in reversed(lines):
        if version is not None and version not in line:
            continue
        for mark, stage in STAGE_MARKS:
            if mark in line:
                return stage
    return "starting"


# --- faults --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hit:
    """Where a fault landed: the stage, or MISSED with the reason."""

    stage: str
    detail: str = ""
    version: str | None = None  # the version whose container, server or Locust was hit


def _running_containers(results: Path) -> dict[str, str]:
    """Kong version -> container id, for the run's running containers (one call: no race)."""
    found = {}
    for run_id in _run_ids(results):
        listed = subprocess.run(
            [
                *["docker", "ps", "--filter", f"label={RUN_LABEL}={run_id}"],
                *["--format", f'{{{{.ID}}}}\t{{{{.Label "{VERSION_LABEL}"}}}}'],
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        for line in listed.stdout.splitlines():
            container, _, version = line.partition("\t")
            found[version] = container
    return found


def _pick(available: dict[str, Any], planned: Planned) -> str | None:
    """The planned version if it has a target now, else the other one, else None."""
    wanted = planned.versions[planned.pick]
    if wanted in available:
        return wanted
    return next(iter(sorted(available)), None)


def _kill_container(planned: Planned, run: CliRun) -> str | None:
    containers = _running_containers(run.results)
    version = _pick(containers, planned)
    if version is None:
        return None
    container = containers[version]
    killed = subprocess.run(
        ["docker", "kill", container], capture_output=True, timeout=30, check=False
    )
    return version if killed.returncode == 0 else None  # it went meanwhile: not hit


def _kill_plugin_server(planned: Planned, run: CliRun) -> str | None:
    containers = _running_containers(run.results)
    version = _pick(containers, planned)
    if version is None:
        return None
    try:
        pid = _plugin_pid(containers[version])
    except (AssertionError, subprocess.SubprocessError):
        return None  # not started yet, restarting, or its container just went
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return version


def _kill_locust(planned: Planned, run: CliRun) -> str | None:
    # A Locust's command line names its own folder, results/<run>/<version folder>.
    by_version = {
        version: pid
        for pid in _locusts_writing_to(run.results)
        for version in planned.versions
        if f"/{version}" in " ".join(_cmdline(pid))
    }
    version = _pick(by_version, planned)
    if version is None:
        return None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(by_version[version], signal.SIGKILL)
    return version


def _cmdline(pid: int) -> list[str]:
    with contextlib.suppress(psutil.Error):
        return list(psutil.Process(pid).cmdline())
    return []


def _signal_harness(signal_number: int, *, group: bool) -> Callable[[Planned, CliRun], str | None]:
    def send(_planned: Planned, run: CliRun) -> str | None:
        if run.process.poll() is not None:
            return None
        with contextlib.suppress(ProcessLookupError):
            if group:
                run.signal_group(signal_number)
            else:
                run.process.send_signal(signal_number)
        return ""

    return send


# fault -> injector: returns the version it hit ("" for the whole run), None if no target yet
INJECTORS: dict[str, Callable[[Planned, CliRun], str | None]] = {
    "SIGINT group": _signal_harness(signal.SIGINT, group=True),
    "SIGTERM harness": _signal_harness(signal.SIGTERM, group=False),
    "SIGKILL harness": _signal_harness(signal.SIGKILL, group=False),
    "docker kill Kong": _kill_container,
    "kill plugin server": _kill_plugin_server,
    "kill Locust": _kill_locust,
    "panicking plugin": lambda _planned, _run: "",  # the plugin is the fault: nothing to do
}


def _load_started(run: CliRun, started: float) -> float:
    """When the run's first LOAD_MARK line came (polled), or now if it ended or never sends."""
    while time.monotonic() < started + RUN_TIMEOUT_S and run.process.poll() is None:
        if any(LOAD_MARK in line for line in list(run.lines)):
            break
        time.sleep(0.01)
    return time.monotonic()


def inject(planned: Planned, run: CliRun, started: float) -> Hit:
    """Wait for the planned moment, then hit; a missing target is waited for (bounded)."""
    if planned.fault in LOAD_FAULTS:
        started = _load_started(run, started)
    while time.monotonic() < started + planned.delay_s and run.process.poll() is None:
        time.sleep(0.01)
    deadline = time.monotonic() + TARGET_WAIT_S
    while time.monotonic() < deadline:
        lines = list(run.lines)  # the stage before the hit, not what the fault caused
        if run.process.poll() is not None:
            return Hit(MISSED, f"the run ended first (exit {run.process.returncode})")
        version = INJECTORS[planned.fault](planned, run)
        if version is not None:
            # A stage that began while the injector worked (a `docker ps` takes ~50 ms) may have
            # begun before the hit: the later one is the one the run is sure to have been in.
            stages = [stage_of(seen, version or None) for seen in (lines, list(run.lines))]
            return Hit(
                max(stages, key=STAGES.index),
                f"at {time.monotonic() - started:.2f}s",
                version or None,
            )
        time.sleep(0.05)
    return Hit(MISSED, f"no target within {TARGET_WAIT_S:.0f}s")


# --- checks --------------------------------------------------------------------------------


def _owned_processes(harness_pid: int) -> list[str]:
    """Processes still carrying the harness's KPM_OWNER (Locust, builds, log followers)."""
    found = []
    for process in psutil.process_iter(["pid", "name"]):
        with contextlib.suppress(psutil.Error):
            owner = Owner.parse(process.environ().get(OWNER_ENV, ""))
            if owner is not None and owner.pid == harness_pid and process.pid != harness_pid:
                found.append(f"process {process.pid} {process.info['name']}")
    return found


def leaks(results: Path, harness_pid: int) -> list[str]:
    """What of the run is still there: Docker objects by its run label, Locusts, processes."""
    found = [
        f"{kind[:-1]} {name}"
        for run_id in _run_ids(results)
        for kind, names in _leftovers(run_id).items()
        for name in names
    ]
    found += [f"Locust {pid}" for pid in _locusts_writing_to(results)]
    return found + [p for p in _owned_processes(harness_pid) if "Locust" not in p]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestration", *args],
        cwd=REPO,
        env=_cli_env(),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )


def unreadable(run_dir: Path) -> list[str]:
    """Why `report` or `collect` cannot read the folder (collect only where a kong.log is)."""
    problems = []
    shown = _cli("report", str(run_dir))
    if shown.returncode not in (0, 1):
        problems.append(f"report exit {shown.returncode}: {shown.stderr.strip()[-200:]}")
    if any(run_dir.glob("*/kong.log")):
        collected = _cli("collect", str(run_dir), "--json")
        if collected.returncode != 0:
            problems.append(f"collect exit {collected.returncode}: {collected.stderr[-200:]}")
    return problems


def _json_problem(path: Path) -> str | None:
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None  # `report` answers for a missing results.json
    except (ValueError, OSError) as error:
        return f"{path.name} does not parse: {error}"
    return None


def half_written(run_dir: Path) -> list[str]:
    """Results files that exist but are cut short."""
    problems = [
        p for name in ("results.json", "config.json") if (p := _json_problem(run_dir / name))
    ]
    csv = run_dir / "results.csv"
    if csv.is_file() and csv.read_text(encoding="utf-8").split("\n", 1)[0] != CSV_HEADER:
        problems.append("results.csv lacks its header")
    summary = run_dir / "summary.md"
    if summary.is_file():
        last = summary.read_text(encoding="utf-8").rstrip().rsplit("\n", 1)[-1]
        if not last.startswith(VERDICT_LINE):
            problems.append(f"summary.md ends with {last[:60]!r}, not the verdict line")
    return problems


def temp_files(results: Path) -> list[str]:
    return (
        [str(p.relative_to(results)) for p in results.rglob(".*.tmp")] if results.is_dir() else []
    )


def verdict_problem(row: dict[str, Any]) -> tuple[str, str] | None:
    """("wrong", why) or ("restart", why) for a row whose verdict disagrees with the changelog.

    Only `ok` rows claim a measurement (error and interrupted rows claim none). An ok row whose
    verdict disagrees with the changelog is WRONG, except an `inconclusive` one that counted a
    plugin-server restart (plugin_server_starts > 1): a restart's New() calls (1 + workers) can
    lift a stable version over the stable threshold, and the row shows why; that is a RESTART
    finding, reported with its numbers. `churn` or `stable` against the changelog is always wrong.
    """
    if row.get("status") != "ok" or row.get("matches_changelog") is not False:
        return None
    numbers = (
        f"{row['version']}: {row['verdict']} (changelog {row['expected']}), New() in load "
        f"{row['new_calls_during_load']} / {row['requests']} requests = "
        f"{row['new_calls_per_request']}, failures {row['failures']}, "
        f"server starts {row['plugin_server_starts']}"
    )
    restarted = (row.get("plugin_server_starts") or 0) > 1
    return ("restart" if row["verdict"] == "inconclusive" and restarted else "wrong", numbers)


def fault_untold(planned: Planned, hit: Hit, row: dict[str, Any]) -> tuple[str, str] | None:
    """("wrong", why) for a row that got a verdict through a fault that forbids one: Kong killed
    during the row's load (the row must name Kong's death), or a plugin that panicked (the row
    must be an error naming the panic)."""
    if row.get("status") == "interrupted":
        return None
    error = str(row.get("error") or "")
    told = row.get("status") != "ok"
    if planned.fault == "panicking plugin":
        told = told and "panic: go-panics-sometimes" in error
        what = "with a panicking plugin"
    elif planned.fault == "docker kill Kong" and hit.stage == "sending":
        if hit.version != row.get("version"):
            return None
        told = told and error.startswith("Kong died ")  # during its load, or after it
        what = "after Kong was killed during its load"
    else:
        return None
    if told:
        return None
    return (
        "wrong",
        f"{row['version']}: {row['status']} {row['verdict']} {what}; error: {error[:200]}",
    )


def _rows(run_dir: Path) -> list[dict[str, Any]]:
    with contextlib.suppress(ValueError, OSError):
        rows: list[dict[str, Any]] = json.loads((run_dir / "results.json").read_text())["versions"]
        return rows
    return []


# --- one run -------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one faulted run did and what the checks found."""

    planned: Planned
    hit: Hit
    exit_code: int | None  # None: hung, killed by the soak
    seconds: float
    cleaned: bool  # `python -m orchestration clean` ran after it
    rows: list[str] = field(default_factory=list)  # "3.4.1.0 ok churn"
    leaks: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    half_written: list[str] = field(default_factory=list)
    temp_files: list[str] = field(default_factory=list)
    wrong_verdicts: list[str] = field(default_factory=list)
    restart_findings: list[str] = field(default_factory=list)
    bad_exits: list[str] = field(default_factory=list)  # a traceback, or an exit code off its fault
    python_startup: bool = False  # the signal came before a line of the harness ran

    @property
    def hung(self) -> bool:
        return self.exit_code is None

    def failures(self) -> list[str]:
        """Everything the soak counts against the harness (restarts and .tmp files are news)."""
        hung = [f"hung: killed after {RUN_TIMEOUT_S:.0f}s"] if self.hung else []
        return [
            *hung,
            *(f"leak: {leak}" for leak in self.leaks),
            *(f"unreadable: {problem}" for problem in self.unreadable),
            *(f"half-written: {problem}" for problem in self.half_written),
            *(f"wrong verdict: {problem}" for problem in self.wrong_verdicts),
            *self.bad_exits,
        ]


EXPECTED_EXIT = {"SIGINT group": (130,), "SIGTERM harness": (143,), "SIGKILL harness": (-9,)}
CAUGHT_SIGNALS = {"SIGINT group": signal.SIGINT, "SIGTERM harness": signal.SIGTERM}


def in_python_startup(planned: Planned, hit: Hit, run: CliRun) -> bool:
    """Whether a SIGINT or SIGTERM landed while Python itself was starting (site's .pth files,
    runpy finding `orchestration.__main__`: ~30 ms), before any line of the harness could
    install a handler: Python's default handling, which no program changes. SIGTERM ends the
    process (-15 here, 143 to a shell), SIGINT is a KeyboardInterrupt traceback in Python's own
    frames; nothing was started. The harness's first lines catch both (`__main__.py`)."""
    number = CAUGHT_SIGNALS.get(planned.fault)
    if number is None or hit.stage != "starting" or "/orchestration/" in run.stderr:
        return False
    killed = run.process.returncode == -number
    return killed or run.stderr.rstrip().endswith("KeyboardInterrupt")


def _bad_exits(planned: Planned, hit: Hit, run: CliRun) -> list[str]:
    code = run.process.returncode
    over = hit.stage in {MISSED, "done"}  # the run had ended, or had shown its results
    expected = (0, 1) if over else EXPECTED_EXIT.get(planned.fault, (0, 1))
    found = [f"exit {code}, expected {' or '.join(map(str, expected))}"]
    found = found if code is not None and code not in expected else []
    return found + (["a Python traceback on stderr"] if "Traceback" in run.stderr else [])


def _finish(run: CliRun, started: float) -> int | None:
    """The harness's exit code; None when it outlived RUN_TIMEOUT_S and was killed."""
    try:
        return run.finish(timeout_s=max(1.0, started + RUN_TIMEOUT_S - time.monotonic()))
    except subprocess.TimeoutExpired:
        run.kill()
        return None


def check(outcome: Outcome, run: CliRun) -> Outcome:
    results = run.results
    outcome.leaks = leaks(results, run.process.pid)
    outcome.temp_files = temp_files(results)
    outcome.python_startup = in_python_startup(outcome.planned, outcome.hit, run)
    ours = not outcome.hung and not outcome.python_startup
    outcome.bad_exits = _bad_exits(outcome.planned, outcome.hit, run) if ours else []
    for run_id in _run_ids(results):
        run_dir = results / run_id
        outcome.unreadable += unreadable(run_dir)
        outcome.half_written += half_written(run_dir)
        for row in _rows(run_dir):
            outcome.rows.append(f"{row['version']} {row['status']} {row['verdict']}")
            problem = verdict_problem(row) or fault_untold(outcome.planned, outcome.hit, row)
            if problem is not None:
                kind, numbers = problem
                found = outcome.wrong_verdicts if kind == "wrong" else outcome.restart_findings
                found.append(numbers)
    return outcome


def soak_one(planned: Planned, work: Path) -> Outcome:
    """Start the run, hit it, wait for it (bounded), clean up after a hard kill, check."""
    results = work / f"run-{planned.index:03d}" / "results"
    results.parent.mkdir(parents=True, exist_ok=True)
    # Runs kills the run and removes what it left if anything below fails (or on Ctrl-C);
    # the checks run first, so what they find is recorded before it is removed.
    with Runs(results) as runs:
        run = runs.start(*planned.args())
        started = time.monotonic()
        hit = inject(planned, run, started)
        exit_code = _finish(run, started)
        seconds = time.monotonic() - started
        cleaned = planned.fault in HARD_KILLS or exit_code is None
        if cleaned:
            _cli("clean")
        return check(Outcome(planned, hit, exit_code, round(seconds, 1), cleaned), run)


# --- the soak and its report ----------------------------------------------------------------


def soak(planned: Sequence[Planned], work: Path) -> list[Outcome]:
    """Each planned run in turn; a line per run on stderr."""
    outcomes = []
    for one in planned:
        outcome = soak_one(one, work)
        outcomes.append(outcome)
        verdict = "; ".join(outcome.failures()) or "ok"
        print(
            f"chaos {one.index}: {one.describe()} | {one.fault} after {one.delay_s}s -> "
            f"{outcome.hit.stage} | exit {outcome.exit_code} | {', '.join(outcome.rows)} | "
            f"{verdict}",
            file=sys.stderr,
            flush=True,
        )
    return outcomes


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def _totals(outcomes: Sequence[Outcome]) -> list[tuple[str, int]]:
    def total(count: Callable[[Outcome], int]) -> int:
        return sum(count(outcome) for outcome in outcomes)

    return [
        ("runs", len(outcomes)),
        ("faults that hit", total(lambda o: o.hit.stage != MISSED)),
        (
            "faults that missed (run over first, or no target)",
            total(lambda o: o.hit.stage == MISSED),
        ),
        ("runs cleaned with `python -m orchestration clean`", total(lambda o: o.cleaned)),
        ("hung runs (killed by the soak)", total(lambda o: o.hung)),
        ("leaks (containers, networks, volumes, processes)", total(lambda o: len(o.leaks))),
        ("unreadable folders (report / collect)", total(lambda o: len(o.unreadable))),
        ("half-written files", total(lambda o: len(o.half_written))),
        ("leftover .*.tmp files (allowed, counted)", total(lambda o: len(o.temp_files))),
        ("wrong verdicts", total(lambda o: len(o.wrong_verdicts))),
        (
            "inconclusive after a counted restart (finding)",
            total(lambda o: len(o.restart_findings)),
        ),
        ("unexpected exit codes or tracebacks", total(lambda o: len(o.bad_exits))),
        (
            "signals Python took while starting, before the harness's first line (its default)",
            total(lambda o: o.python_startup),
        ),
    ]


def _by_moment(outcomes: Sequence[Outcome]) -> list[str]:
    counts = Counter((o.planned.fault, o.hit.stage) for o in outcomes)
    moments = [*STAGES, MISSED]
    rows = [
        [
            fault,
            *(counts[fault, moment] for moment in moments),
            sum(counts[fault, m] for m in moments),
        ]
        for fault in FAULTS
    ]
    rows.append(["all", *(sum(counts[f, m] for f in FAULTS) for m in moments), len(outcomes)])
    return _table(["fault", *moments, "total"], rows)


def _findings(outcomes: Sequence[Outcome], replay: str) -> list[str]:
    lines = []
    for o in outcomes:
        found = [*o.failures(), *(f"restart finding: {r}" for r in o.restart_findings)]
        found += [f".tmp file left: {name}" for name in o.temp_files]
        for text in found:
            lines.append(
                f"- run {o.planned.index} ({o.planned.describe()}; {o.planned.fault} after "
                f"{o.planned.delay_s}s, hit in {o.hit.stage}): {text}. "
                f"Replay: `{replay} --only {o.planned.index}`"
            )
    return lines or ["None."]


def _run_rows(outcomes: Sequence[Outcome]) -> list[str]:
    rows = [
        [
            o.planned.index,
            o.planned.describe(),
            o.planned.fault,
            o.planned.delay_s,
            o.hit.stage,
            "hung" if o.hung else o.exit_code,
            o.seconds,
            ", ".join(o.rows) or "-",
            len(o.failures()),
        ]
        for o in outcomes
    ]
    headers = ["#", "run", "fault", "delay s", "moment", "exit", "s", "rows", "problems"]
    return _table(headers, rows)


WRONG_VERDICT_RULE = (
    "A **wrong verdict** is a row with status `ok` whose verdict disagrees with its version's "
    "changelog (`matches_changelog` false), except an `inconclusive` row that counted a "
    "plugin-server restart (`plugin_server_starts` > 1): a restart costs 1 + workers New() "
    "calls, which can lift a stable version over the stable threshold (0.01 per request) in a "
    "few hundred requests; such a row is listed as a *restart finding* with its numbers, not "
    "counted as wrong. `error` and `interrupted` rows claim no measurement and are never wrong."
    " Two faults forbid a verdict outright, and a row that has one is wrong too: **Kong killed "
    "during the row's load** must give an error row that starts `Kong died` (during the load: "
    "its exit code and signal or OOM kill, the load stopped at once, nothing blamed on the "
    "plugin; or after it, when its last response came just before the kill); a "
    "**panicking plugin** (tests/plugins/go-panics-sometimes: its Access handler panics on every "
    "150th request, which ends its server) must give an error row (`partial`, or `error` when most "
    "requests failed during its outages) quoting `panic: go-panics-sometimes`."
)


def render(outcomes: Sequence[Outcome], seed: int, replay: str, seconds: float) -> str:
    lines = [
        "# Reliability: the chaos soak",
        "",
        f"Generated by `{replay}` (seed {seed}) in {seconds / 60:.1f} minutes on "
        f"{os.cpu_count()} CPUs; do not edit by hand. Every run is `--sim` (kong-sim, not Kong);",
        "what each fault is and how runs are checked: tests/chaos.py. Moments are the stage the",
        "run's `kpm:` progress lines named when the fault hit (`starting`: before the first one).",
        "",
        "## Totals",
        "",
        *_table(["what", "count"], _totals(outcomes)),
        "",
        "## Faults by kind and moment",
        "",
        *_by_moment(outcomes),
        "",
        "## Findings",
        "",
        *_findings(outcomes, replay),
        "",
        WRONG_VERDICT_RULE,
        "",
        "## Runs",
        "",
        *_run_rows(outcomes),
    ]
    return "\n".join(lines) + "\n"


def _stop_soak(signal_number: int, _frame: FrameType | None) -> None:
    """First Ctrl-C or SIGTERM: unwind, so every `Runs` block removes its run; later ones wait."""
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_IGN)
    raise KeyboardInterrupt(signal_number)


@contextlib.contextmanager
def work_folder(keep: Path | None) -> Iterator[Path]:
    """Where the runs' results go: `keep`, or a temporary folder removed afterwards."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="kpm-chaos-") as folder:
        yield Path(folder)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=None, help="replay a soak (default: random)")
    parser.add_argument("--only", type=int, action="append", help="run just run N of the plan")
    parser.add_argument("--report", type=Path, default=None, help="write the report here")
    parser.add_argument("--keep", type=Path, default=None, help="keep every run's results here")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    replay = f"python -m tests.chaos --runs {args.runs} --seed {seed}"
    print(f"chaos: seed {seed} (replay: {replay}) on {socket.gethostname()}", file=sys.stderr)
    planned = [p for p in plan(seed, args.runs) if args.only is None or p.index in args.only]
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, _stop_soak)
    started = time.monotonic()
    try:
        with work_folder(args.keep) as work:
            outcomes = soak(planned, work)
    except KeyboardInterrupt as stop:
        number = stop.args[0] if stop.args else signal.SIGINT
        print("chaos: stopped; every run started was removed", file=sys.stderr)
        return 128 + int(number)
    text = render(outcomes, seed, replay, time.monotonic() - started)
    if args.report is not None:
        args.report.write_text(text, encoding="utf-8")
        print(f"chaos: wrote {args.report}", file=sys.stderr)
    print(text)
    return 1 if any(outcome.failures() for outcome in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
