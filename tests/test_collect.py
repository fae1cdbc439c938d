"""Tests for orchestration.collect: exact counts on recorded and generated Kong log text."""

from __future__ import annotations

import errno
import io
import itertools
import json
import os
import random
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestration.collect import (
    CLOSED_PAIRING_CONNECTIONS,
    MAX_LINE_BYTES,
    Collector,
    LogSignals,
    collect_file,
    collect_lines,
    line_blocks,
    plugin_servers_in,
)
from orchestration.errors import UsageError

FIXTURES = Path(__file__).parent / "fixtures"
# Real Kong logs users committed to public bug reports live beside the repository, never in it
# (not ours to ship): CI has a copy of shared/ next to the fresh clone, a user's clone has none.
# mutmut (nox -s mutants) runs the tests in its copy of the tree, mutants/ inside the repository.
_TREE = Path(__file__).resolve().parents[1]
_REPO = _TREE.parent if _TREE.name == "mutants" else _TREE
REAL_LOGS = _REPO.parent / "shared" / "real-logs"
CLIENT = ', client: 172.18.0.1, server: kong, request: "GET /hello HTTP/1.1", host: "kong:8000"'
ZERO = LogSignals(0, 0, 0, 0, 0, 0, 0, 0, 0)


def counter_line(value: int, name: str = "example-plugin") -> str:
    return (
        f"2023/11/21 22:33:08 [debug] 2347#0: *654 [kong] pb_rpc.lua:344 [{name}] "
        f"New() has been called {value} times{CLIENT}"
    )


def relay_line(message: str, pid: int, name: str = "example-plugin") -> str:
    return (
        f"2023/11/21 22:33:08 [info] 2346#0: *1 [{name}:{pid}] 2023/11/21 22:33:08 {message}, "
        "context: ngx.timer"
    )


def starting_line(name: str = "example-plugin") -> str:
    return f"2023/11/21 22:33:01 [notice] 2346#0: *1 [kong] process.lua:252 Starting {name}"


def expected(**counts: int) -> LogSignals:
    return LogSignals(**{**ZERO.to_dict(), **counts})


FIXTURE_SIGNALS = {
    "facts_excerpt.log": expected(
        instance_starts=1, instance_closes=1, no_instance_errors=1, rpc_closed_errors=1, lines=5
    ),
    "issue_excerpt_3.4.1.0.log": expected(
        instance_starts=2, instance_closes=1, no_instance_errors=1, rpc_closed_errors=1, lines=6
    ),
    "churn_3.4.1.0.log": expected(
        new_calls_total=12,
        counter_lines=6,
        instance_starts=12,
        instance_closes=6,
        no_instance_errors=6,
        rpc_closed_errors=6,
        plugin_server_starts=1,
        lines=50,
    ),
    "baseline_3.4.0.0.log": expected(
        new_calls_total=3, counter_lines=8, instance_starts=2, plugin_server_starts=1, lines=20
    ),
    "restart_counter_reset.log": expected(
        new_calls_total=40 + 8,
        counter_lines=9,
        instance_starts=18,
        instance_closes=9,
        no_instance_errors=9,
        rpc_closed_errors=9,
        plugin_server_starts=2,
        plugin_server_exits=1,
        lines=78,
    ),
    "out_of_order.log": expected(
        new_calls_total=131, counter_lines=10, plugin_server_starts=1, lines=22
    ),
    "multi_plugin.log": expected(
        new_calls_total=4,
        counter_lines=2,
        instance_starts=4,
        instance_closes=2,
        no_instance_errors=2,
        rpc_closed_errors=2,
        plugin_server_starts=1,
        lines=48,
    ),
    "garbage.log": expected(
        new_calls_total=9, counter_lines=2, instance_closes=1, rpc_closed_errors=1, lines=10
    ),
    # 3.9: `starting pluginserver process for` + `started, pid` is one start, and cuts lifetimes
    "process_3.9.log": expected(
        new_calls_total=5 + 3,
        counter_lines=6,
        instance_starts=2,
        instance_closes=1,
        rpc_closed_errors=1,
        plugin_server_starts=2,
        plugin_server_exits=2,  # `exiting: ... not respawned.` after `terminated` is that exit
        lines=24,
    ),
    # `terminated` (1 exit); then `command not found` as the worker exits: `Exiting: ... not
    # respawned.` alone (1 exit); another server's `terminated` + `Exiting` are not ours
    "process_3.4_not_respawned.log": expected(
        plugin_server_starts=2, plugin_server_exits=2, lines=7
    ),
    "closed_warn_only_3.7.log": expected(rpc_closed_errors=3, lines=4),
    "closed_error_only_3.6.log": expected(rpc_closed_errors=3, lines=4),
    "closed_interleaved_3.4.1.0.log": expected(rpc_closed_errors=4, lines=7),
    "untagged_timer_3.4.1.0.log": expected(
        instance_starts=1 + 2, rpc_closed_errors=1 + 1, plugin_server_starts=1, lines=8
    ),
    "msgpack_python_3.3.log": expected(
        instance_starts=3, no_instance_errors=4, plugin_server_starts=1, lines=11
    ),
    "msgpack_kong_side_2.x.log": expected(no_instance_errors=2, lines=3),
    "msgpack_js_2.7.log": expected(
        instance_starts=1,
        no_instance_errors=2,
        plugin_server_starts=2,
        plugin_server_exits=1,
        lines=10,
    ),
    "legacy_go_pluginserver_2.1.log": expected(
        plugin_server_starts=2, plugin_server_exits=2, lines=5
    ),
    # old server killed after the reload (1128), one never ours (1129), then the current one
    # (1219) killed: 40 before the reload, 5 by 1219, 4 by the server after it
    "reload_unknown_process_2.7.log": expected(
        new_calls_total=40 + 5 + 4,
        counter_lines=7,
        instance_closes=1,
        plugin_server_starts=2,
        plugin_server_exits=2,
        lines=15,
    ),
}
FIXTURE_PLUGIN = {
    "msgpack_python_3.3.log": "py-hello",
    "msgpack_kong_side_2.x.log": "py-hello",
    "msgpack_js_2.7.log": "js-hello",
    "legacy_go_pluginserver_2.1.log": "go-pluginserver",
}


@pytest.mark.parametrize("name", sorted(FIXTURE_SIGNALS))
def test_fixture_counts(name: str) -> None:
    plugin = FIXTURE_PLUGIN.get(name, "example-plugin")
    assert collect_file(FIXTURES / name, plugin) == FIXTURE_SIGNALS[name]


@pytest.mark.parametrize("name", sorted(FIXTURE_SIGNALS))
def test_lines_blocks_and_tiny_chunks_agree(name: str) -> None:
    plugin = FIXTURE_PLUGIN.get(name, "example-plugin")
    assert _one_by_one_and_in_tiny_chunks((FIXTURES / name).read_bytes(), plugin) == (
        FIXTURE_SIGNALS[name],
        FIXTURE_SIGNALS[name],
        FIXTURE_SIGNALS[name],
    )


def _one_by_one_and_in_tiny_chunks(
    data: bytes, plugin: str
) -> tuple[LogSignals, LogSignals, LogSignals]:
    """The counts fed line by line, in 7-byte chunks, and as one block."""
    one_by_one = collect_lines(data.splitlines(keepends=True), plugin)
    tiny_chunks, whole = Collector(plugin), Collector(plugin)
    for block in line_blocks(io.BytesIO(data), chunk_bytes=7):
        tiny_chunks.feed_block(block)
    whole.feed_block(data)
    return one_by_one, tiny_chunks.signals(), whole.signals()


