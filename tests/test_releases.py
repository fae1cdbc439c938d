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


@pytest.mark.parametrize(
    ("version", "family"),
    [("3.9.3", "3.9"), ("3.9.1.2", "3.9"), ("3.10.0.0", "3.10-3.13"), ("3.13.0.10", "3.10-3.13"),
     ("3.14.0.0", "3.14"), ("3.14.0.13", "3.14"), ("3.15.0.0", "3.15"), ("3.15.0.4", "3.15")],
)  # fmt: skip
def test_the_releases_after_3_9_fall_where_the_changelog_puts_them(
    version: str, family: str
) -> None:
    assert families_of(version) == [family]


def test_each_family_says_what_an_unlicensed_admin_api_and_a_failed_rpc_do() -> None:
    """The two columns the CLI's licence notice and kong-sim's 500s come from, per family."""
    table = {family["name"]: family for family in _families()}
    assert [n for n, f in table.items() if f["failed_rpc"] == "answer_500"] == ["3.14", "3.15"]
    assert [n for n, f in table.items() if f["unlicensed_admin"] == "read_only"] == ["3.15"]
    assert versions.LICENCE["read_only_admin_without_from"] == "3.15.0.0"
    assert families_of(versions.LICENCE["read_only_admin_without_from"]) == ["3.15"]


def test_the_check_fails_when_one_side_is_edited(monkeypatch: pytest.MonkeyPatch) -> None:
    edited = [
        {**family, "reuse": "seq"} if family["name"] == "ee-key-bug" else family
        for family in _families()
    ]
    monkeypatch.setattr(f"{__name__}._families", lambda: edited)
    known = versions.lookup("3.4.1.0")

    with pytest.raises(AssertionError, match="affected"):
        test_every_known_version_has_one_family_whose_reuse_fits_its_verdict(known)
