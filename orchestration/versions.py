"""The known Kong versions, what their changelogs say about instance churn, and target naming.

This table is the single place versions are written down: the noxfile makes one session per
entry, the CLI validates against it, and the report compares each verdict with `expected`.
Four-part versions are Kong Gateway Enterprise (`kong/kong-gateway`), three-part are open source
(`kong`); the open-source images never shipped the bug and serve as controls.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from orchestration.errors import UsageError

Expectation = Literal["baseline", "affected", "fixed", "unknown"]
Edition = Literal["enterprise", "oss"]

ENTERPRISE_REPOSITORY = "kong/kong-gateway"
OSS_REPOSITORY = "kong"

_REPORT = "original bug report (hey -n 1000 against a go-pdk v0.10.0 plugin)"
_REGRESSION = (
    "Enterprise commit 440444efb8 'harden seq number generation' (committed 2023-09-19, before "
    "3.4.1.0 shipped on 2023-09-28; open-source port 9ca82ddb46, 2023-10-23), before the fix"
)
_FIX_CHANGELOG = (
    "Enterprise changelog {release}: 'Plugin Server: fixed an issue where every request causes "
    "a new plugin instance to be created' (Kong PR #12020)"
)
_FIX_CARRIED = "carries Kong PR #12020 (instance reuse compares conf.__plugin_id)"
_FIX_STRICTER = "carries Kong PR #12718 (reuse needs the seq and the plugin id to match)"
_OSS_BEFORE = "open-source release predating the regression (no OSS image shipped it)"


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


_AFFECTED = f"{_REPORT}; {_REGRESSION}"  # the source of every affected row after 3.4.1.0


KNOWN_VERSIONS: tuple[KongVersion, ...] = (
    KongVersion("3.4.0.0", "baseline", f"{_REPORT}: New() counter 5", in_default_matrix=True),
    KongVersion(
        "3.4.1.0",
        "affected",
        f"{_REPORT}: New() counter 1855; {_REGRESSION}",
        in_default_matrix=True,
    ),
    KongVersion("3.4.1.1", "affected", _AFFECTED, in_default_matrix=True),
    KongVersion("3.4.2.0", "affected", _AFFECTED, in_default_matrix=True),
    KongVersion("3.4.2.1", "affected", _AFFECTED, in_default_matrix=True),
    KongVersion(
        "3.4.3.1",
        "fixed",
        _FIX_CHANGELOG.format(release="3.4.3.1 (2023-12-15)"),
        in_default_matrix=True,
    ),
    KongVersion("3.5.0.0", "affected", _AFFECTED, in_default_matrix=True),
    KongVersion("3.5.0.1", "affected", _AFFECTED, in_default_matrix=True),
    KongVersion(
        "3.5.0.2",
        "fixed",
        _FIX_CHANGELOG.format(release="3.5.0.2 (2023-12-21)"),
        in_default_matrix=True,
    ),
    KongVersion(
        "3.5.0.4",
        "fixed",
        f"{_FIX_STRICTER} (backported); its changelog also fixes 'external pluginservers would "
        "not start automatically' (which earlier 3.5.0.x were hit is not stated)",
    ),
    KongVersion(
        "3.6.0.0",
        "fixed",
        _FIX_CHANGELOG.format(release="3.6.0.0 (2024-02-12)"),
        in_default_matrix=True,
    ),
    KongVersion("3.6.1.0", "fixed", _FIX_CARRIED),
    KongVersion("3.7.1.0", "fixed", _FIX_STRICTER),
    KongVersion("3.8.0.0", "fixed", _FIX_STRICTER),
    KongVersion("3.9.0.0", "fixed", _FIX_STRICTER),
    KongVersion("3.4.0", "baseline", _OSS_BEFORE),
    KongVersion("3.4.2", "baseline", _OSS_BEFORE),
    KongVersion("3.5.0", "baseline", _OSS_BEFORE),
    KongVersion("3.6.0", "fixed", _FIX_CARRIED),
    KongVersion("3.6.1", "fixed", _FIX_CARRIED),
    KongVersion("3.7.1", "fixed", _FIX_STRICTER),
    KongVersion("3.8.0", "fixed", _FIX_STRICTER),
    KongVersion("3.9.1", "fixed", _FIX_STRICTER),
)

DEFAULT_MATRIX: tuple[str, ...] = tuple(v.version for v in KNOWN_VERSIONS if v.in_default_matrix)

_BY_VERSION = {v.version: v for v in KNOWN_VERSIONS}

# A Docker image reference: [registry[:port]/]path[:tag], lower-case path, no digests.
# Strict on purpose: the reference is passed to Docker and written into file names.
_IMAGE_RE = re.compile(
    r"^(?:[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?::[0-9]{1,5})?/)?"
    r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
    r":[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
)
_VERSION_RE = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+(?:\.[0-9]+)?$")


@dataclass(frozen=True)
class Target:
    """What one row of a run measures: a label, the Kong base image, and what to expect."""

    label: str
    image: str
    expected: Expectation
    source: str
    version: str | None  # the Kong version, when the image's tag names one


def known_list() -> str:
    return ", ".join(v.version for v in KNOWN_VERSIONS)


def lookup(version: str) -> KongVersion:
    """The table entry for `version`, or a UsageError that lists the known ones."""
    entry = _BY_VERSION.get(version)
    if entry is not None:
        return entry
    shape = "is not a Kong version" if not _VERSION_RE.match(version) else "is not in our table"
    raise UsageError(
        f"{version!r} {shape}. Known versions: {known_list()}. "
        "To measure any other image, pass it with --image, e.g. --image kong/kong-gateway:3.7.1.0"
    )


def target_for_version(version: str) -> Target:
    entry = lookup(version)
    return Target(entry.version, entry.image, entry.expected, entry.source, entry.version)


def target_for_image(image: str) -> Target:
    """A target for any image tag; a tag naming a known version inherits its expectation."""
    if not _IMAGE_RE.match(image):
        raise UsageError(
            f"{image!r} is not an image reference we accept: use repository:tag with lower-case "
            "letters, digits, '.', '_', '-' and '/', e.g. kong/kong-gateway:3.7.1.0"
        )
    tag = image.rsplit(":", 1)[1]
    version = tag if _VERSION_RE.match(tag) else None
    entry = _BY_VERSION.get(tag)
    if entry is not None and entry.image == image:
        return Target(entry.version, image, entry.expected, entry.source, entry.version)
    return Target(image, image, "unknown", "not in our version table", version)
