"""Kong-sim's table of release families (images/kong-sim/internal/release/releases.json)
against orchestration/versions.py: both sides must agree on every known version.

The Go stand-in embeds the same file, so an edit to one side only fails here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestration import versions

RELEASES_JSON = (
    Path(__file__).resolve().parent.parent
    / "images"
    / "kong-sim"
    / "internal"
    / "release"
    / "releases.json"
)

# What each verdict says about the reuse test: affected releases never reuse an instance,
# baseline ones compare the seq, fixed ones compare the plugin id (and maybe the seq too).
REUSE_FOR_EXPECTATION = {
    "affected": {"key"},
    "baseline": {"seq"},
    "fixed": {"plugin_id", "seq_and_plugin_id"},
}


def _families() -> list[dict[str, Any]]:
    table = json.loads(RELEASES_JSON.read_text())
    families: list[dict[str, Any]] = table["families"]
    return families


def _parts(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def _contains(family: dict[str, Any], version: str) -> bool:
    edition = "enterprise" if version.count(".") == 3 else "oss"
    at = _parts(version)
    return any(_parts(span["from"]) <= at < _parts(span["before"]) for span in family[edition])


def families_of(version: str) -> list[str]:
    return [family["name"] for family in _families() if _contains(family, version)]


@pytest.mark.parametrize("known", versions.KNOWN_VERSIONS, ids=lambda v: v.version)
def test_every_known_version_has_one_family_whose_reuse_fits_its_verdict(
    known: versions.KongVersion,
) -> None:
    matches = [family for family in _families() if _contains(family, known.version)]

    assert len(matches) == 1, f"{known.version} is in families {[f['name'] for f in matches]}"
    family = matches[0]
    assert family["reuse"] in REUSE_FOR_EXPECTATION[known.expected], (
        f"{known.version} is {known.expected!r} in orchestration/versions.py but its family "
        f"{family['name']!r} in releases.json reuses by {family['reuse']!r}"
    )


def test_the_report_versions_fall_where_the_facts_put_them() -> None:
    assert families_of("3.4.0.0") == ["3.4-seq"]
    assert families_of("3.4.1.0") == ["ee-key-bug"]
    assert families_of("3.6.0.0") == ["plugin-id"]
    assert families_of("3.9.0.0") == ["3.9"]
    assert families_of("3.4.3.6") == ["plugin-id-12718-backport"]
    assert families_of("3.3.0.0") == []


def test_the_check_fails_when_one_side_is_edited(monkeypatch: pytest.MonkeyPatch) -> None:
    edited = [
        {**family, "reuse": "seq"} if family["name"] == "ee-key-bug" else family
        for family in _families()
    ]
    monkeypatch.setattr(f"{__name__}._families", lambda: edited)
    known = versions.lookup("3.4.1.0")

    with pytest.raises(AssertionError, match="affected"):
        test_every_known_version_has_one_family_whose_reuse_fits_its_verdict(known)
