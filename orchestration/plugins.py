"""Which plugins a run measures, and their images: Go (go-pdk), Python and JavaScript (kong-pdk).

`resolve_plugins` turns `--plugin` values (built-in names, `all`, or directories) into
`PluginSource`s, telling the kind from the files. `build_plugin_image` builds one plugin on
one Kong base from images/plugins/Dockerfile (target `go`, `python` or `js`) in a staged
context, so a plugin directory may live anywhere; the tag is a hash of what went in, so an
unchanged plugin reuses its image. `dump_plugin` asks the built image what Kong would ask
(the query command) and `validate_plugin_config` checks a `--plugin-config` against it.

The PDKs are fetched on this machine (`pip download`, `npm ci`) into `.cache/pdk/`, never
inside a build: builds have no network to PyPI or npm.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import json
import logging
import math
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from orchestration import sim as sim_images
from orchestration.config import REPO_ROOT
from orchestration.engines import docker_command
from orchestration.errors import (
    ConfigError,
    EnvironmentProblem,
    ImageUnavailable,
    StackError,
)
from orchestration.plugin import EXAMPLE, PluginContract
from orchestration.stack import (
    LABEL,
    build_service_image,
    compose_client,
    image_identity,
    run_host_command,
    signals_blocked,
    tag_safe,
    write_env_file,
)

LOGGER = logging.getLogger(__name__)

PluginKind = Literal["go", "python", "js"]
KINDS: tuple[PluginKind, ...] = ("go", "python", "js")

EXAMPLE_PLUGIN_DIR = Path("plugins/example-plugin")
BUILTIN_NAMES = ("go", "go-latest", "python", "js")
ALL = "all"

PLUGIN_IMAGES_DIR = Path("images/plugins")
PLUGIN_COMPOSE_FILE = PLUGIN_IMAGES_DIR / "compose.yaml"
PLUGIN_DOCKERFILE_FILES = ("Dockerfile", "install-runtime.sh", "upstream.conf")
PYTHON_PDK_REQUIREMENTS = PLUGIN_IMAGES_DIR / "pdk-python" / "requirements.txt"
JS_PDK_FILES = (
    PLUGIN_IMAGES_DIR / "pdk-js" / "package.json",
    PLUGIN_IMAGES_DIR / "pdk-js" / "package-lock.json",
)
# kpm-tap's sources in kong-sim's module, as images/plugins/Dockerfile's `tap` stage copies them.
TAP_INPUTS = (
    "go.mod",
    "go.sum",
    "internal/protocol",
    "internal/tap",
    "cmd/kpm-tap",
)
KONG_SIM_DIR = Path("images/kong-sim")
PDK_CACHE_DIR = Path(".cache/pdk")
# What a plugin image's query command printed, by image ID: the dump is a function of the image.
DUMP_CACHE_DIR = Path(".cache/dumps")
PLUGIN_IMAGE_REPOSITORY = "kong-plugin-matrix"
NODE_IMAGE = "node:20-bookworm-slim"

# Where the images put things (images/plugins/Dockerfile).
GO_BIN_DIR = "/usr/local/bin"
PYTHON = "/usr/bin/python3"
PYTHON_PLUGIN_DIR = "/usr/local/lib/kpm-plugin"
JS_SERVER = "/usr/local/bin/kong-js-pluginserver"
JS_PLUGINS_DIR = "/usr/local/lib/kpm-plugins"
KONG_PREFIX = "/usr/local/kong"
JS_SOCKET = f"{KONG_PREFIX}/js_pluginserver.sock"  # kong-js-pluginserver's default
PROTOBUF = "ProtoBuf:1"
MSGPACK = "MsgPack:1"

SKIPPED_NAMES = frozenset({".git", "__pycache__", ".DS_Store", ".mypy_cache", ".pytest_cache"})
PLUGIN_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
GO_PDK_IMPORT_RE = re.compile(r'"github\.com/Kong/go-pdk(/[^"]*)?"')
GO_PACKAGE_MAIN_RE = re.compile(r"^package\s+main\b", re.MULTILINE)
GO_DIRECTIVE_RE = re.compile(r"^go\s+(\d+)\.(\d+)", re.MULTILINE)
GO_PDK_MODULE = "github.com/Kong/go-pdk"
CODEC_MODULE = "github.com/ugorji/go/codec"
SEMVER_RE = re.compile(r"v(\d+)\.(\d+)\.(\d+)")
# go-pdk's eras (its tags' server/ package): before v0.6.0 a plugin was a Go plugin (.so) that
# Kong's go-pluginserver loaded, which Kong 3.0 removed (`go_pluginserver_exe`, `go_plugins_dir`);
# v0.6.x embeds a MessagePack server (`-dump` prints a bare list, no Protocol); v0.7.0 on speak
# ProtoBuf:1 and dump {Protocol, SocketPath, Plugins}. Every embedded server listens on
# <-kong-prefix>/<binary name>.socket.
FIRST_EMBEDDED_GO_PDK = (0, 6, 0)
FIRST_PROTOBUF_GO_PDK = (0, 7, 0)
# ugorji/go/codec before v1.2.3 links runtime internals that Go 1.23+ refuses ("invalid reference
# to runtime.typedmemclr"); its `safe` build tag uses reflection only, on every Go.
FIRST_CODEC_LINKING_ON_NEW_GO = (1, 2, 3)
CODEC_SAFE_TAG = "safe"
GOLANG_IMAGE_RE = re.compile(r"^(?:docker\.io/)?(?:library/)?golang:(\d+)\.(\d+)")
PYTHON_PDK_IMPORT_RE = re.compile(r"^\s*(?:from|import)\s+kong_pdk\b", re.MULTILINE)
JS_PDK_RE = re.compile(r"""require\(\s*['"]kong-pdk|module\.exports\s*=\s*\{[^}]*\bPlugin\b""")
# A plugin's own dependencies: what declares them, what the images carry already.
PYTHON_DEPENDENCY_FILES = ("requirements.txt", "pyproject.toml")
# kong-pdk from its pinned wheel; msgpack, gevent and gevent's own from the distribution (apt).
PYTHON_IMAGE_PACKAGES = frozenset(
    {"kong-pdk", "msgpack", "gevent", "greenlet", "zope-event", "zope-interface"}
)
JS_IMAGE_PACKAGES = frozenset({"kong-pdk"})  # kong-js-pluginserver's own
JS_LOCK_FILES = ("package-lock.json", "npm-shrinkwrap.json")
NPM_QUIET_FLAGS = ("--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund")
DEPENDENCY_CACHE_DIR = Path(".cache/deps")
ANSI_ESCAPE_RE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07]*\x07|[@-Z\\-_])")
EXCEPTION_LINE_RE = re.compile(r"^(?:[A-Za-z_][\w.]*(?:Error|Exception)|Error)\b:?")
ERROR_WORD_RE = re.compile(r"\berror\b", re.IGNORECASE)
UNREACHABLE_RE = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Temporary failure in name "
    r"resolution|\b(?:ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT|ENETUNREACH)\b"
)
MISSING_PACKAGE_RE = {
    "pip": re.compile(r"No matching distribution found for (?P<package>[^\s;]+)"),
    "npm": re.compile(
        r"'(?P<package>[^'\s]+?)' is not in (?:this|the npm) registry"
        r"|No matching version found for (\S+?)\.?$",
        re.MULTILINE,
    ),
}
DUMP_TIMEOUT_S = 120.0
LISTEN_TIMEOUT_S = 30.0
FETCH_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class PluginSource:
    """One plugin to measure: a row label, its kind, its directory, and what its build needs."""

    label: str  # the row label: go, go-latest, python, js, or the user's directory name
    kind: PluginKind
    path: Path  # the plugin's directory (absolute)
    builtin: bool = False
    go_modfile: str = "go.mod"  # go: the module file to build with (go-latest: latest.mod)
    entry: str = ""  # go: the binary's name (Kong's plugin name); python: the server script

    @property
    def go_directive(self) -> tuple[int, int] | None:
        """go: the `go` line of the module file, as (major, minor)."""
        if self.kind != "go":
            return None
        match = GO_DIRECTIVE_RE.search((self.path / self.go_modfile).read_text())
        return (int(match[1]), int(match[2])) if match else None

    @property
    def go_pdk_version(self) -> str | None:
        """go: the go-pdk version the module file requires (after a `replace`), if it says."""
        if self.kind != "go":
            return None
        return module_version(_text(self.path / self.go_modfile), GO_PDK_MODULE)

    @property
    def go_build_tags(self) -> str:
        """go: the build tags the plugin needs (`safe` for an ugorji codec older than v1.2.3,
        which no Go from 1.23 on links otherwise); empty for most plugins."""
        if self.kind != "go":
            return ""
        sums = self.path / (self.go_modfile.removesuffix(".mod") + ".sum")
        codec = _newest(
            [
                *re.findall(rf"^{re.escape(CODEC_MODULE)} (v\S+) h1:", _text(sums), re.MULTILINE),
                *filter(None, [module_version(_text(self.path / self.go_modfile), CODEC_MODULE)]),
            ]
        )
        pdk = semver(self.go_pdk_version)
        if codec is None:  # no pin of its own: go-pdk's MessagePack era brings v1.2.1
            old_codec = pdk is not None and pdk < FIRST_PROTOBUF_GO_PDK
        else:
            old_codec = codec < FIRST_CODEC_LINKING_ON_NEW_GO
        return CODEC_SAFE_TAG if old_codec else ""


