"""A plugin's image: built on one Kong base from images/plugins/Dockerfile (the target named
after its kind) in a staged context, so a plugin directory may live anywhere; the tag is a hash
of what went in, so an unchanged plugin reuses its image. Also the one way this package runs a
command in a plugin image (`run_in_image`). Every Docker call of plugin building is here."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestration import sim as sim_images
from orchestration.engine import Engine
from orchestration.errors import StackError
from orchestration.host_fetch import describe_output
from orchestration.kinds import kind_of
from orchestration.kinds.base import SKIPPED_NAMES, PluginSource, plugin_files
from orchestration.paths import KONG_SIM_DIR, PLUGIN_IMAGES_DIR, REPO_ROOT
from orchestration.plugin_sources import plugin_dependencies
from orchestration.processes import COMMAND_TIMEOUT_S, run_in_own_session
from orchestration.stack import LABEL, hash_sources, tag_safe, write_env_file

LOGGER = logging.getLogger(__name__)

PLUGIN_COMPOSE_FILE = PLUGIN_IMAGES_DIR / "compose.yaml"
PLUGIN_DOCKERFILE_FILES = ("Dockerfile", "install-runtime.sh", "upstream.conf")
# kpm-tap's sources in kong-sim's module, as images/plugins/Dockerfile's `tap` stage copies them.
TAP_INPUTS = (
    "go.mod",
    "go.sum",
    "internal/protocol",
    "internal/tap",
    "cmd/kpm-tap",
)
PLUGIN_IMAGE_REPOSITORY = "kong-plugin-matrix"
DUMP_TIMEOUT_S = 120.0


def go_image_for(source: PluginSource, go_image: str) -> str:
    """The golang image that builds `source` (a Go plugin's `go` directive may need a newer one
    than `go_image`)."""
    return kind_of(source).go_image(source, go_image)


def registry_bases(source: PluginSource, kong_image: str, go_image: str) -> tuple[str, ...]:
    """The registry images a real (not --sim) build of `source` on `kong_image` starts from:
    every target copies kpm-tap from the `golang` stage; a kind may need another (js: node)."""
    bases = (kong_image, go_image_for(source, go_image))
    node = kind_of(source).kind_image(kong_image, sim=False)
    return bases if node == kong_image else (*bases, node)


def plugin_image_tag(
    source: PluginSource,
    *,
    kong_image: str,
    go_image: str,
    kind_image: str,
    sim: bool,
    engine: Engine,
    root: Path = REPO_ROOT,
) -> str:
    """`kong-plugin-matrix:plugin-<label>[-sim]-<hash>`: the hash covers the plugin's files and
    fetched dependencies, the Dockerfile family, kpm-tap's sources, the PDK pins, the kind's
    build variables and the base images (by id on `engine` when a registry tag is present
    there). `root`: where the sources are (a copy of the repository, in tests)."""
    kind = kind_of(source)
    digest = hashlib.sha256()
    for name, data in plugin_files(source):
        digest.update(b"plugin/" + name.encode() + b"\0" + hashlib.sha256(data).digest())
    inputs = [
        *(PLUGIN_IMAGES_DIR / name for name in PLUGIN_DOCKERFILE_FILES),
        *(KONG_SIM_DIR / name for name in TAP_INPUTS),
        *kind.pdk_pins,
    ]
    # The plugin's own skip list (kinds/base.py): a user's folder may hold Git's and tools' caches.
    hash_sources(digest, root, inputs, skipped=SKIPPED_NAMES)
    bases = [kong_image, go_image, kind_image]
    dependencies = plugin_dependencies(source, root)  # its folder is named by their hash
    for text in [
        dependencies.name if dependencies else "",
        source.kind,
        source.entry,
        *(f"{name}={value}" for name, value in sorted(kind.build_variables(source).items())),
        *(bases if sim else [engine.identity(image) for image in bases]),
    ]:
        digest.update(text.encode() + b"\0")
    flavour = "-sim" if sim else ""
    label = tag_safe(source.label).lower()[:40]
    return f"{PLUGIN_IMAGE_REPOSITORY}:plugin-{label}{flavour}-{digest.hexdigest()[:12]}"


@dataclass(frozen=True)
class ImagePlan:
    """What one plugin image is built from, and its tag."""

    tag: str
    kong_image: str  # the base: a Kong image, kong-sim, or (a runtime kind under --sim) its twin
    go_image: str
    kind_image: str  # the Dockerfile's KIND_IMAGE (Kind.kind_image)
    offline_modules: bool  # Go modules downloaded on this machine into the context


def plan_plugin_image(
    source: PluginSource,
    *,
    kong_image: str,
    go_image: str,
    sim: bool,
    engine: Engine,
    root: Path = REPO_ROOT,
) -> ImagePlan:
    """The tag `build_plugin_image` builds or reuses on `engine`, and its bases (for a kind that
    installs a runtime, under --sim, the Debian kong-sim variant, built here when missing).
    `root`: where the sources are (a copy of the repository, in tests of the tag)."""
    kind = kind_of(source)
    go_image = go_image if sim else go_image_for(source, go_image)
    # The go-builder stand-in has no module proxy: a build on it needs the modules with it.
    offline_modules = sim or go_image.startswith(sim_images.GO_BUILDER_REPOSITORY + ":")
    if offline_modules:
        kind.check_offline_build(source)
    if sim and kind.needs_runtime:
        kong_image = sim_images.sim_runtime_image(kong_image, engine)
    kind_image = kind.kind_image(kong_image, sim=sim)
    tag = plugin_image_tag(
        source,
        kong_image=kong_image,
        go_image=go_image,
        kind_image=kind_image,
        sim=sim,
        engine=engine,
        root=root,
    )
    return ImagePlan(tag, kong_image, go_image, kind_image, offline_modules)


def build_plugin_image(
    source: PluginSource,
    *,
    kong_image: str,
    go_image: str,
    sim: bool,
    engine: Engine,
) -> str:
    """Build `source` on `kong_image` on `engine` (reused when its tag exists there) and return
    the tag.

    With `sim`, `kong_image` is the kong-sim tag and `go_image` the go-builder
    (sim.build_sim_images): a kind that installs a runtime then builds on the Debian kong-sim
    variant, and a Go plugin's modules are downloaded on this machine into the context.
    """
    plan = plan_plugin_image(
        source, kong_image=kong_image, go_image=go_image, sim=sim, engine=engine
    )
    tag = plan.tag
    if image_id(tag, engine) is not None:
        LOGGER.info("reusing %s for plugin %s", tag, source.label)
        return tag
    variables = {
        "KPM_PLUGIN_IMAGE": tag,
        "KPM_PLUGIN_TARGET": source.kind,
        "KPM_GO_IMAGE": plan.go_image,
        "KPM_KONG_IMAGE": plan.kong_image,
        "KPM_KIND_IMAGE": plan.kind_image,
        "KPM_PLUGIN_NAME": source.entry or source.label,
        **kind_of(source).build_variables(source),
    }
    with tempfile.TemporaryDirectory(prefix="kpm-plugin-build-") as scratch:
        context = Path(scratch) / "context"
        variables["KPM_PLUGIN_CONTEXT"] = str(context)
        stage_context(source, context, offline_modules=plan.offline_modules)
        env_file = write_env_file(Path(scratch) / "build.env", variables)
        project = f"kpm-plugin-build-{Path(scratch).name.rsplit('-', 1)[-1].lower()}"
        builder = engine.compose(REPO_ROOT / PLUGIN_COMPOSE_FILE, project, env_file, variables)
        engine.build(builder, "plugin", tag)
    return tag


def image_id(tag: str, engine: Engine) -> str | None:
    """The image's ID on `engine`, or None when it has no image of that name."""
    return engine.image_ids(tag).get(tag)