def collect_every_way(lines: list[str], plugin: str = "example-plugin") -> LogSignals:
    """The counts of `lines`, after checking that line by line, 7-byte chunks and one block
    agree (the fast paths for whole blocks must give what the lines one at a time give)."""
    data = "".join(line + "\n" for line in lines).encode()
    one_by_one, tiny_chunks, whole = _one_by_one_and_in_tiny_chunks(data, plugin)
    assert one_by_one == tiny_chunks == whole
    return whole


def test_str_lines_as_the_pipeline_passes_them() -> None:
    text = (FIXTURES / "restart_counter_reset.log").read_text()
    assert collect_lines(text.splitlines()) == FIXTURE_SIGNALS["restart_counter_reset.log"]


@pytest.mark.parametrize(
    ("plugin", "signals"),
    [
        (
            "go-hello",
            expected(
                new_calls_total=11,
                counter_lines=3,
                instance_starts=6,
                instance_closes=3,
                no_instance_errors=3,
                rpc_closed_errors=3,
                plugin_server_starts=1,
                plugin_server_exits=1,
                lines=48,
            ),
        ),
        (
            "example-plugin-2",
            expected(
                new_calls_total=900,
                counter_lines=1,
                instance_closes=1,
                plugin_server_starts=1,
                lines=48,
            ),
        ),
    ],
)
def test_other_plugin_servers_in_the_same_log(plugin: str, signals: LogSignals) -> None:
    assert collect_file(FIXTURES / "multi_plugin.log", plugin=plugin) == signals


def closed_line(
    level: str, connection: str = "2347#0: *654", tag: str = "[example-plugin] "
) -> str:
    return f"2023/11/21 22:33:08 [{level}] {connection} [kong] pb_rpc.lua:417 {tag}closed{CLIENT}"


@pytest.mark.parametrize(
    ("levels", "events"),
    [
        (["warn"], 1),  # EE 3.4.0.0, OSS 3.4-3.5, 3.7+
        (["error"], 1),  # EE 3.4.3.1+, 3.5.0.2+, 3.6
        (["error", "warn"], 1),  # EE 3.4.1.0-3.5.0.1: both lines of one recovery
        (["error", "warn", "error", "warn"], 2),  # the retry failed again
        (["warn", "error"], 2),  # a [warn] pairs only with an [error] before it
        (["error", "error", "warn"], 2),  # the second [error]'s twin
        (["warn", "warn"], 2),
        (["error", "warn", "warn", "warn"], 3),  # only the first [warn] is the twin
        (["error", "warn", "error", "error"], 3),
    ],
)
def test_closed_error_and_its_warn_twin_are_one_recovery(levels: list[str], events: int) -> None:
    lines = [closed_line(level) for level in levels]
    assert collect_every_way(lines).rpc_closed_errors == events
    for cut in range(1, len(lines)):  # two blocks, cut anywhere
        collector = Collector()
        for block in (lines[:cut], lines[cut:]):
            collector.feed_block("".join(line + "\n" for line in block).encode())
        assert collector.signals().rpc_closed_errors == events, cut
    assert collect_lines(line + "\r\n" for line in lines).rpc_closed_errors == events


def test_a_warn_twin_is_of_the_same_worker_connection_and_tag() -> None:
    lines = [
        closed_line("error"),
        closed_line("warn", connection="2347#0: *655"),
        closed_line("warn", connection="2348#0: *654"),
        closed_line("warn", tag=""),  # untagged: a log-phase timer's line, not the twin
        closed_line("warn"),
    ]
    assert collect_lines(lines).rpc_closed_errors == 4
    # a tagged [error] then an untagged [warn] of the same connection: two events
    assert collect_every_way([closed_line("error"), closed_line("warn", tag="")]) == expected(
        rpc_closed_errors=2, lines=2
    )
    pair = [closed_line("error"), closed_line("warn")]
    other_connection = closed_line("warn", connection="2347#0: *655")
    for not_its_twin in (other_connection, closed_line("warn", tag="")):
        lines = [*pair, closed_line("error"), not_its_twin]
        assert collect_every_way(lines).rpc_closed_errors == 3, not_its_twin


@pytest.mark.parametrize(
    ("others", "events"),
    [
        ([], 3),
        ([starting_line()], 3),  # this server's own process line names no other
        ([starting_line("go-hello")], 0),  # then nobody's: which timer wrote them is unknown
    ],
)
def test_untagged_closed_lines_of_several_timers_each_count(others: list[str], events: int) -> None:
    timers = [
        closed_line("error", "2346#0: *151", tag=""),
        closed_line("warn", "2346#0: *152", tag=""),
        closed_line("warn", "2346#0: *153", tag=""),
    ]
    for lines in ([*others, *timers], [*timers, *others]):
        assert collect_every_way(lines).rpc_closed_errors == events, lines


def _closed_lines(level: str, connection: int) -> str:
    return closed_line(level, f"2347#0: *{connection}")


def _kong_no_instance(level: str, connection: int) -> str:
    return (
        f"2023/07/05 09:31:51 [{level}] 1267#0: *{connection} [kong] mp_rpc.lua:343 "
        "[example-plugin] no plugin instance #7, client: 127.0.0.1"
    )


LAST = CLOSED_PAIRING_CONNECTIONS  # connections 0..LAST-1 fill the memory of unpaired [error]s


@pytest.mark.parametrize("line", [_closed_lines, _kong_no_instance])
@pytest.mark.parametrize(
    ("connections_and_levels", "twins"),
    [
        # every connection's [error] is remembered: the first one's [warn] is still its twin
        ([*((n, "error") for n in range(LAST)), (0, "warn")], 1),
        # one more connection: the oldest is forgotten, its [warn] is an event of its own
        ([*((n, "error") for n in range(LAST + 1)), (0, "warn")], 0),
        # a connection's new [error] makes it the newest: the next one forgets connection 1
        ([*((n, "error") for n in range(LAST)), (0, "error"), (LAST, "error"), (0, "warn")], 1),
        ([*((n, "error") for n in range(LAST)), (0, "error"), (LAST, "error"), (1, "warn")], 0),
    ],
)
def test_error_warn_pairing_remembers_the_last_connections(
    line: Callable[[str, int], str], connections_and_levels: list[tuple[int, str]], twins: int
) -> None:
    lines = [line(level, connection) for connection, level in connections_and_levels]
    signals = collect_lines(lines)
    assert signals.rpc_closed_errors + signals.no_instance_errors == len(lines) - twins


def test_closed_pairs_split_across_blocks_anywhere() -> None:
    # 14 events: pairs *1 *2 *5; *8's [error] and second [warn]; *12; *13; *3 and *4 (*3's
    # [warn] is its twin); *6's two [error]s; *7; *10; *11
    connections_and_levels = [
        ("*1", "error"),
        ("*1", "warn"),
        ("*2", "error"),
        ("*2", "warn"),
        ("*8", "error"),
        ("*8", "warn"),
        ("*8", "warn"),
        ("*12", "error"),
        ("*13", "warn"),
        ("*3", "error"),
        ("*4", "warn"),
        ("*3", "warn"),
        ("*5", "error"),
        ("*5", "warn"),
        ("*6", "error"),
        ("*6", "error"),
        ("*6", "warn"),
        ("*7", "error"),
        ("*10", "error"),
        ("*11", "warn"),
    ]
    lines = [
        (closed_line(level, f"2347#0: {conn}") + "\n").encode()
        for conn, level in connections_and_levels
    ]
    for cuts in itertools.combinations(range(1, len(lines)), 2):
        collector = Collector()
        for start, end in itertools.pairwise((0, *cuts, len(lines))):
            collector.feed_block(b"".join(lines[start:end]))
        assert collector.signals().rpc_closed_errors == 14, cuts
    assert collect_lines(lines).rpc_closed_errors == 14


