"""What the repository tracks: sources, not a machine's caches, outputs or links into it."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Made on a machine, never committed (.gitignore): caches, run folders, mutation copies.
LOCAL_ONLY = (".cache", "results", "mutants", "build", ".nox")


def _tracked() -> list[tuple[str, str]]:
    """(mode, path) of every tracked file."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-s", "-z"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    entries = [entry.split("\t", 1) for entry in listed.split("\0") if entry]
    return [(head.split()[0], path) for head, path in entries]


def test_no_symlink_and_nothing_local_is_tracked() -> None:
    tracked = _tracked()
    assert len(tracked) > 100  # the listing is the repository's
    # A helper worktree's `.cache` link to the shared cache was once committed: in a fresh clone
    # it pointed at itself and `.ci/run` failed at its first download.
    assert [path for mode, path in tracked if mode == "120000"] == []
    local = [path for _, path in tracked if path.split("/")[0] in LOCAL_ONLY]
    assert local == ["results/.gitkeep"]  # the folder exists in a clone; its runs are not kept
