"""JavaScript plugins under kong-pdk's plugin server (kong-js-pluginserver, the only server the JS
PDK has), kong-pdk from npm and the plugin's own dependencies, all fetched on this machine; node
from NODE_IMAGE (Ubuntu's nodejs in Kong's images is too old for kong-pdk 0.6)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from orchestration import host_fetch
from orchestration import sim as sim_images
from orchestration.errors import ConfigError
from orchestration.kinds.base import (
    KONG_PREFIX,
    Kind,
    PluginSource,
    read_text,
    write_plugin_files,
)
from orchestration.paths import PLUGIN_IMAGES_DIR, REPO_ROOT

PDK_FILES = (
    PLUGIN_IMAGES_DIR / "pdk-js" / "package.json",
    PLUGIN_IMAGES_DIR / "pdk-js" / "package-lock.json",
)
NODE_IMAGE = "node:20-bookworm-slim"
SERVER = "/usr/local/bin/kong-js-pluginserver"
PLUGINS_DIR = "/usr/local/lib/kpm-plugins"  # where the js target puts the plugin
SOCKET = f"{KONG_PREFIX}/js_pluginserver.sock"  # kong-js-pluginserver's default
PDK_RE = re.compile(r"""require\(\s*['"]kong-pdk|module\.exports\s*=\s*\{[^}]*\bPlugin\b""")
IMAGE_PACKAGES = frozenset({"kong-pdk"})  # kong-js-pluginserver's own
LOCK_FILES = ("package-lock.json", "npm-shrinkwrap.json")
NPM_QUIET_FLAGS = ("--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund")


class JavaScript(Kind):
    name = "js"
    expected = "a JavaScript plugin (package.json or a .js using kong-pdk / exporting Plugin)"
    marker = "package.json"
    needs_runtime = True
    own_process_name = False
    pdk_pins = PDK_FILES

    def detect(self, directory: Path) -> list[str]:
        found = [
            file.name
            for file in sorted([*directory.glob("*.js"), *directory.glob("*.cjs")])
            if PDK_RE.search(read_text(file))
        ]
        package = directory / "package.json"
        if package.is_file() and ("kong-pdk" in read_text(package) or found):
            found.insert(0, package.name)
        return found

    def source_from(self, path: Path, label: str, shown: Path) -> PluginSource:
        return PluginSource(label, self.name, path)

    def commands(self, source: PluginSource) -> tuple[str, str]:
        start = f"{SERVER} --plugins-directory {PLUGINS_DIR}"
        return start, f"{start} --dump-all-plugins"

    def default_socket(self, name: str, start_command: str) -> str:
        """kong-js-pluginserver's one socket, whichever plugins it serves."""
        return SOCKET

    def process_name(self, start_command: str) -> str:
        """kong-js-pluginserver is a node script."""
        return "node"

    def kind_image(self, kong_image: str, *, sim: bool) -> str:
        """Where node comes from: NODE_IMAGE, or under --sim the Debian kong-sim variant."""
        return kong_image if sim else NODE_IMAGE

    def stage(
        self,
        source: PluginSource,
        context: Path,
        *,
        offline: bool,
        dependencies: Path | None,
    ) -> None:
        """A directory plugin (package.json or index.js) goes into the plugins directory whole,
        its own node_modules inside it, where require looks first; otherwise its .js files go in
        one by one, each a plugin for kong-js-pluginserver. kong-pdk's node_modules in pdk/."""
        plugin_dir = context / "plugin"
        if _is_package(source.path):
            plugin_dir = plugin_dir / source.path.name
        write_plugin_files(source, plugin_dir)
        _copy_tree(self.fetch_pdk(), context / "pdk")
        if dependencies is not None:
            _copy_tree(dependencies / "node_modules", plugin_dir / "node_modules")

    def dependencies(self, source: PluginSource, repo_root: Path) -> Path | None:
        """A folder holding `node_modules/` of package.json's dependencies."""
        package_file = source.path / "package.json"
        if not package_file.is_file():
            return None
        try:
            package = json.loads(package_file.read_text())
        except (OSError, ValueError) as error:
            raise ConfigError(f"{package_file} is not valid JSON: {error}") from None
        declared = package.get("dependencies") if isinstance(package, dict) else None
        if not isinstance(declared, dict):
            return None
        # The image's kong-js-pluginserver brings its own kong-pdk; the plugin's others come here.
        wanted = {name: v for name, v in declared.items() if name not in IMAGE_PACKAGES}
        if not wanted:
            return None
        locks = [source.path / name for name in LOCK_FILES if (source.path / name).is_file()]
        manifest = json.dumps({**package, "dependencies": wanted}, indent=2, sort_keys=True)
        key = manifest.encode() + b"".join(lock.read_bytes() for lock in locks)

        def fetch(folder: Path) -> None:
            host_fetch.require_npm(
                f"{package_file} has dependencies, fetched on this machine with npm"
            )
            (folder / "package.json").write_text(manifest)
            for lock in locks:
                shutil.copy2(lock, folder / lock.name)
            command = ["npm", "install", *NPM_QUIET_FLAGS, "--prefix", str(folder)]
            host_fetch.fetch_dependencies(command, cwd=folder, declared_in=package_file, kind="npm")
            for name in ("package.json", *LOCK_FILES):
                (folder / name).unlink(missing_ok=True)

        return host_fetch.cached(
            repo_root, f"js-deps-{source.label}", key, fetch, host_fetch.DEPENDENCY_CACHE_DIR
        )

    def fetch_pdk(self) -> Path:
        """A folder holding `node_modules/` of the pinned kong-pdk (npm ci from the lock),
        cached."""

        def fetch(folder: Path) -> None:
            host_fetch.require_npm(
                "JavaScript plugin images carry kong-pdk from npm, fetched on this machine"
            )
            for pin in PDK_FILES:
                shutil.copy2(REPO_ROOT / pin, folder / pin.name)
            command = ["npm", "ci", *NPM_QUIET_FLAGS, "--prefix", str(folder)]
            host_fetch.fetch_pdk(command, what="the JavaScript PDK (kong-pdk) from npm")
            for pin in PDK_FILES:
                (folder / pin.name).unlink()

        pins = [REPO_ROOT / pin for pin in PDK_FILES]
        return host_fetch.cached(REPO_ROOT, self.name, host_fetch.pins_key(pins), fetch)


KIND = JavaScript()


def _is_package(directory: Path) -> bool:
    return (directory / "package.json").is_file() or (directory / "index.js").is_file()


def _copy_tree(origin: Path, target: Path) -> None:
    shutil.copytree(
        origin,
        target,
        symlinks=True,
        copy_function=sim_images._link_or_copy,
        dirs_exist_ok=True,
    )
