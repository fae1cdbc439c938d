"""Which plugins a run measures and their images, as one door: `prepared` makes a plugin ready
for a stack (its image built, its dump read as Kong will, `--plugin-config` checked against it)
and `python -m orchestration.plugins prepare` fetches the PDKs on a fresh machine.

The work is in modules of their own, whose public names this one re-exports:
  plugin_sources  `--plugin` values into `PluginSource`s (built-ins, `all`, directories)
  kinds/          one module per plugin kind (go, python, js) behind one protocol
  plugin_images   the image: staged context, tag, build; running a command in it
  plugin_dumps    the query command's dump, cached by image ID
  plugin_config   `--plugin-config` against the dumped schema
  host_fetch      what builds need, fetched on this machine (.cache/pdk, .cache/deps)
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Sequence

from orchestration import sim as sim_images
from orchestration.contract import EXAMPLE, PluginContract
from orchestration.engine import Engine
from orchestration.host_fetch import describe_output, first_error_line, strip_terminal_codes
from orchestration.kinds import KINDS, detect_kinds, kind_named
from orchestration.kinds.base import PluginSource
from orchestration.kinds.js import NODE_IMAGE
from orchestration.paths import REPO_ROOT
from orchestration.plugin_config import validate_plugin_config
from orchestration.plugin_dumps import (
    DUMP_CACHE_DIR,
    PluginDump,
    cached_dump,
    commands_for,
    dump_plugin,
    parse_dump,
)
from orchestration.plugin_images import (
    PLUGIN_IMAGE_REPOSITORY,
    ImagePlan,
    build_plugin_image,
    go_image_for,
    plan_plugin_image,
    plugin_image_tag,
    registry_bases,
    run_in_image,
    stage_context,
)
from orchestration.plugin_sources import (
    ALL,
    BUILTIN_NAMES,
    DEFAULT_PLUGIN,
    builtin_plugins,
    default_plugin,
    plugin_dependencies,
    plugin_from_directory,
    resolve_plugins,
)

__all__ = [
    "ALL",
    "BUILTIN_NAMES",
    "DEFAULT_PLUGIN",
    "NODE_IMAGE",
    "PLUGIN_IMAGE_REPOSITORY",
    "ImagePlan",
    "PluginDump",
    "PluginSource",
    "build_plugin_image",
    "builtin_plugins",
    "cached_dump",
    "commands_for",
    "contract_for",
    "default_plugin",
    "describe_output",
    "detect_kinds",
    "dump_plugin",
    "first_error_line",
    "go_image_for",
    "parse_dump",
    "plan_plugin_image",
    "plugin_dependencies",
    "plugin_from_directory",
    "plugin_image_tag",
    "prepare",
    "prepared",
    "process_name_of",
    "registry_bases",
    "resolve_plugins",
    "run_in_image",
    "runs_as_its_own_process",
    "stage_context",
    "strip_terminal_codes",
    "validate_plugin_config",
]


def prepared(
    source: PluginSource,
    *,
    kong_image: str,
    go_image: str,
    sim: bool,
    engine: Engine,
    config_json: str = "{}",
) -> tuple[str, PluginContract]:
    """Build the plugin's image on `engine`, read its dump as Kong will, check `config_json`
    against the schema it dumps; the image's tag and the harness's contract with the plugin."""
    image = build_plugin_image(
        source, kong_image=kong_image, go_image=go_image, sim=sim, engine=engine
    )
    dump = cached_dump(image, source, engine, cache=REPO_ROOT / DUMP_CACHE_DIR)
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


def process_name_of(kind: str, start_command: str) -> str:
    """The plugin server's process name (comm) in the container, as its kind tells it: a Go
    binary's own name, the interpreter's for Python (`python3 script.py`) and for
    kong-js-pluginserver (a node script)."""
    return kind_named(kind).process_name(start_command)


def runs_as_its_own_process(source: PluginSource) -> bool:
    """Whether the plugin's server runs under a process name of its own (kill-server finds it
    by that name): a Go binary does, Python's and JavaScript's servers run as python3 and node."""
    return kind_named(source.kind).own_process_name


# --- preparing a fresh machine ---------------------------------------------------------------


def prepare(*, sim_base: bool, engine: Engine | None = None) -> dict[str, float]:
    """Fetch every PDK fetched on this machine into the cache (`<kind>-pdk`) and, with
    `sim_base`, make sure a Debian base image exists on `engine` (None: the default one;
    debootstrap on a machine without a registry). Returns the seconds each step took."""
    timings: dict[str, float] = {}
    for kind in KINDS:
        if not kind.pdk_pins:  # its build brings its own PDK
            continue
        started = time.monotonic()
        kind.fetch_pdk()
        timings[f"{kind.name}-pdk"] = time.monotonic() - started
    if sim_base:
        started = time.monotonic()
        sim_images.debian_base_image(engine or Engine())
        timings["debian-base"] = time.monotonic() - started
    return timings


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m orchestration.plugins prepare [--sim]`: what .ci/run calls on a fresh machine."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "prepare" or not set(args[1:]) <= {"--sim"}:
        print("usage: python -m orchestration.plugins prepare [--sim]", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for step, seconds in prepare(sim_base="--sim" in args).items():
        print(f"{step}: {seconds:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
