from __future__ import annotations

import pytest

from orchestration import versions
from orchestration.errors import UsageError


def test_default_matrix_spans_before_broken_and_fixed() -> None:
    expected = {versions.lookup(v).expected for v in versions.DEFAULT_MATRIX}
    assert expected == {"baseline", "affected", "fixed"}
    assert "3.4.0.0" in versions.DEFAULT_MATRIX
    assert "3.4.1.0" in versions.DEFAULT_MATRIX
    assert "3.6.0.0" in versions.DEFAULT_MATRIX


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("3.4.0.0", "baseline"),
        ("3.4.1.0", "affected"),
        ("3.4.1.1", "affected"),
        ("3.4.2.0", "affected"),
        ("3.4.2.1", "affected"),
        ("3.5.0.0", "affected"),
        ("3.5.0.1", "affected"),
        ("3.4.3.1", "fixed"),
        ("3.5.0.2", "fixed"),
        ("3.6.0.0", "fixed"),
    ],
)
def test_changelog_status_follows_the_facts(version: str, expected: str) -> None:
    assert versions.lookup(version).expected == expected


def test_editions_and_images() -> None:
    assert versions.lookup("3.4.1.0").image == "kong/kong-gateway:3.4.1.0"
    assert versions.lookup("3.4.0").image == "kong:3.4.0"
    assert versions.lookup("3.4.0").edition == "oss"
    oss = [v for v in versions.KNOWN_VERSIONS if v.edition == "oss"]
    assert oss, "open-source controls are part of the table"
    assert all(v.expected != "affected" for v in oss), "no OSS image shipped the bug"


def test_versions_are_unique() -> None:
    names = [v.version for v in versions.KNOWN_VERSIONS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("bad", ["3.4", "latest", "3.4.1.0;rm", "../x", "", "3.4.9.9"])
def test_unknown_version_lists_known_and_suggests_image(bad: str) -> None:
    with pytest.raises(UsageError) as raised:
        versions.lookup(bad)
    message = str(raised.value)
    assert f"Known versions: {', '.join(v.version for v in versions.KNOWN_VERSIONS)}." in message
    assert message.endswith(
        "To measure any other image, pass it with --image, e.g. --image kong/kong-gateway:3.7.1.0"
    )


@pytest.mark.parametrize(
    ("bad", "shape"),
    [("3.4", "is not a Kong version"), ("latest", "is not a Kong version"),
     ("3.4.9.9", "is not in our table"), ("3.4.9", "is not in our table")],
)  # fmt: skip
def test_unknown_version_says_whether_it_is_a_version_at_all(bad: str, shape: str) -> None:
    with pytest.raises(UsageError, match=f"^{bad!r} {shape}\\. Known versions: 3\\.4\\.0\\.0, "):
        versions.lookup(bad)


def test_version_target_carries_the_table_entry() -> None:
    entry = versions.lookup("3.4.1.0")
    assert versions.target_for_version("3.4.1.0") == versions.Target(
        "3.4.1.0", "kong/kong-gateway:3.4.1.0", "affected", entry.source, "3.4.1.0"
    )
    assert versions.target_for_version("3.4.0").image == "kong:3.4.0"


def test_image_target_for_a_known_tag_keeps_the_expectation() -> None:
    target = versions.target_for_image("kong/kong-gateway:3.4.1.0")
    assert target == versions.target_for_version("3.4.1.0")


def test_image_target_for_an_unlisted_tag() -> None:
    target = versions.target_for_image("registry.example:5000/team/kong:3.7.1.0-custom")
    assert target.expected == "unknown"
    assert target.version is None
    assert target.label == "registry.example:5000/team/kong:3.7.1.0-custom"
    assert target.image == target.label
    assert target.source == "not in our version table"


def test_image_target_for_a_known_tag_elsewhere_names_the_version_but_expects_nothing() -> None:
    """Only the table's own image inherits the changelog; the tag after the last ':' (not the
    registry's port) is still the Kong version the row is about."""
    image = "registry.example:5000/kong/kong-gateway:3.4.1.0"
    assert versions.target_for_image(image) == versions.Target(
        image, image, "unknown", "not in our version table", "3.4.1.0"
    )


@pytest.mark.parametrize(
    "bad", ["kong", "kong:3.4;rm -rf /", "KONG:3.4", "kong:../x", "kong:$(id)", "kong: 3.4"]
)
def test_unsafe_image_references_are_refused(bad: str) -> None:
    with pytest.raises(UsageError, match="image reference") as raised:
        versions.target_for_image(bad)
    assert "lower-case letters, digits, '.', '_', '-' and '/', e.g. kong/kong-gateway:" in str(
        raised.value
    )


def test_the_default_matrix_is_the_enterprise_releases_around_the_bug() -> None:
    """Before it, every release that has it, and the first fixed one of each line
    (docs/benchmarks.md lists the verdicts of this matrix)."""
    assert versions.DEFAULT_MATRIX == (
        "3.4.0.0", "3.4.1.0", "3.4.1.1", "3.4.2.0", "3.4.2.1", "3.4.3.1",
        "3.5.0.0", "3.5.0.1", "3.5.0.2", "3.6.0.0",
    )  # fmt: skip


def test_each_affected_release_cites_the_report_and_the_regression() -> None:
    affected = [v for v in versions.KNOWN_VERSIONS if v.expected == "affected"]
    assert [v.version for v in affected] == [
        "3.4.1.0", "3.4.1.1", "3.4.2.0", "3.4.2.1", "3.5.0.0", "3.5.0.1",
    ]  # fmt: skip
    for known in affected:
        assert known.source.startswith(versions._REPORT), known.version
        assert known.source.endswith(versions._REGRESSION), known.version
