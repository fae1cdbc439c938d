from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from orchestration import cli, versions
from orchestration.commands import common
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
    assert f"Known versions: {versions.known_list()}. Aliases: {versions.alias_list()}." in message
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


def test_the_default_matrix_is_the_releases_around_the_bug_then_the_newest_of_each_series() -> None:
    """Before it, every release that has it, the first fixed one of each line (docs/benchmarks.md
    lists the verdicts of these), then the newest release of each series after 3.6 as controls."""
    assert versions.DEFAULT_MATRIX == (
        "3.4.0.0", "3.4.1.0", "3.4.1.1", "3.4.2.0", "3.4.2.1", "3.4.3.1",
        "3.5.0.0", "3.5.0.1", "3.5.0.2", "3.6.0.0",
        "3.7.1.5", "3.8.1.2", "3.9.1.2", "3.10.0.17", "3.11.0.14", "3.12.0.11", "3.13.0.10",
        "3.14.0.13", "3.15.0.4",
    )  # fmt: skip


def test_each_affected_release_cites_the_report_and_the_regression() -> None:
    sources = json.loads(versions.RELEASES_FILE.read_text())["sources"]
    affected = [v for v in versions.KNOWN_VERSIONS if v.expected == "affected"]
    assert [v.version for v in affected] == [
        "3.4.1.0", "3.4.1.1", "3.4.2.0", "3.4.2.1", "3.5.0.0", "3.5.0.1",
    ]  # fmt: skip
    for known in affected:
        assert known.source.startswith(sources["report"]), known.version
        assert known.source.endswith(sources["regression"]), known.version


# Kong's Enterprise changelog (developer.konghq.com app/_data/changelogs/gateway.json, read
# 2026-12-07): the newest release of each series, and how many it has; open source ends at 3.9.3.
CHANGELOG_SERIES = {
    "3.7": ("3.7.1.5", 7), "3.8": ("3.8.1.2", 4), "3.9": ("3.9.1.2", 5),
    "3.10": ("3.10.0.17", 18), "3.11": ("3.11.0.14", 15), "3.12": ("3.12.0.11", 12),
    "3.13": ("3.13.0.10", 11), "3.14": ("3.14.0.13", 14), "3.15": ("3.15.0.4", 5),
}  # fmt: skip


@pytest.mark.parametrize(("series", "newest_and_count"), CHANGELOG_SERIES.items())
def test_every_release_the_changelog_lists_is_in_the_table(
    series: str, newest_and_count: tuple[str, int]
) -> None:
    newest, count = newest_and_count
    enterprise = [v for v in versions.KNOWN_VERSIONS if v.edition == "enterprise"]
    listed = [v for v in enterprise if v.series == series]
    assert len(listed) == count
    assert versions.ALIASES[f"{series}.x"].version == newest


def test_the_table_is_enterprise_then_open_source_each_in_release_order() -> None:
    editions = [v.edition for v in versions.KNOWN_VERSIONS]
    assert editions == sorted(editions, key=["enterprise", "oss"].index)
    for edition in ("enterprise", "oss"):
        listed = [v.version for v in versions.KNOWN_VERSIONS if v.edition == edition]
        keys = [versions.release_key(version) for version in listed]
        assert keys == sorted(keys), edition
    assert versions.KNOWN_VERSIONS[-1].version == "3.9.3"
    assert "3.4.2.1" in {v.version for v in versions.KNOWN_VERSIONS}, "the report measured it"


def test_every_row_has_a_source_without_placeholders_left() -> None:
    for known in versions.KNOWN_VERSIONS:
        assert known.source, known.version
        assert "{" not in known.source, known.version


@pytest.mark.parametrize(
    ("version", "expected"),
    [("3.4.3.29", "fixed"), ("3.5.0.7", "fixed"), ("3.6.1.8", "fixed"), ("3.10.0.0", "fixed"),
     ("3.15.0.4", "fixed"), ("3.4.1", "baseline"), ("3.9.3", "fixed")],
)  # fmt: skip
def test_the_new_rows_follow_the_fix_facts(version: str, expected: str) -> None:
    assert versions.lookup(version).expected == expected