@dataclass(frozen=True)
class PluginDump:
    """What Kong learns from the plugin's query command, and how Kong must run it."""

    server_name: str  # the KONG_PLUGINSERVER_NAMES entry, lowercased as Kong does
    plugin_name: str  # the KONG_PLUGINS entry and kong.yml's plugin name
    protocol: str  # ProtoBuf:1 (go-pdk) or MsgPack:1 (Python, JavaScript)
    phases: tuple[str, ...]
    priority: int
    version: str | None
    schema: Mapping[str, Any]  # the `config` record, in Kong's schema format
    start_command: str  # KONG_PLUGINSERVER_<NAME>_START_CMD
    query_command: str  # KONG_PLUGINSERVER_<NAME>_QUERY_CMD
    socket: str  # KONG_PLUGINSERVER_<NAME>_SOCKET: where the server listens


DEFAULT_PLUGIN = "go"  # the report's plugin: plugins/example-plugin on go-pdk v0.10.0


def default_plugin() -> PluginSource:
    """The built-in `go` plugin, measured when no --plugin is given."""
    (source,) = resolve_plugins((DEFAULT_PLUGIN,), REPO_ROOT)
    return source


def prepared(
    source: PluginSource,
    *,
    kong_image: str,
    go_image: str,
    sim: bool,
    repo_root: Path,
    config_json: str = "{}",
    docker_host: str | None = None,
) -> tuple[str, PluginContract]:
    """Build the plugin's image, read its dump as Kong will, check `config_json` against the
    schema it dumps; the image's tag and the harness's contract with the plugin."""
    image = build_plugin_image(
        source,
        kong_image=kong_image,
        go_image=go_image,
        sim=sim,
        repo_root=repo_root,
        docker_host=docker_host,
    )
    dump = cached_dump(image, source, cache=repo_root / DUMP_CACHE_DIR, docker_host=docker_host)
    validate_plugin_config(json.loads(config_json), dump)
    return image, contract_for(source, dump, config_json)


def contract_for(source: PluginSource, dump: PluginDump, config_json: str) -> PluginContract:
    """The harness's contract with a built plugin: what its dump told, and for a built-in, the
    example plugin's headers and counter (a user's plugin sets none: kpm-tap counts for it)."""
    own_count = source.builtin
    return PluginContract(
        name=dump.server_name,
        plugin_name=dump.plugin_name,
        server_command=dump.start_command,
        query_command=dump.query_command,
        protocol=dump.protocol,
        socket=dump.socket,
        phases=tuple(dump.phases),
        priority=dump.priority,
        label=source.label,
        config_json=config_json,
        process_name=process_name_of(source.kind, dump.start_command),
        marker_header=EXAMPLE.marker_header if own_count else None,
        config_header=EXAMPLE.config_header if own_count else None,
    )


def process_name_of(kind: PluginKind, start_command: str) -> str:
    """The plugin server's process name (comm) in the container: a Go binary's own name, the
    interpreter's for Python (`python3 script.py`) and for kong-js-pluginserver (a node script)."""
    if kind == "js":
        return "node"
    return PurePosixPath(start_command.split(maxsplit=1)[0]).name


# --- resolving --plugin values ---------------------------------------------------------------


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
            "go.mod",
            "python-plugin.py",
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
            "go.mod, the Python server script or package.json)"
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
            f"--plugin {directory}: no plugin found. Expected a Go main package on go-pdk "
            "(go.mod and a .go file `package main` importing github.com/Kong/go-pdk), a Python "
            "plugin (a .py importing kong_pdk) or a JavaScript plugin (package.json or a .js "
            "using kong-pdk / exporting Plugin)"
        )
    if len(found) > 1:
        evidence = "; ".join(f"{kind}: {', '.join(files)}" for kind, files in found.items())
        raise ConfigError(
            f"--plugin {directory} looks like plugins of several kinds ({evidence}): keep one "
            "plugin per directory"
        )
    kind = next(iter(found))
    if kind == "go":
        source = PluginSource(label, "go", path, entry=label)
        _refuse_pluginserver_era(source, directory)
        return source
    if kind == "python":
        return PluginSource(label, "python", path, entry=_python_server_script(path, directory))
    return PluginSource(label, "js", path)


