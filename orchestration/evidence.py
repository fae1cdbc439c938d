"""Proof that the plugin ran: no verdict without it, and what to tell a user when it is missing.

A New() count of 0 per request means "stable" only if the plugin ran on the load's requests: a
plugin that Kong never called (a priority below whatever answers the request, a phase Kong does
not run for a plugin on a route, a name Kong does not know, a server that died) starts no
instance either. So every row says on how many of the load's requests the plugin ran (`ran on`:
kpm-tap's count of the busiest phase's events, which sees every call into the plugin server, or,
for the built-ins, the responses that carried their header) and a verdict needs:
- the plugin to have run on every request of the load (`partial` otherwise), and
- at least one instance start in the log (`did-not-run` otherwise, as when it ran on none).
Both are rows of the error class: exit 1, a JUnit failure, no answer for compare and bisect.

The reason a user can act on comes from the version folder: plugin.json (what Kong learned from
the plugin's dump, written by the world as the stack comes up) and the first sign in kong.log that
the plugin server crashed or was refused.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestration.collect import NGINX_CONTEXT, NGINX_HEAD, line_blocks
from orchestration.errors import ImageUnavailable, KongDied, ReadyTimeout
from orchestration.load import failure_kinds
from orchestration.report import Verdict

PLUGIN_FACTS = "plugin.json"
KONG_LOG = "kong.log"
# The phases Kong runs for an external plugin configured on a route: rewrite runs for global
# plugins only, certificate and preread are not HTTP request phases, and no PDK (go-pdk, Python,
# JavaScript) has header_filter or body_filter (Kong's plugin server could not call them there).
ROUTE_PHASES = frozenset({"access", "response", "log"})

DID_NOT_RUN: Verdict = "did-not-run"
PARTIAL: Verdict = "partial"


def write_plugin_facts(version_dir: Path, facts: dict[str, Any]) -> None:
    """plugin.json: what Kong learned from the plugin's dump, for the row's reasons and users."""
    path = version_dir / PLUGIN_FACTS
    path.write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")


def read_plugin_facts(version_dir: Path) -> dict[str, Any] | None:
    """plugin.json's facts, or None when the run never got as far as the dump."""
    try:
        facts = json.loads((version_dir / PLUGIN_FACTS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return facts if isinstance(facts, dict) else None


def missing_proof(
    requests: int, ran_on: int | None, instances: int | None
) -> tuple[Verdict, str] | None:
    """(verdict, why) when the load does not show the plugin running on every request with at
    least one instance; None when it does, or when nothing counted it (`ran_on` None: a row of a
    results folder from before `ran on`)."""
    if ran_on is None:
        return None
    if ran_on == 0:
        return DID_NOT_RUN, f"the plugin ran on none of the {requests} requests"
    if ran_on < requests:
        return PARTIAL, f"the plugin ran on {ran_on} of the {requests} requests only"
    if not instances:
        return DID_NOT_RUN, (
            f"the plugin ran on {ran_on} of {requests} requests but no instance start was seen "
            "in Kong's log"
        )
    return None


@dataclass(frozen=True)
class Folder:
    """A version folder's evidence, read when a row asks for it (rows.FolderEvidence)."""

    path: Path

    def hints(self, said: str) -> list[str]:
        return hints(self.path, said)

    def plugin_answers(self) -> str | None:
        return plugin_answers(self.path)

    def failure_causes(self) -> str | None:
        return failure_causes(self.path)


def failure_text(error: BaseException, version_dir: Path) -> str:
    """A failed job's one-line error; a failed build's own output is written to build.log in
    its folder, and the line points at it and at the full kong.log when there is one."""
    text = str(error) or type(error).__name__
    if isinstance(error, (ReadyTimeout, KongDied)) and error.last_log_lines:
        lines = [line.strip() for line in error.last_log_lines if line.strip()]
        text += " | last log lines: " + " / ".join(lines)
    if isinstance(error, ImageUnavailable) and error.build_output:
        build_log = version_dir / "build.log"
        build_log.write_text("\n".join(error.build_output) + "\n", encoding="utf-8")
        text += f" | build output: {build_log}"
    if (version_dir / KONG_LOG).is_file():
        text += f" | full log: {version_dir / KONG_LOG}"
    return text


def hints(version_dir: Path, said: str = "") -> list[str]:
    """What the version folder says about why the plugin did not run: its dump's phases and
    priority as Kong read them, and the first crash or refusal of its server in kong.log (left
    out when `said`, the error so far, quotes it already)."""
    found: list[str] = []
    facts = read_plugin_facts(version_dir)
    if facts is None:
        found.append("its dump was never read (see the row's error and build.log)")
    else:
        found.append(_phases_hint(facts))
    crash = first_server_trouble(version_dir / KONG_LOG, _server_names(facts))
    if crash and crash not in said:
        found.append(f"Kong's log says: {crash}")
    return found


def _phases_hint(facts: dict[str, Any]) -> str:
    phases = [str(phase) for phase in facts.get("phases") or ()]
    name = facts.get("plugin_name") or "?"
    about = f"{name}: priority {facts.get('priority')}, phases {', '.join(phases) or 'none'}"
    if not ROUTE_PHASES.intersection(phases):
        return (
            f"{about}; Kong runs none of these for a plugin on a route (rewrite runs for global "
            "plugins only; no PDK has header_filter or body_filter): give it an Access, "
            "Response or Log handler"
        )
    return about


def _server_names(facts: dict[str, Any] | None) -> tuple[str, ...]:
    if facts is None:
        return ()
    names = {str(facts.get(key) or "") for key in ("server_name", "plugin_name")}
    return tuple(sorted(name.lower() for name in names if name))


# A plugin server's own crash (Go's panic or fatal error, Python's traceback, Node's uncaught
# error), kpm-tap's word that the server exited, Kong's `terminated` process line, or Kong
# refusing the plugin (not enabled, no such plugin, a schema it cannot load).
_TROUBLE = re.compile(
    rb"(?:\] (?:\d{4}/\d\d/\d\d \d\d:\d\d:\d\d(?:\.\d+)? )?"
    rb"(?:panic: |fatal error: |Traceback \(most recent call last\)|Uncaught |[A-Za-z]*Error: )"
    rb"|kpm-tap: (?:server exited|failed) "
    rb"|external pluginserver '[^']{1,100}' terminated: "
    rb"|plugin '[^']{1,100}' (?:not enabled|not found|is not installed)"
    rb"|no plugin named '?[^'\s]{1,100}'?)[^\n]{0,300}",
)
_CONTEXT = re.compile(NGINX_CONTEXT.encode())
_HEAD = re.compile(NGINX_HEAD.encode())


def first_server_trouble(log: Path, server_names: tuple[str, ...]) -> str | None:
    """The first line of `log` where the plugin server crashed or Kong refused the plugin, with
    nginx's head cut off, or None. A relayed line (`[name:PID] ...`) must be one of
    `server_names`' (none given: any server's)."""
    try:
        with log.open("rb") as stream:
            for block in line_blocks(stream):
                for match in _TROUBLE.finditer(block):
                    line = _whole_line(block, match.start())
                    # missing instances are the churn itself, not a crash
                    if b"no plugin instance" not in line and _belongs_to(line, server_names):
                        quoted = _CONTEXT.sub(b"", _HEAD.sub(b"", line))
                        return quoted.decode("utf-8", "replace").strip()
    except OSError:
        return None
    return None


def _whole_line(block: bytes, at: int) -> bytes:
    start = block.rfind(b"\n", 0, at) + 1
    end = block.find(b"\n", at)
    return block[start : end if end >= 0 else len(block)][:400]


_RELAY_TAG = re.compile(rb"\[([A-Za-z0-9][A-Za-z0-9_.-]*):\d{1,10}\] ")


def _belongs_to(line: bytes, server_names: tuple[str, ...]) -> bool:
    relay = _RELAY_TAG.search(line)
    if relay is None or not server_names:
        return True
    return relay.group(1).decode().lower() in server_names


_ANSWER_ENTRY = re.compile(r" \[(\d{3})\]\Z")  # locustfiles/hello.py answer_name: `PATH [401]`


def plugin_answers(version_dir: Path) -> str | None:
    """The plugin's own non-2xx answers over the folder's loads (`401 x1000`), from the
    entries Locust's stats give them; None when it answered 2xx only."""
    statuses: dict[str, int] = {}
    for stats in sorted(version_dir.rglob("locust_stats*.json")):
        try:
            entries = json.loads(stats.read_text(encoding="utf-8"))
            named = [
                (str(e["name"]), int(e["num_requests"]) - int(e["num_failures"])) for e in entries
            ]
        except (OSError, ValueError, TypeError, KeyError):
            continue
        for name, served in named:
            if (status := _ANSWER_ENTRY.search(name)) and served:
                statuses[status.group(1)] = statuses.get(status.group(1), 0) + served
    return ", ".join(f"{status} x{count}" for status, count in sorted(statuses.items())) or None


def failure_causes(version_dir: Path) -> str | None:
    """What the folder's failed requests were (`5xx x3, transport x2`), from Locust's failures
    files: a 5xx is Kong's or the upstream's answer, anything else a transport error or time-out
    (the built-ins' `want 2xx` and missing-header failures are named as such)."""
    causes: dict[str, int] = {}
    for folder in sorted({path.parent for path in version_dir.rglob("locust_failures.csv")}):
        for message, count in failure_kinds(folder).items():
            cause = _cause(message)
            causes[cause] = causes.get(cause, 0) + count
    return (
        ", ".join(f"{cause} x{count}" for cause, count in sorted(causes.items()) if count) or None
    )


# Locust records the locustfile's failure as `CatchResponseError('status 500: ...')`.
_STATUS_FAILURE = re.compile(r"(?:^|\(['\"])status (\d)\d\d\b")


def _cause(message: str) -> str:
    if status := _STATUS_FAILURE.search(message):
        return "5xx" if status.group(1) == "5" else "not 2xx"
    if "header: the plugin did not run" in message:
        return "no plugin header"
    if "timed out" in message.lower() or "timeout" in message.lower():
        return "time-out"
    return "transport"