def test_untagged_timer_lines_are_nobodys_once_another_plugin_is_named() -> None:
    timer_lines = (FIXTURES / "untagged_timer_3.4.1.0.log").read_text().splitlines()
    untagged = [line for line in timer_lines if "[example-plugin]" not in line]
    others = {
        "3.4-3.8 process line": starting_line("go-hello"),
        "3.9 process line": "[notice] 1#0: [kong] process.lua:152 [pluginserver] starting "
        "pluginserver process for go-hello",
        "exit line": "[notice] 1#0: [kong] process.lua:278 external pluginserver 'go-hello' "
        "terminated: exit 2",
        "another plugin's instance": "[debug] 1#0: *9 [kong] pb_rpc.lua:381 [go-hello] started "
        "plugin server: seq 1, worker 0, instance id 1",
    }
    alone = collect_lines(untagged)
    assert (alone.instance_starts, alone.rpc_closed_errors) == (2, 1)
    for name, line in others.items():  # before or after: the verdict waits for the end
        for lines in ([line, *untagged], [*untagged, line]):
            signals = collect_lines(lines)
            assert (signals.instance_starts, signals.rpc_closed_errors) == (0, 0), name


def test_3_9_start_is_counted_once_and_its_pid_names_the_server() -> None:
    lines = [
        "[notice] 1#0: [kong] process.lua:152 [pluginserver] starting pluginserver process "
        "for example-plugin, context: ngx.timer",
        "[notice] 1#0: [kong] process.lua:158 [pluginserver] started, pid 2590",
        "[notice] 1#0: [kong] process.lua:152 [pluginserver] starting pluginserver process "
        "for go-hello, context: ngx.timer",
        "[notice] 1#0: [kong] process.lua:158 [pluginserver] started, pid 2591",
        "[alert] 1#0: unknown process 2591 exited on signal 9",  # go-hello's
        "[alert] 1#0: unknown process 2590 exited on signal 9",
    ]
    ours = collect_lines(lines)
    theirs = collect_lines(lines, plugin="go-hello")
    assert (ours.plugin_server_starts, ours.plugin_server_exits) == (1, 1)
    assert (theirs.plugin_server_starts, theirs.plugin_server_exits) == (1, 1)


def test_3_9_start_cuts_the_new_call_lifetimes() -> None:
    start = (
        "[notice] 1#0: [kong] process.lua:152 [pluginserver] starting pluginserver process "
        "for example-plugin"
    )
    lines = [counter_line(700), start, counter_line(1), counter_line(3)]
    assert collect_lines(lines).new_calls_total == 703


@pytest.mark.parametrize(
    "not_respawned",
    [
        "[notice] 1#0: *1 [kong] process.lua:285 Exiting: pluginserver 'example-plugin' not "
        "respawned., context: ngx.timer",
        "[notice] 1#0: *1 [kong] process.lua:176 [pluginserver] exiting: pluginserver "
        "'example-plugin' not respawned., context: ngx.timer",
    ],
)
def test_not_respawned_is_an_exit_unless_terminated_said_so(not_respawned: str) -> None:
    terminated = (
        "[notice] 1#0: *1 [kong] process.lua:278 external pluginserver 'example-plugin' "
        "terminated: signal 15, context: ngx.timer"
    )
    # e.g. `command not found` while the worker exits: no `terminated` line for that start
    assert collect_lines([starting_line(), not_respawned]).plugin_server_exits == 1
    assert collect_lines([starting_line(), terminated, not_respawned]).plugin_server_exits == 1
    assert collect_lines([not_respawned], plugin="go-hello").plugin_server_exits == 0
    assert collect_lines([not_respawned]).plugin_server_exits == 1  # a log cut before the start


@pytest.mark.parametrize(
    "kong_line",
    [
        "[warn] 1268#0: *7110 [kong] mp_rpc.lua:340 [py-hello] no plugin instance 31, client: x",
        "[warn] 1267#0: *7106 [kong] mp_rpc.lua:343 [py-hello] no plugin instance #244",
        "[error] 1213#0: *1643 [kong] mp_rpc.lua:308 [py-hello] no plugin instance #11, client: x",
        "[error] 1213#0: *1644 [kong] mp_rpc.lua:308 [py-hello] instance id 0 not found, client: x",
    ],
)
def test_each_kong_side_no_plugin_instance_wording_alone(kong_line: str) -> None:
    assert collect_lines([kong_line], plugin="py-hello").no_instance_errors == 1
    assert collect_lines([kong_line], plugin="py-hell").no_instance_errors == 0


def test_unknown_process_counts_only_for_a_pid_the_server_spoke_as() -> None:
    killed = "2022/04/26 22:18:35 [alert] 1#0: unknown process {} exited on signal 9"
    lines = [killed.format(2350), relay_line("closed instance 1", 2350), killed.format(2350)]
    assert collect_lines(lines).plugin_server_exits == 1
    assert collect_lines(lines, plugin="go-hello").plugin_server_exits == 0


def test_legacy_go_pluginserver_lines_name_only_that_server() -> None:
    lines = (FIXTURES / "legacy_go_pluginserver_2.1.log").read_text().splitlines()
    assert collect_lines(lines) == expected(lines=5)


def test_kong_side_no_plugin_instance_pairs_with_the_relayed_line_either_way() -> None:
    kong = (
        "2023/07/05 09:31:51 [warn] 1267#0: *7106 [kong] mp_rpc.lua:343 [py-hello] no plugin "
        "instance #{}, client: 127.0.0.1"
    )
    relayed = (
        "2023/07/05 09:31:51 [info] 1267#0: *149 [py-hello:1269] WARN - [17:31:51] rpc: #1 "
        "error: no plugin instance #{}, context: ngx.timer"
    )
    cases = {
        (relayed.format(5), kong.format(5)): 1,
        (kong.format(5), relayed.format(5)): 1,
        (relayed.format(5), kong.format(6)): 2,
        (kong.format(5), kong.format(5)): 2,  # two of Kong's lines are two events
        (relayed.format(5), relayed.format(5), kong.format(5)): 2,
    }
    error = kong.replace("[warn]", "[error]")
    other_connection = kong.replace("*7106", "*7107")
    cases |= {
        (error.format(7), kong.format(7)): 1,  # Kong's [error] and its [warn] twin
        (relayed.format(7), error.format(7), kong.format(7)): 1,
        (error.format(7), kong.format(7), relayed.format(9)): 2,  # counting goes on after twins
        (error.format(7), other_connection.format(7)): 2,  # another connection's [warn]
        # a [warn] is the twin of its connection's last [error] only
        (error.format(7), error.format(5), kong.format(7)): 3,
    }
    for lines, events in cases.items():
        signals = collect_every_way(list(lines), plugin="py-hello")
        assert signals.no_instance_errors == events, lines
    farther = [relayed.format(5)] + [relayed.format(n) for n in range(100, 400)] + [kong.format(5)]
    assert collect_lines(farther, plugin="py-hello").no_instance_errors == 302  # out of reach
    farther = [kong.format(5)] + [kong.format(n) for n in range(100, 400)] + [relayed.format(5)]
    assert collect_lines(farther, plugin="py-hello").no_instance_errors == 302  # likewise