def detect_kinds(directory: Path) -> dict[PluginKind, list[str]]:
    """Which plugin kinds the directory's top-level files show, with the files that show it."""
    found: dict[PluginKind, list[str]] = {}
    if (directory / "go.mod").is_file():
        mains = [
            file.name
            for file in sorted(directory.glob("*.go"))
            if not file.name.endswith("_test.go")
            and GO_PACKAGE_MAIN_RE.search(text := _text(file))
            and GO_PDK_IMPORT_RE.search(text)
        ]
        if mains:
            found["go"] = mains
    python = [
        f.name for f in sorted(directory.glob("*.py")) if PYTHON_PDK_IMPORT_RE.search(_text(f))
    ]
    if python:
        found["python"] = python
    js = [
        file.name
        for file in sorted([*directory.glob("*.js"), *directory.glob("*.cjs")])
        if JS_PDK_RE.search(_text(file))
    ]
    package = directory / "package.json"
    if package.is_file() and ("kong-pdk" in _text(package) or js):
        js.insert(0, package.name)
    if js:
        found["js"] = js
    return found


def _text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def module_version(go_mod: str, module: str) -> str | None:
    """The version of `module` that a go.mod's text selects: a `replace` by a version wins over
    the `require` (a replace by a directory: None, the version cannot be told)."""
    name = re.escape(module)
    replaced = re.search(
        rf"^\s*(?:replace\s+)?{name}(?:\s+v\S+)?\s+=>\s+(\S+)(?:\s+(v\S+))?",
        go_mod,
        re.MULTILINE,
    )
    if replaced:
        return replaced[2] if replaced[2] and replaced[1] == module else None
    required = re.search(rf"^\s*(?:require\s+)?{name}\s+(v\S+)", go_mod, re.MULTILINE)
    return required[1] if required else None


def semver(version: str | None) -> tuple[int, int, int] | None:
    """(major, minor, patch) of a Go module version (`v0.6.1`, `v0.11.1-0.2024...`)."""
    match = SEMVER_RE.match(version or "")
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def _newest(versions: Iterable[str]) -> tuple[int, int, int] | None:
    return max(filter(None, map(semver, versions)), default=None)


def _refuse_pluginserver_era(source: PluginSource, shown: Path) -> None:
    """A go-pdk from before the embedded server cannot run in Kong 3.x at all: say so now."""
    version = source.go_pdk_version
    found = semver(version)
    if found is None or found >= FIRST_EMBEDDED_GO_PDK:
        return
    oldest = "v{}.{}.{}".format(*FIRST_EMBEDDED_GO_PDK)
    raise ConfigError(
        f"--plugin {shown}: {source.go_modfile} requires go-pdk {version}, from before go-pdk "
        "had its own server: such a plugin is a Go plugin (.so) for Kong's go-pluginserver, "
        "which Kong 3.0 removed (go_pluginserver_exe, go_plugins_dir), so no Kong this tool "
        f"measures can run it. The oldest go-pdk that runs is {oldest} (MessagePack); v0.7.0 "
        "and later speak ProtoBuf. Move the plugin to a newer go-pdk (`go get "
        f"{GO_PDK_MODULE}@latest`) and start its server in main: "
        "`server.StartServer(New, Version, Priority)`"
    )


def _python_server_script(path: Path, shown: Path) -> str:
    """The .py that starts the dedicated server (`start_dedicated_server(...)`)."""
    scripts = [
        file.name for file in sorted(path.glob("*.py")) if _calls(file, "start_dedicated_server")
    ]
    if not scripts:
        raise ConfigError(
            f"--plugin {shown}: a Python plugin, but no .py starts a dedicated server. Add, as "
            'Kong\'s docs show: `if __name__ == "__main__": from kong_pdk.cli import '
            'start_dedicated_server; start_dedicated_server("NAME", Plugin, version, '
            "priority, Schema)`"
        )
    if len(scripts) > 1:
        raise ConfigError(
            f"--plugin {shown}: several .py files start a dedicated server ({', '.join(scripts)})"
            ": keep one plugin per directory"
        )
    return scripts[0]


def _calls(file: Path, function: str) -> bool:
    try:
        tree = ast.parse(_text(file), filename=str(file))
    except SyntaxError:
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            called = node.func
            name = called.attr if isinstance(called, ast.Attribute) else getattr(called, "id", "")
            if name == function:
                return True
    return False


# --- images ----------------------------------------------------------------------------------


def go_image_for(source: PluginSource, go_image: str) -> str:
    """`go_image`, or for an official `golang:X.Y` older than the plugin's `go` directive, the
    `golang` image of that directive (the build would otherwise refuse or fetch a toolchain)."""
    needed = source.go_directive
    match = GOLANG_IMAGE_RE.match(go_image)
    if needed is None or match is None:
        return go_image
    if (int(match[1]), int(match[2])) >= needed:
        return go_image
    return f"golang:{needed[0]}.{needed[1]}"


def plugin_image_tag(
    source: PluginSource,
    *,
    kong_image: str,
    go_image: str,
    node_image: str,
    sim: bool,
    repo_root: Path,
    docker_host: str | None = None,
) -> str:
    """`kong-plugin-matrix:plugin-<label>[-sim]-<hash>`: the hash covers the plugin's files and
    fetched dependencies, the Dockerfile family, kpm-tap's sources, the PDK pins and the base
    images (by id when a registry tag is present locally)."""
    digest = hashlib.sha256()
    for name, data in _plugin_files(source):
        digest.update(b"plugin/" + name.encode() + b"\0" + hashlib.sha256(data).digest())
    inputs = [
        *(PLUGIN_IMAGES_DIR / name for name in PLUGIN_DOCKERFILE_FILES),
        *(KONG_SIM_DIR / name for name in TAP_INPUTS),
        *(_pdk_pins(source.kind)),
    ]
    for relative in inputs:
        for file in _files_under(repo_root / relative):
            digest.update(file.relative_to(repo_root).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(file.read_bytes()).digest())
    bases = [kong_image, go_image, node_image]
    dependencies = plugin_dependencies(source, repo_root)  # its folder is named by their hash
    for text in [
        dependencies.name if dependencies else "",
        source.kind,
        source.go_modfile,
        source.entry,
        source.go_build_tags,
        *_identities(bases, sim, docker_host),
    ]:
        digest.update(text.encode() + b"\0")
    flavour = "-sim" if sim else ""
    label = tag_safe(source.label).lower()[:40]
    return f"{PLUGIN_IMAGE_REPOSITORY}:plugin-{label}{flavour}-{digest.hexdigest()[:12]}"


def _identities(images: Iterable[str], sim: bool, docker_host: str | None = None) -> list[str]:
    return list(images) if sim else [image_identity(image, docker_host) for image in images]


