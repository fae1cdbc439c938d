"""Stream a Kong error log and count the signals of external-plugin instance churn.

Only lines about one plugin server (`plugin`, "example-plugin" by default) are counted; a log may
hold several. Messages are matched by their text, never by `file.lua:NNN` (file names and line
numbers differ between releases), so Compose prefixes (`kong-1  | `) and `docker logs
--timestamps` prefixes do not matter. Kong's own [error]/[warn]/[notice]/[alert] messages
(`closed`, Kong's `no plugin instance`, process lines) are read where Kong writes them: right after
nginx's `[level] PID#TID: *CONN ` and Kong's `[kong] file.lua:NNN ` (each optional), also as
people paste them into issues: without the worker's `PID#TID`, and without the spaces between
the tags (`[warn][kong]mp_rpc.lua:340[py-hello]no plugin instance 31`).

| signal | wording (NAME: the plugin server; P: PID; N: an id) | releases |
| --- | --- | --- |
| `new_calls_total` | `New() has been called N times`: see "New() count" | all |
| `counter_lines` | lines with that message belonging to NAME | all |
| `instance_starts` | Kong, debug: `[NAME] started plugin server: seq S, ...` | EE 3.4.1.0+ |
| | the same untagged (log-phase timer): see "Untagged lines" | EE 3.4.1.0+ |
| | Python server: `[NAME:P] INFO - [hh:mm:ss] instance #N of X started` | all |
| | JS server: `[NAME:P] <colours>ISO-TIME ...[INFO]... instance #N of X started` | all |
| `instance_closes` | go-pdk: `[NAME:P] closed instance N` | all |
| `no_instance_errors` | go-pdk: `[NAME:P] no plugin instance N` | all |
| | Python: `[NAME:P] WARN - [..] rpc: #R error: no plugin instance #N` | all |
| | kong-python-pdk 0.2x: the same with `instance id N not found` | 2.x |
| | JS: `[NAME:P] ...PluginServerError: no plugin instance #N` | all |
| | Kong (MsgPack servers), [warn]: `[NAME] no plugin instance N` (or `#N`) | 3.x |
| | the same at [error] | 2.x |
| | older: `[NAME] instance id N not found` | 2.x |
| `rpc_closed_errors` | `[NAME] closed` at [warn] only | EE 3.4.0.0, OSS 3.4-3.5, 3.7+ |
| | `[NAME] closed` at [error] only (lower-cased) | EE 3.4.3.1+, 3.5.0.2+, 3.6 |
| | [error] then [warn]: one recovery, see "Pairs" | EE 3.4.1.0-3.5.0.1 |
| | the same untagged (log-phase timer): see "Untagged lines" | as above |
| `tap_*` | kpm-tap, relayed: `[NAME:P] kpm-tap: instance started id=N ...`: see "The tap" | all |
| `plugin_server_starts` | `Starting NAME` | 2.0-3.8 |
| | `[pluginserver] starting pluginserver process for NAME` (+ `started, pid P`) | 3.9+ |
| `plugin_server_exits` | `external pluginserver 'NAME' terminated: REASON STATUS` | 2.3+ |
| | `Exiting: pluginserver 'NAME' not respawned.` (see "Pairs") | 2.3-3.8 |
| | `[pluginserver] exiting: pluginserver 'NAME' not respawned.` (see "Pairs") | 3.9+ |
| | NAME `go-pluginserver`: `go-pluginserver terminated: exit N`, `Exiting: ...` | 2.0-2.2 |
| | nginx: `unknown process P exited on signal N`, P shown as NAME's (below) | 2.x-3.x |

Relayed lines (`[NAME:P] ...`) are the plugin server's own output, which worker 0 relays at
info. In 2.0-2.2 every Go plugin ran in one server, `go-pluginserver` (its start was already
`Starting go-pluginserver`): count with NAME `go-pluginserver`. An `unknown process P` line is a
server killed by `kong reload` (signal 9; 15 on 3.1), with no Kong line; it is NAME's exit when
the log showed P as NAME's PID: a `[NAME:P]` relay line, or 3.9's `started, pid P`.

The counter message's prefix is unconfirmed (it reaches the log through the PDK, so Kong's
namespaced log should write `[NAME] New() has been called N times`). A counter line is NAME's
unless the tag right before the message (`[tag] `, or `[tag] YYYY/MM/DD HH:MM:SS ` for a relayed
line) names another plugin; an untagged line, or one tagged `[kong]`/`[lua]`, counts as NAME's.

Pairs: one event is never counted twice.
- `closed`: a [warn] line is the twin of an [error] (not an event of its own) when the same
  worker and connection (`PID#TID: *CONN`) logged that [error] as its last `closed` line, with
  the same tag. So [error] then [warn] is one event whatever lines of other connections come in
  between; [error] alone or [warn] alone is one; [warn] then [error] is two. The last
  `CLOSED_PAIRING_CONNECTIONS` connections with an unpaired [error] are remembered.
- `no plugin instance`: Kong's own line and a relayed server line with the same instance id are
  one event, whichever comes first, when the other is among the last `NO_INSTANCE_PAIRING_WINDOW`
  unpaired lines of its kind. Kong's [warn] right after its [error] for the same connection and
  id is one Kong line (as for `closed`; should a release log both). go-pdk's relayed line has no
  Kong twin (ProtoBuf: Kong sees `closed`). Kong tags its line with the plugin's name: for a
  server that serves plugins of other names (e.g. a Python server `python` running `plugin_1`),
  that line is not NAME's and only the server's own line counts.
- process lines: `terminated` then `not respawned` is one exit; `starting pluginserver process`
  then `started, pid` is one start (Kong logs the pair once per spawn: a `started, pid` belongs
  to the server that the `starting` line right before it named, and a second one without a
  `starting` line of its own names no server).

Untagged lines. In a log-phase timer there is no request and Kong writes `started plugin server`
and `closed` without the `[NAME]` tag. They are NAME's when the log names no other plugin or
plugin server: no process line (`Starting X`, `starting pluginserver process for X`, `external
pluginserver 'X' terminated`, `pluginserver 'X' not respawned`) and no `[X] started plugin
server` for another X, anywhere in the log (decided when the counts are asked for, so a line
after them still counts). Otherwise nobody's: which server's timer wrote them cannot be told.
Relayed lines of another server alone do not name it (a log cut before its `Starting` line).

New() count. The counter lives in the plugin-server process: it restarts at 1 when the server
restarts, and lines from several nginx workers can arrive slightly out of order. So the log is cut
into server lifetimes, each contributes the highest value seen in it, and `new_calls_total` is
their sum. A lifetime ends at a start line (`Starting NAME`, 3.9's `starting pluginserver process
for NAME`), at an `unknown process P` line that kills the PID now speaking for NAME, or at the
first relay line `[NAME:PID]` from a PID not seen before when no start line came since the last
PID (a log that starts midway); 3.9's `started, pid P` makes P the PID of the lifetime just
started. A late line from an older PID opens nothing.

Missing restart line (e.g. the value drops from 900 to 2, or from 40 to 1, with no `Starting` or
new PID): the run of values that follows tells a restart from lines that came out of order, not
the size of the drop alone. A value at most a quarter of the lifetime's highest opens a low run;
the run goes on with every later value nearer its own highest than the lifetime's. A value above
the lifetime's highest ends it (the counter went on: the low ones were stragglers, and are
ignored, being below the highest anyway); a value nearer the old highest is a late line of the
old lifetime (another worker's) and changes nothing. The run is a restart, the old lifetime
keeping its highest value and the run starting a new one, after `RESTART_CONFIRM_LINES` values
when it began with a sharp drop (at least `SHARP_DROP_MIN` below: lines at 50 concurrent
requests lag by a few dozen, far from that), else once it has climbed to a new high of its own
`SMALL_RESTART_CONFIRM_CLIMBS` times, and in at least half of its values: out-of-order lines can
be as low but do not climb in turn. What this misses: a run too short to tell before the log ends
or a restart line (those low values are then dropped, or, before a new PID, taken as the new
server's first values), at most a few hundred calls. What it may misread: within the first ~130
values of a lifetime, when lines are overtaken by up to 50 later ones, a run of stragglers that
happens to climb (about 1 shuffle in 15 in the tests' worst case), adding at most a quarter of
the highest value then (~33 calls). Lines of several workers are not told apart by their PID.

The tap. kpm-tap (images/kong-sim/internal/tap) sits between Kong and any plugin server and
writes its own lines, relayed like the server's: `listening ...` (`tap_starts`: one per tap
process), `instance started` / `instance closed` / `error` (one line per event), and at most once a
second `totals ... events=E ... dropped=D phases=access:A,log:L`. Events, dropped bytes and the
requests the plugin ran on (`tap_ran_on`: the events of its busiest phase, as Kong sends each of a
plugin's phases once per request) are counted per tap process (its PID) and summed: each totals
line replaces that process's previous one. None of its lines is
a server line of another kind: `kpm-tap: error ... reason="no plugin instance 5"` is a tap error,
never a `no plugin instance` event (the server's own line, when it writes one, is).

Input. Files are read in binary chunks, never decoded, so invalid UTF-8 and binary garbage cannot
fail. A line longer than `MAX_LINE_BYTES` is matched on its first `MAX_LINE_BYTES` and the rest is
skipped (still one line), so memory stays bounded however long a line is. A last line without a
newline counts as a line; CRLF endings are accepted.

Speed. Scanning is done per block of whole lines with C-level `bytes.count` (lines, `New()`,
`started plugin server`) and two regex scans (NAME's tagged lines; Kong's level-tagged lines);
Python looks only at the counter values' minimum and maximum, at `closed` lines one by one when
they are not simply each [error] followed by its [warn] (or [warn] only), and at the rare process
lines and restarts, which replay the block in log order. kpm-tap's lines are searched for only in
a block where NAME relays a line that is none of closed, started or missing instance (a separate
search for the short `kpm-tap: ` cost 9% of the time on the benchmark log). Every pattern stays
within one line (none crosses `\\n`) and every pairing is done in log order, so a block gives the
same counts as its lines fed one at a time (the tests check this).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import BinaryIO

from orchestration.errors import UsageError

DEFAULT_LOG_NAME = "example-plugin"
MAX_LINE_BYTES = 4 * 1024 * 1024
READ_CHUNK_BYTES = 64 * 1024  # small enough that the several scans of one chunk stay in CPU cache
SHARP_DROP_MIN = 200
RESTART_CONFIRM_LINES = 3
SMALL_RESTART_CONFIRM_CLIMBS = 8  # new highs of a low run after a drop that is not sharp
CLOSED_PAIRING_CONNECTIONS = 4096  # connections whose last `closed` was an unpaired [error]
NO_INSTANCE_PAIRING_WINDOW = 256  # unpaired `no plugin instance` ids kept per side

# nginx's error-log head (`2026/12/08 02:21:33 [debug] 1004#0: *20 `), and the request context
# after its message (`, client: ...`, `, context: ngx.timer`): what quoting a line cuts off.
NGINX_HEAD = r"^.*?\[(?:debug|info|notice|warn|error|crit|alert|emerg)\] \d+#\d+: (?:\*\d+ )?"
NGINX_CONTEXT = r", (?:client|context): .*$"
KONG_SOURCE = r"(?:\[kong\] \S+:\d+ )?"  # Kong's `[kong] file.lua:NN ` after the head

_PLUGIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_NAME_IN_LINE = rb"[A-Za-z0-9][A-Za-z0-9_.-]*"
_COUNTER_MESSAGE = b"New() has been called "
_GO_LOG_TIME = rb"(?:\d{4}/\d\d/\d\d \d\d:\d\d:\d\d(?:\.\d+)? )?"
_COUNTER = re.compile(rb"New\(\) has been called (\d{1,18}) times")
_TAG_BEFORE_MESSAGE = re.compile(rb"\[([^\[\]\s]{1,200})\] " + _GO_LOG_TIME + rb"\Z")
_TAG_LOOKBACK_BYTES = 256
_TAGS_NAMING_NO_PLUGIN = frozenset(
    {b"kong", b"lua", b"debug", b"info", b"notice", b"warn", b"error", b"crit", b"alert", b"emerg"}
)
_ANY_INSTANCE_START = b"started plugin server: seq "
_TAGGED_INSTANCE_START = b"] " + _ANY_INSTANCE_START
# How each process line begins (after the head); `_PluginPatterns.process` reads them whole.
_PROCESS_LINE_STARTS = (
    rb"Starting |\[pluginserver\] |external pluginserver |Exiting: |unknown process "
    rb"|go-pluginserver "
)
_TAP_PREFIX = b"kpm-tap: "
_LEGACY_SERVER = b"go-pluginserver"  # Kong 2.0-2.2's one server for every Go plugin
# Between a relayed `[NAME:PID] ` and the message: Python's `INFO - [12:00:00] ` (and
# `rpc: #N error: `), or the JS server's colour codes and ISO time up to the message.
_PYTHON_SERVER_HEAD = rb"[A-Z]{3,8} - \[[^\]\n]{0,40}\] (?:rpc: #\d{1,18} error: )?"
_JS_SERVER_HEAD = rb"(?:\x1b\[[0-9;]*[A-Za-z])*\d{4}-\d\d-\d\dT[^\n]*?"


def _kong_line_head(*, capture: bool) -> bytes:
    """nginx's level, then `PID#TID: *CONN ` and Kong's `[kong] file.lua:NNN ` when present.

    With `capture`, two groups: "e" for [error], and the worker and connection.
    """
    level, connection = (rb"(e)", rb"(") if capture else (rb"e", rb"(?:")
    return (
        rb"\[(?:"
        + level
        + rb"rror|warn|notice|alert)\] *"
        + connection
        + rb"\d{1,10}#\d{1,10}: +(?:\*\d{1,20} )?)?(?:\[\w{1,20}\] ?[\w./-]{1,100}:\d{1,6} ?)?"
    )


@dataclass(frozen=True)
class LogSignals:
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
    # kpm-tap's lines (`[NAME:PID] kpm-tap: ...`, see "The tap"); all 0 when no tap ran
    tap_starts: int = 0
    tap_instance_starts: int = 0
    tap_instance_closes: int = 0
    tap_errors: int = 0
    tap_events: int = 0
    tap_dropped_bytes: int = 0
    # requests the plugin ran on, by the tap: its busiest phase's events (see "The tap")
    tap_ran_on: int = 0

    @property
    def tapped(self) -> bool:
        """Whether kpm-tap ran in front of the plugin server (its counts then mean something)."""
        return self.tap_starts > 0

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
        # Kong lowercases plugin-server names (process.lua 3.4.0, conf_loader 3.9.0): relayed
        # output is `[lowercased:PID]`, process lines say `Starting lowercased`, while the
        # plugin's own namespace keeps its name as written. A name with capitals is matched
        # either way (case-insensitively); one without is matched as it is, on the fast paths.
        quoted = re.escape(name) if name == name.lower() else rb"(?i:" + re.escape(name) + rb")"
        self.name = name.lower()
        self.namespace_tags = tuple({b"[" + name + b"] ", b"[" + name.lower() + b"] "})
        self.own_tag = re.compile(quoted + rb"(?::\d{1,10})?")  # [NAME] or [NAME:PID]
        self.instance_starts = tuple(tag + _ANY_INSTANCE_START for tag in self.namespace_tags)
        # groups: the server's PID; "c" for go-pdk's closed instance or "i" for an instance
        # the Python or JS server started; the id of a missing instance (go-pdk, Python, JS)
        relay_kinds = (
            rb"(?:(?:" + _PYTHON_SERVER_HEAD + rb"|" + _JS_SERVER_HEAD + rb")?"
            rb"(?:(c(?=losed instance \d)|i(?=nstance #\d{1,18} of [^\s,\x1b]+ started))"
            rb"|(?:no plugin instance #?|instance id (?=\d{1,18} not found))(\d{1,18})))?"
        )
        relay = rb":(\d{1,10})\] " + _GO_LOG_TIME + relay_kinds
        self.relay = re.compile(rb"\[" + quoted + relay)
        # NAME's relayed lines and its counter lines in one pass: the relay groups, then the
        # counter value
        self.name_lines = re.compile(
            rb"\[" + quoted + rb"(?:" + relay + rb"|\] New\(\) has been called (\d{1,18}) times)"
        )
        # One pass over the Kong-side lines. Groups: "e" for [error]; worker and connection;
        # for `closed`, "[NAME] c" or, untagged, "c"; the id in Kong's own `no plugin instance`
        # (MsgPack servers); both last empty: a process line (read again with `process`).
        self.kong_line = re.compile(
            _kong_line_head(capture=True)
            + rb"(?:((?:\["
            + quoted
            + rb"\] ?)?c)losed(?=,|[ \t\r]*$)"
            rb"|\[" + quoted + rb"\] ?(?:no plugin instance #?|instance id (?=\d{1,18} not found))"
            rb"(\d{1,18})"
            rb"|" + _PROCESS_LINE_STARTS + rb")",
            re.MULTILINE,
        )
        # kpm-tap's lines. Groups: the tap's PID; "l"istening, "s"tarted, "c"losed, "e"rror; the
        # totals line's events and dropped bytes
        self.tap_line = re.compile(
            rb"\["
            + quoted
            + rb":(\d{1,10})\] "
            + _TAP_PREFIX
            + rb"(?:(l)istening |instance (s)tarted |instance (c)losed |(e)rror "
            rb"|totals started=\d+ closed=\d+ events=(\d{1,18}) errors=\d+ dropped=(\d{1,18})"
            rb"(?: phases=([a-z_]{1,40}:\d{1,18}(?:,[a-z_]{1,40}:\d{1,18}){0,15}))?)"
        )
        self.process = re.compile(
            _kong_line_head(capture=False)
            + rb"(?:Starting (?P<starting>"
            + _NAME_IN_LINE
            + rb")(?=[,\s]|$)"
            rb"|\[pluginserver\] starting pluginserver process for (?P<spawning>"
            + _NAME_IN_LINE
            + rb")"
            rb"|\[pluginserver\] started, pid (?P<spawned>\d{1,10})"
            rb"|external pluginserver '(?P<terminated>" + _NAME_IN_LINE + rb")' terminated: "
            rb"|(?:Exiting: |\[pluginserver\] exiting: )pluginserver '(?P<abandoned>"
            + _NAME_IN_LINE
            + rb")' not respawned"
            rb"|(?P<legacy_terminated>go-pluginserver terminated: )"
            rb"|(?P<legacy_abandoned>Exiting: go-pluginserver not respawned)"
            rb"|unknown process (?P<killed>\d{1,10}) exited on signal )",
            re.MULTILINE,
        )


class _NewCallLifetimes:
    """Sums, over plugin-server lifetimes, the highest `New()` counter value of each."""

    def __init__(self) -> None:
        self.finished_total = 0
        self.highest = 0
        self.low_run_length = 0  # low values since the run began, not yet taken as a restart
        self.low_run_highest = 0
        self.low_run_climbs = 0  # values of the run above all its earlier ones
        self.low_run_sharp = False  # the run began with a sharp drop
        self.latest: int | None = None  # the value last observed, whatever it meant

    @property
    def total(self) -> int:
        return self.finished_total + self.highest

    def observe_all(self, values: list[int]) -> None:
        """`observe` each value; at C speed when no run is open and none of them is low."""
        if not values:
            return
        self.latest = values[-1]
        peak = max(self.highest, *values)
        if not self.low_run_length and min(values) * 4 > peak:  # no value is low when it comes
            self.highest = peak
            return
        for value in values:
            self.observe(value)

    def observe(self, value: int) -> None:
        self.latest = value
        if value > self.highest:
            self.low_run_length = 0  # the counter went on: the low values were stragglers
            self.highest = value
        elif self.low_run_length and value - self.low_run_highest < self.highest - value:
            self._extend_run(value)  # nearer the run than the old highest: the run goes on
        elif value * 4 <= self.highest:
            if not self.low_run_length:
                self.low_run_sharp = self.highest - value >= SHARP_DROP_MIN
                self.low_run_highest, self.low_run_climbs = value, 0
            self._extend_run(value)
        # else: a line of the old lifetime that came late (another worker's): it changes nothing

    def _extend_run(self, value: int) -> None:
        """One more value of a low run; enough of them are a restart the log did not show."""
        if value > self.low_run_highest or not self.low_run_length:
            self.low_run_climbs += 1
            self.low_run_highest = value
        self.low_run_length += 1
        if self.low_run_sharp:
            restarted = self.low_run_length >= RESTART_CONFIRM_LINES
        else:  # small values: out-of-order lines can be as low, but they do not climb in turn
            restarted = self.low_run_climbs >= max(
                SMALL_RESTART_CONFIRM_CLIMBS, self.low_run_length // 2
            )
        if restarted:
            self._restart_with(self.low_run_highest)

    def server_started(self) -> None:
        """A server started or the current one died: any low run was a lifetime of its own."""
        if self.low_run_length:
            self._restart_with(self.low_run_highest)
        self._restart_with(0)

    def new_server_seen(self) -> None:
        """A new PID speaks without a `Starting` line: a low run just before is its start."""
        self._restart_with(self.low_run_highest if self.low_run_length else 0)

    def _restart_with(self, first_highest: int) -> None:
        self.finished_total += self.highest
        self.highest = first_highest
        self.low_run_length = 0


class _NoInstancePairs:
    """Counts `no plugin instance` events: a relayed server line and Kong's line are one event.

    A line whose id matches an unpaired line of the other kind among the last
    `NO_INSTANCE_PAIRING_WINDOW` of that kind is the same event, already counted.
    """

    def __init__(self) -> None:
        self.events = 0
        self.unpaired_relayed: deque[bytes] = deque(maxlen=NO_INSTANCE_PAIRING_WINDOW)
        self.unpaired_kong: deque[bytes] = deque(maxlen=NO_INSTANCE_PAIRING_WINDOW)

    def relayed(self, instance_ids: list[bytes]) -> None:
        if not self.unpaired_kong:  # nothing to pair with: the usual case, at C speed
            self.events += len(instance_ids)
            self.unpaired_relayed.extend(instance_ids)
            return
        for instance_id in instance_ids:
            self.seen(instance_id, relayed=True)

    def seen(self, instance_id: bytes, *, relayed: bool) -> None:
        own, other = (
            (self.unpaired_relayed, self.unpaired_kong)
            if relayed
            else (self.unpaired_kong, self.unpaired_relayed)
        )
        if instance_id in other:
            other.remove(instance_id)
            return
        self.events += 1
        own.append(instance_id)


class Collector:
    """Counts the signals incrementally: feed lines (or blocks of whole lines), then ask."""

    def __init__(self, plugin: str = DEFAULT_LOG_NAME) -> None:
        self._patterns = _PluginPatterns(plugin)
        self._lifetimes = _NewCallLifetimes()
        self._no_instance = _NoInstancePairs()
        self._server_pid: bytes | None = None  # None: the next PID belongs to the current lifetime
        self._seen_pids: set[bytes] = set()  # every PID this server ran as
        self._spawn_is_ours = False  # the 3.9 `starting` line right before named NAME
        self._exit_logged = False  # `terminated` came since NAME's last start
        self._other_plugin_named = False  # untagged lines are then nobody's
        self._open_closed_errors: dict[bytes, bytes] = {}  # connection -> tag of its [error]
        self._open_no_instance_errors: dict[bytes, bytes] = {}  # connection -> id, likewise
        # tap PID -> (events, dropped bytes, requests it saw the plugin run on)
        self._tap_totals: dict[bytes, tuple[int, int, int]] = {}
        self._counts = dict.fromkeys(
            (
                "counter_lines",
                "instance_starts",
                "untagged_instance_starts",
                "instance_closes",
                "rpc_closed_errors",
                "untagged_rpc_closed",
                "plugin_server_starts",
                "plugin_server_exits",
                "lines",
                "tap_starts",
                "tap_instance_starts",
                "tap_instance_closes",
                "tap_errors",
            ),
            0,
        )

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

    def signals(self) -> LogSignals:
        """The counts so far (feeding may continue afterwards)."""
        counts = self._counts
        untagged_are_ours = not self._other_plugin_named
        return LogSignals(
            new_calls_total=self._lifetimes.total,
            counter_lines=counts["counter_lines"],
            instance_starts=counts["instance_starts"]
            + untagged_are_ours * counts["untagged_instance_starts"],
            instance_closes=counts["instance_closes"],
            no_instance_errors=self._no_instance.events,
            rpc_closed_errors=counts["rpc_closed_errors"]
            + untagged_are_ours * counts["untagged_rpc_closed"],
            plugin_server_starts=counts["plugin_server_starts"],
            plugin_server_exits=counts["plugin_server_exits"],
            lines=counts["lines"],
            tap_starts=counts["tap_starts"],
            tap_instance_starts=counts["tap_instance_starts"],
            tap_instance_closes=counts["tap_instance_closes"],
            tap_errors=counts["tap_errors"],
            tap_events=sum(events for events, _, _ in self._tap_totals.values()),
            tap_dropped_bytes=sum(dropped for _, dropped, _ in self._tap_totals.values()),
            tap_ran_on=sum(ran_on for _, _, ran_on in self._tap_totals.values()),
        )

    def _scan(self, buf: bytes) -> None:
        """Count one block; only a block with process lines or a new PID is replayed in order."""
        self._count_instance_starts(buf)
        kong_no_instance, process_lines = self._count_kong_lines(buf)
        pids, missing_ids, counter_values, plain_relays = self._count_name_lines(buf)
        if plain_relays:  # kpm-tap's lines are among them: see `_count_name_lines`
            self._count_tap_lines(buf)
        if kong_no_instance:
            self._pair_no_instance_in_order(buf)
        elif missing_ids:
            self._no_instance.relayed(missing_ids)
        new_pid = len(pids) != pids.count(b"") + pids.count(self._server_pid)
        if process_lines or new_pid:
            self._replay_in_order(buf, process_lines)
        elif counter_values is None:  # some lines are untagged, relayed, another plugin's or bad
            self._lifetimes.observe_all([value for _, value in self._counter_events(buf)])
        else:
            self._counts["counter_lines"] += len(counter_values)
            self._lifetimes.observe_all(counter_values)

    def _count_instance_starts(self, buf: bytes) -> None:
        """Kong's `started plugin server` lines: NAME's, untagged ones, another plugin's."""
        every = buf.count(_ANY_INSTANCE_START)
        if not every:
            return
        own = sum(map(buf.count, self._patterns.instance_starts))
        self._counts["instance_starts"] += own
        if every != own:
            tagged = buf.count(_TAGGED_INSTANCE_START)
            self._counts["untagged_instance_starts"] += every - tagged
            self._other_plugin_named |= tagged != own

    def _count_tap_lines(self, buf: bytes) -> None:
        """kpm-tap's lines: events per line, and each tap process's latest totals."""
        found = self._patterns.tap_line.findall(buf)
        if not found:
            return
        pids, listening, started, closed, errors, events, dropped, phases = zip(*found, strict=True)
        counts = self._counts
        counts["tap_starts"] += len(listening) - listening.count(b"")
        counts["tap_instance_starts"] += len(started) - started.count(b"")
        counts["tap_instance_closes"] += len(closed) - closed.count(b"")
        counts["tap_errors"] += len(errors) - errors.count(b"")
        for pid, events_so_far, dropped_so_far, by_phase in zip(
            pids, events, dropped, phases, strict=True
        ):
            if events_so_far:
                ran_on = _most_events_of_a_phase(by_phase)
                self._tap_totals[pid] = (int(events_so_far), int(dropped_so_far), ran_on)

    def _count_kong_lines(self, buf: bytes) -> tuple[bool, list[re.Match[bytes]]]:
        """Count `closed` recoveries; say whether Kong logged `no plugin instance`; find
        process lines.
        """
        found = self._patterns.kong_line.findall(buf)
        if not found:
            return False, []
        levels, connections, closed, instance_ids = zip(*found, strict=True)
        other_lines = closed.count(b"")
        if other_lines:  # rare: Kong's `no plugin instance` or a process line
            kong_no_instance = len(instance_ids) != instance_ids.count(b"")
            process_line = other_lines > len(instance_ids) - instance_ids.count(b"")
            self._count_closed([row for row in found if row[2]])
            process = self._patterns.process.finditer(buf) if process_line else ()
            return kong_no_instance, list(process)
        if not self._count_closed_at_once(levels, connections, closed):
            self._count_closed(found)
        return False, []

    def _count_closed_at_once(
        self, levels: tuple[bytes, ...], connections: tuple[bytes, ...], closed: tuple[bytes, ...]
    ) -> bool:
        """The usual blocks at C speed, giving what `_count_closed` gives: [warn] lines only,
        or each [error] right followed by its [warn]; the first line may be the twin of the
        one [error] left waiting by the block before, the last an [error] left waiting.
        """
        open_errors = self._open_closed_errors
        first = 0
        if open_errors:
            if len(open_errors) > 1 or levels[0]:
                return False
            ((waiting, tag),) = open_errors.items()
            if connections[0] != waiting or closed[0] != tag:
                return False
            first = 1
        end = len(levels)
        if not levels[first:].count(b"e"):
            events, waiting_at_end = closed[first:], False
        else:
            waiting_at_end = (end - first) % 2 == 1
            end -= waiting_at_end
            if waiting_at_end and not levels[end]:
                return False
            if not (
                levels[first:end:2].count(b"e") == (end - first) // 2
                and not levels[first + 1 : end : 2].count(b"e")
                and connections[first:end:2] == connections[first + 1 : end : 2]
                and closed[first:end:2] == closed[first + 1 : end : 2]
            ):
                return False
            events = closed[first:end:2] + closed[end:]
        if first:
            open_errors.clear()
        if waiting_at_end:
            open_errors[connections[end]] = closed[end]
        untagged = events.count(b"c")
        self._counts["untagged_rpc_closed"] += untagged
        self._counts["rpc_closed_errors"] += len(events) - untagged
        return True

    def _count_closed(self, rows: list[tuple[bytes, bytes, bytes, bytes]]) -> None:
        """One event per `closed` recovery: an [error] and the [warn] right after it are one.

        The [warn] is the twin when the same worker and connection's previous `closed` line was
        an [error] with the same tag (3.4.1.0-3.5.0.1 log both); otherwise it is an event.
        """
        open_errors = self._open_closed_errors
        tagged = untagged = 0
        for is_error, connection, closed, _ in rows:
            if is_error:
                open_errors.pop(connection, None)
                open_errors[connection] = closed
                if len(open_errors) > CLOSED_PAIRING_CONNECTIONS:
                    del open_errors[next(iter(open_errors))]
            elif open_errors.get(connection) == closed:
                del open_errors[connection]
                continue
            if closed == b"c":
                untagged += 1
            else:
                tagged += 1
        self._counts["rpc_closed_errors"] += tagged
        self._counts["untagged_rpc_closed"] += untagged

    def _count_name_lines(
        self, buf: bytes
    ) -> tuple[tuple[bytes, ...], list[bytes], list[int] | None, bool]:
        """Count NAME's relayed messages; return the relaying PIDs (empty for a counter line),
        the missing instances' ids, the counter values (None when some counter lines are
        not plainly NAME's; the caller counts the counter lines), and whether some relayed line
        is none of closed, started, missing instance.

        kpm-tap's lines (`[NAME:PID] kpm-tap: ...`) are relayed lines of that last kind, so a
        block without one has none of the tap's lines: a search for them would find nothing.
        (A match of this pattern ends within its line, and a line relays one message.)
        """
        counter_lines = buf.count(_COUNTER_MESSAGE)
        found = self._patterns.name_lines.findall(buf)
        if not found:
            return (), [], None if counter_lines else [], False
        pids, kinds, missing, values = zip(*found, strict=True)
        counts = self._counts
        closes, starts = kinds.count(b"c"), kinds.count(b"i")
        counts["instance_closes"] += closes
        counts["instance_starts"] += starts
        missing_ids = list(filter(None, missing))
        plain_relays = len(pids) - pids.count(b"") > closes + starts + len(missing_ids)
        namespaced = list(filter(None, values))
        counter_values = None
        if len(namespaced) == counter_lines:
            counter_values = list(map(int, namespaced))
        return pids, missing_ids, counter_values, plain_relays

    def _pair_no_instance_in_order(self, buf: bytes) -> None:
        """A block where Kong logs `no plugin instance` itself: pair it with relayed lines.

        Kong's [warn] right after its own [error] for the same connection and id is that same
        line twice (as with `closed`).
        """
        events: list[tuple[int, bytes, bytes | None]] = [
            (match.start(), match.group(3), None)
            for match in self._patterns.relay.finditer(buf)
            if match.group(3)
        ]
        events += [
            (match.start(), match.group(4), (match.group(1) or b"") + (match.group(2) or b""))
            for match in self._patterns.kong_line.finditer(buf)
            if match.group(4)
        ]
        open_errors = self._open_no_instance_errors
        for _, instance_id, level_and_connection in sorted(events, key=lambda event: event[0]):
            if level_and_connection is None:
                self._no_instance.seen(instance_id, relayed=True)
                continue
            connection = level_and_connection.removeprefix(b"e")
            if level_and_connection.startswith(b"e"):
                open_errors.pop(connection, None)
                open_errors[connection] = instance_id
                if len(open_errors) > CLOSED_PAIRING_CONNECTIONS:
                    del open_errors[next(iter(open_errors))]
            elif open_errors.get(connection) == instance_id:
                del open_errors[connection]
                continue
            self._no_instance.seen(instance_id, relayed=False)

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
        if buf.endswith(self._patterns.namespace_tags, 0, message_at):
            return True
        line_start = buf.rfind(b"\n", 0, message_at) + 1
        lookback_from = max(line_start, message_at - _TAG_LOOKBACK_BYTES)
        tag = _TAG_BEFORE_MESSAGE.search(buf, lookback_from, message_at)
        if tag is None:
            return True
        name = tag.group(1)
        return bool(self._patterns.own_tag.fullmatch(name)) or name in _TAGS_NAMING_NO_PLUGIN

    def _replay_in_order(self, buf: bytes, process_lines: list[re.Match[bytes]]) -> None:
        """The slow path for a block where a server may (re)start or stop: events in log order."""
        events: list[tuple[int, int, re.Match[bytes] | bytes | int]] = [
            (match.start(), 0, match) for match in process_lines
        ]
        events += [
            (match.start(), 1, match.group(1)) for match in self._patterns.relay.finditer(buf)
        ]
        events += [(at, 2, value) for at, value in self._counter_events(buf)]
        for _, _, payload in sorted(events, key=lambda event: event[:2]):
            if isinstance(payload, re.Match):
                self._process_line(payload)
            elif isinstance(payload, bytes):
                self._server_spoke(payload)
            else:
                self._lifetimes.observe(payload)

    def _process_line(self, line: re.Match[bytes]) -> None:
        kind, name = line.lastgroup, line.group(line.lastgroup or 0)
        ours = name.lower() == self._patterns.name
        if kind == "spawned":  # 3.9's second line of a start: learn the PID, count nothing
            if self._spawn_is_ours:
                self._server_pid = name
                self._seen_pids.add(name)
            self._spawn_is_ours = False
        elif kind == "killed":
            if name in self._seen_pids:
                self._server_exited(cut_lifetime=name == self._server_pid)
        elif kind in ("legacy_terminated", "legacy_abandoned"):
            if self._patterns.name == _LEGACY_SERVER:
                self._server_exited(abandoned=kind == "legacy_abandoned")
        elif not ours:
            self._other_plugin_named = True
            self._spawn_is_ours = False if kind == "spawning" else self._spawn_is_ours
        elif kind in ("starting", "spawning"):
            self._server_started()
            self._spawn_is_ours = kind == "spawning"
        else:
            self._server_exited(abandoned=kind == "abandoned")

    def _server_started(self) -> None:
        self._counts["plugin_server_starts"] += 1
        self._lifetimes.server_started()
        self._server_pid = None
        self._exit_logged = False

    def _server_exited(self, *, abandoned: bool = False, cut_lifetime: bool = False) -> None:
        """Count an exit; `not respawned` right after `terminated` is the same exit."""
        if not (abandoned and self._exit_logged):
            self._counts["plugin_server_exits"] += 1
        self._exit_logged = True
        if cut_lifetime:  # the server speaking now was killed: the next one starts afresh
            self._lifetimes.server_started()
            self._server_pid = None

    def _server_spoke(self, pid: bytes) -> None:
        if self._server_pid is None:
            self._server_pid = pid
        elif pid != self._server_pid and pid not in self._seen_pids:
            self._lifetimes.new_server_seen()
            self._server_pid = pid
        self._seen_pids.add(pid)


