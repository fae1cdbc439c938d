"""Local stand-ins for registry images, for `--sim` runs on machines with no registry.

Two images are built here, each only when its tag is missing:
- the go-builder, `kong-plugin-matrix/go-builder:<hash>`: FROM scratch with this
  machine's own static Go toolchain, busybox as the shell, and the Go modules of
  plugins/example-plugin and images/kong-sim already in its module cache
  (GOPROXY=off), so Go build stages need no network;
- kong-sim, `kong-plugin-matrix/kong-sim:<version>-<hash>`, built by
  images/kong-sim/Dockerfile on that go-builder.
The plugin image is then built by the same images/plugins/Dockerfile as for real
Kong (orchestration/plugins.py), with GO_IMAGE and KONG_IMAGE naming these local
tags; Python and JavaScript plugins build on a Debian variant of kong-sim (below).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from orchestration.engine import Engine
from orchestration.errors import EnvironmentProblem, ImageUnavailable, StackError
from orchestration.paths import KONG_SIM_DIR, PLUGIN_IMAGES_DIR, REPO_ROOT
from orchestration.processes import run_host_command
from orchestration.stack import LABEL, sources_digest, tag_safe, write_env_file

LOGGER = logging.getLogger(__name__)

GO_BUILDER_REPOSITORY = "kong-plugin-matrix/go-builder"
KONG_SIM_REPOSITORY = "kong-plugin-matrix/kong-sim"
SIM_BUILD_PROJECT = "kpm-sim-build"
SIM_COMPOSE_FILE = Path("images/go-builder/compose.yaml")
GO_BUILDER_DIR = Path("images/go-builder")
GO_MODULE_DIRS = (Path("plugins/example-plugin"), KONG_SIM_DIR)

# Parts of GOROOT a build never reads; leaving them out keeps the context small.
GOROOT_SKIPPED_TOP = frozenset({"api", "doc", "misc", "test"})
GOROOT_SKIPPED_ANYWHERE = frozenset({"testdata"})
COMMAND_TIMEOUT_S = 60.0
MODULE_DOWNLOAD_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class SimImages:
    """The local tags to pass as KPM_GO_IMAGE and KPM_KONG_IMAGE."""

    go_image: str
    kong_image: str


@dataclass(frozen=True)
class _HostTools:
    goroot: Path
    go_version: str
    platform: str  # GOOS_GOARCH, as in GOROOT/pkg/tool/
    module_cache: Path
    go_proxy: str
    busybox: Path


def host_go_version() -> str:
    """This machine's Go (`go1.26.8`): the go-builder's toolchain, and so the newest `go`
    directive a plugin may have under --sim."""
    return _host_tools().go_version


def check_host_tools() -> None:
    """Fail before any Docker work when this machine lacks what --sim builds from."""
    _host_tools()


def build_sim_images(version: str, engine: Engine, *, root: Path = REPO_ROOT) -> SimImages:
    """Make sure the go-builder and the kong-sim image for `version` exist on `engine` (each
    engine has its own image store); their tags. `root`: where the sources are (a copy of the
    repository, in tests of the tags)."""
    tools = _host_tools()
    images = _tags(version, root, tools)
    missing = engine.missing(images.go_image, images.kong_image)
    if not missing:
        LOGGER.info("reusing %s and %s", images.go_image, images.kong_image)
        return images
    need_go_builder, need_kong_sim = images.go_image in missing, images.kong_image in missing
    with tempfile.TemporaryDirectory(prefix="kpm-sim-build-") as scratch:
        scratch_dir = Path(scratch)
        context = scratch_dir / "go-builder"
        variables = {
            "KPM_GO_BUILDER_IMAGE": images.go_image,
            "KPM_GO_BUILDER_CONTEXT": str(context if need_go_builder else root / GO_BUILDER_DIR),
            "KPM_KONG_SIM_IMAGE": images.kong_image,
            "KPM_KONG_VERSION": version,
        }
        env_file = write_env_file(scratch_dir / "sim-build.env", variables)
        # A project name of its own: two runs may build the stand-ins at the same time.
        project = f"{SIM_BUILD_PROJECT}-{scratch_dir.name.rsplit('-', 1)[-1].lower()}"
        builder = engine.compose(root / SIM_COMPOSE_FILE, project, env_file, variables)
        if need_go_builder:
            _stage_go_builder(context, root, tools)
            engine.build(builder, "go-builder", images.go_image)
        if need_kong_sim:
            engine.build(builder, "kong-sim", images.kong_image)
    return images


def _tags(version: str, repo_root: Path, tools: _HostTools) -> SimImages:
    module_files = [
        str(module / name) for module in GO_MODULE_DIRS for name in ("go.mod", "go.sum")
    ]
    go_digest = sources_digest(
        repo_root,
        [str(GO_BUILDER_DIR), *module_files],
        extra=[tools.go_version, tools.platform, _file_sha256(tools.busybox)],
    )
    go_image = f"{GO_BUILDER_REPOSITORY}:{go_digest}"
    sim_digest = sources_digest(repo_root, [str(KONG_SIM_DIR)], extra=[go_image])
    kong_image = f"{KONG_SIM_REPOSITORY}:{tag_safe(version)}-{sim_digest}"
    return SimImages(go_image=go_image, kong_image=kong_image)


def _host_tools() -> _HostTools:
    """What --sim builds from; looked up once per environment (a run asks for every version)."""
    return _host_tools_in(frozenset(os.environ.items()))


@functools.lru_cache(maxsize=4)
def _host_tools_in(_environment: frozenset[tuple[str, str]]) -> _HostTools:
    """`_host_tools` for this environment (PATH, GOROOT, ...): the argument is the cache key."""
    go = _go_env("GOROOT", "GOVERSION", "GOOS", "GOARCH", "GOMODCACHE", "GOPROXY")
    goroot = Path(go["GOROOT"])
    platform = f"{go['GOOS']}_{go['GOARCH']}"
    _require_static(
        [goroot / "bin" / "go", goroot / "pkg" / "tool" / platform / "compile"],
        remedy="install the official Go release from https://go.dev/dl/ (its binaries are "
        "static; Debian's golang package is not) and put its bin/ first on PATH",
    )
    busybox = _static_busybox()
    return _HostTools(
        goroot=goroot,
        go_version=go["GOVERSION"],
        platform=platform,
        module_cache=Path(go["GOMODCACHE"]),
        go_proxy=go["GOPROXY"],
        busybox=busybox,
    )


def _go_env(*names: str) -> dict[str, str]:
    if shutil.which("go") is None:
        raise EnvironmentProblem(
            "--sim builds its Go builder image from this machine's Go, but `go` is not on "
            "PATH: install Go from https://go.dev/dl/"
        )
    output = run_host_command(
        ["go", "env", *names],
        problem="could not read the Go environment",
        timeout_s=COMMAND_TIMEOUT_S,
    )
    return dict(zip(names, output.splitlines(), strict=True))


def _static_busybox() -> Path:
    found = shutil.which("busybox")
    if found is None:
        raise EnvironmentProblem(
            "--sim needs a static busybox for the go-builder image's /bin/sh: "
            "apt-get install busybox-static (or run .ci/install-docker.sh)"
        )
    busybox = Path(found).resolve()
    _require_static([busybox], remedy="apt-get install busybox-static (not busybox)")
    return busybox


def _require_static(binaries: list[Path], *, remedy: str) -> None:
    """A FROM-scratch image has no libc: every binary copied into it must be static."""
    if shutil.which("file") is None:
        raise EnvironmentProblem("--sim checks binaries with `file`: apt-get install file")
    for binary in binaries:
        description = run_host_command(
            ["file", "-L", str(binary)], problem=f"could not inspect {binary}"
        )
        if "statically linked" not in description and "static-pie" not in description:
            raise EnvironmentProblem(
                f"{binary} is not statically linked ({description.strip()}), so it cannot "
                f"run in a FROM-scratch image: {remedy}"
            )


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _stage_go_builder(context: Path, repo_root: Path, tools: _HostTools) -> None:
    """Fill the go-builder's build context: Dockerfile, busybox, go/, gomodcache/."""
    LOGGER.info("staging the go-builder context from %s (%s)", tools.goroot, tools.go_version)
    context.mkdir(parents=True)
    shutil.copy2(repo_root / GO_BUILDER_DIR / "Dockerfile", context / "Dockerfile")
    shutil.copy2(tools.busybox, context / "busybox")
    shutil.copytree(
        tools.goroot,
        context / "go",
        symlinks=True,
        ignore=_goroot_ignore(tools.goroot),
        copy_function=_link_or_copy,
    )
    for module_dir in GO_MODULE_DIRS:
        _download_modules(repo_root / module_dir, context / "gomodcache", tools)