def _pdk_pins(kind: PluginKind) -> tuple[Path, ...]:
    if kind == "python":
        return (PYTHON_PDK_REQUIREMENTS,)
    if kind == "js":
        return JS_PDK_FILES
    return ()


@dataclass(frozen=True)
class ImagePlan:
    """What one plugin image is built from, and its tag."""

    tag: str
    kong_image: str  # the base: a Kong image, kong-sim, or (Python, JS under --sim) its Debian twin
    go_image: str
    node_image: str
    offline_modules: bool  # Go modules downloaded on this machine into the context


def plan_plugin_image(
    source: PluginSource,
    *,
    kong_image: str,
    go_image: str,
    sim: bool,
    repo_root: Path,
    docker_host: str | None = None,
) -> ImagePlan:
    """The tag `build_plugin_image` builds or reuses, and its bases (for Python and JavaScript
    under --sim, the Debian kong-sim variant, built here when missing)."""
    go_image = go_image if sim else go_image_for(source, go_image)
    # The go-builder stand-in has no module proxy: a build on it needs the modules with it.
    offline_modules = sim or go_image.startswith(sim_images.GO_BUILDER_REPOSITORY + ":")
    if offline_modules and source.kind == "go":
        _check_host_go(source)
    if sim and source.kind != "go":
        kong_image = sim_images.build_kong_sim_runtime(
            kong_image, repo_root=repo_root, docker_host=docker_host
        )
    node_image = _node_image(source, kong_image, sim=sim)
    tag = plugin_image_tag(
        source,
        kong_image=kong_image,
        go_image=go_image,
        node_image=node_image,
        sim=sim,
        repo_root=repo_root,
        docker_host=docker_host,
    )
    return ImagePlan(tag, kong_image, go_image, node_image, offline_modules)


def build_plugin_image(
    source: PluginSource,
    *,
    kong_image: str,
    go_image: str,
    sim: bool,
    repo_root: Path,
    docker_host: str | None = None,
) -> str:
    """Build `source` on `kong_image` (reused when its tag exists) and return the tag.

    With `sim`, `kong_image` is the kong-sim tag and `go_image` the go-builder
    (sim.build_sim_images): Python and JavaScript plugins then build on the Debian kong-sim
    variant, and a Go plugin's modules are downloaded on this machine into the context.
    """
    plan = plan_plugin_image(
        source,
        kong_image=kong_image,
        go_image=go_image,
        sim=sim,
        repo_root=repo_root,
        docker_host=docker_host,
    )
    tag = plan.tag
    if _image_id(tag, docker_host) is not None:
        LOGGER.info("reusing %s for plugin %s", tag, source.label)
        return tag
    variables = {
        "KPM_PLUGIN_IMAGE": tag,
        "KPM_PLUGIN_TARGET": source.kind,
        "KPM_GO_IMAGE": plan.go_image,
        "KPM_KONG_IMAGE": plan.kong_image,
        "KPM_NODE_IMAGE": plan.node_image,
        "KPM_PLUGIN_NAME": source.entry or source.label,
        "KPM_GO_MODFILE": source.go_modfile,
        "KPM_GO_TAGS": source.go_build_tags,
    }
    with tempfile.TemporaryDirectory(prefix="kpm-plugin-build-") as scratch:
        context = Path(scratch) / "context"
        variables["KPM_PLUGIN_CONTEXT"] = str(context)
        stage_context(source, context, repo_root=repo_root, offline_modules=plan.offline_modules)
        env_file = write_env_file(Path(scratch) / "build.env", variables)
        project = f"kpm-plugin-build-{Path(scratch).name.rsplit('-', 1)[-1].lower()}"
        builder = compose_client(
            repo_root / PLUGIN_COMPOSE_FILE, project, env_file, variables, host=docker_host
        )
        build_service_image(builder, "plugin", tag)
    return tag


def _image_id(tag: str, docker_host: str | None = None) -> str | None:
    """The image's ID on the engine, or None when it has no image of that name."""
    return sim_images.image_ids(docker_host, tag).get(tag)


def registry_bases(source: PluginSource, kong_image: str, go_image: str) -> tuple[str, ...]:
    """The registry images a real (not --sim) build of `source` on `kong_image` starts from:
    every target copies kpm-tap from the `golang` stage, js its node from NODE_IMAGE too."""
    bases = (kong_image, go_image_for(source, go_image))
    return (*bases, NODE_IMAGE) if source.kind == "js" else bases


def _node_image(source: PluginSource, kong_image: str, *, sim: bool) -> str:
    """js: where node comes from (the Debian kong-sim variant has it); otherwise any image the
    build already has, since an unused stage must still name one."""
    if source.kind != "js" or sim:
        return kong_image
    return NODE_IMAGE


def _check_host_go(source: PluginSource) -> None:
    needed = source.go_directive
    match = re.match(r"go(\d+)\.(\d+)", sim_images.host_go_version())
    if needed and match and (int(match[1]), int(match[2])) < needed:
        raise ConfigError(
            f"plugin {source.label} needs Go {needed[0]}.{needed[1]} ({source.go_modfile}), but "
            f"--sim builds with this machine's {sim_images.host_go_version()}: install a newer Go "
            "from https://go.dev/dl/"
        )


