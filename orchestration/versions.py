"""The known Kong versions, what their changelogs say about instance churn, and target naming.

The versions are data: orchestration/releases.json, one row per release with its source (its
header says how to add one and how the series aliases resolve). This module reads it once; the
noxfile makes one session per release and per alias, the CLI validates against it, and the
report compares each verdict with `expected`. Four-part versions are Kong Gateway Enterprise
(`kong/kong-gateway`), three-part are open source (`kong`); the open-source images never
shipped the bug and serve as controls.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from orchestration.errors import UsageError

Expectation = Literal["baseline", "affected", "fixed", "unknown"]
Edition = Literal["enterprise", "oss"]

ENTERPRISE_REPOSITORY = "kong/kong-gateway"
OSS_REPOSITORY = "kong"
RELEASES_FILE = Path(__file__).resolve().parent / "releases.json"
OSS_ALIAS_PREFIX = "oss-"
_VERSION_RE = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+(?:\.[0-9]+)?$")


@dataclass(frozen=True)
class KongVersion:
    """One Kong release and what its changelog says about plugin-instance churn."""

    version: str
    expected: Expectation
    source: str
    in_default_matrix: bool = False

    @property
    def edition(self) -> Edition:
        return "enterprise" if self.version.count(".") == 3 else "oss"

    @property
    def image(self) -> str:
        repository = ENTERPRISE_REPOSITORY if self.edition == "enterprise" else OSS_REPOSITORY
        return f"{repository}:{self.version}"

    @property
    def series(self) -> str:
        """`3.14` for 3.14.0.13 and for 3.14.0."""
        return ".".join(self.version.split(".")[:2])


def release_key(version: str) -> tuple[int, ...]:
    """A version's numbers, for ordering: 3.10.0.0 comes after 3.9.1.2."""
    return tuple(int(part) for part in version.split("."))


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


_EXPECTATIONS = ("baseline", "affected", "fixed")


def _rows(data: dict[str, Any]) -> tuple[KongVersion, ...]:
    """The file's rows, checked: a person edits it, so a slip is named with its row."""
    sources: dict[str, str] = data["sources"]
    rows: list[KongVersion] = []
    for row in data["releases"]:
        version = row.get("version", "")
        where = f"{RELEASES_FILE.name}, release {version!r}"
        if not _VERSION_RE.match(version) or version in {r.version for r in rows}:
            raise ValueError(f"{where}: not an a.b.c(.d) version, or listed twice")
        if row.get("expected") not in _EXPECTATIONS:
            raise ValueError(f"{where}: expected must be one of {', '.join(_EXPECTATIONS)}")
        try:
            source = row["source"].format(**sources)
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(f"{where}: its source names no text of 'sources': {error}") from None
        rows.append(KongVersion(version, row["expected"], source, row.get("default", False)))
    return tuple(rows)


_DATA = _load(RELEASES_FILE)
KNOWN_VERSIONS: tuple[KongVersion, ...] = _rows(_DATA)
_BY_VERSION = {v.version: v for v in KNOWN_VERSIONS}
# From which Enterprise release a node without KONG_LICENSE_DATA runs as an expired licence, and
# from which its Admin API is read-only (the file's licence_comment quotes the changelog).
LICENCE: dict[str, str] = _DATA["licence"]


def _newest_by_series(edition: Edition) -> dict[str, KongVersion]:
    newest: dict[str, KongVersion] = {}
    for entry in KNOWN_VERSIONS:
        if entry.edition != edition:
            continue
        held = newest.get(entry.series)
        if held is None or release_key(entry.version) > release_key(held.version):
            newest[entry.series] = entry
    return newest


def _aliases() -> dict[str, KongVersion]:
    """`3.14.x` -> the newest Enterprise 3.14 release; `oss-3.9.x` -> the newest open-source 3.9."""
    enterprise = {f"{s}.x": v for s, v in _newest_by_series("enterprise").items()}
    oss = {f"{OSS_ALIAS_PREFIX}{s}.x": v for s, v in _newest_by_series("oss").items()}
    return {**enterprise, **oss}


ALIASES: dict[str, KongVersion] = _aliases()

