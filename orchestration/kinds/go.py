"""Go plugins on go-pdk: a `package main` binary whose embedded server Kong starts.

go-pdk's eras (its tags' server/ package): before v0.6.0 a plugin was a Go plugin (.so) that
Kong's go-pluginserver loaded, which Kong 3.0 removed (`go_pluginserver_exe`, `go_plugins_dir`);
v0.6.x embeds a MessagePack server (`-dump` prints a bare list, no Protocol); v0.7.0 on speak
ProtoBuf:1 and dump {Protocol, SocketPath, Plugins}. Every embedded server listens on
<-kong-prefix>/<binary name>.socket.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from orchestration import sim as sim_images
from orchestration.errors import ConfigError
from orchestration.kinds.base import (
    KONG_PREFIX,
    Kind,
    PluginSource,
    read_text,
    write_plugin_files,
)

BIN_DIR = "/usr/local/bin"  # where the go target puts the binary (images/plugins/Dockerfile)
PDK_IMPORT_RE = re.compile(r'"github\.com/Kong/go-pdk(/[^"]*)?"')
PACKAGE_MAIN_RE = re.compile(r"^package\s+main\b", re.MULTILINE)
DIRECTIVE_RE = re.compile(r"^go\s+(\d+)\.(\d+)", re.MULTILINE)
PDK_MODULE = "github.com/Kong/go-pdk"
CODEC_MODULE = "github.com/ugorji/go/codec"
SEMVER_RE = re.compile(r"v(\d+)\.(\d+)\.(\d+)")
FIRST_EMBEDDED_PDK = (0, 6, 0)
FIRST_PROTOBUF_PDK = (0, 7, 0)
# ugorji/go/codec before v1.2.3 links runtime internals that Go 1.23+ refuses ("invalid reference
# to runtime.typedmemclr"); its `safe` build tag uses reflection only, on every Go.
FIRST_CODEC_LINKING_ON_NEW_GO = (1, 2, 3)
CODEC_SAFE_TAG = "safe"
GOLANG_IMAGE_RE = re.compile(r"^(?:docker\.io/)?(?:library/)?golang:(\d+)\.(\d+)")


class Go(Kind):
    name = "go"
    expected = (
        "a Go main package on go-pdk (go.mod and a .go file `package main` importing "
        "github.com/Kong/go-pdk)"
    )
    marker = "go.mod"
    needs_runtime = False
    own_process_name = True
    pdk_pins: tuple[Path, ...] = ()  # go.mod pins go-pdk; the build fetches it

    def detect(self, directory: Path) -> list[str]:
        if not (directory / "go.mod").is_file():
            return []
        return [
            file.name
            for file in sorted(directory.glob("*.go"))
            if not file.name.endswith("_test.go")
            and PACKAGE_MAIN_RE.search(text := read_text(file))
            and PDK_IMPORT_RE.search(text)
        ]

    def source_from(self, path: Path, label: str, shown: Path) -> PluginSource:
        source = PluginSource(label, self.name, path, entry=label)
        _refuse_pluginserver_era(source, shown)
        return source

    def commands(self, source: PluginSource) -> tuple[str, str]:
        start = f"{BIN_DIR}/{source.entry}"
        return start, f"{start} -dump"

    def default_socket(self, name: str, start_command: str) -> str:
        """go-pdk v0.6 dumps no SocketPath: <prefix>/<binary>.socket, as every go-pdk does."""
        return f"{KONG_PREFIX}/{self.process_name(start_command)}.socket"

    def go_image(self, source: PluginSource, go_image: str) -> str:
        """`go_image`, or for an official `golang:X.Y` older than the plugin's `go` directive,
        the `golang` image of that directive (the build would otherwise refuse or fetch a
        toolchain)."""
        needed = directive(source)
        match = GOLANG_IMAGE_RE.match(go_image)
        if needed is None or match is None:
            return go_image
        if (int(match[1]), int(match[2])) >= needed:
            return go_image
        return f"golang:{needed[0]}.{needed[1]}"

    def build_variables(self, source: PluginSource) -> dict[str, str]:
        return {"KPM_GO_MODFILE": source.go_modfile, "KPM_GO_TAGS": build_tags(source)}

    def check_offline_build(self, source: PluginSource) -> None:
        """--sim builds with this machine's Go: it must meet the `go` directive."""
        needed = directive(source)
        match = re.match(r"go(\d+)\.(\d+)", sim_images.host_go_version())
        if needed and match and (int(match[1]), int(match[2])) < needed:
            raise ConfigError(
                f"plugin {source.label} needs Go {needed[0]}.{needed[1]} ({source.go_modfile}), "
                f"but --sim builds with this machine's {sim_images.host_go_version()}: install a "
                "newer Go from https://go.dev/dl/"
            )

    def stage(
        self,
        source: PluginSource,
        context: Path,
        *,
        offline: bool,
        dependencies: Path | None,
    ) -> None:
        """The sources in plugin/; offline, their modules in gomodcache/ (the go-builder
        stand-in has no module proxy)."""
        write_plugin_files(source, context / "plugin")
        (context / "gomodcache").mkdir()
        if offline:
            sim_images.download_modules(
                source.path, context / "gomodcache", modfile=source.go_modfile
            )


KIND = Go()


def directive(source: PluginSource) -> tuple[int, int] | None:
    """The `go` line of the plugin's module file, as (major, minor)."""
    match = DIRECTIVE_RE.search((source.path / source.go_modfile).read_text())
    return (int(match[1]), int(match[2])) if match else None


def pdk_version(source: PluginSource) -> str | None:
    """The go-pdk version the module file requires (after a `replace`), if it says."""
    return module_version(read_text(source.path / source.go_modfile), PDK_MODULE)


def build_tags(source: PluginSource) -> str:
    """The build tags the plugin needs (`safe` for an ugorji codec older than v1.2.3, which no
    Go from 1.23 on links otherwise); empty for most plugins."""
    sums = read_text(source.path / (source.go_modfile.removesuffix(".mod") + ".sum"))
    go_mod = read_text(source.path / source.go_modfile)
    codec = _newest(
        [
            *re.findall(rf"^{re.escape(CODEC_MODULE)} (v\S+) h1:", sums, re.MULTILINE),
            *filter(None, [module_version(go_mod, CODEC_MODULE)]),
        ]
    )
    pdk = semver(pdk_version(source))
    if codec is None:  # no pin of its own: go-pdk's MessagePack era brings v1.2.1
        old_codec = pdk is not None and pdk < FIRST_PROTOBUF_PDK
    else:
        old_codec = codec < FIRST_CODEC_LINKING_ON_NEW_GO
    return CODEC_SAFE_TAG if old_codec else ""


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
    version = pdk_version(source)
    found = semver(version)
    if found is None or found >= FIRST_EMBEDDED_PDK:
        return
    oldest = "v{}.{}.{}".format(*FIRST_EMBEDDED_PDK)
    raise ConfigError(
        f"--plugin {shown}: {source.go_modfile} requires go-pdk {version}, from before go-pdk "
        "had its own server: such a plugin is a Go plugin (.so) for Kong's go-pluginserver, "
        "which Kong 3.0 removed (go_pluginserver_exe, go_plugins_dir), so no Kong this tool "
        f"measures can run it. The oldest go-pdk that runs is {oldest} (MessagePack); v0.7.0 "
        "and later speak ProtoBuf. Move the plugin to a newer go-pdk (`go get "
        f"{PDK_MODULE}@latest`) and start its server in main: "
        "`server.StartServer(New, Version, Priority)`"
    )