def _most_events_of_a_phase(by_phase: bytes) -> int:
    """From a totals line's `phases=access:1000,log:998`: the requests the plugin ran on.

    Kong sends each phase a plugin has once per request (retrying a call that failed), so the
    phase with the most events answered counts the requests that reached the plugin. A tap too
    old to count phases (empty) says nothing: 0.
    """
    return max((int(pair.rpartition(b":")[2]) for pair in by_phase.split(b",") if pair), default=0)


# Where a log names a plugin server: its process lines, its relayed output, Kong's instance starts.
_SERVER_NAMED = re.compile(
    _kong_line_head(capture=False)
    + rb"(?:Starting |\[pluginserver\] (?:starting pluginserver process for |loading protocol "
    rb"\S{1,40} for plugin ))(" + _NAME_IN_LINE + rb")"
    rb"|\[(" + _NAME_IN_LINE + rb"):\d{1,10}\] "
    rb"|\[(" + _NAME_IN_LINE + rb")\] " + _ANY_INSTANCE_START
)


def plugin_servers_in(path: Path) -> list[str]:
    """The plugin servers a Kong log names (started, relaying output, loading a protocol for it
    (3.9+) or starting instances), by the lowercased name Kong gives them, in the order they
    first appear."""
    names: dict[str, None] = {}
    for block in _log_blocks(path):
        for groups in _SERVER_NAMED.findall(block):
            name = next(group for group in groups if group).decode().lower()
            names.setdefault(name)
    return list(names)