def stage_context(
    source: PluginSource, context: Path, *, repo_root: Path, offline_modules: bool
) -> None:
    """Fill a build context for images/plugins/Dockerfile (see its header)."""
    context.mkdir(parents=True)
    for name in PLUGIN_DOCKERFILE_FILES:
        shutil.copy2(repo_root / PLUGIN_IMAGES_DIR / name, context / name)
    plugin_dir = context / "plugin"
    if source.kind == "js" and _is_js_package(source.path):
        plugin_dir = plugin_dir / source.path.name
    for relative, data in _plugin_files(source):
        target = plugin_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    (context / "plugin").mkdir(exist_ok=True)
    for relative in TAP_INPUTS:
        origin = repo_root / KONG_SIM_DIR / relative
        target = context / "tap" / relative
        if origin.is_dir():
            shutil.copytree(origin, target, ignore=shutil.ignore_patterns("*_test.go"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target)
    (context / "gomodcache").mkdir()
    if source.kind == "go" and offline_modules:
        sim_images.download_modules(source.path, context / "gomodcache", modfile=source.go_modfile)
    pdk = context / "pdk"
    dependencies = plugin_dependencies(source, repo_root)
    if source.kind == "python":
        shutil.copytree(python_pdk(repo_root), pdk)
        if dependencies is not None:  # wheels beside kong-pdk's: the image unpacks every one
            shutil.copytree(dependencies, pdk, dirs_exist_ok=True)
    elif source.kind == "js":
        _copy_tree(js_pdk(repo_root), pdk)
        if dependencies is not None:  # the plugin's own node_modules, where require looks first
            _copy_tree(dependencies / "node_modules", plugin_dir / "node_modules")
    else:
        pdk.mkdir()


def _copy_tree(origin: Path, target: Path) -> None:
    shutil.copytree(
        origin,
        target,
        symlinks=True,
        copy_function=sim_images._link_or_copy,
        dirs_exist_ok=True,
    )


def _is_js_package(directory: Path) -> bool:
    """A directory plugin (package.json or index.js) goes into the plugins directory whole;
    otherwise its .js files go in one by one, each a plugin for kong-js-pluginserver."""
    return (directory / "package.json").is_file() or (directory / "index.js").is_file()


def _plugin_files(source: PluginSource) -> list[tuple[str, bytes]]:
    """The plugin's files as (relative path, content), sorted; nothing Git or caches hold."""
    files = []
    for file in sorted(source.path.rglob("*")):
        relative = file.relative_to(source.path)
        if not file.is_file() or SKIPPED_NAMES.intersection(relative.parts):
            continue
        files.append((relative.as_posix(), file.read_bytes()))
    return files


def _files_under(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        return []
    return sorted(p for p in path.rglob("*") if p.is_file() and not SKIPPED_NAMES & set(p.parts))


# --- the PDKs, fetched on this machine ---------------------------------------------------------


def python_pdk(repo_root: Path) -> Path:
    """A folder holding the pinned kong-pdk wheel (pip download, hash-checked), cached."""
    requirements = repo_root / PYTHON_PDK_REQUIREMENTS
    return _cached(
        repo_root,
        "python",
        _pins_key([requirements]),
        lambda folder: _fetch(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--require-hashes",
                "-r",
                str(requirements),
                "-d",
                str(folder),
            ],
            what="the Python PDK (kong-pdk) from PyPI",
        ),
    )


def js_pdk(repo_root: Path) -> Path:
    """A folder holding `node_modules/` of the pinned kong-pdk (npm ci from the lock), cached."""

    def fetch(folder: Path) -> None:
        if shutil.which("npm") is None:
            raise EnvironmentProblem(
                "JavaScript plugin images carry kong-pdk from npm, fetched on this machine, but "
                "npm is not on PATH: apt-get install npm (or install Node.js)"
            )
        for pin in JS_PDK_FILES:
            shutil.copy2(repo_root / pin, folder / pin.name)
        _fetch(
            [
                "npm",
                "ci",
                "--omit=dev",
                "--ignore-scripts",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(folder),
            ],
            what="the JavaScript PDK (kong-pdk) from npm",
        )
        for pin in JS_PDK_FILES:
            (folder / pin.name).unlink()

    return _cached(repo_root, "js", _pins_key([repo_root / pin for pin in JS_PDK_FILES]), fetch)


def _pins_key(pins: Sequence[Path]) -> bytes:
    return b"".join(hashlib.sha256(p.read_bytes()).digest() for p in pins)


def _cached(
    repo_root: Path,
    kind: str,
    key: bytes,
    fetch: Callable[[Path], None],
    cache_dir: Path = PDK_CACHE_DIR,
) -> Path:
    """`<cache_dir>/<kind>-<hash of key>/`, filled by `fetch(folder)` once (atomically)."""
    digest = hashlib.sha256(key)
    folder = repo_root / cache_dir / f"{kind}-{digest.hexdigest()[:12]}"
    if folder.is_dir():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{kind}-", dir=folder.parent))
    try:
        started = time.monotonic()
        fetch(partial)
        partial.rename(folder)
        LOGGER.info("fetched %s into %s in %.1fs", kind, folder, time.monotonic() - started)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder


def _fetch(command: list[str], *, what: str) -> None:
    """A PDK download on this machine; a failure is that plugin's error row (ImageUnavailable)."""
    run_host_command(
        command,
        problem=f"could not fetch {what}",
        remedy="check this machine's network",
        timeout_s=FETCH_TIMEOUT_S,
        error=ImageUnavailable,
    )


# --- a plugin's own dependencies, fetched on this machine ----------------------------------------


def plugin_dependencies(source: PluginSource, repo_root: Path) -> Path | None:
    """The plugin's own dependencies, fetched on this machine (builds reach no PyPI or npm) into
    `.cache/deps/`, keyed by a hash of what declares them: a folder of wheels (Python:
    requirements.txt, pyproject.toml's [project] dependencies) or holding `node_modules/`
    (JavaScript: package.json's dependencies). None when it declares none beyond the PDK.

    Raises ConfigError naming the file and the package when a package cannot be had."""
    if source.builtin:
        return None
    if source.kind == "python":
        return _python_dependencies(source, repo_root)
    if source.kind == "js":
        return _js_dependencies(source, repo_root)
    return None


def _python_dependencies(source: PluginSource, repo_root: Path) -> Path | None:
    declared = python_requirements(source.path)
    if not declared:
        return None
    files = " and ".join(name for name in PYTHON_DEPENDENCY_FILES if (source.path / name).is_file())
    text = "\n".join(declared) + "\n"
    key = f"{text}\0{sys.version_info[:2]}".encode()

    def fetch(folder: Path) -> None:
        requirements = folder / "requirements.txt"
        requirements.write_text(text)
        command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check"]
        command += ["--wheel-dir", str(folder), "-r", str(requirements)]
        _fetch_dependencies(command, cwd=source.path, declared_in=source.path / files, kind="pip")
        requirements.unlink()
        _keep_pure_wheels(folder, source.path / files)

    return _cached(repo_root, f"python-deps-{source.label}", key, fetch, DEPENDENCY_CACHE_DIR)


def python_requirements(directory: Path) -> list[str]:
    """The requirement lines of requirements.txt and pyproject.toml's [project] dependencies,
    without what the python image carries already (kong-pdk, msgpack, gevent and gevent's own)."""
    lines: list[str] = []
    requirements = directory / "requirements.txt"
    if requirements.is_file():
        joined = requirements.read_text(errors="replace").replace("\\\n", " ")
        for raw in joined.splitlines():
            line = re.sub(r"(^|\s)#.*", "", raw).strip()
            if line:
                lines.append(_absolute_requirement(line, directory))
    lines.extend(_pyproject_dependencies(directory / "pyproject.toml"))
    return [line for line in lines if _requirement_name(line) not in PYTHON_IMAGE_PACKAGES]


def _absolute_requirement(line: str, directory: Path) -> str:
    """`-r other.txt`, `-c c.txt`, `-e ./x`, `./x`: paths from the plugin's folder, so pip finds
    them from the filtered copy it is given."""
    option = re.match(r"(-[rce]|--requirement|--constraint|--editable)(\s+|=)(\S+)$", line)
    if option and not re.match(r"\w+://", option[3]):
        return f"{option[1]} {(directory / option[3]).resolve()}"
    if line.startswith((".", "/")):
        return str((directory / line).resolve())
    return line


def _pyproject_dependencies(pyproject: Path) -> list[str]:
    if not pyproject.is_file():
        return []
    try:  # the standard library's from Python 3.11 (mypy checks this package as 3.10)
        toml = importlib.import_module("tomllib")
    except ImportError:
        raise EnvironmentProblem(
            f"{pyproject}: reading its [project] dependencies needs Python 3.11 or newer "
            "(tomllib); list them in a requirements.txt beside it instead"
        ) from None
    try:
        project = toml.loads(pyproject.read_text()).get("project") or {}
    except (OSError, ValueError) as error:  # tomllib.TOMLDecodeError is a ValueError
        raise ConfigError(f"{pyproject} is not valid TOML: {error}") from None
    dependencies = project.get("dependencies") or []
    if not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies):
        raise ConfigError(f"{pyproject}: [project] dependencies must be a list of strings")
    return list(dependencies)


