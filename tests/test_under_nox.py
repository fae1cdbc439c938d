"""Ctrl-C through nox, as a person types it: orchestration/under_nox.py and the harness sessions.

The Docker tests run `nox -s ...` in a pseudo-terminal of its own, as a terminal runs a
foreground job, and type Ctrl-C into it: the terminal's line discipline, not the test, turns
that into SIGINT for the whole foreground process group (nox and everything it started in its
group). Nox's own reaction (0.3 s, then SIGTERM, then SIGKILL) is what these tests guard against.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_reliability import (
    REPO,
    _cli_env,
    _locusts_writing_to,
    _remove_leftovers,
    assert_nothing_left,
)

from orchestration import under_nox
from orchestration.load import free_loopback_port

CTRL_C = b"\x03"
SESSION_TIMEOUT_S = 180.0


class Terminal:
    """`args` as the foreground job of a pseudo-terminal; what it prints is read as it comes."""

    def __init__(self, args: list[str], cwd: Path, term: str = "dumb", columns: int = 0) -> None:
        self._master, replica = os.openpty()
        if columns:  # else the terminal says 0x0, and programs assume 80 columns
            fcntl.ioctl(replica, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))

        def become_the_terminals_job() -> None:
            os.setsid()  # a session of its own, whose controlling terminal is the replica
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.process = subprocess.Popen(
            args,
            cwd=cwd,
            env={**_cli_env(), "NOX_DEFAULT_VENV_BACKEND": "none", "TERM": term},
            stdin=replica,
            stdout=replica,
            stderr=replica,
            preexec_fn=become_the_terminals_job,  # noqa: PLW1509 (no threads touch this child)
        )
        os.close(replica)
        self._chunks: list[bytes] = []
        self._open = True
        self._reading = threading.Event()
        self._reading.set()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while self._reading.is_set():
            if not select.select([self._master], [], [], 0.1)[0]:
                continue
            try:
                chunk = os.read(self._master, 4096)
            except OSError:  # EIO: every process holding the replica has gone
                return
            if not chunk:
                return
            self._chunks.append(chunk)

    @property
    def screen(self) -> str:
        return b"".join(self._chunks).decode(errors="replace").replace("\r\n", "\n")

    def type_ctrl_c(self) -> None:
        os.write(self._master, CTRL_C)

    def wait_for(self, text: str, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.screen:
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"never saw {text!r}; exit {self.process.poll()}:\n{self.screen}")
            time.sleep(0.05)

    def finish(self, timeout_s: float = SESSION_TIMEOUT_S) -> int:
        code = self.process.wait(timeout=timeout_s)
        self._reader.join(timeout=10)
        return code

    def hang_up(self) -> None:
        """Close the terminal, as closing its window does: the kernel sends SIGHUP to its
        foreground job, and what the job writes to it from then on fails (EIO)."""
        self._reading.clear()
        self._reader.join(timeout=10)  # a read in progress would keep the terminal open
        os.close(self._master)
        self._open = False

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        if self._open:
            os.close(self._master)


@pytest.fixture
def results(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "results"
    yield folder
    _remove_leftovers(folder)  # only does anything when a test already failed


def nox_session(results: Path, session: str, *posargs: str) -> list[str]:
    noxfile = str(REPO / "noxfile.py")
    return [sys.executable, "-m", "nox", "-f", noxfile, "-s", session, "--", *posargs,
            "--results", str(results)]  # fmt: skip


def _run_folder(results: Path) -> Path:
    (folder,) = [p for p in results.iterdir() if p.is_dir() and not p.is_symlink()]
    return folder


def assert_interrupted_and_clean(terminal: Terminal, results: Path, code: int) -> dict[str, dict]:  # type: ignore[type-arg]
    """Exit 130, every row `interrupted`, the SIMULATED banner, nothing of ours left."""
    assert code == 130, terminal.screen
    assert "Session" in terminal.screen and "interrupted" in terminal.screen
    folder = _run_folder(results)
    summary = (folder / "summary.md").read_text()
    assert "**SIMULATED**" in summary
    rows = {
        row["version"]: row for row in json.loads((folder / "results.json").read_text())["versions"]
    }
    assert rows and all(row["status"] == "interrupted" for row in rows.values()), rows
    assert all(f"| {version} " in summary for version in rows)
    assert "interrupted by SIGINT (Ctrl-C)" in terminal.screen
    assert_nothing_left(results)
    return rows


# --- without Docker ---------------------------------------------------------------------------


def test_nox_runs_the_harness_through_this_module() -> None:
    command = under_nox.child_command("/py", "orchestration", "run", "3.4.1.0")
    assert command == ["/py", "-m", "orchestration.under_nox", "orchestration", "run", "3.4.1.0"]


def _sleeper(tmp_path: Path) -> subprocess.Popen[bytes]:
    """A child like the one nox starts: it runs this module, which runs a module that waits."""
    (tmp_path / "waiter.py").write_text(
        "import signal, sys, time\n"
        "caught = []\n"
        "signal.signal(signal.SIGTERM, lambda n, f: caught.append(n))\n"
        "signal.signal(signal.SIGINT, lambda n, f: caught.append(n))\n"
        "print('ready', flush=True)\n"
        "while not caught:\n    time.sleep(0.01)\n"
        "time.sleep(1.0)  # a teardown that takes longer than nox's 0.5 s\n"
        "sys.exit(128 + caught[0])\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}
    return subprocess.Popen(
        under_nox.child_command(sys.executable, "waiter"),
        env=env,
        stdout=subprocess.PIPE,
    )


@pytest.mark.parametrize("sent", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_nox_reaches_the_child_once_and_nox_waits(
    tmp_path: Path, sent: signal.Signals
) -> None:
    child = _sleeper(tmp_path)
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"ready\n"
        assert os.getsid(child.pid) == child.pid  # it left our session: no terminal reaches it
        with under_nox.signals_passed_on() as received:
            signal.raise_signal(sent)  # as nox's process would receive it; nothing raises here
            code = child.wait(timeout=10)
        assert received.signals == [sent]
        assert code == 128 + sent  # the child acted on it once, and was given its time
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    finally:
        child.kill()
        child.wait()


def test_the_child_ignores_a_signal_that_comes_after_it_finished(tmp_path: Path) -> None:
    (tmp_path / "done.py").write_text("import sys\nsys.exit(3)\n")
    script = (
        "import signal, sys\n"
        "from orchestration import under_nox\n"
        "try:\n"
        "    under_nox.main(['done'])\n"
        "except SystemExit as stop:\n"
        "    print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN, stop.code)\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}
    shown = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert shown.stdout.split() == ["True", "3"]


# --- through nox, in a terminal, with Docker --------------------------------------------------


@pytest.mark.docker
def test_ctrl_c_in_a_version_session_keeps_the_results_and_leaks_nothing(results: Path) -> None:
    terminal = Terminal(
        nox_session(results, "kong-3.4.1.0", "--sim", "--requests", "500000"), cwd=REPO
    )
    try:
        terminal.wait_for("3.4.1.0: sending 500000 requests")
        terminal.type_ctrl_c()
        code = terminal.finish()
    finally:
        terminal.close()
    assert_interrupted_and_clean(terminal, results, code)
    assert "| version " in terminal.screen  # the table is printed on the way out


@pytest.mark.docker
@pytest.mark.parametrize("through_nox", [False, True], ids=["cli", "nox"])
def test_closing_the_terminal_tears_down_and_keeps_the_row(
    results: Path, through_nox: bool
) -> None:
    """Before SIGHUP was a stop signal, closing the window killed the CLI mid-load (its stack
    left up, no row); under nox, the CLI ran on and its first print to the gone terminal (EIO)
    made an error of the run."""
    args = ["run", "3.4.1.0", "--sim", "--requests", "500000", "--results", str(results)]
    if through_nox:
        command = nox_session(results, "kong-3.4.1.0", "--sim", "--requests", "500000")
    else:
        command = [sys.executable, "-m", "orchestration", *args]
    terminal = Terminal(command, cwd=REPO)
    try:
        terminal.wait_for("3.4.1.0: sending 500000 requests")
        terminal.hang_up()
        code = terminal.finish()
    finally:
        terminal.close()
    assert code == 129
    (row,) = json.loads((_run_folder(results) / "results.json").read_text())["versions"]
    assert (row["status"], row["error"]) == (
        "interrupted",
        "interrupted by SIGHUP (the terminal closed); its stack was torn down",
    )
    assert_nothing_left(results)


@pytest.mark.docker
def test_a_second_ctrl_c_during_teardown_changes_nothing(results: Path) -> None:
    terminal = Terminal(
        nox_session(results, "kong-3.4.1.0", "--sim", "--requests", "500000"), cwd=REPO
    )
    try:
        terminal.wait_for("3.4.1.0: sending 500000 requests")
        terminal.type_ctrl_c()
        terminal.wait_for("tearing down")
        terminal.type_ctrl_c()  # impatient
        code = terminal.finish()
    finally:
        terminal.close()
    assert_interrupted_and_clean(terminal, results, code)


@pytest.mark.docker
def test_ctrl_c_in_a_parallel_matrix_session(results: Path) -> None:
    terminal = Terminal(
        nox_session(
            results, "matrix", "--sim", "--parallel", "2", "3.4.0.0", "3.4.1.0",
            "--requests", "500000", "--load-timeout", "300",
        ),
        cwd=REPO,
    )  # fmt: skip
    try:
        terminal.wait_for("3.4.0.0: sending")
        terminal.wait_for("3.4.1.0: sending")
        deadline = time.monotonic() + 60
        while len(_locusts_writing_to(results)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        terminal.type_ctrl_c()
        code = terminal.finish()
    finally:
        terminal.close()
    rows = assert_interrupted_and_clean(terminal, results, code)
    assert set(rows) == {"3.4.0.0", "3.4.1.0"}


def _swarm(ui_url: str, requests: int) -> None:
    import urllib.parse
    import urllib.request

    fields = {"user_count": "50", "spawn_rate": "1000", "requests": str(requests)}
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(
                f"{ui_url}swarm", data=urllib.parse.urlencode(fields).encode(), timeout=5
            ) as answer:
                assert json.loads(answer.read())["success"] is True
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _ui_state(ui_url: str) -> dict[str, object]:
    import urllib.request

    with urllib.request.urlopen(f"{ui_url}stats/requests", timeout=5) as answer:
        state: dict[str, object] = json.loads(answer.read())
        return state


@pytest.mark.docker
def test_ctrl_c_ends_a_web_ui_session_with_its_count_written(results: Path) -> None:
    port = free_loopback_port()
    ui_url = f"http://127.0.0.1:{port}/"
    terminal = Terminal(
        nox_session(results, "ui", "3.4.1.0", "--sim", "--web-port", str(port)), cwd=REPO
    )
    try:
        terminal.wait_for("Locust web UI")
        _swarm(ui_url, 2000)
        deadline = time.monotonic() + 90
        while _ui_state(ui_url)["state"] != "stopped" and time.monotonic() < deadline:
            time.sleep(0.2)
        terminal.type_ctrl_c()
        code = terminal.finish()
    finally:
        terminal.close()
    rows = assert_interrupted_and_clean(terminal, results, code)
    row = rows["3.4.1.0"]
    assert row["requests"] == 2000 and row["failures"] == 0
    assert row["verdict"] == "churn" and row["new_calls_during_load"] > 1000
    assert "| 3.4.1.0 " in terminal.screen  # the table, printed