def collect_lines(lines: Iterable[str | bytes], plugin: str = DEFAULT_LOG_NAME) -> LogSignals:
    """Count the signals in `lines`, one log line per item (line endings optional)."""
    collector = Collector(plugin)
    for line in lines:
        collector.feed(line)
    return collector.signals()


def collect_file(path: Path, plugin: str = DEFAULT_LOG_NAME) -> LogSignals:
    """Count the signals in the log file at `path`, streaming it in constant memory."""
    collector = Collector(plugin)
    for block in _log_blocks(path):
        collector.feed_block(block)
    return collector.signals()


def _log_blocks(path: Path) -> Iterator[bytes]:
    """The log at `path` in blocks of whole lines; a UsageError saying so when it is unreadable."""
    try:
        with path.open("rb") as stream:
            yield from line_blocks(stream)
    except OSError as error:
        raise UsageError(
            f"cannot read the Kong log {str(path)!r}: {error.strerror or error}; "
            "pass a readable log file (e.g. saved from `docker compose logs kong`)"
        ) from error


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
        finished = b""  # the line begun in an earlier chunk, yielded with this chunk's lines
        if head or overlong:
            head, _ = _grow_line(head, overlong, chunk[:first_newline], max_line_bytes)
            finished = head + b"\n"
            chunk = chunk[first_newline + 1 :]
        after_last_newline = chunk.rfind(b"\n") + 1
        if finished or after_last_newline:
            yield finished + chunk[:after_last_newline]
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
