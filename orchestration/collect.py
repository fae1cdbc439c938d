"""Stream a Kong error log and count the signals of external-plugin instance churn.

Only lines about one plugin server (`plugin`, "example-plugin" by default) are counted; a log may
hold several. Messages are matched by their text, never by `file.lua:NNN` (file names and line
numbers differ between releases), anywhere in a line, so Compose prefixes (`kong-1  | `) and
`docker logs --timestamps` prefixes do not matter.

| signal | the message (NAME is the plugin server) |
| --- | --- |
| `new_calls_total` | `New() has been called N times`: see "New() count" below |
| `counter_lines` | lines with that message belonging to NAME |
| `instance_starts` | `[NAME] started plugin server: seq S, ...` (Kong, debug) |
| `instance_closes` | `[NAME:PID] closed instance N` (go-pdk, relayed by Kong) |
| `no_instance_errors` | `[NAME:PID] no plugin instance N` (go-pdk, relayed by Kong) |
| `rpc_closed_errors` | `[NAME] closed` on an `[error]` line (its `[warn]` twin is not counted) |
| `plugin_server_starts` | `Starting NAME` (Kong spawns the plugin server) |
| `plugin_server_exits` | `external pluginserver 'NAME' terminated: ...` |

The counter message's prefix is unconfirmed (it reaches the log through the PDK, so Kong's
namespaced log should write `[NAME] New() has been called N times`). A counter line is NAME's
unless the tag right before the message (`[tag] `, or `[tag] YYYY/MM/DD HH:MM:SS ` for a relayed
line) names another plugin; an untagged line, or one tagged `[kong]`/`[lua]`, counts as NAME's.
Go-pdk's `no plugin instance` is counted only as the relayed server line, so the same event is
never counted twice if Kong also logs the error it got back.

New() count. The counter lives in the plugin-server process: it restarts at 1 when the server
restarts, and lines from several nginx workers can arrive slightly out of order. So the log is cut
into server lifetimes, each contributes the highest value seen in it, and `new_calls_total` is
their sum. A lifetime ends at a `Starting NAME` line, or at the first relay line `[NAME:PID]` from
a PID not seen before when no `Starting` line came since the last PID (a log that starts midway).
A late line from an older PID opens nothing.

Missing restart line (e.g. the value drops from 900 to 2 with no `Starting` or new PID): a value
at least `SHARP_DROP_MIN` below the lifetime's highest and at most a quarter of it is a "sharp
drop". `RESTART_CONFIRM_LINES` sharp drops in a row mean the server restarted unseen: the old
lifetime keeps its highest value and the low run starts a new one. Any ordinary value in between
shows the low ones were stragglers, and they are ignored (they are below the highest value
anyway). Out-of-order lines at 50 concurrent requests lag by a few dozen, far from both limits.
What this misses: an unseen restart while the old highest value is below about 270, or a run of
fewer than three low lines right before the log ends or a restart line (those low values are then
dropped, or, before a new PID, taken as the new server's first values); both undercount by at
most a few hundred calls.

Input. Files are read in binary chunks, never decoded, so invalid UTF-8 and binary garbage cannot
fail. A line longer than `MAX_LINE_BYTES` is matched on its first `MAX_LINE_BYTES` and the rest is
skipped (still one line), so memory stays bounded however long a line is. A last line without a
newline counts as a line; CRLF endings are accepted.

Speed. Scanning is done per block of whole lines with C-level `bytes.count` and regex scans whose
patterns start with a literal; Python only looks at counter values and the rare restart events.
Every pattern stays within one line (none crosses `\\n`), so a block gives the same counts as its
lines fed one at a time (the tests check this).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import BinaryIO

from orchestration.errors import UsageError

DEFAULT_PLUGIN = "example-plugin"
MAX_LINE_BYTES = 4 * 1024 * 1024
READ_CHUNK_BYTES = 64 * 1024  # small enough that the several scans of one chunk stay in CPU cache
SHARP_DROP_MIN = 200
RESTART_CONFIRM_LINES = 3

_PLUGIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_COUNTER_MESSAGE = b"New() has been called "
_GO_LOG_TIME = rb"(?:\d{4}/\d\d/\d\d \d\d:\d\d:\d\d(?:\.\d+)? )?"
_COUNTER = re.compile(rb"New\(\) has been called (\d{1,18}) times")
_TAG_BEFORE_MESSAGE = re.compile(rb"\[([^\[\]\s]{1,200})\] " + _GO_LOG_TIME + rb"\Z")
_TAG_LOOKBACK_BYTES = 256
_TAGS_NAMING_NO_PLUGIN = frozenset(
    {b"kong", b"lua", b"debug", b"info", b"notice", b"warn", b"error", b"crit", b"alert", b"emerg"}
)


@dataclass(frozen=True)
class Signals:
    """What one Kong log says about one plugin server's instances."""

    new_calls_total: int
    counter_lines: int
    instance_starts: int
    instance_closes: int
    no_instance_errors: int
    rpc_closed_errors: int
    plugin_server_starts: int
    plugin_server_exits: int
    lines: int

    def to_dict(self) -> dict[str, int]:
        """The counts by field name, in declaration order (for JSON and tables)."""
        return {field.name: getattr(self, field.name) for field in fields(self)}


