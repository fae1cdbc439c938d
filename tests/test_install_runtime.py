"""images/plugins/install-runtime.sh: the Python and JS runtimes from whichever package manager
the Kong image has (apt-get, dnf, microdnf, yum), or a clear refusal; and a distroless tag is
refused before any work.

The fast tests run the script on this machine with only stand-in commands on PATH; the Docker
tests run it in stand-in images built from local files (busybox, no registry): one whose only
package manager is a fake `dnf`, one with no manager, one with no shell at all (FROM scratch).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestration import cli

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "images" / "plugins" / "install-runtime.sh"
SH = shutil.which("sh") or "/bin/sh"

# A package manager that logs how it was called; `install` fails for a package named `missing`.
FAKE_MANAGER = """#!/bin/sh
echo "${0##*/} $*" >> "$KPM_TEST_LOG"
case " $* " in *" missing "*) echo "No match for argument: missing" >&2; exit 1 ;; esac
exit 0
"""


def _bin(tmp_path: Path, *commands: str) -> Path:
    """A PATH folder with the fake managers named (and `rm`, which apt-get's branch calls)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for name in (*commands, "rm"):
        tool = folder / name
        tool.write_text(FAKE_MANAGER)
        tool.chmod(0o755)
    return folder


def _install(folder: Path, tmp_path: Path, *kinds: str) -> subprocess.CompletedProcess[str]:
    log = tmp_path / "calls.log"
    env = {"PATH": str(folder), "KPM_TEST_LOG": str(log)}
    return subprocess.run(
        [SH, str(SCRIPT), *kinds], env=env, capture_output=True, text=True, check=False
    )


def _calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize(
    ("managers", "used", "calls"),
    [
        (("apt-get",), "apt-get", ["apt-get update -q",
         "apt-get install -y -q --no-install-recommends python3 python3-msgpack python3-gevent "
         "nodejs", "rm -rf"]),
        (("dnf", "yum"), "dnf", ["dnf install -y -q python3 python3-msgpack python3-gevent nodejs",
                                 "dnf clean all"]),
        (("microdnf",), "microdnf", ["microdnf install -y python3 python3-msgpack python3-gevent "
                                     "nodejs", "microdnf clean all"]),
        (("yum",), "yum", ["yum install -y -q python3 python3-msgpack python3-gevent nodejs",
                           "yum clean all"]),
    ],
)  # fmt: skip
def test_the_runtime_comes_from_the_manager_the_image_has(
    tmp_path: Path, managers: tuple[str, ...], used: str, calls: list[str]
) -> None:
    done = _install(_bin(tmp_path, *managers), tmp_path, "python", "js")
    assert done.returncode == 0, done.stderr
    # (the list folder's contents, as this machine's shell expands the glob, left off)
    assert [call.split(" /var/lib/apt/lists/")[0] for call in _calls(tmp_path)] == calls


def test_an_image_without_a_known_manager_says_which_and_what_it_lacks(tmp_path: Path) -> None:
    done = _install(_bin(tmp_path, "apk"), tmp_path, "python")
    assert done.returncode == 3
    assert done.stderr == (
        "install-runtime.sh: this image has no package manager we know (apt-get, dnf, microdnf, "
        "yum), and it lacks: python3 python3-msgpack python3-gevent. Use a Kong image on Ubuntu, "
        "Debian, RHEL or Amazon Linux, or one that already has them\n"
    )
    assert _calls(tmp_path) == []


def test_a_package_the_manager_cannot_find_fails_the_build_with_its_name(tmp_path: Path) -> None:
    folder = _bin(tmp_path, "dnf")
    (folder / "dnf").write_text(FAKE_MANAGER.replace('*" missing "*', "*python3-gevent*"))
    done = _install(folder, tmp_path, "python")
    assert done.returncode == 3
    assert done.stderr.endswith(
        "install-runtime.sh: dnf could not install: python3 python3-msgpack python3-gevent (on "
        "RHEL, python3-msgpack and python3-gevent come from EPEL): use an image that has them, "
        "or the Ubuntu tag\n"
    )
    assert "dnf clean all" not in _calls(tmp_path)


# --- in stand-in images ---------------------------------------------------------------------

BUSYBOX = shutil.which("busybox")
STAND_IN = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY managers/ /usr/bin/
ENV KPM_TEST_LOG=/tmp/calls.log
"""
BUILD_ON = """\
ARG BASE
FROM ${BASE}
COPY install-runtime.sh /tmp/install-runtime.sh
RUN sh /tmp/install-runtime.sh python js && cat /tmp/calls.log
"""


def _docker_build(context: Path, tag: str, *build_args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}  # the legacy builder: no buildx needed
    args = [f"--build-arg={arg}" for arg in build_args]
    return subprocess.run(
        ["docker", "build", "--force-rm", "-t", tag, *args, str(context)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def _image_exists(tag: str) -> bool:
    found = subprocess.run(["docker", "image", "inspect", tag], capture_output=True, check=False)
    return found.returncode == 0


@pytest.fixture
def tags() -> Iterator[list[str]]:
    """Tags a test builds; removed however the test ends."""
    made: list[str] = []
    yield made
    for tag in made:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)


def _stand_in(tmp_path: Path, tags: list[str], *managers: str) -> str:
    assert BUSYBOX, "the Docker tests need a static busybox (Debian's busybox-static)"
    context = tmp_path / f"stand-in-{'-'.join(managers) or 'none'}"
    (context / "managers").mkdir(parents=True)
    shutil.copy2(BUSYBOX, context / "busybox")
    for name in managers:
        tool = context / "managers" / name
        tool.write_text(FAKE_MANAGER)
        tool.chmod(0o755)
    (context / "Dockerfile").write_text(STAND_IN)
    tag = f"kpm-test/stand-in:{uuid.uuid4().hex[:12]}"
    tags.append(tag)
    built = _docker_build(context, tag)
    assert built.returncode == 0, built.stderr
    return tag


def _build_runtime_on(base: str, tmp_path: Path, tags: list[str]) -> tuple[str, bool, str]:
    context = tmp_path / f"on-{base.rsplit(':', 1)[1]}"
    context.mkdir()
    shutil.copy2(SCRIPT, context / "install-runtime.sh")
    (context / "Dockerfile").write_text(BUILD_ON)
    tag = f"kpm-test/runtime:{uuid.uuid4().hex[:12]}"
    tags.append(tag)
    built = _docker_build(context, tag, f"BASE={base}")
    return built.stdout + built.stderr, built.returncode == 0, tag


@pytest.mark.docker
def test_an_image_whose_manager_is_dnf_gets_the_runtime_from_dnf(
    tmp_path: Path, tags: list[str]
) -> None:
    output, ok, tag = _build_runtime_on(_stand_in(tmp_path, tags, "dnf"), tmp_path, tags)
    assert ok, output
    assert "dnf install -y -q python3 python3-msgpack python3-gevent nodejs" in output
    assert _image_exists(tag)


@pytest.mark.docker
def test_an_image_without_a_manager_fails_its_build_saying_why_and_leaves_no_image(
    tmp_path: Path, tags: list[str]
) -> None:
    output, ok, tag = _build_runtime_on(_stand_in(tmp_path, tags), tmp_path, tags)
    assert not ok
    assert "install-runtime.sh: this image has no package manager we know" in output
    assert not _image_exists(tag), "a half-built image was left"


@pytest.mark.docker
def test_a_distroless_tag_is_refused_before_any_work(tmp_path: Path, tags: list[str]) -> None:
    """A shell-less stand-in (FROM scratch, one file) under a distroless tag: refused with the
    tag to use instead, exit 2, nothing built, no traceback."""
    context = tmp_path / "scratch"
    context.mkdir()
    (context / "kong").write_text("not a shell\n")
    (context / "Dockerfile").write_text("FROM scratch\nCOPY kong /usr/local/bin/kong\n")
    tag = "kpm-test/kong-gateway:3.14.0.13-distroless"
    tags.append(tag)
    assert _docker_build(context, tag).returncode == 0
    images_before = _images()

    done = subprocess.run(
        [sys.executable, "-m", "orchestration", "run", "--image", tag, "--plugin", "python"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert f"{tag} is a distroless image: no shell and no package manager" in done.stderr
    assert "--image kpm-test/kong-gateway:3.14.0.13 (Ubuntu)" in done.stderr
    assert "Traceback" not in done.stderr
    assert _images() == images_before


def _images() -> set[str]:
    listed = subprocess.run(
        ["docker", "images", "-q", "--no-trunc"], capture_output=True, text=True, check=True
    )
    return set(listed.stdout.split())


def test_the_cli_refuses_a_distroless_tag_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "--image", "kong/kong-gateway:3.15.0.0-distroless", "--sim"]) == 2
    assert "is a distroless image" in capsys.readouterr().err