def _goroot_ignore(goroot: Path) -> Callable[[str, list[str]], set[str]]:
    def ignore(directory: str, names: list[str]) -> set[str]:
        skipped = {name for name in names if name in GOROOT_SKIPPED_ANYWHERE}
        if Path(directory) == goroot:
            skipped |= GOROOT_SKIPPED_TOP.intersection(names)
        return skipped

    return ignore


def _link_or_copy(source: str, target: str) -> object:
    """Hard-link when staging on the same file system (no 300 MB copy); copy otherwise."""
    try:
        os.link(source, target)
    except OSError:
        return shutil.copy2(source, target)
    return target


def download_modules(module_dir: Path, module_cache: Path, *, modfile: str = "go.mod") -> None:
    """`go mod download` of the module in `module_dir` (its `modfile`) into `module_cache`, so
    an offline build (GOPROXY=off) finds them: from this machine's cache first, then its proxy."""
    _download_modules(module_dir, module_cache, _host_tools(), modfile=modfile)


def _download_modules(
    module_dir: Path, module_cache: Path, tools: _HostTools, *, modfile: str = "go.mod"
) -> None:
    """`go mod download` into the staging cache, from the host's cache first, then the proxy."""
    proxies = [tools.go_proxy] if tools.go_proxy != "off" else []
    host_downloads = tools.module_cache / "cache" / "download"
    if host_downloads.is_dir():
        proxies.insert(0, host_downloads.as_uri())
    env = {
        **os.environ,
        "GOMODCACHE": str(module_cache),
        # Writable cache folders, so the staging folder can always be removed.
        "GOFLAGS": f"{os.environ.get('GOFLAGS', '')} -modcacherw".strip(),
        "GOPROXY": ",".join(proxies) or "off",
        "GOTOOLCHAIN": "local",
    }
    try:
        completed = subprocess.run(
            ["go", "mod", "download", f"-modfile={modfile}"],
            cwd=module_dir,
            env=env,
            capture_output=True,
            text=True,
            timeout=MODULE_DOWNLOAD_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ImageUnavailable(
            f"`go mod download` in {module_dir} took over {MODULE_DOWNLOAD_TIMEOUT_S:.0f}s; "
            f"check that GOPROXY ({env['GOPROXY']}) answers"
        ) from None
    if completed.returncode != 0:
        raise ImageUnavailable(
            f"could not download the Go modules of {module_dir} for the go-builder image "
            f"(GOPROXY={env['GOPROXY']}): {completed.stderr.strip()}"
        )


# --- The Debian-based kong-sim variant, for Python and JavaScript plugins -----------------------
# kong-sim is FROM scratch; a Python or JavaScript plugin server needs an interpreter. Users have
# Docker Hub (debian:bookworm-slim); a machine without a registry makes the same base with
# debootstrap from Debian's mirror, imported as a local image.

DEBIAN_IMAGE = "debian:bookworm-slim"
DEBIAN_SUITE = "bookworm"
LOCAL_DEBIAN_IMAGE = "kong-plugin-matrix/debian:bookworm-minbase"
DEFAULT_DEBIAN_MIRROR = "http://deb.debian.org/debian"
APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))
KONG_SIM_RUNTIME_REPOSITORY = "kong-plugin-matrix/kong-sim-runtime"
PLUGIN_COMPOSE_FILE = PLUGIN_IMAGES_DIR / "compose.yaml"
KONG_SIM_RUNTIME_INPUTS = (
    str(PLUGIN_IMAGES_DIR / "kong-sim-runtime.Dockerfile"),
    str(PLUGIN_IMAGES_DIR / "install-runtime.sh"),
)
PULL_TIMEOUT_S = 300.0
DEBOOTSTRAP_TIMEOUT_S = 900.0