class _PluginPatterns:
    """The byte patterns that name one plugin server."""

    def __init__(self, plugin: str) -> None:
        if not _PLUGIN_NAME.fullmatch(plugin):
            raise UsageError(
                f"invalid plugin server name {plugin!r}: use the plugin's name as Kong knows it "
                "(letters, digits, '-', '_' and '.'), e.g. example-plugin"
            )
        name = plugin.encode()
        quoted = re.escape(name)
        self.name = name
        self.namespace_tag = b"[" + name + b"] "
        self.counter_in_namespace = re.compile(
            re.escape(self.namespace_tag) + rb"New\(\) has been called (\d{1,18}) times"
        )
        self.own_tag = re.compile(quoted + rb"(?::\d{1,10})?")  # [NAME] or [NAME:PID]
        self.relay_text = b"[" + name + b":"
        self.instance_start = b"[" + name + b"] started plugin server: seq "
        # groups: the server's PID, then "c" for a closed instance or "n" for a missing one
        relay_kinds = rb"(?:(c)losed instance \d|(n)o plugin instance \d)?"
        self.relay = re.compile(rb"\[" + quoted + rb":(\d{1,10})\] " + _GO_LOG_TIME + relay_kinds)
        self.rpc_closed_error = re.compile(
            rb"\[error\] [^\n]*?\[" + quoted + rb"\] closed(?=,|[ \t\r]*$)", re.MULTILINE
        )
        self.server_start_text = b"Starting " + name
        self.server_start = re.compile(rb"Starting " + quoted + rb"(?=[,\s]|$)", re.MULTILINE)
        self.server_exit = b"external pluginserver '" + name + b"' terminated: "


class _NewCallLifetimes:
    """Sums, over plugin-server lifetimes, the highest `New()` counter value of each."""

    def __init__(self) -> None:
        self.finished_total = 0
        self.highest = 0
        self.low_run_length = 0  # consecutive sharp drops not yet taken as a restart
        self.low_run_highest = 0
        self.latest: int | None = None  # the value last observed, whatever it meant

    @property
    def total(self) -> int:
        return self.finished_total + self.highest

    def observe(self, value: int) -> None:
        self.latest = value
        if not self._is_sharp_drop(value):
            self.low_run_length = 0  # the low values were stragglers
            self.highest = max(self.highest, value)
            return
        self.low_run_highest = max(self.low_run_highest, value) if self.low_run_length else value
        self.low_run_length += 1
        if self.low_run_length >= RESTART_CONFIRM_LINES:
            self._restart_with(self.low_run_highest)

    def server_started(self) -> None:
        """Kong logged `Starting NAME`: any low run was a lifetime of its own, then a new one."""
        if self.low_run_length:
            self._restart_with(self.low_run_highest)
        self._restart_with(0)

    def new_server_seen(self) -> None:
        """A new PID speaks without a `Starting` line: a low run just before is its start."""
        self._restart_with(self.low_run_highest if self.low_run_length else 0)

    def _is_sharp_drop(self, value: int) -> bool:
        return self.highest - value >= SHARP_DROP_MIN and value * 4 <= self.highest

    def _restart_with(self, first_highest: int) -> None:
        self.finished_total += self.highest
        self.highest = first_highest
        self.low_run_length = 0


