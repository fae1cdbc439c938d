"""Headless Chromium driven over the DevTools protocol on a pipe: no extra package, no port.

`--remote-debugging-pipe` makes Chromium read protocol commands from its fd 3 and write
answers and events to its fd 4, each message a JSON text ended by a NUL byte. That is all a
test needs to load a page, hear every console message, exception and network request, ask the
DOM questions and take a screenshot.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
ANSWER_TIMEOUT_S = 30.0
# Nothing may leave the machine, whatever a page asks for: no DNS, no background services.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--remote-debugging-pipe",
)

Message = dict[str, Any]


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


class ChromiumError(RuntimeError):
    pass


class Chromium:
    """One headless browser; `open_page` gives a session with events recorded."""

    def __init__(self, executable: str, profile: Path) -> None:
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()

        def on_fds_3_and_4() -> None:  # runs in the child, before exec
            # Out of the way first, so placing one cannot clobber the other.
            reading = fcntl.fcntl(to_browser_read, fcntl.F_DUPFD, 10)
            writing = fcntl.fcntl(from_browser_write, fcntl.F_DUPFD, 10)
            os.dup2(reading, 3)
            os.dup2(writing, 4)

        self._process = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=(3, 4),
            preexec_fn=on_fds_3_and_4,  # noqa: PLW1509 - a test helper, single-threaded here
        )
        os.close(to_browser_read)
        os.close(from_browser_write)
        self.stderr_lines: list[str] = []
        self.events: list[Message] = []
        self._answers: dict[int, Message] = {}
        self._arrived = threading.Condition()
        self._next_id = 0
        threading.Thread(target=self._read_messages, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_messages(self) -> None:
        buffer = b""
        while chunk := os.read(self._from_browser, 65536):
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            with self._arrived:
                for raw in messages:
                    message = json.loads(raw)
                    if "id" in message:
                        self._answers[message["id"]] = message
                    else:
                        self.events.append(message)
                self._arrived.notify_all()

    def _read_stderr(self) -> None:
        assert self._process.stderr is not None
        for line in self._process.stderr:
            self.stderr_lines.append(line.decode(errors="replace").rstrip())

    def call(self, method: str, session: str | None = None, **params: Any) -> Message:
        """Send a command and wait for its answer; a protocol error raises."""
        with self._arrived:
            self._next_id += 1
            number = self._next_id
        message: Message = {"id": number, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        with self._arrived:
            if not self._arrived.wait_for(lambda: number in self._answers, ANSWER_TIMEOUT_S):
                raise ChromiumError(f"no answer to {method} in {ANSWER_TIMEOUT_S}s")
            answer = self._answers.pop(number)
        if "error" in answer:
            raise ChromiumError(f"{method}: {answer['error']}")
        result: Message = answer.get("result", {})
        return result

    def wait_for_event(self, matches: Callable[[Message], bool], timeout: float) -> Message:
        with self._arrived:
            found: list[Message] = []

            def seen() -> bool:
                found[:] = [event for event in self.events if matches(event)]
                return bool(found)

            if not self._arrived.wait_for(seen, timeout):
                raise ChromiumError(f"the expected event did not come within {timeout}s")
            return found[0]

    def open_page(self, url: str, width: int = 1280, height: int = 2000) -> Page:
        """A new tab with console, log, network and page events on, loaded with `url`."""
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            self.call(f"{domain}.enable", session)
        self.call(
            "Emulation.setDeviceMetricsOverride",
            session,
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        page = Page(self, session)
        self.call("Page.navigate", session, url=url)
        self.wait_for_event(
            lambda e: e.get("sessionId") == session and e["method"] == "Page.loadEventFired", 30
        )
        time.sleep(0.3)  # late console messages and requests arrive after load
        return page

    def close(self) -> None:
        with contextlib.suppress(ChromiumError, OSError):
            self.call("Browser.close")
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class Page:
    def __init__(self, browser: Chromium, session: str) -> None:
        self._browser = browser
        self.session = session

    def _events(self, method: str) -> list[Message]:
        return [
            event
            for event in self._browser.events
            if event.get("sessionId") == self.session and event["method"] == method
        ]

    def console_errors(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions, and browser log errors (a blocked
        request, a Content-Security-Policy violation)."""
        found = [
            " ".join(
                str(arg.get("value", arg.get("description", ""))) for arg in e["params"]["args"]
            )
            for e in self._events("Runtime.consoleAPICalled")
            if e["params"]["type"] in ("error", "warning", "assert")
        ]
        found += [
            e["params"]["exceptionDetails"].get("text", "exception")
            for e in self._events("Runtime.exceptionThrown")
        ]
        found += [
            e["params"]["entry"]["text"]
            for e in self._events("Log.entryAdded")
            if e["params"]["entry"]["level"] in ("error", "warning")
        ]
        return found

    def requested_urls(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self._events("Network.requestWillBeSent")]

    def evaluate(self, expression: str) -> Any:
        result = self._browser.call(
            "Runtime.evaluate", self.session, expression=expression, returnByValue=True
        )
        if "exceptionDetails" in result:
            raise ChromiumError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> None:
        data = self._browser.call("Page.captureScreenshot", self.session, format="png")["data"]
        path.write_bytes(base64.b64decode(data))