def stage_context(source: PluginSource, context: Path, *, offline_modules: bool) -> None:
    """Fill a build context for images/plugins/Dockerfile (see its header): this folder's files
    and kpm-tap's sources here, the plugin and what its target needs by its kind."""
    context.mkdir(parents=True)
    for name in PLUGIN_DOCKERFILE_FILES:
        shutil.copy2(REPO_ROOT / PLUGIN_IMAGES_DIR / name, context / name)
    kind_of(source).stage(
        source,
        context,
        offline=offline_modules,
        dependencies=plugin_dependencies(source, REPO_ROOT),
    )
    for folder in ("plugin", "gomodcache", "pdk"):  # every target copies each
        (context / folder).mkdir(exist_ok=True)
    for relative in TAP_INPUTS:
        origin = REPO_ROOT / KONG_SIM_DIR / relative
        target = context / "tap" / relative
        if origin.is_dir():
            shutil.copytree(origin, target, ignore=shutil.ignore_patterns("*_test.go"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target)


def run_in_image(
    image: str,
    command: Sequence[str],
    *,
    what: str,
    engine: Engine,
    timeout_s: float = DUMP_TIMEOUT_S,
) -> str:
    """`docker run --rm --network none` of `command` in `image` on `engine`, labelled as ours;
    the container is removed however this ends (a timeout, Ctrl-C). Returns its stdout."""
    name = f"kpm-plugin-{uuid.uuid4().hex[:12]}"
    docker_run = engine.command(
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
    )
    try:
        completed = subprocess.run(
            docker_run, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except BaseException as error:
        with contextlib.suppress(subprocess.TimeoutExpired):  # its error is the one to tell
            run_in_own_session(engine.command("rm", "-f", name), COMMAND_TIMEOUT_S)
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