@pytest.mark.parametrize(
    ("alias", "exact"),
    [("3.4.x", "3.4.3.29"), ("3.9.x", "3.9.1.2"), ("3.14.x", "3.14.0.13"), ("3.15.x", "3.15.0.4"),
     ("oss-3.9.x", "3.9.3"), ("oss-3.4.x", "3.4.2")],
)  # fmt: skip
def test_a_series_alias_is_the_newest_listed_release_of_its_edition(alias: str, exact: str) -> None:
    target = versions.target_for_version(alias)
    assert (target.label, target.version, target.alias) == (exact, exact, alias)
    assert target == replace(versions.target_for_version(exact), alias=alias)


def test_an_exact_version_records_no_alias() -> None:
    assert versions.target_for_version("3.14.0.13").alias is None


@pytest.mark.parametrize("bad", ["3.9.0.x", "3.16.x", "oss-3.10.x", "3.x"])
def test_anything_else_ending_in_x_is_refused_with_the_alias_rule(bad: str) -> None:
    rule = re.escape(f"{bad!r} is not a series alias (A.B.x: the newest listed Enterprise")
    with pytest.raises(UsageError, match=f"^{rule}"):
        versions.lookup(bad)


def test_a_listed_tag_given_as_an_image_inherits_its_expectation() -> None:
    assert versions.target_for_image("kong/kong-gateway:3.14.0.2").expected == "fixed"


REPO = Path(__file__).resolve().parent.parent


def test_nox_has_one_session_per_release_and_per_alias_and_no_other_kong_session() -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "nox", "-l"], cwd=REPO, capture_output=True, text=True, check=True
    )
    sessions = set(re.findall(r"^[*-] kong-(\S+)", listed.stdout, re.M))
    assert sessions == {v.version for v in versions.KNOWN_VERSIONS} | set(versions.ALIASES)


def test_the_readme_shows_the_series_table_the_cli_prints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["versions", "--series"]) == 0
    table = capsys.readouterr().out
    assert table in (REPO / "README.md").read_text(), "paste `versions --series` into README.md"
    assert len(table.splitlines()) == 2 + len({v.series for v in versions.KNOWN_VERSIONS})


def _targets(*names: str) -> list[versions.Target]:
    return [versions.target_for_version(name) for name in names]


def test_with_a_licence_there_is_nothing_to_say_or_refuse() -> None:
    targets = _targets("3.15.0.0", "3.14.x")
    assert versions.licence_notice(targets, ["steady", "reload"], licensed=True) == []


def test_without_a_licence_3_10_and_later_are_said_once_to_run_as_expired() -> None:
    targets = _targets("3.4.1.0", "3.9.1.2", "3.10.0.0", "3.14.x", "3.9.3")
    notice = versions.licence_notice(targets, ["steady"], licensed=False)
    assert len(notice) == 1
    assert notice[0].startswith(
        "note: no KONG_LICENSE_DATA: 3.10.0.0, 3.14.0.13 run as with an expired licence "
        "(free mode ended in Kong Gateway 3.10.0.0)"
    )
    assert "read-only" not in notice[0]


def test_releases_before_3_10_and_open_source_need_no_word() -> None:
    targets = _targets("3.4.1.0", "3.9.1.2", "oss-3.9.x")
    assert versions.licence_notice(targets, ["steady", "reload"], licensed=False) == []


def test_3_15_without_a_licence_says_its_admin_api_is_read_only() -> None:
    notice = versions.licence_notice(_targets("3.15.0.0"), ["steady"], licensed=False)
    assert "the Admin API of 3.15.0.0 is read-only (no reload scenario)" in notice[0]


@pytest.mark.parametrize("named", ["3.15.0.0", "3.15.x"])
def test_reload_on_3_15_without_a_licence_is_refused_with_the_reason(named: str) -> None:
    with pytest.raises(UsageError) as raised:
        versions.licence_notice(_targets("3.14.x", named), ["steady", "reload"], licensed=False)
    message = str(raised.value)
    assert message.startswith("the reload scenario changes Kong's configuration (POST /config)")
    assert "Admin API of Kong Gateway 3.15.0.0 and later is read-only" in message
    assert "3.14.0.13" not in message, "only the releases that refuse it are named"
    assert message.endswith(
        "Set KONG_LICENSE_DATA to your licence (it is passed through to Kong), or run that "
        "scenario on an earlier release"
    )


