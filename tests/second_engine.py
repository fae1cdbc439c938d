"""A second Docker engine on this machine, for the --docker-host tests: started and removed here.

What works with Debian's dockerd 20.10 beside the machine's own engine (root needed):
- its own socket, data root, exec root and pidfile, so it shares no state with the first;
- `--iptables=false --ip-masq=false`: two daemons rewriting the same DOCKER chains would fight;
  published 127.0.0.1 ports are then served by docker-proxy (the userland proxy), which is all
  loopback traffic needs;
- a bridge of its own made here (`--bridge NAME`): with `--bridge none` a build's `RUN` step
  fails ("network bridge not found"), and the default `docker0` is the first engine's;
- `--default-address-pool` off the first engine's pools, for the networks Compose creates.
Everything is removed afterwards: the daemon, its bridge, data root, exec root and socket.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

DOCKERD = "/usr/sbin/dockerd"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
BRIDGE_ADDRESS = "10.214.0.1/24"
ADDRESS_POOL = "base=10.213.0.0/16,size=24"


class SecondEngineError(RuntimeError):
    """The second engine could not be started here."""


def missing_prerequisites() -> str | None:
    """Why a second dockerd cannot run here, or None."""
    if os.geteuid() != 0:
        return "starting a second dockerd needs root"
    if not Path(DOCKERD).is_file():
        return f"{DOCKERD} is missing (apt-get install docker.io, or .ci/install-docker.sh)"
    if shutil.which("ip") is None:
        return "the `ip` command is missing (apt-get install iproute2)"
    return None


@contextlib.contextmanager
def second_dockerd(log_dir: Path) -> Iterator[str]:
    """A dockerd of its own; yields its `unix://` URL, and leaves nothing behind."""
    problem = missing_prerequisites()
    if problem:
        raise SecondEngineError(problem)
    tag = f"kpm{os.getpid() % 100000}"
    bridge = f"{tag}br"  # at most 15 characters, the kernel's limit for interface names
    socket_path = Path(f"/run/{tag}-docker.sock")
    data_root = Path(f"/var/lib/{tag}-docker")
    exec_root = Path(f"/run/{tag}-docker")  # short: containerd's socket path lives under it
    pidfile = Path(f"/run/{tag}-docker.pid")
    url = f"unix://{socket_path}"
    _run(["ip", "link", "add", bridge, "type", "bridge"])
    daemon: subprocess.Popen[bytes] | None = None
    try:
        _run(["ip", "addr", "add", BRIDGE_ADDRESS, "dev", bridge])
        _run(["ip", "link", "set", bridge, "up"])
        with (log_dir / "dockerd2.log").open("wb") as log:
            daemon = subprocess.Popen(
                [
                    DOCKERD,
                    *["--host", url, "--data-root", str(data_root)],
                    *["--exec-root", str(exec_root), "--pidfile", str(pidfile)],
                    *["--bridge", bridge, "--iptables=false", "--ip-masq=false"],
                    *["--default-address-pool", ADDRESS_POOL],
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_until_answers(url, daemon, log_dir / "dockerd2.log")
        yield url
    finally:
        if daemon is not None:
            _stop(daemon)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
        _unmount_under(data_root, exec_root)
        for path in (data_root, exec_root):
            shutil.rmtree(path, ignore_errors=True)
        for path in (socket_path, pidfile):
            path.unlink(missing_ok=True)


def our_objects(url: str) -> list[str]:
    """Containers, networks and volumes labelled ours on the engine at `url`."""
    found = []
    for listing in (["ps", "-aq"], ["network", "ls", "-q"], ["volume", "ls", "-q"]):
        output = subprocess.run(
            ["docker", "--host", url, *listing, "--filter", "label=io.kong-plugin-matrix"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        found += output.split()
    return found


def _run(command: list[str]) -> None:
    completed = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    if completed.returncode != 0:
        raise SecondEngineError(f"`{' '.join(command)}` failed: {completed.stderr.strip()}")


def _wait_until_answers(url: str, daemon: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            break
        answer = subprocess.run(
            ["docker", "--host", url, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            timeout=15,
            check=False,
        )
        if answer.returncode == 0:
            return
        time.sleep(0.5)
    tail = log.read_text(errors="replace").splitlines()[-10:]
    raise SecondEngineError(f"the second dockerd did not answer at {url}: " + " / ".join(tail))


def _stop(daemon: subprocess.Popen[bytes]) -> None:
    """SIGTERM to dockerd alone (it stops its own containerd and unmounts), then SIGKILL to
    whatever of its process group is left (all of it, if dockerd took too long)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(daemon.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        daemon.wait(timeout=STOP_TIMEOUT_S)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(daemon.pid, signal.SIGKILL)
    daemon.wait()


def _unmount_under(*roots: Path) -> None:
    """Whatever is still mounted below `roots` (a dockerd killed before it unmounted)."""
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    points = [line.split()[1] for line in mounts if len(line.split()) > 1]
    for point in sorted(points, key=len, reverse=True):
        if any(point.startswith(f"{root}/") or point == str(root) for root in roots):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