def test_closed_must_be_the_whole_message() -> None:
    lines = [
        "2023/11/21 22:33:08 [error] 1#0: [kong] init.lua:1 [example-plugin] closed socket early",
        "2023/11/21 22:33:08 [error] 1#0: [kong] init.lua:1 [example-plugin] closed",
        "2023/11/21 22:33:08 [error] 1#0: [kong] init.lua:1 [example-plugin-2] closed, client: x",
    ]
    assert collect_every_way(lines).rpc_closed_errors == 1


def test_starting_names_exactly_this_server() -> None:
    lines = [
        starting_line("example-plugin-2"),
        starting_line() + ", context: ngx.timer",
        "2023/11/21 22:33:01 [notice] 1#0: *1 [kong] x.lua:1 Restarting example-plugin",
        starting_line(),
    ]
    assert collect_lines(lines).plugin_server_starts == 2


def test_counter_attribution_by_the_tag_before_the_message() -> None:
    lines = [
        "New() has been called 5 times",  # untagged: this plugin's (prefix unconfirmed)
        "[kong] New() has been called 6 times",
        relay_line("New() has been called 7 times", 2350),
        "[other-plugin] New() has been called 500 times",
        relay_line("New() has been called 600 times", 2351, "other-plugin"),
    ]
    signals = collect_every_way(lines)
    assert (signals.counter_lines, signals.new_calls_total) == (3, 7)
    # untagged beside namespaced, with no relayed line: both this plugin's
    signals = collect_every_way([counter_line(3), "New() has been called 5 times"])
    assert (signals.counter_lines, signals.new_calls_total) == (2, 5)


@pytest.mark.parametrize(
    "after",
    [
        b"2023/11/21 22:33:08 [debug] 2347#0: *655 [kong] pb_rpc.lua:344 [example-plugin] ",
        b"\x00\x13\xff garbage\n",
    ],
    ids=["last line cut after this plugin's tag", "binary garbage"],
)
def test_another_plugins_counter_stays_its_own_whatever_follows(after: bytes) -> None:
    data = counter_line(500, "other-plugin").encode() + b"\n" + after
    collector = Collector()
    collector.feed_block(data)
    signals = collector.signals()
    assert (signals.counter_lines, signals.new_calls_total) == (0, 0)


def test_restart_line_opens_a_new_lifetime() -> None:
    lines = [counter_line(700), starting_line(), counter_line(1), counter_line(3)]
    assert collect_lines(lines).new_calls_total == 703


def test_new_pid_without_starting_line_opens_a_new_lifetime() -> None:
    lines = [
        relay_line("closed instance 1", 2350),
        counter_line(50),
        relay_line("closed instance 2", 2350),
        relay_line("Listening on socket: /usr/local/kong/example-plugin.socket", 2399),
        counter_line(2),
        counter_line(4),
        relay_line("closed instance 3", 2350),  # a late line from the old server opens nothing
        counter_line(6),
    ]
    assert collect_lines(lines).new_calls_total == 50 + 6


def test_starting_then_first_pid_is_one_lifetime() -> None:
    lines = [
        relay_line("closed instance 1", 2350),
        counter_line(40),
        starting_line(),
        counter_line(1),
        counter_line(3),
        relay_line("closed instance 1", 2400),
        counter_line(5),
    ]
    assert collect_lines(lines).new_calls_total == 40 + 5


def test_sharp_drop_without_restart_line_is_a_restart() -> None:
    lines = [counter_line(value) for value in [880, 900, 2, 3, 5, 4, 9]]
    assert collect_lines(lines).new_calls_total == 900 + 9


def test_single_sharp_straggler_is_not_a_restart() -> None:
    lines = [counter_line(value) for value in [880, 900, 2, 905, 3, 4, 910]]
    assert collect_lines(lines).new_calls_total == 910


@pytest.mark.parametrize(
    ("values", "new_calls_total"),
    [
        ([880, 900, 2, 905, 3, 4, 910], 910),  # stragglers, however the log is cut into blocks
        ([900, 2, 9, 5], 900 + 9),  # three sharp drops: the new server's highest is 9
        ([900, 150, 905, 2, 3, 4], 905 + 4),  # a straggler run ended by 905 is forgotten
        ([4000, 900, 950, 980, 2, 3, 4], 4000 + 980 + 4),  # two unseen restarts in a row
        ([1000, 250, 250, 250], 1000 + 250),  # a quarter of the highest is still a sharp drop
        ([260, 60, 60, 60], 260 + 60),  # exactly SHARP_DROP_MIN below is still a sharp drop
        ([240, 41, 45, 50], 240),  # less than SHARP_DROP_MIN below and short: stragglers
        ([1000, 251, 251, 251], 1000),  # more than a quarter: stragglers
    ],
)
def test_unseen_restarts_by_sharp_drops(values: list[int], new_calls_total: int) -> None:
    lines = [counter_line(value) for value in values]
    assert collect_every_way(lines).new_calls_total == new_calls_total


@pytest.mark.parametrize("values", [[5, 7], [900, 2], [900, 2, 3, 4, 1], [3, 900]])
def test_latest_counter_is_the_last_value_logged(values: list[int]) -> None:
    lines = [counter_line(value) for value in values]
    one_by_one, block = Collector(), Collector()
    assert one_by_one.latest_counter() is None
    for line in lines:
        one_by_one.feed(line)
    block.feed_block("".join(line + "\n" for line in lines).encode())
    assert one_by_one.latest_counter() == block.latest_counter() == values[-1]


def test_new_pid_without_counter_lines_adds_nothing() -> None:
    lines = [
        relay_line("closed instance 1", 2350),
        counter_line(900),
        relay_line("Listening on socket: /usr/local/kong/example-plugin.socket", 2399),
    ]
    assert collect_every_way(lines).new_calls_total == 900


def test_new_pid_after_a_forgotten_straggler_starts_from_zero() -> None:
    lines = [relay_line("closed instance 1", 2350)]
    lines += [counter_line(value) for value in [900, 150, 905]]  # 150: a lone straggler
    lines += [relay_line("Listening on socket: /usr/local/kong/example-plugin.socket", 2399)]
    lines += [counter_line(3)]
    assert collect_every_way(lines).new_calls_total == 905 + 3


def test_killing_the_speaking_server_cuts_its_lifetime_once() -> None:
    killed = "2022/04/26 22:18:35 [alert] 1#0: unknown process {} exited on signal 9"
    lines = [
        relay_line("closed instance 1", 2350),
        counter_line(50),
        relay_line("Listening on socket: /usr/local/kong/example-plugin.socket", 2351),
        counter_line(2),
        killed.format(2351),  # `kong reload` killed the server speaking now
        counter_line(1),  # the next server, before it relays a line of its own
        relay_line("closed instance 1", 2352),
        counter_line(3),
    ]
    signals = collect_every_way(lines)
    assert (signals.new_calls_total, signals.plugin_server_exits) == (50 + 2 + 3, 1)


def test_a_late_counter_line_after_terminated_is_of_the_server_that_ended() -> None:
    terminated = (
        "[notice] 1#0: *1 [kong] process.lua:278 external pluginserver 'example-plugin' "
        "terminated: signal 15, context: ngx.timer"
    )
    # 39: a worker's line overtaken by the `terminated` line; then the server starts again
    lines = [counter_line(38), counter_line(40), terminated, counter_line(39)]
    lines += [starting_line(), counter_line(1), counter_line(3)]
    signals = collect_every_way(lines)
    assert (signals.new_calls_total, signals.plugin_server_exits) == (40 + 3, 1)