def test_an_image_tag_naming_a_release_counts_too() -> None:
    image = versions.target_for_image("registry.example:5000/kong/kong-gateway:3.15.0.2")
    with pytest.raises(UsageError, match=re.escape(":3.15.0.2 would refuse it")):
        versions.licence_notice([image], ["reload"], licensed=False)


def test_the_cli_refuses_reload_on_3_15_before_any_work(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("KONG_LICENSE_DATA", raising=False)
    monkeypatch.setattr(common, "check_prerequisites", lambda *_: pytest.fail("work began"))
    assert cli.main(["run", "3.15.0.0", "--sim", "--scenario", "reload"]) == 2
    assert "Admin API of Kong Gateway 3.15.0.0 and later is read-only" in capsys.readouterr().err


def test_the_cli_says_once_before_any_work_that_3_10_runs_as_expired(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Stop(Exception):
        pass

    def stop(*_: object) -> None:
        raise Stop

    monkeypatch.delenv("KONG_LICENSE_DATA", raising=False)
    monkeypatch.setattr(common, "check_prerequisites", stop)
    with pytest.raises(Stop):
        cli.main(["matrix", "3.10.x", "3.11.x", "--sim"])
    assert capsys.readouterr().err.count("run as with an expired licence") == 1
    monkeypatch.setenv("KONG_LICENSE_DATA", '{"license":{}}')
    with pytest.raises(Stop):
        cli.main(["matrix", "3.10.x", "--sim"])
    assert "licence" not in capsys.readouterr().err


@pytest.mark.parametrize("variant", ["rhel", "amazonlinux-2023", "debian", "ubuntu", "rhel-fips"])
def test_a_variant_of_the_table_image_is_that_release(variant: str) -> None:
    image = f"kong/kong-gateway:3.14.0.13-{variant}"
    target = versions.target_for_image(image)
    listed = versions.target_for_version("3.14.0.13")
    assert target == versions.Target(image, image, "fixed", listed.source, "3.14.0.13")


def test_a_variant_elsewhere_names_the_release_but_expects_nothing() -> None:
    target = versions.target_for_image("registry.example:5000/kong:3.14.0.13-rhel")
    assert (target.expected, target.version) == ("unknown", "3.14.0.13")


@pytest.mark.parametrize("tag", ["3.14.0.13-distroless", "3.15.0.0-distroless-fips"])
def test_a_distroless_tag_is_refused_naming_the_tag_to_use_instead(tag: str) -> None:
    version = tag.split("-", maxsplit=1)[0]
    with pytest.raises(UsageError) as raised:
        versions.target_for_image(f"kong/kong-gateway:{tag}")
    message = str(raised.value)
    assert message.startswith(f"kong/kong-gateway:{tag} is a distroless image: no shell")
    assert message.endswith(
        f"--image kong/kong-gateway:{version} (Ubuntu) or --image kong/kong-gateway:{version}-rhel"
    )


@pytest.mark.parametrize(
    ("row", "complaint"),
    [({"version": "3.16", "expected": "fixed", "source": "x"}, "not an a.b.c(.d) version"),
     ({"version": "3.4.0.0", "expected": "fixed", "source": "x"}, "listed twice"),
     ({"version": "3.16.0.0", "expected": "fixd", "source": "x"}, "expected must be one of"),
     ({"version": "3.16.0.0", "expected": "fixed", "source": "{fix_strictr}"},
      "its source names no text of 'sources': 'fix_strictr'")],
)  # fmt: skip
def test_a_slip_in_the_data_file_is_named_with_its_row(row: dict[str, str], complaint: str) -> None:
    data = json.loads(versions.RELEASES_FILE.read_text())
    data["releases"].append(row)
    with pytest.raises(ValueError, match=re.escape(f"release {row['version']!r}: ")) as raised:
        versions._rows(data)
    assert complaint in str(raised.value)


@pytest.mark.parametrize(
    ("name", "public"),
    [("3.4.1.0", True), ("3.9.3", True), ("3.10.0.17", True), ("3.11.0.0", False),
     ("3.15.0.4", False)],
)  # fmt: skip
def test_rows_whose_kong_code_is_not_public_are_known(name: str, public: bool) -> None:
    assert versions.code_is_public(versions.target_for_version(name)) is public
    assert not versions.code_is_public(versions.target_for_image("example/kong:custom"))
