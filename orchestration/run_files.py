"""A run's folder on disk: its results files written atomically, `results/latest`, and a
results.json read back and checked.

A run folder holds `results.json` (the source of truth), `results.csv`, `summary.md` (a GitHub
table to paste into a bug report) and `config.json`. Every file is written atomically (temp file
+ rename), so a reader never sees half a file, and the files are rewritten when a row comes in so
an interrupted run still leaves readable ones. A results.json comes from users, old versions and
other tools: reading one checks every row against the typed results (report.py).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import types
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from orchestration.errors import UsageError
from orchestration.report import PhaseResult, Row, RunResult, render_csv, render_summary


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` so readers see the old file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as temp:
            temp.write(text)
            temp.flush()
            os.fsync(temp.fileno())
        Path(temp_name).replace(path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def write_run(run_dir: Path, run: RunResult) -> None:
    """(Re)write the results files of the run (JSON, CSV, Markdown); safe after each version.

    The report page takes about half a second to draw, so `drawing.finish_run` draws it, once,
    after the table is shown.
    """
    write_atomic(run_dir / "results.json", json.dumps(run.to_dict(), indent=2) + "\n")
    write_atomic(run_dir / "results.csv", render_csv(run.versions))
    write_atomic(run_dir / "summary.md", render_summary(run))


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    write_atomic(run_dir / "config.json", json.dumps(config, indent=2) + "\n")


def point_latest(results_root: Path, run_dir: Path) -> None:
    """Make `results/latest` name the newest run, replacing the link atomically."""
    latest = results_root / "latest"
    # A name no other process or thread uses at the same time; the rename is the atomic step.
    temp = results_root / f".latest.{os.getpid()}.{threading.get_ident()}.tmp"
    temp.unlink(missing_ok=True)
    temp.symlink_to(run_dir.name)
    try:
        temp.replace(latest)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def version_folder(run_dir: Path | None, row: Row) -> Path | None:
    """A row's folder (kong.log, resources.csv): next to its results.json first, since a run
    folder may have been moved, copied or merged since; else where it was recorded."""
    if row.results_dir is None:
        return None
    recorded = Path(row.results_dir)
    if run_dir is not None and (run_dir / recorded.name).is_dir():
        return run_dir / recorded.name
    return recorded if recorded.is_dir() else None


def load_run(path: Path) -> RunResult:
    """Read a run folder (or its results.json), including one left by an interrupted run.

    Anything else (not JSON, a list, a results.json without `run_id` or `versions`, a row
    without its fields or with a field of the wrong kind) is a UsageError that says what is
    wrong and what to pass: those folders come from users, old versions and other tools."""
    file = path / "results.json" if path.is_dir() else path
    what_to_pass = "pass a run folder that run, matrix or merge wrote (results/<run-id>)"
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"no results.json at {file}: {what_to_pass}") from None
    except json.JSONDecodeError as error:
        raise UsageError(f"{file} is not valid JSON ({error}): {what_to_pass}") from None
    except (OSError, UnicodeDecodeError) as error:
        why = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise UsageError(f"cannot read {file} ({why}): {what_to_pass}") from None
    problem = _not_a_run(data)
    if problem is not None:
        raise UsageError(
            f"{file} is not a results.json of kong-plugin-matrix ({problem}): {what_to_pass}"
        )
    return RunResult.from_dict(data)


def _not_a_run(data: object) -> str | None:
    """What makes `data` something other than a run's results.json; None when it is one."""
    if not isinstance(data, dict):
        return f"a JSON {_json_kind(data)}, not an object"
    for name, kind in (("run_id", str), ("tool_version", str), ("versions", list)):
        if name not in data:
            return f"it has no {name!r}"
        if not isinstance(data[name], kind):
            return f"its {name!r} is a JSON {_json_kind(data[name])}"
    if not isinstance(data.get("config", {}), dict):
        return f"its 'config' is a JSON {_json_kind(data['config'])}, not an object"
    for index, row in enumerate(data["versions"]):
        problem = _not_a_record(row, Row)
        for phase in row["phases"] if problem is None and "phases" in row else ():
            problem = problem or _not_a_record(phase, PhaseResult)
        if problem is not None:
            return f"row {index + 1} of 'versions': {problem}"
    return None


def _not_a_record(data: object, kind: type[Any]) -> str | None:
    """What keeps `data` from being read as a `kind` (a dataclass): a missing field without
    a default, or a field of another JSON kind than its type; None when nothing does."""
    if not isinstance(data, dict):
        return f"a JSON {_json_kind(data)}, not an object"
    hints = get_type_hints(kind)
    for each in fields(kind):
        if each.name not in data:
            if each.default is MISSING and each.default_factory is MISSING:
                return f"it has no {each.name!r}"
        elif not _holds(data[each.name], hints[each.name]):
            shown = json.dumps(data[each.name])[:40]
            return f"its {each.name!r} is {shown}, where {_type_text(hints[each.name])} belongs"
    return None


def _holds(value: object, hint: Any) -> bool:
    """Whether a JSON value can stand for a field of type `hint` (a Literal: its kind only)."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_holds(value, arg) for arg in get_args(hint))
    if origin is Literal:
        return any(isinstance(value, type(arg)) for arg in get_args(hint))
    if origin in (tuple, list):
        return isinstance(value, list)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint in (str, bool):
        return isinstance(value, hint)
    return True  # Any


def _type_text(hint: Any) -> str:
    """`int | None`, `str`: a field's type as its annotation reads."""
    return str(hint) if get_origin(hint) else getattr(hint, "__name__", str(hint))


def _json_kind(value: object) -> str:
    kinds = {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}
    return kinds.get(type(value), "number")
