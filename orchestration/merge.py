"""Results folders from several machines or CI jobs, combined into one new run folder.

Rows are keyed by (version, plugin, scenario) and ordered as Kong released the versions (then
images, then plugins, then scenarios in their usual order), so a matrix split across jobs merges
into the table one full run would print. A key that more than one source measured is a conflict:
every row of it is kept, each with the finding `conflict: <the run-id it came from>`, and nothing is
averaged away. Each row's version folder (kong.log, resources.csv, Locust's files) is hard-linked,
or copied where linking is impossible, into the merged folder, so `collect` and the report page work
on it as on any run. `config.json` lists the sources."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from orchestration import __version__, drawing, report, run_files
from orchestration.config import SCENARIOS, new_run_id
from orchestration.errors import UsageError
from orchestration.report import Row, RunResult
from orchestration.versions import KNOWN_VERSIONS

CONFLICT = "conflict"
# Settings whose difference between sources makes rows measured differently: worth a note.
COMPARED_SETTINGS = ("requests", "users", "workers", "sim")
_RELEASE_ORDER = {entry.version: index for index, entry in enumerate(KNOWN_VERSIONS)}


@dataclass(frozen=True)
class Source:
    run: RunResult
    run_dir: Path


def find_sources(paths: Sequence[Path]) -> list[Source]:
    """Each path is a run folder (or its results.json), or a folder of run folders such as a
    downloaded CI artifact holding `results/`."""
    sources: list[Source] = []
    for path in paths:
        try:
            sources += _sources_in(path)
        except OSError as error:  # a folder we may not list (or /proc's like)
            raise UsageError(
                f"cannot look through {path} ({error.strerror or error}: {error.filename}): pass "
                "run folders (results/<run-id>) or folders holding them"
            ) from None
    seen = Counter(source.run.run_id for source in sources)
    twice = sorted(run_id for run_id, count in seen.items() if count > 1)
    if twice:
        raise UsageError(
            f"run {', '.join(twice)} is named twice among the sources: pass each run folder once"
        )
    return sources


def _sources_in(path: Path) -> list[Source]:
    if not path.exists():
        raise UsageError(
            f"{path} does not exist: pass run folders (results/<run-id>) or folders holding "
            "them, e.g. downloaded CI artifacts"
        )
    if path.is_file():
        return [Source(run_files.load_run(path), path.parent)]
    if not path.is_dir():
        raise UsageError(
            f"{path} is neither a folder nor a file: pass run folders (results/<run-id>) or "
            "folders holding them"
        )
    if (path / "results.json").is_file():
        return [Source(run_files.load_run(path), path)]
    found = _run_folders_under(path)
    if not found:
        raise UsageError(
            f"{path} holds no results.json, nor run folders with one: pass run folders "
            "(results/<run-id>) or folders holding them"
        )
    return [Source(run_files.load_run(folder), folder) for folder in found]


def _run_folders_under(path: Path, depth: int = 3) -> list[Path]:
    """Run folders up to `depth` levels down (artifacts/<name>/results/<run-id>); `latest` links are
    the same runs again and are skipped."""
    found: list[Path] = []
    for child in sorted(path.iterdir()):
        if child.is_symlink() or not child.is_dir():
            continue
        if (child / "results.json").is_file():
            found.append(child)
        elif depth > 1:
            found += _run_folders_under(child, depth - 1)
    return found


def _order(row: Row) -> tuple[int, str, str, int]:
    scenario = SCENARIOS.index(row.scenario) if row.scenario in SCENARIOS else len(SCENARIOS)
    release = _RELEASE_ORDER.get(row.version, len(_RELEASE_ORDER))
    return (release, row.version, row.plugin, scenario)


def merged_rows(sources: Sequence[Source]) -> list[tuple[Source, Row]]:
    """Every source's rows in release order, conflicting ones flagged; the sort is stable, so
    the rows of one key stay in the order the sources were given."""
    pairs = [(source, row) for source in sources for row in source.run.versions]
    counts = Counter((row.version, row.plugin, row.scenario) for _, row in pairs)
    flagged = [
        (
            source,
            replace(row, findings=(*row.findings, f"{CONFLICT}: {source.run.run_id}"))
            if counts[(row.version, row.plugin, row.scenario)] > 1
            else row,
        )
        for source, row in pairs
    ]
    return sorted(flagged, key=lambda pair: _order(pair[1]))


def merge(sources: Sequence[Source], results_root: Path) -> tuple[RunResult, Path]:
    """Write the merged run folder under `results_root`; returns the run and its folder."""
    if not sources:
        raise UsageError("name at least one results folder to merge")
    run_id = new_run_id()
    run_dir = results_root / run_id
    try:
        run_dir.mkdir(parents=True)
    except OSError as error:
        raise UsageError(
            f"cannot create {run_dir}: {error.strerror}; pass a writable --results folder"
        ) from None
    rows = []
    used: set[str] = set()
    for source, row in merged_rows(sources):
        rows.append(_with_folder(source, row, run_dir, used))
    config = _config(run_id, sources, rows)
    run = RunResult(run_id, __version__, config, tuple(rows))
    run_files.write_config(run_dir, config)
    run_files.write_run(run_dir, run)
    drawing.finish_run(run_dir, run)
    run_files.point_latest(results_root, run_dir)
    return run, run_dir


def _with_folder(source: Source, row: Row, run_dir: Path, used: set[str]) -> Row:
    """The row pointing at its own copy of its version folder (renamed if the name is taken)."""
    folder = run_files.version_folder(source.run_dir, row)
    if folder is None:
        return replace(row, results_dir=None)
    name = folder.name if folder.name not in used else f"{folder.name}-{source.run.run_id}"
    used.add(name)
    try:
        shutil.copytree(folder, run_dir / name, symlinks=True, copy_function=_link_or_copy)
    except (OSError, shutil.Error) as error:
        raise UsageError(
            f"could not copy {folder} into {run_dir}: {error}; is there room, and may you read it?"
        ) from None
    return replace(row, results_dir=str(run_dir / name))


def _link_or_copy(source: str, destination: str) -> None:
    """A hard link costs no space; across file systems (or where linking is refused) copy."""
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def _config(run_id: str, sources: Sequence[Source], rows: Sequence[Row]) -> dict[str, Any]:
    conflicts = sorted(
        {report_key(row) for row in rows if any(f.startswith(f"{CONFLICT}:") for f in row.findings)}
    )
    return {
        "run_id": run_id,
        "tool_version": __version__,
        "merged_from": [
            {
                "run_id": source.run.run_id,
                "path": str(source.run_dir.resolve()),
                "tool_version": source.run.tool_version,
                "rows": len(source.run.versions),
                **{name: source.run.config.get(name) for name in COMPARED_SETTINGS},
            }
            for source in sources
        ],
        "conflicts": conflicts,
        "settings_differ": differing_settings(sources),
    }


def report_key(row: Row) -> str:
    return report.short_label(row)


def differing_settings(sources: Sequence[Source]) -> dict[str, list[Any]]:
    """Settings the sources ran with differently, e.g. {"requests": [1000, 5000]}."""
    differ: dict[str, list[Any]] = {}
    for name in COMPARED_SETTINGS:
        values = list(dict.fromkeys(source.run.config.get(name) for source in sources))
        if len(values) > 1:
            differ[name] = values
    return differ