SPAWNING = (
    "[notice] 1#0: [kong] process.lua:152 [pluginserver] starting pluginserver process for {}, "
    "context: ngx.timer"
)
SPAWNED = "[notice] 1#0: [kong] process.lua:158 [pluginserver] started, pid {}"
KILLED = "[alert] 1#0: unknown process {} exited on signal 9"


def test_3_9_pid_of_a_server_killed_before_it_spoke_cuts_its_lifetime() -> None:
    lines = [SPAWNING.format("example-plugin"), SPAWNED.format(2590), counter_line(700)]
    lines += [KILLED.format(2590), counter_line(1), counter_line(3)]
    signals = collect_every_way(lines)
    assert (signals.new_calls_total, signals.plugin_server_exits) == (700 + 3, 1)


@pytest.mark.parametrize(
    ("lines", "starts_and_exits"),
    [
        # our start failed (no `started, pid`); the pid after go-hello's start is go-hello's
        (
            [
                SPAWNING.format("example-plugin"),
                SPAWNING.format("go-hello"),
                SPAWNED.format(2591),
                KILLED.format(2591),
            ],
            (1, 0),
        ),
        # another server's exit between our start's two lines: the pid is still ours
        (
            [
                SPAWNING.format("example-plugin"),
                "[notice] 1#0: *1 [kong] process.lua:278 external pluginserver 'go-hello' "
                "terminated: signal 15, context: ngx.timer",
                SPAWNED.format(2590),
                KILLED.format(2590),
            ],
            (1, 1),
        ),
    ],
)
def test_3_9_started_pid_belongs_to_the_last_starting_line(
    lines: list[str], starts_and_exits: tuple[int, int]
) -> None:
    signals = collect_every_way(lines)
    assert (signals.plugin_server_starts, signals.plugin_server_exits) == starts_and_exits


@pytest.mark.parametrize(
    "lines",
    [
        [SPAWNED.format(2591), KILLED.format(2591)],  # a log cut between the two lines
        # Kong logs the pair once per spawn: a second `started, pid` is no start of ours
        [SPAWNING.format("example-plugin"), SPAWNED.format(2590), SPAWNED.format(2591),
         KILLED.format(2591)],
    ],
)  # fmt: skip
def test_3_9_started_pid_without_its_starting_line_names_no_server(lines: list[str]) -> None:
    signals = collect_every_way(lines)
    assert signals.plugin_server_exits == 0


@pytest.mark.parametrize("level", ["error", "warn", "notice", "alert"])
def test_process_lines_are_read_at_each_kong_level(level: str) -> None:
    lines = [
        starting_line().replace("[notice]", f"[{level}]"),
        counter_line(700),
        starting_line().replace("[notice]", f"[{level}]"),
        counter_line(3),
    ]
    signals = collect_every_way(lines)
    assert (signals.plugin_server_starts, signals.new_calls_total) == (2, 703)


def test_legacy_not_respawned_alone_is_an_exit() -> None:
    lines = [
        "2020/06/01 10:00:00 [notice] 25#0: *2 [kong] go.lua:189 Starting go-pluginserver, "
        "context: ngx.timer",
        "2020/06/01 10:00:09 [notice] 25#0: *2 [kong] go.lua:213 Exiting: go-pluginserver not "
        "respawned., context: ngx.timer",
    ]
    signals = collect_every_way(lines, plugin="go-pluginserver")
    assert (signals.plugin_server_starts, signals.plugin_server_exits) == (1, 1)


def test_low_run_before_a_new_pid_belongs_to_the_new_server() -> None:
    lines = [relay_line("closed instance 1", 2350), counter_line(900)]
    lines += [counter_line(2), counter_line(8), relay_line("closed instance 1", 2401)]
    lines += [counter_line(7)]  # out of order within the new server
    assert collect_lines(lines).new_calls_total == 900 + 8


def test_low_run_before_a_starting_line_is_a_lifetime_of_its_own() -> None:
    lines = [counter_line(value) for value in [900, 2, 5]]
    lines += [starting_line(), counter_line(1), counter_line(3)]
    assert collect_lines(lines).new_calls_total == 900 + 5 + 3


def test_start_up_stragglers_are_not_a_restart() -> None:
    lines = [counter_line(value) for value in [90, 3, 5, 7, 92]]
    assert collect_lines(lines).new_calls_total == 92


def test_lag_of_a_few_hundred_at_high_counts_is_not_a_restart() -> None:
    lines = [counter_line(value) for value in [5000, 4700, 4710, 4720, 5010]]
    assert collect_lines(lines).new_calls_total == 5010


def test_fifty_concurrent_requests_out_of_order_never_look_like_a_restart() -> None:
    # about 2 New() per request; each line may be overtaken by up to 50 later ones
    values = [2 * request for request in range(1, 1001)]
    shuffled = [value for window in _windows(values, 50, random.Random(7)) for value in window]
    assert sorted(shuffled) == values
    assert max(a - b for a, b in itertools.pairwise(shuffled)) > 24
    assert collect_lines(counter_line(value) for value in shuffled).new_calls_total == 2000


def _windows(values: list[int], size: int, rng: random.Random) -> list[list[int]]:
    chunks = [values[start : start + size] for start in range(0, len(values), size)]
    for chunk in chunks:
        rng.shuffle(chunk)
    return chunks


def test_many_lifetimes_across_chunks_in_a_file(tmp_path: Path) -> None:
    lines = []
    for _ in range(30):
        lines += [starting_line()] + [counter_line(value) for value in range(1, 201)]
    path = tmp_path / "kong.log"
    path.write_text("\n".join(lines) + "\n")
    signals = collect_file(path)
    assert (signals.new_calls_total, signals.plugin_server_starts, signals.lines) == (
        30 * 200,
        30,
        30 * 201,
    )


def test_one_megabyte_line_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "kong.log"
    path.write_bytes(
        b"x" * 1_000_000 + counter_line(42).encode() + b"\n" + counter_line(43).encode()
    )
    signals = collect_file(path)
    assert (signals.lines, signals.counter_lines, signals.new_calls_total) == (2, 2, 43)