def debian_base_image(engine: Engine | None = None) -> str:
    """A local Debian bookworm image on `engine` (None: the default one): debian:bookworm-slim
    when Docker has it or can pull it, else our debootstrap import (made once, then reused)."""
    engine = engine or Engine()
    for image in (DEBIAN_IMAGE, LOCAL_DEBIAN_IMAGE):
        if not engine.missing(image):
            return image
    failure = engine.pull(DEBIAN_IMAGE, PULL_TIMEOUT_S)
    if failure is None:
        return DEBIAN_IMAGE
    LOGGER.info("no %s (%s): making %s with debootstrap", DEBIAN_IMAGE, failure, LOCAL_DEBIAN_IMAGE)
    make_local_debian_image(engine=engine)
    return LOCAL_DEBIAN_IMAGE


def make_local_debian_image(mirror: str | None = None, engine: Engine | None = None) -> str:
    """`debootstrap --variant=minbase bookworm` from `mirror` (default: the machine's own Debian
    mirror from apt's sources), imported as LOCAL_DEBIAN_IMAGE, labelled as ours."""
    if shutil.which("debootstrap") is None:
        raise EnvironmentProblem(
            f"--sim runs of Python and JavaScript plugins need a Debian base image: "
            f"{DEBIAN_IMAGE} is not available (no registry?) and debootstrap, which makes one "
            "from Debian's mirror, is not installed: apt-get install debootstrap"
        )
    if os.geteuid() != 0:
        raise EnvironmentProblem(
            f"debootstrap must run as root to make {LOCAL_DEBIAN_IMAGE}; run once as root "
            f"(.ci/run does), or `docker pull {DEBIAN_IMAGE}` where a registry is reachable"
        )
    chosen = mirror or debian_mirror()
    with tempfile.TemporaryDirectory(prefix="kpm-debootstrap-") as scratch:
        root = Path(scratch) / "root"
        run_host_command(
            ["debootstrap", "--variant=minbase", DEBIAN_SUITE, str(root), chosen],
            problem=f"debootstrap of Debian {DEBIAN_SUITE} from {chosen} failed",
            remedy="check that the mirror answers (apt-get update)",
            timeout_s=DEBOOTSTRAP_TIMEOUT_S,
        )
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        assert tar.stdout is not None  # stdout=PIPE
        try:
            (engine or Engine()).import_image(
                tar.stdout, LOCAL_DEBIAN_IMAGE, label=LABEL, timeout_s=DEBOOTSTRAP_TIMEOUT_S
            )
        finally:
            tar.stdout.close()
            tar.wait()
        if tar.returncode != 0:
            raise ImageUnavailable(
                f"could not import the debootstrap root as {LOCAL_DEBIAN_IMAGE}: "
                f"tar exit code {tar.returncode}"
            )
    return LOCAL_DEBIAN_IMAGE