class Collector:
    """Counts the signals incrementally: feed lines (or blocks of whole lines), then ask."""

    def __init__(self, plugin: str = DEFAULT_PLUGIN) -> None:
        self._patterns = _PluginPatterns(plugin)
        self._lifetimes = _NewCallLifetimes()
        self._server_pid: bytes | None = None  # None: the next PID belongs to the current lifetime
        self._seen_pids: set[bytes] = set()
        self._counts: Counter[str] = Counter()

    def feed(self, line: str | bytes) -> None:
        """Count one line (with or without its line ending)."""
        if isinstance(line, str):
            line = line.encode("utf-8", errors="replace")
        if len(line) > MAX_LINE_BYTES:
            line = line[:MAX_LINE_BYTES]
        self._counts["lines"] += 1
        self._scan(line)

    def feed_block(self, block: bytes) -> None:
        """Count a block of whole lines, each ending in a newline except perhaps the last."""
        if not block:
            return
        self._counts["lines"] += block.count(b"\n") + (not block.endswith(b"\n"))
        self._scan(block)

    def latest_counter(self) -> int | None:
        """The New() count on the last counter line seen (None before any): once the log has
        caught up with a request the plugin answered last, the count its header reported."""
        return self._lifetimes.latest

    def signals(self) -> Signals:
        """The counts so far (feeding may continue afterwards)."""
        counts = self._counts
        return Signals(
            new_calls_total=self._lifetimes.total,
            counter_lines=counts["counter_lines"],
            instance_starts=counts["instance_starts"],
            instance_closes=counts["instance_closes"],
            no_instance_errors=counts["no_instance_errors"],
            rpc_closed_errors=counts["rpc_closed_errors"],
            plugin_server_starts=counts["plugin_server_starts"],
            plugin_server_exits=counts["plugin_server_exits"],
            lines=counts["lines"],
        )

    def _scan(self, buf: bytes) -> None:
        """Count one block; only a block where a server (re)starts is replayed event by event."""
        patterns, counts = self._patterns, self._counts
        counts["instance_starts"] += buf.count(patterns.instance_start)
        counts["plugin_server_exits"] += buf.count(patterns.server_exit)
        if buf.find(b"[error] ") >= 0:
            counts["rpc_closed_errors"] += len(patterns.rpc_closed_error.findall(buf))
        relay_pids = self._count_relay_lines(buf)
        server_starts = self._server_starts(buf)
        counts["plugin_server_starts"] += len(server_starts)
        if server_starts or not relay_pids <= {self._server_pid}:
            self._replay_in_order(buf, server_starts)
        else:
            for value in self._counter_values(buf):
                self._lifetimes.observe(value)

    def _count_relay_lines(self, buf: bytes) -> set[bytes]:
        """Count go-pdk's relayed messages; return the server PIDs that spoke."""
        if buf.find(self._patterns.relay_text) < 0:
            return set()
        kinds = Counter(self._patterns.relay.findall(buf))
        for (_, closed, missing), number in kinds.items():
            self._counts["instance_closes"] += number if closed else 0
            self._counts["no_instance_errors"] += number if missing else 0
        return {pid for pid, _, _ in kinds}

    def _server_starts(self, buf: bytes) -> list[int]:
        """Positions of `Starting NAME` lines."""
        if buf.find(self._patterns.server_start_text) < 0:
            return []
        return [match.start() for match in self._patterns.server_start.finditer(buf)]

    def _counter_values(self, buf: bytes) -> list[int]:
        """This plugin's counter values in log order; also counts the counter lines."""
        total = buf.count(_COUNTER_MESSAGE)
        if not total:
            return []
        values = self._patterns.counter_in_namespace.findall(buf)
        if len(values) != total:  # some lines are untagged, relayed, another plugin's or bad
            return [value for _, value in self._counter_events(buf)]
        self._counts["counter_lines"] += len(values)
        return [int(value) for value in values]

    def _counter_events(self, buf: bytes) -> list[tuple[int, int]]:
        """(position, value) of this plugin's counter lines; also counts them."""
        events = [
            (match.start(), int(match.group(1)))
            for match in _COUNTER.finditer(buf)
            if self._is_own_counter(buf, match.start())
        ]
        self._counts["counter_lines"] += len(events)
        return events

    def _is_own_counter(self, buf: bytes, message_at: int) -> bool:
        """Whether the tag right before the message (if any) leaves it to this plugin."""
        if buf.endswith(self._patterns.namespace_tag, 0, message_at):
            return True
        line_start = buf.rfind(b"\n", 0, message_at) + 1
        lookback_from = max(line_start, message_at - _TAG_LOOKBACK_BYTES)
        tag = _TAG_BEFORE_MESSAGE.search(buf, lookback_from, message_at)
        if tag is None:
            return True
        name = tag.group(1)
        return bool(self._patterns.own_tag.fullmatch(name)) or name in _TAGS_NAMING_NO_PLUGIN

    def _replay_in_order(self, buf: bytes, server_starts: list[int]) -> None:
        """The slow path for a block where a server (re)starts: events in log order."""
        events: list[tuple[int, int, bytes | int]] = [(at, 0, b"") for at in server_starts]
        events += [
            (match.start(), 1, match.group(1)) for match in self._patterns.relay.finditer(buf)
        ]
        events += [(at, 2, value) for at, value in self._counter_events(buf)]
        for _, kind, payload in sorted(events):
            if kind == 0:
                self._server_started()
            elif isinstance(payload, bytes):
                self._server_spoke(payload)
            else:
                self._lifetimes.observe(payload)

    def _server_started(self) -> None:
        self._lifetimes.server_started()
        self._server_pid = None

    def _server_spoke(self, pid: bytes) -> None:
        if self._server_pid is None:
            self._server_pid = pid
        elif pid != self._server_pid and pid not in self._seen_pids:
            self._lifetimes.new_server_seen()
            self._server_pid = pid
        self._seen_pids.add(pid)