def _requirement_name(line: str) -> str | None:
    """A requirement line's normalized project name (PEP 503), None for an option or a path."""
    match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)", line)
    return re.sub(r"[-_.]+", "-", match[1]).lower() if match else None


def _keep_pure_wheels(folder: Path, declared_in: Path) -> None:
    """Drop wheels of what the image has; refuse a compiled one (the image's python3 is the
    distribution's, not this machine's, so only pure-Python wheels fit it)."""
    for wheel in sorted(folder.glob("*.whl")):
        project, version, *_, abi, platform = wheel.stem.split("-")
        if _requirement_name(project) in PYTHON_IMAGE_PACKAGES:
            wheel.unlink()
        elif (abi, platform) != ("none", "any"):
            raise ConfigError(
                f"{declared_in} needs {project} {version}, which comes only as a compiled wheel "
                f"({wheel.name}): the plugin image runs the distribution's python3, so only "
                "pure-Python packages can be installed into it. Drop it, or use a pure-Python "
                "alternative"
            )


def _js_dependencies(source: PluginSource, repo_root: Path) -> Path | None:
    package_file = source.path / "package.json"
    if not package_file.is_file():
        return None
    try:
        package = json.loads(package_file.read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"{package_file} is not valid JSON: {error}") from None
    dependencies = package.get("dependencies") if isinstance(package, dict) else None
    if not isinstance(dependencies, dict):
        return None
    # The image's kong-js-pluginserver brings its own kong-pdk; the plugin's others come here.
    wanted = {name: v for name, v in dependencies.items() if name not in JS_IMAGE_PACKAGES}
    if not wanted:
        return None
    locks = [source.path / name for name in JS_LOCK_FILES if (source.path / name).is_file()]
    manifest = json.dumps({**package, "dependencies": wanted}, indent=2, sort_keys=True)
    key = manifest.encode() + b"".join(lock.read_bytes() for lock in locks)

    def fetch(folder: Path) -> None:
        if shutil.which("npm") is None:
            raise EnvironmentProblem(
                f"{package_file} has dependencies, fetched on this machine with npm, but npm "
                "is not on PATH: apt-get install npm (or install Node.js)"
            )
        (folder / "package.json").write_text(manifest)
        for lock in locks:
            shutil.copy2(lock, folder / lock.name)
        command = ["npm", "install", *NPM_QUIET_FLAGS, "--prefix", str(folder)]
        _fetch_dependencies(command, cwd=folder, declared_in=package_file, kind="npm")
        for name in ("package.json", *JS_LOCK_FILES):
            (folder / name).unlink(missing_ok=True)

    return _cached(repo_root, f"js-deps-{source.label}", key, fetch, DEPENDENCY_CACHE_DIR)


def _fetch_dependencies(command: list[str], *, cwd: Path, declared_in: Path, kind: str) -> None:
    """Run pip or npm on this machine: a package it cannot find is the plugin's ConfigError
    (naming the file and the package), an unreachable registry this machine's problem."""
    registry = "PyPI" if kind == "pip" else "npm's registry"
    try:
        completed = subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, timeout=FETCH_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise EnvironmentProblem(
            f"fetching the dependencies of {declared_in} from {registry} took over "
            f"{FETCH_TIMEOUT_S:.0f}s (`{' '.join(command)}`): check this machine's network"
        ) from None
    if completed.returncode == 0:
        return
    output = strip_terminal_codes(completed.stderr + "\n" + completed.stdout)
    if UNREACHABLE_RE.search(output):
        raise EnvironmentProblem(
            f"could not reach {registry} from this machine to fetch the dependencies of "
            f"{declared_in}: {first_error_line(output)}"
        )
    missing = MISSING_PACKAGE_RE[kind].search(output)
    package = next(filter(None, missing.groups()), None) if missing else None
    what = f"package {package}" if package else "a package"
    raise ConfigError(
        f"{declared_in} asks for {what} that {registry} cannot give this machine: "
        f"{first_error_line(output)}. Fix the name or version there"
    )


def strip_terminal_codes(text: str) -> str:
    """`text` without terminal escape sequences (colours, cursor moves: Node's loggers)."""
    return ANSI_ESCAPE_RE.sub("", text)


def first_error_line(text: str) -> str:
    """The line that says what went wrong: the first that starts with an exception's name
    (Python's traceback ends in one), else the first that mentions an error, else the last."""
    lines = [line.strip() for line in strip_terminal_codes(text).splitlines() if line.strip()]
    for pattern in (EXCEPTION_LINE_RE, ERROR_WORD_RE):
        for line in lines:
            if pattern.search(line):
                return line
    return lines[-1] if lines else "(no output)"


def describe_output(output: str) -> str:
    """A failed command's output in one line a person can act on: its first real error line
    and, when another, its last line; terminal codes removed, nothing cut in the middle."""
    lines = [line.strip() for line in strip_terminal_codes(output).splitlines() if line.strip()]
    if not lines:
        return "(no output)"
    first = first_error_line(output)
    return first if first == lines[-1] else f"{first} (its last line: {lines[-1]})"


# --- asking the image: the dump and the server ---------------------------------------------------


def commands_for(source: PluginSource) -> tuple[str, str]:
    """(start command, query command) as Kong must be given them."""
    if source.kind == "go":
        start = f"{GO_BIN_DIR}/{source.entry}"
        return start, f"{start} -dump"
    if source.kind == "python":
        start = f"{PYTHON} {PYTHON_PLUGIN_DIR}/{source.entry}"
        return start, f"{start} --dump"
    start = f"{JS_SERVER} --plugins-directory {JS_PLUGINS_DIR}"
    return start, f"{start} --dump-all-plugins"


def dump_plugin(image: str, source: PluginSource, docker_host: str | None = None) -> PluginDump:
    """Run the plugin's query command in `image` as Kong does and read what it says."""
    start, query = commands_for(source)
    what = f"the query command of plugin {source.label}"
    output = run_in_image(image, query.split(), what=what, docker_host=docker_host)
    return parse_dump(output, source, start_command=start, query_command=query)