def debian_mirror(sources: tuple[Path, ...] = APT_SOURCES) -> str:
    """The first Debian mirror apt's sources name for the main archive (not security)."""
    files: list[Path] = []
    for source in sources:
        if source.is_dir():
            files.extend(sorted(source.glob("*.list")) + sorted(source.glob("*.sources")))
        elif source.is_file():
            files.append(source)
    for file in files:
        for uri in _apt_uris(file.read_text(errors="replace")):
            if "security" not in uri and uri.startswith(("http://", "https://")):
                return uri
    return DEFAULT_DEBIAN_MIRROR


def _apt_uris(text: str) -> list[str]:
    uris: list[str] = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if words[:1] == ["deb"]:
            uris.extend(word for word in words[1:] if "://" in word)
        elif words[:1] == ["URIs:"]:
            uris.extend(words[1:])
    return uris


def kong_sim_runtime_tag(kong_sim_image: str, debian_image: str, engine: Engine) -> str:
    """`kong-plugin-matrix/kong-sim-runtime:<version>-<hash>` for this kong-sim and Debian base."""
    debian = engine.identity(debian_image)
    digest = sources_digest(REPO_ROOT, KONG_SIM_RUNTIME_INPUTS, extra=[kong_sim_image, debian])
    version = _kong_sim_version(kong_sim_image, engine)
    return f"{KONG_SIM_RUNTIME_REPOSITORY}:{tag_safe(version)}-{digest}"


def sim_runtime_image(kong_sim_image: str, engine: Engine) -> str:
    """The Debian kong-sim variant (python3, node, a `kong` user) of `kong_sim_image`: built
    when missing, its tag returned. The Python and JavaScript plugin images build on it."""
    debian_image = debian_base_image(engine)
    image = kong_sim_runtime_tag(kong_sim_image, debian_image, engine)
    if not engine.missing(image):
        LOGGER.info("reusing %s", image)
        return image
    variables = {
        "KPM_KONG_SIM_RUNTIME_IMAGE": image,
        "KPM_DEBIAN_IMAGE": debian_image,
        "KPM_KONG_SIM_IMAGE": kong_sim_image,
        "KPM_KONG_VERSION": _kong_sim_version(kong_sim_image, engine),
    }
    with tempfile.TemporaryDirectory(prefix="kpm-sim-runtime-") as scratch:
        env_file = write_env_file(Path(scratch) / "build.env", variables)
        project = f"kpm-sim-runtime-{Path(scratch).name.rsplit('-', 1)[-1].lower()}"
        builder = engine.compose(REPO_ROOT / PLUGIN_COMPOSE_FILE, project, env_file, variables)
        engine.build(builder, "kong-sim-runtime", image)
    return image


def _kong_sim_version(kong_sim_image: str, engine: Engine) -> str:
    """The Kong version a kong-sim image plays (its KONG_SIM_VERSION)."""
    try:
        environment = engine.environment(kong_sim_image)
    except StackError as error:
        raise StackError(f"{error} (build it with the --sim images first)") from error
    for entry in environment:
        name, _, value = entry.partition("=")
        if name == "KONG_SIM_VERSION" and value:
            return value
    raise StackError(f"{kong_sim_image} is not a kong-sim image: it has no KONG_SIM_VERSION")