# The releases around the bug (marked in the file), then the newest Enterprise release of each
# series after default_controls_after, as controls that a later release did not bring it back.
_CONTROLS_AFTER = release_key(_DATA["default_controls_after"])
DEFAULT_MATRIX: tuple[str, ...] = tuple(
    v.version for v in KNOWN_VERSIONS if v.in_default_matrix
) + tuple(
    v.version
    for alias, v in ALIASES.items()
    if not alias.startswith(OSS_ALIAS_PREFIX) and release_key(v.series) > _CONTROLS_AFTER
)

# A Docker image reference: [registry[:port]/]path[:tag], lower-case path, no digests.
# Strict on purpose: the reference is passed to Docker and written into file names.
_IMAGE_RE = re.compile(
    r"^(?:[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?::[0-9]{1,5})?/)?"
    r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
    r":[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
)


@dataclass(frozen=True)
class Target:
    """What one row of a run measures: a label, the Kong base image, and what to expect."""

    label: str
    image: str
    expected: Expectation
    source: str
    version: str | None  # the Kong version, when the image's tag names one
    alias: str | None = None  # the series alias it was asked as (`3.14.x`), if any


# The first Enterprise release whose plugin-server code is not public (the history branch in
# Kong's repository ends at 3.10.0.0): rows from here on are counted by kpm-tap, which sees what
# crosses the plugin's socket whatever Kong's code does.
FIRST_UNPUBLISHED = (3, 11)


def code_is_public(target: Target) -> bool:
    """Whether Kong's plugin-server code for the target can be read (open source, or Enterprise
    up to 3.10); an image whose tag names no version is not known to be."""
    if target.version is None:
        return False
    return release_key(target.version)[:2] < FIRST_UNPUBLISHED


def _shortened(entries: list[KongVersion]) -> str:
    """The versions, runs of consecutive patches shortened: `3.4.3.1-3.4.3.29`."""
    runs: list[list[str]] = []
    for entry in entries:
        parts = release_key(entry.version)
        if runs:
            last = release_key(runs[-1][-1])
            if last[:-1] == parts[:-1] and last[-1] + 1 == parts[-1]:
                runs[-1].append(entry.version)
                continue
        runs.append([entry.version])
    return ", ".join(run[0] if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs)


def known_list() -> str:
    return _shortened(list(KNOWN_VERSIONS))


def series_rows() -> list[list[str]]:
    """One row per series: its Enterprise releases and alias, its open-source ones and alias."""
    names = sorted({v.series for v in KNOWN_VERSIONS}, key=release_key)
    rows = []
    for series in names:
        row = [series]
        for edition, alias in (("enterprise", f"{series}.x"), ("oss", f"oss-{series}.x")):
            listed = [v for v in KNOWN_VERSIONS if v.series == series and v.edition == edition]
            resolved = f"{alias} = {ALIASES[alias].version}" if listed else ""
            row += [_shortened(listed) or "none", resolved]
        rows.append(row)
    return rows


SERIES_HEADERS = [
    "series", "Enterprise (kong/kong-gateway)", "alias", "open source (kong)", "alias"
]  # fmt: skip


def aliases_of(entry: KongVersion) -> list[str]:
    """The aliases that name `entry` now (`3.14.x` for 3.14.0.13), usually none."""
    return [alias for alias, named in ALIASES.items() if named == entry]


def alias_list() -> str:
    return ", ".join(ALIASES)


def lookup(name: str) -> KongVersion:
    """The table entry for a version or a series alias, or a UsageError that lists both."""
    entry = _BY_VERSION.get(name) or ALIASES.get(name)
    if entry is not None:
        return entry
    if _VERSION_RE.match(name):
        shape = "is not in our table"
    elif name.endswith(".x"):
        shape = (
            "is not a series alias (A.B.x: the newest listed Enterprise A.B release; "
            "oss-A.B.x: the newest open-source one)"
        )
    else:
        shape = "is not a Kong version"
    raise UsageError(
        f"{name!r} {shape}. Known versions: {known_list()}. Aliases: {alias_list()}. "
        "To measure any other image, pass it with --image, e.g. --image kong/kong-gateway:3.7.1.0"
    )


