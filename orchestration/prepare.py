"""Preparing a job: its images built, its plugin's dump read, its pulls awaited.

The stage between the plan (a target, a plugin, the run's configuration) and a running world:
`prepare` builds the `--sim` stand-ins (or waits for the base images pulled ahead), builds the
plugin's image, reads its dump as Kong will, and returns a `Prepared` from which each stack of the
job is described (`Prepared.spec`). A world runs what it is handed; it builds nothing itself.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from orchestration import pulls
from orchestration.config import RunConfig
from orchestration.contract import PluginContract, declarative_template
from orchestration.engine import Engine
from orchestration.errors import MatrixError
from orchestration.paths import REPO_ROOT
from orchestration.plugins import PluginSource, prepared, registry_bases
from orchestration.sim import build_sim_images
from orchestration.stack import StackSpec, project_name_for
from orchestration.versions import Target

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    """A job made ready on its engine: the images its stacks run and its plugin's contract."""

    version: str  # the target's label
    kong_image: str
    go_image: str
    image_tag: str  # the plugin image, built on kong_image
    contract: PluginContract  # read from the plugin image's dump
    engine: Engine

    def spec(
        self, config: RunConfig, *, workers: int, suffix: str, env_dir: Path, tap: bool
    ) -> StackSpec:
        """One stack of the job: `env_dir` is the job's own folder (one per version, plugin and
        scenario), so its name tells the job's Compose project apart from every other job's of the
        run, two plugins of one version among them; `suffix` tells apart several stacks of one job
        (the `workers` scenario's), in its project name and env file."""
        return StackSpec(
            version=self.version,
            kong_image=self.kong_image,
            go_image=self.go_image,
            image_tag=self.image_tag,
            workers=workers,
            project_name=project_name_for(config.run_id, env_dir.name + suffix),
            run_id=config.run_id,
            env_file=env_dir / f"compose{suffix}.env",
            plugin=self.contract,
            tap=tap,
            declarative_json=json.dumps(self.contract.declarative(declarative_template(REPO_ROOT))),
            engine=self.engine,
        )


def prepare(
    target: Target,
    config: RunConfig,
    source: PluginSource,
    engine: Engine,
    check_cancel: Callable[[], None],
    *,
    stage: Callable[[str], None] = lambda what: None,
) -> Prepared:
    """Build what `target` needs on `engine` and read the plugin's dump; `check_cancel` raises
    when the run is stopping (checked while waiting for pulls); `stage` is told what it waits on
    (the version's progress line)."""
    LOGGER.info("%s: preparing images", target.label)
    kong_image, go_image = target.image, config.go_image
    if config.sim:
        if target.version is None:
            raise MatrixError(
                f"--sim needs a Kong version to stand in for, and {target.label!r} names none"
            )
        stage(f"building or reusing the kong-sim images for {target.version}")
        images = build_sim_images(target.version, engine)
        kong_image, go_image = images.kong_image, images.go_image
    else:  # its base images may be on their way already (pulls.ahead)
        bases = registry_bases(source, kong_image, go_image)
        stage(f"waiting for the pull of {', '.join(bases) or 'nothing'}")
        pulls.wait_for(bases, engine, check_cancel)
    stage(f"building or reusing the {source.label} plugin's image")
    image, contract = prepared(
        source,
        kong_image=kong_image,
        go_image=go_image,
        sim=config.sim,
        engine=engine,
        config_json=config.plugin_config,
    )
    return Prepared(target.label, kong_image, go_image, image, contract, engine)