def collect_lines(lines: Iterable[str | bytes], plugin: str = DEFAULT_PLUGIN) -> Signals:
    """Count the signals in `lines`, one log line per item (line endings optional)."""
    collector = Collector(plugin)
    for line in lines:
        collector.feed(line)
    return collector.signals()


def collect_file(path: Path, plugin: str = DEFAULT_PLUGIN) -> Signals:
    """Count the signals in the log file at `path`, streaming it in constant memory."""
    collector = Collector(plugin)
    try:
        with path.open("rb") as stream:
            for block in line_blocks(stream):
                collector.feed_block(block)
    except OSError as error:
        raise UsageError(
            f"cannot read the Kong log {str(path)!r}: {error.strerror or error}; "
            "pass a readable log file (e.g. saved from `docker compose logs kong`)"
        ) from error
    return collector.signals()


def line_blocks(
    stream: BinaryIO, chunk_bytes: int = READ_CHUNK_BYTES, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[bytes]:
    """Blocks of whole lines read from `stream`; over-long lines cut to `max_line_bytes`.

    Memory stays within about `chunk_bytes + max_line_bytes` whatever the input: a line that
    outgrows `max_line_bytes` keeps its head, the rest is read and dropped up to its newline.
    """
    if chunk_bytes > max_line_bytes:
        raise ValueError("chunk_bytes must not exceed max_line_bytes")
    head = b""  # the unfinished line so far
    overlong = False
    while chunk := stream.read(chunk_bytes):
        first_newline = chunk.find(b"\n")
        if first_newline < 0:
            head, overlong = _grow_line(head, overlong, chunk, max_line_bytes)
            continue
        if head or overlong:
            head, _ = _grow_line(head, overlong, chunk[:first_newline], max_line_bytes)
            yield head + b"\n"
            chunk = chunk[first_newline + 1 :]
        after_last_newline = chunk.rfind(b"\n") + 1
        if after_last_newline:
            yield chunk[:after_last_newline]
        head, overlong = _grow_line(b"", False, chunk[after_last_newline:], max_line_bytes)
    if head or overlong:
        yield head  # a truncated last line, still one line


def _grow_line(head: bytes, overlong: bool, more: bytes, max_line_bytes: int) -> tuple[bytes, bool]:
    """Append `more` to an unfinished line, keeping at most `max_line_bytes` of it."""
    if overlong:
        return head, True
    room = max_line_bytes - len(head)
    if len(more) > room:
        return head + more[:room], True
    return head + more, False
