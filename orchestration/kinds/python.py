"""Python plugins on kong-pdk (PyPI), each a dedicated server (`start_dedicated_server`), as
Kong's docs describe: the image runs the distribution's python3 with kong-pdk from its pinned
wheel, and the plugin's own pure-Python dependencies as wheels fetched on this machine."""

from __future__ import annotations

import ast
import importlib
import re
import shutil
import sys
from pathlib import Path

from orchestration import host_fetch
from orchestration.errors import ConfigError, EnvironmentProblem
from orchestration.kinds.base import (
    KONG_PREFIX,
    Kind,
    PluginSource,
    read_text,
    write_plugin_files,
)
from orchestration.paths import PLUGIN_IMAGES_DIR, REPO_ROOT

PDK_REQUIREMENTS = PLUGIN_IMAGES_DIR / "pdk-python" / "requirements.txt"
PYTHON = "/usr/bin/python3"
PLUGIN_DIR = "/usr/local/lib/kpm-plugin"  # where the python target puts the plugin
PDK_IMPORT_RE = re.compile(r"^\s*(?:from|import)\s+kong_pdk\b", re.MULTILINE)
# A plugin's own dependencies: what declares them, what the image carries already.
DEPENDENCY_FILES = ("requirements.txt", "pyproject.toml")
# kong-pdk from its pinned wheel; msgpack, gevent and gevent's own from the distribution (apt).
IMAGE_PACKAGES = frozenset(
    {"kong-pdk", "msgpack", "gevent", "greenlet", "zope-event", "zope-interface"}
)


class Python(Kind):
    name = "python"
    expected = "a Python plugin (a .py importing kong_pdk)"
    marker = "the Python server script"
    needs_runtime = True
    own_process_name = False
    pdk_pins = (PDK_REQUIREMENTS,)

    def detect(self, directory: Path) -> list[str]:
        scripts = sorted(directory.glob("*.py"))
        return [file.name for file in scripts if PDK_IMPORT_RE.search(read_text(file))]

    def source_from(self, path: Path, label: str, shown: Path) -> PluginSource:
        return PluginSource(label, self.name, path, entry=_server_script(path, shown))

    def commands(self, source: PluginSource) -> tuple[str, str]:
        start = f"{PYTHON} {PLUGIN_DIR}/{source.entry}"
        return start, f"{start} --dump"

    def default_socket(self, name: str, start_command: str) -> str:
        """The dedicated server's: <prefix>/<name>.sock."""
        return f"{KONG_PREFIX}/{name}.sock"

    def stage(
        self,
        source: PluginSource,
        context: Path,
        *,
        offline: bool,
        dependencies: Path | None,
    ) -> None:
        """The plugin in plugin/; kong-pdk's wheel and the plugin's own in pdk/ (the image
        unpacks every one)."""
        write_plugin_files(source, context / "plugin")
        shutil.copytree(self.fetch_pdk(), context / "pdk")
        if dependencies is not None:
            shutil.copytree(dependencies, context / "pdk", dirs_exist_ok=True)

    def dependencies(self, source: PluginSource, repo_root: Path) -> Path | None:
        """Wheels of requirements.txt and pyproject.toml's [project] dependencies."""
        declared = requirements(source.path)
        if not declared:
            return None
        files = " and ".join(name for name in DEPENDENCY_FILES if (source.path / name).is_file())
        text = "\n".join(declared) + "\n"
        key = f"{text}\0{sys.version_info[:2]}".encode()

        def fetch(folder: Path) -> None:
            listed = folder / "requirements.txt"
            listed.write_text(text)
            pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check"]
            command = [*pip, "--wheel-dir", str(folder), "-r", str(listed)]
            host_fetch.fetch_dependencies(
                command, cwd=source.path, declared_in=source.path / files, kind="pip"
            )
            listed.unlink()
            keep_pure_wheels(folder, source.path / files)

        return host_fetch.cached(
            repo_root, f"python-deps-{source.label}", key, fetch, host_fetch.DEPENDENCY_CACHE_DIR
        )

    def fetch_pdk(self) -> Path:
        """A folder holding the pinned kong-pdk wheel (pip download, hash-checked), cached."""
        pinned = REPO_ROOT / PDK_REQUIREMENTS
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
        command += ["--require-hashes", "-r", str(pinned)]
        return host_fetch.cached(
            REPO_ROOT,
            self.name,
            host_fetch.pins_key([pinned]),
            lambda folder: host_fetch.fetch_pdk(
                [*command, "-d", str(folder)], what="the Python PDK (kong-pdk) from PyPI"
            ),
        )


KIND = Python()


def _server_script(path: Path, shown: Path) -> str:
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
        tree = ast.parse(read_text(file), filename=str(file))
    except SyntaxError:
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            called = node.func
            name = called.attr if isinstance(called, ast.Attribute) else getattr(called, "id", "")
            if name == function:
                return True
    return False


def requirements(directory: Path) -> list[str]:
    """The requirement lines of requirements.txt and pyproject.toml's [project] dependencies,
    without what the python image carries already (kong-pdk, msgpack, gevent and gevent's own)."""
    lines: list[str] = []
    listed = directory / "requirements.txt"
    if listed.is_file():
        joined = listed.read_text(errors="replace").replace("\\\n", " ")
        for raw in joined.splitlines():
            line = re.sub(r"(^|\s)#.*", "", raw).strip()
            if line:
                lines.append(_absolute_requirement(line, directory))
    lines.extend(_pyproject_dependencies(directory / "pyproject.toml"))
    return [line for line in lines if _requirement_name(line) not in IMAGE_PACKAGES]


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


def keep_pure_wheels(folder: Path, declared_in: Path) -> None:
    """Drop wheels of what the image has; refuse a compiled one (the image's python3 is the
    distribution's, not this machine's, so only pure-Python wheels fit it)."""
    for wheel in sorted(folder.glob("*.whl")):
        project, version, *_, abi, platform = wheel.stem.split("-")
        if _requirement_name(project) in IMAGE_PACKAGES:
            wheel.unlink()
        elif (abi, platform) != ("none", "any"):
            raise ConfigError(
                f"{declared_in} needs {project} {version}, which comes only as a compiled wheel "
                f"({wheel.name}): the plugin image runs the distribution's python3, so only "
                "pure-Python packages can be installed into it. Drop it, or use a pure-Python "
                "alternative"
            )