def cached_dump(
    image: str, source: PluginSource, *, cache: Path, docker_host: str | None = None
) -> PluginDump:
    """`dump_plugin`, asked once per image: the output is kept under `cache`, named by the
    image's ID and the query command, and read back (one `docker image inspect` instead of a
    `docker run`) while that image exists. Only output that parses as a dump is kept."""
    start, query = commands_for(source)
    image_id = _image_id(image, docker_host)
    if image_id is None:  # not on the engine: let the run say so as it always has
        return dump_plugin(image, source, docker_host=docker_host)
    key = hashlib.sha256(f"{image_id}\0{query}".encode()).hexdigest()[:32]
    kept = cache / f"{key}.json"
    try:
        return parse_dump(kept.read_text(), source, start_command=start, query_command=query)
    except (OSError, StackError):  # not kept yet, unreadable, or not a dump: ask the image
        pass
    what = f"the query command of plugin {source.label}"
    output = run_in_image(image, query.split(), what=what, docker_host=docker_host)
    dump = parse_dump(output, source, start_command=start, query_command=query)
    _keep(kept, output)
    return dump


def _keep(path: Path, text: str) -> None:
    """Write `text` to `path` whole or not at all (a concurrent run may write the same file)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            "w", dir=path.parent, prefix=".dump-", suffix=".tmp", delete=False
        ) as partial:
            partial.write(text)
        Path(partial.name).replace(path)
    except OSError as error:  # a read-only checkout still runs, asking the image every time
        LOGGER.info("could not keep the plugin dump in %s: %s", path, error)


def parse_dump(
    output: str, source: PluginSource, *, start_command: str, query_command: str
) -> PluginDump:
    """The dump of one plugin: go-pdk's object (Protocol, SocketPath, Plugins), or a list of
    plugin infos, which Kong takes for MsgPack:1 (the Python and JavaScript servers, go-pdk
    v0.6)."""
    try:
        parsed = json.loads(output)
    except ValueError:
        raise StackError(
            f"the query command of plugin {source.label} (`{query_command}`) did not print JSON: "
            f"{describe_output(output)}"
        ) from None
    if isinstance(parsed, dict) and isinstance(parsed.get("Plugins"), list):
        protocol = str(parsed.get("Protocol") or PROTOBUF)
        infos, socket = parsed["Plugins"], str(parsed.get("SocketPath") or "")
    elif isinstance(parsed, list):
        protocol, infos, socket = MSGPACK, parsed, ""
    else:
        raise StackError(
            f"the query command of plugin {source.label} printed no plugin info table: "
            f"{output.strip()[:300]!r}"
        )
    if len(infos) != 1:
        names = [info.get("Name") for info in infos if isinstance(info, dict)]
        raise StackError(
            f"plugin {source.label}: its server dumps {len(infos)} plugins ({names}), one is "
            "measured at a time: keep one plugin per directory"
        )
    info = _plugin_info(infos[0], source)
    name = info["Name"]
    return PluginDump(
        # Kong lowercases plugin-server names (process.lua 3.4, conf_loader 3.9) and tags the
        # server's relayed lines with that; KONG_PLUGINS and the dump's Name keep their case.
        server_name=name.lower(),
        plugin_name=name,
        protocol=protocol,
        phases=tuple(info["Phases"]),
        priority=info["Priority"],
        version=info.get("Version"),
        schema=_config_schema(info, source),
        start_command=start_command,
        query_command=query_command,
        socket=socket or _server_socket(source, name, start_command),
    )


def _server_socket(source: PluginSource, name: str, start_command: str) -> str:
    """Where a server that dumps no SocketPath listens: go-pdk v0.6 at <prefix>/<binary>.socket
    as every go-pdk does, the Python PDK's dedicated server at <prefix>/<name>.sock,
    kong-js-pluginserver at its one socket."""
    if source.kind == "go":
        binary = PurePosixPath(start_command.split(maxsplit=1)[0]).name
        return f"{KONG_PREFIX}/{binary}.socket"
    if source.kind == "python":
        return f"{KONG_PREFIX}/{name}.sock"
    return JS_SOCKET


def _plugin_info(info: object, source: PluginSource) -> dict[str, Any]:
    problems = []
    if not isinstance(info, dict):
        problems.append("not an object")
    else:
        if not isinstance(info.get("Name"), str) or not info["Name"]:
            problems.append("no Name")
        phases = info.get("Phases")
        if not isinstance(phases, list) or not all(isinstance(p, str) for p in phases):
            problems.append("no list of Phases")
        if not isinstance(info.get("Priority"), int) or isinstance(info.get("Priority"), bool):
            problems.append("no integer Priority")
        if not isinstance(info.get("Schema"), dict):
            problems.append("no Schema")
    if problems:
        raise StackError(
            f"plugin {source.label}: its dump is not a plugin info table ({', '.join(problems)}): "
            f"{json.dumps(info)[:300]}"
        )
    assert isinstance(info, dict)
    return info


def _config_schema(info: Mapping[str, Any], source: PluginSource) -> Mapping[str, Any]:
    for field in info["Schema"].get("fields") or []:
        if isinstance(field, dict) and isinstance(field.get("config"), dict):
            config: Mapping[str, Any] = field["config"]
            return config
    raise StackError(f"plugin {source.label}: its dumped schema has no `config` record")


def check_server_listens(
    image: str, source: PluginSource, dump: PluginDump, timeout_s: float = LISTEN_TIMEOUT_S
) -> None:
    """Start the plugin server in `image` with its start command and wait for its socket."""
    attempts = max(1, math.ceil(timeout_s / 0.1))
    script = (
        f"{dump.start_command} & "
        f"i=0; while [ $i -lt {attempts} ]; do "
        f'[ -S "{dump.socket}" ] && echo listening && exit 0; sleep 0.1; i=$((i+1)); done; '
        f"echo 'no socket at {dump.socket}'; exit 1"
    )
    run_in_image(
        image,
        ["/bin/sh", "-c", script],
        what=f"the plugin server of {source.label}",
        timeout_s=timeout_s + 30,
    )


def run_in_image(
    image: str,
    command: Sequence[str],
    *,
    what: str,
    timeout_s: float = DUMP_TIMEOUT_S,
    docker_host: str | None = None,
) -> str:
    """`docker run --rm --network none` of `command` in `image`, labelled as ours; the container
    is removed however this ends (a timeout, Ctrl-C). Returns its stdout."""
    name = f"kpm-plugin-{uuid.uuid4().hex[:12]}"
    docker = docker_command(docker_host)
    docker_run = [
        *docker,
        "run",
        "--rm",
        "--name",
        name,
        "--network",
        "none",
        "--label",
        f"{LABEL}=1",
        "--entrypoint",
        command[0],
        image,
        *command[1:],
    ]
    try:
        completed = subprocess.run(
            docker_run, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except BaseException as error:
        with signals_blocked():
            subprocess.run([*docker, "rm", "-f", name], capture_output=True, check=False)
        if isinstance(error, subprocess.TimeoutExpired):
            raise StackError(f"{what} gave no answer within {timeout_s:.0f}s in {image}") from None
        raise
    if completed.returncode != 0:
        detail = describe_output(f"{completed.stderr}\n{completed.stdout}")
        raise StackError(
            f"{what} failed in {image} (`{' '.join(command)}`, exit code "
            f"{completed.returncode}): {detail}"
        )
    return completed.stdout


# --- --plugin-config against the dumped schema -------------------------------------------------


def validate_plugin_config(config: Mapping[str, Any], dump: PluginDump) -> None:
    """Check a `--plugin-config` object against the plugin's dumped `config` record: unknown
    fields, types (string, number, integer, boolean, array, set, map, record), required fields,
    `between` and `one_of`. What the PDK does not dump cannot be checked. Every problem is
    named in one error, so one fix-and-retry is enough."""
    problems: list[str] = []
    _check_record(config, dump.schema, "config", dump.plugin_name, problems)
    if len(problems) == 1:
        raise ConfigError(f"--plugin-config: {problems[0]}")
    if problems:
        listed = "; ".join(f"({number}) {text}" for number, text in enumerate(problems, 1))
        raise ConfigError(
            f"--plugin-config has {len(problems)} problems for plugin {dump.plugin_name}: {listed}"
        )


def _check_record(
    value: object, schema: Mapping[str, Any], where: str, plugin: str, problems: list[str]
) -> None:
    if not isinstance(value, Mapping):
        problems.append(_wrong(where, "a JSON object (record)", value, plugin))
        return
    fields: dict[str, Mapping[str, Any]] = {}
    for entry in schema.get("fields") or []:
        if isinstance(entry, Mapping):
            for name, field in entry.items():
                if isinstance(field, Mapping):
                    fields[str(name)] = field
    for name in value:
        if name not in fields:
            known = ", ".join(fields) or "none"
            problems.append(
                f"{where}.{name} is not a field of plugin {plugin} (its fields: {known})"
            )
    for name, field in fields.items():
        if name in value and value[name] is not None:
            _check_value(value[name], field, f"{where}.{name}", plugin, problems)
        elif field.get("required") is True and field.get("default") is None:
            problems.append(
                f"{where}.{name} is required by plugin {plugin} ({_describe(field)}) but was "
                "not given"
            )


def _is_integer(value: object) -> bool:
    # Kong's integer check is math.floor(v) == v: JSON's 3.0 is an integer too.
    return not isinstance(value, bool) and (
        isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    )


# Kong schema scalar types: (the check, what to say was expected).
SCALAR_CHECKS: dict[str, tuple[Callable[[object], bool], str]] = {
    "string": (lambda value: isinstance(value, str), "a string"),
    "boolean": (lambda value: isinstance(value, bool), "true or false"),
    "integer": (_is_integer, "an integer"),
    "number": (
        lambda value: isinstance(value, (int, float)) and not isinstance(value, bool),
        "a number",
    ),
}


def _check_value(
    value: object, field: Mapping[str, Any], where: str, plugin: str, problems: list[str]
) -> None:
    """Appends what is wrong with `value` to `problems`; a value of the wrong type is one
    problem, not also each of its parts."""
    kind = str(field.get("type"))
    if kind in SCALAR_CHECKS:
        check, expected = SCALAR_CHECKS[kind]
        if not check(value):
            problems.append(_wrong(where, expected, value, plugin))
            return
    elif kind in ("array", "set"):
        if not isinstance(value, list):
            problems.append(_wrong(where, f"a JSON array ({kind})", value, plugin))
            return
        for index, item in enumerate(value):
            _check_nested(item, field.get("elements"), f"{where}[{index}]", plugin, problems)
    elif kind == "map":
        if not isinstance(value, Mapping):
            problems.append(_wrong(where, "a JSON object (map)", value, plugin))
            return
        for key, item in value.items():
            _check_nested(
                key, field.get("keys"), f"{where} key {json.dumps(key)}", plugin, problems
            )
            _check_nested(
                item, field.get("values"), f"{where}[{json.dumps(key)}]", plugin, problems
            )
    elif kind == "record":
        _check_record(value, field, where, plugin, problems)
    _check_bounds(value, field, where, plugin, problems)


def _check_nested(
    value: object, field: object, where: str, plugin: str, problems: list[str]
) -> None:
    """An element, key or value whose schema the dump gives (none given: nothing to check)."""
    if isinstance(field, Mapping):
        _check_value(value, field, where, plugin, problems)


def _check_bounds(
    value: object, field: Mapping[str, Any], where: str, plugin: str, problems: list[str]
) -> None:
    between = field.get("between")
    if (
        isinstance(between, list)
        and len(between) == 2
        and isinstance(value, (int, float))
        and not between[0] <= value <= between[1]
    ):
        problems.append(_wrong(where, f"between {between[0]} and {between[1]}", value, plugin))
    one_of = field.get("one_of")
    if isinstance(one_of, list) and value not in one_of:
        problems.append(_wrong(where, f"one of {json.dumps(one_of)}", value, plugin))


def _describe(field: Mapping[str, Any]) -> str:
    return f"a {field.get('type', 'value')}"


def _wrong(where: str, expected: str, given: object, plugin: str) -> str:
    return f"{where} of plugin {plugin} must be {expected}, got {json.dumps(given)}"


# --- preparing a fresh machine ---------------------------------------------------------------


def prepare(repo_root: Path, *, sim_base: bool) -> dict[str, float]:
    """Fetch both PDKs into the cache and, with `sim_base`, make sure a Debian base image exists
    (debootstrap on a machine without a registry). Returns the seconds each step took."""
    timings: dict[str, float] = {}
    steps: list[tuple[str, Any]] = [("python-pdk", python_pdk), ("js-pdk", js_pdk)]
    for name, step in steps:
        started = time.monotonic()
        step(repo_root)
        timings[name] = time.monotonic() - started
    if sim_base:
        started = time.monotonic()
        sim_images.debian_base_image()
        timings["debian-base"] = time.monotonic() - started
    return timings


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m orchestration.plugins prepare [--sim]`: what .ci/run calls on a fresh machine."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "prepare" or not set(args[1:]) <= {"--sim"}:
        print("usage: python -m orchestration.plugins prepare [--sim]", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    repo_root = Path(__file__).resolve().parent.parent
    for step, seconds in prepare(repo_root, sim_base="--sim" in args).items():
        print(f"{step}: {seconds:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