def target_for_version(name: str) -> Target:
    """The target of a version or an alias; an alias's row carries the exact version it means."""
    entry = lookup(name)
    alias = None if name == entry.version else name
    return Target(entry.version, entry.image, entry.expected, entry.source, entry.version, alias)


# Kong's image variants other than Ubuntu, as tag suffixes (developer.konghq.com,
# app/_data/support/packages.yml docker_tag; -fips on some): 3.14.0.13-rhel is 3.14.0.13.
_VARIANT_RE = re.compile(
    r"^(?P<version>[0-9]+(?:\.[0-9]+){2,3})"
    r"-(?P<variant>ubuntu|debian|rhel|amazonlinux-2|amazonlinux-2023|distroless)(?:-fips)?$"
)


def target_for_image(image: str) -> Target:
    """A target for any image tag; a tag naming a known version inherits its expectation, and
    so does a variant of the table's image (`kong/kong-gateway:3.14.0.13-rhel`)."""
    if not _IMAGE_RE.match(image):
        raise UsageError(
            f"{image!r} is not an image reference we accept: use repository:tag with lower-case "
            "letters, digits, '.', '_', '-' and '/', e.g. kong/kong-gateway:3.7.1.0"
        )
    repository, tag = image.rsplit(":", 1)
    variant = _VARIANT_RE.match(tag)
    if variant and variant["variant"] == "distroless":
        _refuse_distroless(image, repository, variant["version"])
    version = variant["version"] if variant else tag if _VERSION_RE.match(tag) else None
    entry = _BY_VERSION.get(version or "")
    if entry is not None and entry.image == image:
        return Target(entry.version, image, entry.expected, entry.source, entry.version)
    if entry is not None and variant and entry.image == f"{repository}:{version}":
        return Target(image, image, entry.expected, entry.source, entry.version)
    return Target(image, image, "unknown", "not in our version table", version)


def _refuse_distroless(image: str, repository: str, version: str) -> None:
    raise UsageError(
        f"{image} is a distroless image: no shell and no package manager, and a run needs "
        "/bin/sh in Kong's container (the resource sampler and the kill-server scenario run "
        "there; the Python and JavaScript targets install their runtime there). Measure the same "
        f"release with a shell: --image {repository}:{version} (Ubuntu) or --image "
        f"{repository}:{version}-rhel"
    )


# The scenarios that change Kong's configuration through the Admin API (reload: POST /config).
ADMIN_WRITING_SCENARIOS = ("reload",)


def licence_notice(
    targets: Sequence[Target], scenarios: Sequence[str], *, licensed: bool
) -> list[str]:
    """What a run without KONG_LICENSE_DATA can do on its Enterprise releases, said before any
    work; a scenario that writes the Admin API on a release that makes it read-only without a
    licence is a UsageError. With a licence there is nothing to say."""
    if licensed:
        return []
    expired_from = release_key(LICENCE["expired_without_from"])
    read_only_from = release_key(LICENCE["read_only_admin_without_from"])
    enterprise = [t for t in targets if t.version is not None and t.version.count(".") == 3]
    expired = [t.label for t in enterprise if release_key(str(t.version)) >= expired_from]
    read_only = [t.label for t in enterprise if release_key(str(t.version)) >= read_only_from]
    writing = [s for s in scenarios if s in ADMIN_WRITING_SCENARIOS]
    if read_only and writing:
        raise UsageError(
            f"the {' and '.join(writing)} scenario changes Kong's configuration (POST /config), "
            "and without a licence the Admin API of Kong Gateway "
            f"{LICENCE['read_only_admin_without_from']} and later is read-only (its changelog): "
            f"{', '.join(read_only)} would refuse it. Set KONG_LICENSE_DATA to your licence (it "
            "is passed through to Kong), or run that scenario on an earlier release"
        )
    if not expired:
        return []
    return [
        f"note: no KONG_LICENSE_DATA: {', '.join(expired)} run as with an expired licence "
        f"(free mode ended in Kong Gateway {LICENCE['expired_without_from']}): Kong proxies and "
        "runs the plugin, which is all this measurement needs"
        + (
            f"; the Admin API of {', '.join(read_only)} is read-only (no reload scenario)"
            if read_only
            else ""
        )
        + ". Set KONG_LICENSE_DATA to run them licensed."
    ]
