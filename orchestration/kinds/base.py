"""What every plugin kind is: the `Kind` protocol, the `PluginSource` a kind makes of a folder,
and what the kinds share (where the images put things, a plugin's files)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

KONG_PREFIX = "/usr/local/kong"
SKIPPED_NAMES = frozenset({".git", "__pycache__", ".DS_Store", ".mypy_cache", ".pytest_cache"})


@dataclass(frozen=True)
class PluginSource:
    """One plugin to measure: a row label, its kind, its directory, and what its build needs."""

    label: str  # the row label: go, go-latest, python, js, or the user's directory name
    kind: str  # a Kind's name (orchestration.kinds.KINDS)
    path: Path  # the plugin's directory (absolute)
    builtin: bool = False
    go_modfile: str = "go.mod"  # go: the module file to build with (go-latest: latest.mod)
    entry: str = ""  # go: the binary's name (Kong's plugin name); python: the server script


class Kind(Protocol):
    """One kind of plugin (a PDK and how its server runs): one module of orchestration.kinds and
    one target of images/plugins/Dockerfile, named `name`. The methods with a body are what most
    kinds do; a kind overrides what differs."""

    name: str  # as --plugin reports it, the Dockerfile target, the cache folders' prefix
    # what a folder of this kind holds, for "no plugin found" (a phrase after "Expected")
    expected: str
    marker: str  # the file a person would point --plugin at, for "is a file"
    # under --sim: the target installs a runtime (python3, node) into Kong's image, so it builds
    # on kong-sim's Debian variant rather than the FROM-scratch kong-sim
    needs_runtime: bool
    pdk_pins: tuple[Path, ...]  # files pinning a PDK fetched on this machine (repo-relative)
    # the server's process name is the plugin's own (a Go binary), not an interpreter's that
    # another process may share (python3, node): kill-server finds the server by it
    own_process_name: bool

    def detect(self, directory: Path) -> list[str]:
        """The top-level files of `directory` that show a plugin of this kind (none: not one)."""
        ...

    def source_from(self, path: Path, label: str, shown: Path) -> PluginSource:
        """The plugin in `path` (detected as this kind); ConfigError, naming `shown`, when it
        cannot run."""
        ...

    def commands(self, source: PluginSource) -> tuple[str, str]:
        """(start command, query command) as Kong must be given them."""
        ...

    def default_socket(self, name: str, start_command: str) -> str:
        """Where the server listens when its dump gives no SocketPath."""
        ...

    def stage(
        self,
        source: PluginSource,
        context: Path,
        *,
        offline: bool,
        dependencies: Path | None,
    ) -> None:
        """Put the plugin's files in `context/plugin/` and what its target needs besides (see
        the Dockerfile's header): the fetched PDK, `dependencies` (the plugin's own, fetched);
        `offline`: the builder reaches no module proxy."""
        ...

    def process_name(self, start_command: str) -> str:
        """The server's process name (comm) in the container: by default the start command's."""
        return PurePosixPath(start_command.partition(" ")[0]).name

    def go_image(self, source: PluginSource, go_image: str) -> str:
        """The golang image the build uses (every target builds kpm-tap with it)."""
        return go_image

    def kind_image(self, kong_image: str, *, sim: bool) -> str:
        """The Dockerfile's KIND_IMAGE: a registry image the kind's target builds from besides
        Kong's and golang's (js: node's). By default any image the build has already, since an
        unused stage must still name one."""
        return kong_image

    def build_variables(self, source: PluginSource) -> dict[str, str]:
        """Compose variables the kind's target reads beyond those every target does
        (images/plugins/compose.yaml)."""
        return {}

    def check_offline_build(self, source: PluginSource) -> None:
        """Refuse, before any work, a plugin an offline (--sim) build cannot make."""
        return None

    def dependencies(self, source: PluginSource, repo_root: Path) -> Path | None:
        """The plugin's own dependencies, fetched on this machine (None: nothing to fetch)."""
        return None

    def fetch_pdk(self) -> Path | None:
        """The PDK fetched on this machine, cached (None: the build brings its own)."""
        return None


def read_text(path: Path) -> str:
    """A file's text, "" when it cannot be read (detection looks at whatever is there)."""
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def plugin_files(source: PluginSource) -> list[tuple[str, bytes]]:
    """The plugin's files as (relative path, content), sorted; nothing Git or caches hold."""
    files = []
    for file in sorted(source.path.rglob("*")):
        relative = file.relative_to(source.path)
        if not file.is_file() or SKIPPED_NAMES.intersection(relative.parts):
            continue
        files.append((relative.as_posix(), file.read_bytes()))
    return files


def write_plugin_files(source: PluginSource, target: Path) -> None:
    """The plugin's files (`plugin_files`) written under `target`."""
    for relative, data in plugin_files(source):
        written = target / relative
        written.parent.mkdir(parents=True, exist_ok=True)
        written.write_bytes(data)
