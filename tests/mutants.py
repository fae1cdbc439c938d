"""Mutation testing of the core with mutmut, and the score per module (nox -s mutants).

    python -m tests.mutants                  every module below, smallest first
    python -m tests.mutants versions config  just those
    python -m tests.mutants --min-score 90 contract   exit 1 when a module scores less (CI)

mutmut (configured in pyproject.toml) copies the tree to mutants/, records which tests call
which function, then runs each mutant against only those tests. The verdict and row logic is
rows.py; of pipeline.py only the job list and the results writes are in scope, the rest of it
schedules Docker and Locust. mutmut leaves decorated functions (properties such as `Job.folder`)
and module-level code (the version table) alone.
docs/testing.md has the scores and says why each surviving mutant stays.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

# module -> the functions mutated in it (mutmut's names: `x_<function>`, `xǁ<Class>ǁ<method>`)
SCOPE: dict[str, tuple[str, ...]] = {
    "versions": ("*",),
    "selftest": ("*",),
    "config": ("*",),
    "report": ("*",),
    "run_files": ("*",),  # writing and reading a run folder: report.py's until it moved
    "drawing": ("*",),  # when the report page is drawn: report.py's until it moved
    # the verdict and row logic (Job.folder: a property, see below)
    "rows": ("*",),
    "pipeline": ("x_jobs_of", "xǁRunRowsǁwrite"),
    # the command line: the parser and main (cli), the declared options (options), each command
    "cli": ("*",),
    "options": ("*",),
    "commands.common": ("*",),
    "commands.measure": ("*",),
    "commands.versions": ("*",),
    "commands.collect": ("*",),
    "commands.bisect": ("*",),
    "commands.compare": ("*",),
    "commands.report": ("*",),
    "commands.pull": ("*",),
    "commands.clean": ("*",),
    "commands.merge": ("*",),
    "collect": ("*",),
    # what the harness tells Kong about a plugin; the rest of the module probes a running Kong
    "contract": (
        "xǁPluginContractǁstart_command",
        "xǁPluginContractǁkong_environment",
        "xǁPluginContractǁdeclarative",
    ),
    # resolving --plugin, checking --plugin-config and the server's process name (by its kind);
    # the rest builds images and asks them for their dump
    "plugins": ("x_process_name_of", "x_runs_as_its_own_process"),
    "plugin_sources": (
        "x_builtin_plugins",
        "x_resolve_plugins",
        "x__refuse_duplicates",
        "x__either",
    ),
    "plugin_config": (
        "x_validate_plugin_config",
        "x__check_record",
        "x__is_integer",
        "x__check_value",
        "x__check_nested",
        "x__check_bounds",
        "x__describe",
        "x__wrong",
    ),
    "kinds.base": ("xǁKindǁprocess_name",),
    "kinds.js": ("xǁJavaScriptǁprocess_name",),
}
KILLED = {1, 3}  # 3: pytest's internal error, which mutmut counts as a kill
SURVIVED = 0


def patterns(module: str) -> list[str]:
    return [f"orchestration.{module}.{function}__mutmut_*" for function in SCOPE[module]]


def results(module: str, root: Path = Path("mutants")) -> dict[str, int | None]:
    """Each mutant in scope and its exit code (mutmut's .meta file; None: not run yet)."""
    meta = root / "orchestration" / Path(*module.split(".")).with_suffix(".py.meta")
    if not meta.exists():
        return {}
    codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
    wanted = patterns(module)
    return {
        name: code for name, code in codes.items() if any(fnmatch.fnmatch(name, p) for p in wanted)
    }


def scores(modules: list[str], root: Path = Path("mutants")) -> dict[str, float]:
    """Each module's share of mutants killed, in percent (0 when none was found)."""
    shares: dict[str, float] = {}
    for module in modules:
        codes = results(module, root)
        killed = sum(code in KILLED for code in codes.values())
        shares[module] = 100 * killed / len(codes) if codes else 0.0
    return shares


def score_lines(modules: list[str], root: Path = Path("mutants")) -> list[str]:
    lines = [f"{'module':<16} {'killed':>7} {'total':>6} {'score':>6}  other"]
    survivors: list[str] = []
    for module in modules:
        codes = results(module, root)
        killed = sum(code in KILLED for code in codes.values())
        others = Counter(code for code in codes.values() if code not in KILLED | {SURVIVED})
        score = f"{100 * killed / len(codes):.0f}%" if codes else "-"
        other = ", ".join(
            f"exit {code}: {count}" for code, count in sorted(others.items(), key=str)
        )
        lines.append(f"{module:<16} {killed:>7} {len(codes):>6} {score:>6}  {other}")
        survivors += sorted(name for name, code in codes.items() if code == SURVIVED)
    lines += ["", f"{len(survivors)} surviving (mutmut show NAME):", *survivors]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutants", description=__doc__)
    parser.add_argument("modules", nargs="*", metavar="MODULE", help=", ".join(SCOPE))
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--min-score",
        type=float,
        default=None,
        metavar="PERCENT",
        help="exit 1 when a module's score is below PERCENT",
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.modules) - set(SCOPE))
    if unknown:
        parser.error(f"not in scope: {', '.join(unknown)}; choose from {', '.join(SCOPE)}")
    modules = args.modules or list(SCOPE)
    started = time.monotonic()
    command = [sys.executable, "-m", "mutmut", "run", f"--max-children={args.max_children}"]
    done = subprocess.run(
        [*command, *(p for module in modules for p in patterns(module))], check=False
    )
    print(f"\nmutmut ran {time.monotonic() - started:.0f} s\n")
    print("\n".join(score_lines(modules)))
    if done.returncode or args.min_score is None:
        return done.returncode
    low = {m: share for m, share in scores(modules).items() if share < args.min_score}
    for module, share in low.items():
        print(
            f"{module}: {share:.0f}% of mutants killed, below {args.min_score:g}%", file=sys.stderr
        )
    return 1 if low else 0


if __name__ == "__main__":
    sys.exit(main())