def test_fifty_megabyte_line_without_newline_is_one_line_in_bounded_memory(
    tmp_path: Path,
) -> None:
    path = tmp_path / "kong.log"
    with path.open("wb") as stream:
        stream.write(counter_line(5).encode() + b"\n")
        stream.write(counter_line(11).encode())  # the head of the long line is still read
        for _ in range(50):
            stream.write(b"\xff" * 1_000_000)
        stream.write(counter_line(999).encode())  # beyond MAX_LINE_BYTES: skipped
    tracemalloc.start()
    try:
        signals = collect_file(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (signals.lines, signals.counter_lines, signals.new_calls_total) == (2, 2, 11)
    assert peak < 3 * MAX_LINE_BYTES


def test_memory_does_not_grow_with_the_log(tmp_path: Path) -> None:
    block = "".join(
        line + "\n"
        for line in [counter_line(3), relay_line("closed instance 1", 2350), "junk " * 20]
    )
    path = tmp_path / "kong.log"
    path.write_text(block * 40_000)  # about 15 MB
    tracemalloc.start()
    try:
        signals = collect_file(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (signals.lines, signals.instance_closes) == (120_000, 40_000)
    assert peak < 2_000_000


def test_random_binary_garbage_never_crashes_or_counts(tmp_path: Path) -> None:
    rng = random.Random(11)
    noise = bytes(rng.randrange(256) for _ in range(300_000)).replace(b"New()", b"Old()")
    path = tmp_path / "kong.log"
    path.write_bytes(noise + b"\n" + counter_line(8).encode() + b"\r\n" + noise)
    signals = collect_file(path)
    assert signals.new_calls_total == 8
    assert signals.lines == noise.count(b"\n") * 2 + 2 + (not noise.endswith(b"\n"))


def test_line_blocks_cut_over_long_lines_exactly() -> None:
    data = b"short\n" + b"a" * 40 + b"\nmid\n" + b"b" * 17
    blocks = list(line_blocks(io.BytesIO(data), chunk_bytes=4, max_line_bytes=16))
    assert b"".join(blocks) == b"short\n" + b"a" * 16 + b"\nmid\n" + b"b" * 16


def test_line_blocks_refuse_chunks_longer_than_a_line() -> None:
    with pytest.raises(ValueError, match=r"^chunk_bytes must not exceed max_line_bytes$"):
        list(line_blocks(io.BytesIO(b""), chunk_bytes=10, max_line_bytes=5))


@pytest.mark.parametrize("chunk_bytes", [1, 2, 3, 4, 5, 8])
def test_line_blocks_give_back_short_lines_unchanged_in_whole_lines(chunk_bytes: int) -> None:
    data = b"\nab\n\n\na\nb\nabcd\nbc\n\nabcdefgh\nabc\nd\ne\nabcdefgh\na"
    blocks = list(line_blocks(io.BytesIO(data), chunk_bytes=chunk_bytes, max_line_bytes=8))
    assert b"".join(blocks) == data
    assert all(block.endswith(b"\n") for block in blocks[:-1])
    assert all(blocks)


def test_empty_log() -> None:
    assert collect_lines([]) == ZERO
    assert collect_lines([""]) == expected(lines=1)


def test_to_dict_names_every_count() -> None:
    signals = FIXTURE_SIGNALS["restart_counter_reset.log"]
    assert signals.to_dict() == {
        "new_calls_total": 48,
        "counter_lines": 9,
        "instance_starts": 18,
        "instance_closes": 9,
        "no_instance_errors": 9,
        "rpc_closed_errors": 9,
        "plugin_server_starts": 2,
        "plugin_server_exits": 1,
        "lines": 78,
        "tap_starts": 0,
        "tap_instance_starts": 0,
        "tap_instance_closes": 0,
        "tap_errors": 0,
        "tap_events": 0,
        "tap_dropped_bytes": 0,
        "tap_ran_on": 0,
    }


def test_missing_file_says_which(tmp_path: Path) -> None:
    missing = tmp_path / "nope.log"
    with pytest.raises(UsageError, match=r"nope\.log") as raised:
        collect_file(missing)
    # the OS's reason, then what to do about it
    assert str(raised.value).endswith(
        f"'{missing}': {os.strerror(errno.ENOENT)}; pass a readable log file (e.g. saved from "
        "`docker compose logs kong`)"
    )


def test_str_lines_that_cannot_be_utf_8_are_still_counted() -> None:
    # e.g. lines read with errors="surrogateescape" from a log with invalid UTF-8
    signals = collect_lines(["\udcff" + counter_line(5), counter_line(6)])
    assert (signals.lines, signals.counter_lines, signals.new_calls_total) == (2, 2, 6)


def test_over_long_str_line_is_matched_on_its_head_only() -> None:
    head = counter_line(11)
    line = head + "x" * (MAX_LINE_BYTES - len(head)) + counter_line(999)
    signals = collect_lines([line])
    assert (signals.lines, signals.counter_lines, signals.new_calls_total) == (1, 1, 11)


def test_bad_plugin_name_is_refused() -> None:
    with pytest.raises(UsageError, match="plugin server name") as raised:
        collect_lines([], plugin="bad name]")
    assert str(raised.value).endswith(
        "use the plugin's name as Kong knows it (letters, digits, '-', '_' and '.'), "
        "e.g. example-plugin"
    )


# --- real Kong logs users committed to public bug reproductions (see its README) ---

# Each truth.json key -> our LogSignals field, in one place.
TRUTH_KEY_TO_SIGNAL = {
    "new_calls_total": "new_calls_total",
    "counter_lines": "counter_lines",
    "instance_starts": "instance_starts",
    "instance_closes": "instance_closes",
    "no_instance_errors": "no_instance_errors",
    "rpc_closed_errors": "rpc_closed_errors",
    "plugin_server_starts": "plugin_server_starts",
    "plugin_server_exits": "plugin_server_exits",
    "lines": "lines",
}
REAL_LOG_CHECKS = [
    ("06-k2.3.2-hello-embedded-start", "hello"),
    ("12-k2.7.1-four-pluginservers-reload", "goplugin"),
    ("12-k2.7.1-four-pluginservers-reload", "rustplugin"),
    ("12-k2.7.1-four-pluginservers-reload", "pythonplugin"),
    ("12-k2.7.1-four-pluginservers-reload", "jsplugin"),
    ("13-k2.7.1-goplugin-three-reloads", "goplugin"),
    ("14-k2.8.1-goplugin-reload-closed", "goplugin"),
    ("15-k3.1.0-goplugin-reloads", "goplugin"),
    ("17-k3.3.0-python-reconfigure-race", "python"),
    ("19-k3.9.0-go-hello-startup", "go-hello"),
]
# Human counts we cannot match honestly: (log, plugin) -> {signal: (what we count, why)}
HUMAN_COUNTS_WE_DO_NOT_MATCH = {
    ("12-k2.7.1-four-pluginservers-reload", "rustplugin"): {
        "plugin_server_exits": (
            0,
            "the Rust server never writes a line, so no line names its PID; the human count "
            "infers 'unknown process 1129' from spawn order (between goplugin 1128 and "
            "pythonplugin 1130), which a log line does not say",
        ),
    },
}


def real_logs_dir(real_logs: Path) -> Path:
    """`real_logs` when it is there. Without it the test skips on a person's machine (a fresh clone
    has no ../shared, and the fixtures of ours below pin the same wordings) and fails in CI (env
    `CI` set), which must bring the folder."""
    if real_logs.is_dir():
        return real_logs
    reason = (
        f"no real Kong logs at {real_logs}: users' logs from public bug reports are not shipped "
        "with the repository (tests/fixtures pin their wordings)"
    )
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must copy shared/ beside the clone")
    pytest.skip(reason)


def _real_log(stem: str, suffix: str) -> Path:
    path = real_logs_dir(REAL_LOGS) / f"{stem}{suffix}"
    if not path.is_file():
        pytest.fail(f"real Kong log {path} is missing: copy all of shared/real-logs")
    return path


def _human_counts(stem: str, plugin: str) -> dict[str, int]:
    truth = json.loads(_real_log(stem, ".truth.json").read_text())
    (check,) = [check for check in truth["checks"] if check["plugin"] == plugin]
    human: dict[str, int] = check["human"]
    assert set(human) == set(TRUTH_KEY_TO_SIGNAL), "truth.json keys changed: update the table"
    return human


def test_real_logs_are_all_there() -> None:
    truths = sorted(path.name for path in real_logs_dir(REAL_LOGS).glob("*.truth.json"))
    assert truths == sorted({f"{stem}.truth.json" for stem, _ in REAL_LOG_CHECKS})


@pytest.mark.parametrize("ci", ["", "true"])
def test_without_real_logs_a_clone_skips_and_ci_fails(
    ci: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", ci)
    outcome = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(outcome) as raised:
        real_logs_dir(tmp_path / "shared" / "real-logs")
    assert f"no real Kong logs at {tmp_path / 'shared' / 'real-logs'}" in str(raised.value)
    assert ("CI must copy shared/" in str(raised.value)) == bool(ci)
    assert real_logs_dir(tmp_path) == tmp_path  # there: used, whether CI or not


# Each real log's wordings, pinned by an excerpt of ours in tests/fixtures (made-up PIDs, times
# and counts, the same kinds of lines), so a clone without ../shared still tests every wording.
REAL_LOG_WORDINGS_IN = {
    # Compose prefix pasted into a Markdown list; `lua pipe child close()` is no close
    "06-k2.3.2-hello-embedded-start": "compose_indented_2.3.log",
    # four servers, Python and JS servers' own lines (JS with colour codes), `kong reload` kills
    "12-k2.7.1-four-pluginservers-reload": "four_servers_reload_2.7.log",
    # nginx's `unknown process P exited with code N` (not a plugin server), `closed keepalive
    # connection`, `communicate(): ... closed`, signals 9 and 15, the acme `timer started`
    "13-k2.7.1-goplugin-three-reloads": "reload_nginx_noise_3.1.log",
    "14-k2.8.1-goplugin-reload-closed": "reload_nginx_noise_3.1.log",
    "15-k3.1.0-goplugin-reloads": "reload_nginx_noise_3.1.log",
    # `kubectl logs` (no prefix), one Python server `python` serving plugin_1..plugin_N
    "17-k3.3.0-python-reconfigure-race": "python_server_many_plugins_3.3.log",
    # 3.9's `[pluginserver] loading ...` lines are no start; Compose's own lines
    "19-k3.9.0-go-hello-startup": "startup_cut_3.9.log",
}
# (fixture, plugin) -> the counts read by hand
REAL_WORDING_FIXTURES = {
    ("compose_indented_2.3.log", "hello"): expected(plugin_server_starts=1, lines=3),
    ("four_servers_reload_2.7.log", "goplugin"): expected(
        rpc_closed_errors=2, plugin_server_starts=2, plugin_server_exits=1, lines=26
    ),
    # never wrote a line, so no line names its PID: its kill is not counted (as in the real log)
    ("four_servers_reload_2.7.log", "rustplugin"): expected(plugin_server_starts=2, lines=26),
    # the server's `no plugin instance #1` and Kong's for the same id are one event
    ("four_servers_reload_2.7.log", "pythonplugin"): expected(
        instance_starts=2,
        no_instance_errors=1,
        plugin_server_starts=2,
        plugin_server_exits=1,
        lines=26,
    ),
    # `terminated` after the reload, then the first server (PID 2231) killed
    ("four_servers_reload_2.7.log", "jsplugin"): expected(
        instance_starts=1,
        no_instance_errors=1,
        plugin_server_starts=3,
        plugin_server_exits=2,
        lines=26,
    ),
    ("reload_nginx_noise_3.1.log", "goplugin"): expected(
        rpc_closed_errors=1, plugin_server_starts=2, plugin_server_exits=2, lines=16
    ),
    # Kong's line names plugin_2, not the server: only the server's own line counts for it
    ("python_server_many_plugins_3.3.log", "python"): expected(
        instance_starts=3, no_instance_errors=1, lines=8
    ),
    ("python_server_many_plugins_3.3.log", "plugin_2"): expected(no_instance_errors=1, lines=8),
    ("startup_cut_3.9.log", "go-hello"): expected(lines=10),
}


def test_every_real_log_has_an_excerpt_of_ours_in_its_wordings() -> None:
    pinned = {(REAL_LOG_WORDINGS_IN[stem], plugin) for stem, plugin in REAL_LOG_CHECKS}
    assert pinned <= set(REAL_WORDING_FIXTURES)


@pytest.mark.parametrize(("name", "plugin"), sorted(REAL_WORDING_FIXTURES))
def test_real_log_wordings_in_excerpts_of_ours(name: str, plugin: str) -> None:
    signals = REAL_WORDING_FIXTURES[(name, plugin)]
    assert _one_by_one_and_in_tiny_chunks((FIXTURES / name).read_bytes(), plugin) == (
        signals,
        signals,
        signals,
    )


@pytest.mark.parametrize(("stem", "plugin"), REAL_LOG_CHECKS)
def test_real_logs_agree_with_the_human_counts(stem: str, plugin: str) -> None:
    signals = collect_file(_real_log(stem, ".log"), plugin)
    assert not signals.tapped  # no tap ran in these logs, and nothing there reads as one
    ours = {name: count for name, count in signals.to_dict().items() if not name.startswith("tap_")}
    wanted = dict(_human_counts(stem, plugin))
    for signal, (count, _why) in HUMAN_COUNTS_WE_DO_NOT_MATCH.get((stem, plugin), {}).items():
        assert wanted[signal] != count, f"{signal} now matches: drop the exception"
        wanted[signal] = count
    assert ours == {TRUTH_KEY_TO_SIGNAL[key]: count for key, count in wanted.items()}


@pytest.mark.parametrize(("stem", "plugin"), REAL_LOG_CHECKS)
def test_real_logs_give_the_same_counts_by_line_and_by_block(stem: str, plugin: str) -> None:
    one_by_one, tiny_chunks, whole = _one_by_one_and_in_tiny_chunks(
        _real_log(stem, ".log").read_bytes(), plugin
    )
    assert one_by_one == tiny_chunks == whole


def tap_line(message: str, pid: int = 2350, name: str = "example-plugin") -> str:
    return f"2023/11/21 22:33:08 [info] 2346#0: *1 [{name}:{pid}] kpm-tap: {message}"


def test_tap_lines_are_counted_per_kind_and_totals_per_tap_process() -> None:
    lines = [
        tap_line(
            "listening socket=/usr/local/kong/example-plugin.socket server=x pid=7 "
            "protocol=ProtoBuf:1"
        ),
        tap_line("instance started id=1 total=1"),
        tap_line("instance started id=2 total=2"),
        tap_line("instance closed id=1 total=1"),
        tap_line('error call=HandleEvent id=1 total=1 reason="server closed"'),
        tap_line("totals started=2 closed=1 events=40 errors=1 dropped=0"),
        tap_line("totals started=2 closed=1 events=90 errors=1 dropped=3"),
        # the tap was restarted (another PID): its totals start again and add up
        tap_line("listening socket=s server=x pid=9 protocol=ProtoBuf:1", pid=2400),
        tap_line("instance started id=3 total=1", pid=2400),
        tap_line("totals started=1 closed=0 events=5 errors=0 dropped=0", pid=2400),
        # another plugin server's tap is not ours
        tap_line("instance started id=9 total=1", name="other-plugin"),
        tap_line("totals started=1 closed=0 events=500 errors=0 dropped=0", name="other-plugin"),
    ]
    signals = collect_lines(lines)
    assert signals.tapped
    assert (signals.tap_starts, signals.tap_instance_starts, signals.tap_instance_closes) == (
        2,
        3,
        1,
    )
    assert (signals.tap_errors, signals.tap_events, signals.tap_dropped_bytes) == (1, 95, 3)
    # a block gives what the lines one at a time give
    collector = Collector()
    collector.feed_block("\n".join(lines).encode() + b"\n")
    assert collector.signals() == signals


def test_the_tap_counts_the_requests_the_plugin_ran_on_by_its_busiest_phase() -> None:
    lines = [
        tap_line(
            "totals started=4 closed=0 events=1800 errors=0 dropped=0 phases=access:900,log:898"
        ),
        # the latest totals of a process replace its earlier ones
        tap_line(
            "totals started=4 closed=0 events=2002 errors=0 dropped=0 "
            "phases=access:1000,header_filter:1001,log:1"
        ),
        # a second tap process (a restart) adds its own
        tap_line("totals started=1 closed=0 events=7 errors=0 dropped=0 phases=log:7", pid=2400),
        # a tap too old to count phases says nothing about them
        tap_line("totals started=1 closed=0 events=9 errors=0 dropped=0", pid=2500),
        tap_line(
            "totals started=1 closed=0 events=5 errors=0 dropped=0 phases=access:5",
            name="other-plugin",
        ),
    ]
    signals = collect_lines(lines)
    assert (signals.tap_events, signals.tap_ran_on) == (2018, 1008)
    collector = Collector()
    collector.feed_block("\n".join(lines).encode() + b"\n")
    assert collector.signals() == signals


def test_a_plugin_named_with_capitals_is_found_where_kong_lowercases_it() -> None:
    """Kong relays a server's output as `[lowercased:PID]` and writes `Starting lowercased`;
    the plugin's own namespace (`[RateTag] closed`) keeps the name as written."""
    lines = [
        "2023/11/21 22:33:00 [notice] 2346#0: *1 [kong] "
        "process.lua:252 Starting ratetag, context: init_worker_by_lua*",
        tap_line("instance started id=1 total=1", name="ratetag"),
        tap_line(
            "totals started=1 closed=0 events=6 errors=0 dropped=0 phases=access:3,log:3",
            name="ratetag",
        ),
        "2023/11/21 22:33:08 [info] 2346#0: *1 [ratetag:2350] "
        "2023/11/21 22:33:08 closed instance 1, context: ngx.timer",
        "2023/11/21 22:33:08 [warn] 2347#0: *654 [kong] "
        "pb_rpc.lua:417 [RateTag] closed, client: 127.0.0.1",
    ]
    for name in ("RateTag", "ratetag"):
        signals = collect_lines(lines, plugin=name)
        assert (signals.plugin_server_starts, signals.tap_instance_starts, signals.tap_ran_on) == (
            1,
            1,
            3,
        ), name
        assert signals.instance_closes == 1, name
    # Kong's own line carries the plugin's name as written: given as written, it is found
    assert collect_lines(lines, plugin="RateTag").rpc_closed_errors == 1
    # a name without capitals is matched as written: another plugin's lines stay apart
    assert collect_lines(lines, plugin="ratetags").tap_instance_starts == 0


def test_a_tap_error_naming_a_missing_instance_is_no_server_event() -> None:
    lines = [
        tap_line('error call=HandleEvent id=5 total=1 reason="no plugin instance 5"', name="py"),
        tap_line('error call=CloseInstance id=5 total=2 reason="no plugin instance #5"', name="py"),
    ]
    signals = collect_lines(lines, plugin="py")
    assert (signals.no_instance_errors, signals.tap_errors) == (0, 2)
    assert not collect_lines([counter_line(3)]).tapped


def test_plugin_servers_in_a_log_are_named_by_every_kind_of_line(tmp_path: Path) -> None:
    log = tmp_path / "kong.log"
    log.write_text(
        "\n".join(
            [
                "2023/11/21 22:33:00 [notice] 1#0: [kong] process.lua:97 [pluginserver] loading "
                "protocol ProtoBuf:1 for plugin go-hello",
                "2023/11/21 22:33:00 [notice] 1#0: [kong] process.lua:252 Starting GoPlugin, "
                "context: init_worker_by_lua*",
                "2023/11/21 22:33:00 [notice] 1#0: [kong] process.lua:252 [pluginserver] starting "
                "pluginserver process for py",
                "2023/11/21 22:33:00 [info] 1#0: *1 [js-one:40] hello",
                "2023/11/21 22:33:00 [debug] 1#0: *1 [kong] pb_rpc.lua:1 [rate] started plugin "
                "server: seq 1, worker 0, instance id 1",
                "2023/11/21 22:33:00 [info] 1#0: *1 [go-hello:41] again",
                "2023/11/21 22:33:00 [info] 1#0: *1 [kong] init.lua:1 [lua] nothing here",
            ]
        )
    )
    assert plugin_servers_in(log) == ["go-hello", "goplugin", "py", "js-one", "rate"]
    with pytest.raises(UsageError, match="cannot read the Kong log"):
        plugin_servers_in(tmp_path / "missing.log")


def _shuffled_by_workers(values: list[int], seed: int) -> list[int]:
    """Values as several workers write them: each one a few lines from its place."""
    rng = random.Random(seed)
    return [v for _, v in sorted((i + rng.uniform(0, 4), v) for i, v in enumerate(values))]


@pytest.mark.parametrize("seed", [None, 1, 2, 3])
def test_an_unseen_restart_of_a_small_counter_is_told_by_the_climbing_run_after_it(
    seed: int | None,
) -> None:
    values = list(range(1, 41)) + list(range(1, 31))  # 40, restarted unseen, then 30
    if seed is not None:
        values = _shuffled_by_workers(values[:40], seed) + _shuffled_by_workers(values[40:], seed)
    lines = [counter_line(value) for value in values]
    assert collect_every_way(lines).new_calls_total == 40 + 30


@pytest.mark.parametrize(
    "stragglers",
    [[5, 6, 7], [3, 9, 4, 8, 6, 7, 10], [2, 2, 2, 2, 2, 2, 2, 2, 2]],  # short, or not climbing
)
def test_a_short_or_flat_run_of_small_stragglers_is_not_a_restart(stragglers: list[int]) -> None:
    values = list(range(1, 41)) + stragglers + list(range(41, 46))
    lines = [counter_line(value) for value in values]
    assert collect_every_way(lines).new_calls_total == 45


def test_the_old_python_servers_instance_id_not_found_is_a_missing_instance() -> None:
    # kong-python-pdk 0.2x: its own line, relayed, and Kong's, tagged with the plugin's name
    relayed = (
        "2021/03/02 10:00:00 [info] 1267#0: *149 [py-hello:1269] WARN - [10:00:00] rpc: #3 "
        "error: instance id {} not found, context: ngx.timer"
    )
    kong = (
        "2021/03/02 10:00:00 [error] 1267#0: *7 [kong] mp_rpc.lua:308 [py-hello] instance id {} "
        "not found, client: 127.0.0.1"
    )
    for lines, events in {
        (relayed.format(3),): 1,
        (relayed.format(3), kong.format(3)): 1,  # one event, logged by both
        (kong.format(3), relayed.format(3)): 1,
        (relayed.format(3), kong.format(4)): 2,
    }.items():
        assert collect_every_way(list(lines), plugin="py-hello").no_instance_errors == events, lines


@pytest.mark.parametrize(
    ("line", "plugin", "signal"),
    [
        ("[warn][kong] mp_rpc.lua:340 [py-hello] no plugin instance 31", "py-hello", "missing"),
        ("[warn][kong]mp_rpc.lua:340[py-hello]no plugin instance #31", "py-hello", "missing"),
        ("2023/11/21 22:33:08 [error][kong] pb_rpc.lua:413 [example-plugin] closed", "", "closed"),
        ("[warn] [kong] pb_rpc.lua:417 [example-plugin] closed, client: 1.2.3.4", "", "closed"),
        ("[warn][kong]pb_rpc.lua:417[example-plugin]closed", "", "closed"),
        ("[notice][kong] process.lua:252 Starting example-plugin", "", "start"),
    ],
)
def test_lines_as_pasted_into_issues(line: str, plugin: str, signal: str) -> None:
    # pasted without the worker's pid, and with the spaces between the tags gone
    signals = collect_every_way([line], plugin=plugin or "example-plugin")
    got = {
        "missing": signals.no_instance_errors,
        "closed": signals.rpc_closed_errors,
        "start": signals.plugin_server_starts,
    }
    assert got == {name: int(name == signal) for name in got}
