"""Where the repository's files are: its root, and the folders several modules read from it.

Defined once, at the bottom of the package, so that any module may know them without importing
the run's configuration (or anything above it). The folders are relative to `REPO_ROOT`, as
build contexts and source digests name them.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PLUGIN_IMAGES_DIR = Path("images/plugins")  # the plugin images' Dockerfile family
KONG_SIM_DIR = Path("images/kong-sim")  # the stand-in gateway, and kpm-tap's sources
