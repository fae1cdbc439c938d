"""Which plugins a run measures: `--plugin` values (built-in names, `all`, or directories) into
`PluginSource`s, each folder's kind told by its files (orchestration.kinds)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from orchestration.errors import ConfigError
from orchestration.kinds import KINDS, detect_kinds, kind_named, kind_of
from orchestration.kinds.base import PluginSource
from orchestration.paths import REPO_ROOT

EXAMPLE_PLUGIN_DIR = Path("plugins/example-plugin")
BUILTIN_NAMES = ("go", "go-latest", "python", "js")
ALL = "all"
DEFAULT_PLUGIN = "go"  # the report's plugin: plugins/example-plugin on go-pdk v0.10.0
PLUGIN_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def default_plugin() -> PluginSource:
    """The built-in `go` plugin, measured when no --plugin is given."""
    (source,) = resolve_plugins((DEFAULT_PLUGIN,), REPO_ROOT)
    return source


def builtin_plugins(repo_root: Path) -> dict[str, PluginSource]:
    """The built-ins by name: the example plugin on go-pdk v0.10.0 and on the newest go-pdk (the
    same source, latest.mod), and the same contract in Python and JavaScript."""
    example = (repo_root / EXAMPLE_PLUGIN_DIR).resolve()
    return {
        "go": PluginSource("go", "go", example, True, "go.mod", "example-plugin"),
        "go-latest": PluginSource("go-latest", "go", example, True, "latest.mod", "example-plugin"),
        "python": PluginSource(
            "python",
            "python",
            (repo_root / "plugins/python-plugin").resolve(),
            True,
            entry="python-plugin.py",
        ),
        "js": PluginSource("js", "js", (repo_root / "plugins/js-plugin").resolve(), True),
    }


def resolve_plugins(values: Sequence[str], repo_root: Path) -> tuple[PluginSource, ...]:
    """`--plugin` values in order: built-in names, `all` (the four built-ins), or directories.

    A name wins over a directory of that name; write `./go` for the directory. Raises
    ConfigError for a missing path, a file, a directory with no plugin or with several kinds,
    and for a plugin given twice.
    """
    builtins = builtin_plugins(repo_root)
    resolved: list[PluginSource] = []
    for value in values:
        if value == ALL:
            resolved.extend(builtins.values())
        elif value in builtins:
            resolved.append(builtins[value])
        else:
            resolved.append(plugin_from_directory(Path(value)))
    _refuse_duplicates(resolved, values)
    for source in resolved:  # a dependency that cannot be had is refused now, before any build
        plugin_dependencies(source, repo_root)
    return tuple(resolved)


def _refuse_duplicates(sources: Sequence[PluginSource], values: Sequence[str]) -> None:
    seen: dict[str, PluginSource] = {}
    for source in sources:
        earlier = seen.get(source.label)
        if earlier is not None:
            same = earlier == source
            raise ConfigError(
                f"--plugin {source.label!r} is given twice"
                + (" (`all` already holds the built-ins)" if ALL in values and same else "")
                + (
                    ""
                    if same
                    else f": {earlier.path} and {source.path} both give the row label "
                    f"{source.label!r}; rename one directory"
                )
                + f" (values: {' '.join(values)})"
            )
        seen[source.label] = source


def plugin_from_directory(directory: Path) -> PluginSource:
    """A user's plugin directory: its kind from its files, its label from its name."""
    path = directory.expanduser()
    if not path.exists():
        raise ConfigError(
            f"--plugin {directory}: no such directory (and not a built-in: "
            f"{', '.join((*BUILTIN_NAMES, ALL))}); give a plugin's directory or a built-in name"
        )
    if not path.is_dir():
        raise ConfigError(
            f"--plugin {directory} is a file: give the plugin's directory (the one holding "
            f"{_either(kind.marker for kind in KINDS)})"
        )
    path = path.resolve()
    label = path.name
    if not PLUGIN_NAME_RE.fullmatch(label):
        raise ConfigError(
            f"--plugin {directory}: the directory name {label!r} is the plugin's row label and "
            "(for Go) its name for Kong: use letters, digits, '-' and '_' only"
        )
    found = detect_kinds(path)
    if not found:
        raise ConfigError(
            f"--plugin {directory}: no plugin found. Expected "
            f"{_either(kind.expected for kind in KINDS)}"
        )
    if len(found) > 1:
        evidence = "; ".join(f"{kind}: {', '.join(files)}" for kind, files in found.items())
        raise ConfigError(
            f"--plugin {directory} looks like plugins of several kinds ({evidence}): keep one "
            "plugin per directory"
        )
    (name,) = found
    return kind_named(name).source_from(path, label, directory)


def _either(phrases: Iterable[str]) -> str:
    """`a, b or c`."""
    *others, last = phrases
    return f"{', '.join(others)} or {last}" if others else last


def plugin_dependencies(source: PluginSource, repo_root: Path) -> Path | None:
    """The plugin's own dependencies, fetched on this machine (builds reach no PyPI or npm) into
    `.cache/deps/`, keyed by a hash of what declares them: a folder of wheels (Python:
    requirements.txt, pyproject.toml's [project] dependencies) or holding `node_modules/`
    (JavaScript: package.json's dependencies). None when it declares none beyond the PDK, and
    for a built-in.

    Raises ConfigError naming the file and the package when a package cannot be had."""
    if source.builtin:
        return None
    return kind_of(source).dependencies(source, repo_root)
