"""Plugin kinds: one module per PDK, each a `Kind` (kinds/base.py), and one target of
images/plugins/Dockerfile named after it. Nothing outside this package asks which kind a plugin
is: it asks the plugin's kind (`kind_of`).

Adding a kind is its module here (a `Kind` named like its Dockerfile target, listed in KINDS)
and its target in images/plugins/Dockerfile.
"""

from __future__ import annotations

from pathlib import Path

from orchestration.errors import ConfigError
from orchestration.kinds import go, js, python
from orchestration.kinds.base import Kind, PluginSource

# In the order a folder's kinds are told and "no plugin found" lists them.
KINDS: tuple[Kind, ...] = (go.KIND, python.KIND, js.KIND)
BY_NAME: dict[str, Kind] = {kind.name: kind for kind in KINDS}


def kind_named(name: str) -> Kind:
    """The kind called `name`; ConfigError listing the kinds for another."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise ConfigError(f"no plugin kind {name!r}: the kinds are {', '.join(BY_NAME)}") from None


def kind_of(source: PluginSource) -> Kind:
    """The kind of `source`."""
    return kind_named(source.kind)


def detect_kinds(directory: Path) -> dict[str, list[str]]:
    """Which plugin kinds the directory's top-level files show, with the files that show it."""
    found = {kind.name: kind.detect(directory) for kind in KINDS}
    return {name: files for name, files in found.items() if files}
