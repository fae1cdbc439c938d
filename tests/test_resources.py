"""The resource sampler's stream, rows and summary, without Docker."""

from __future__ import annotations

import subprocess

from orchestration import resources
from orchestration.resources import Row, Tally, parse_process_line, summarize

# A /proc/PID/stat line: pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt
# cmajflt utime stime ...
STAT = "19 (example-plugin) S 1 1 1 0 -1 4194560 900 0 0 0 {utime} {stime} 0 0 20 0 9 0 1 2 3"


def _stat(pid: int, comm: str, utime: int, stime: int) -> str:
    return STAT.replace("19 (example-plugin)", f"{pid} ({comm})").format(utime=utime, stime=stime)


def test_a_process_line_gives_pid_name_ticks_and_rss() -> None:
    sample = parse_process_line("P 10396 " + _stat(19, "example-plugin", 120, 30))
    assert sample == resources.ProcessSample(pid=19, comm="example-plugin", ticks=150, rss_kb=10396)
    spaced = parse_process_line("P 5 " + _stat(7, "nginx: worker", 1, 2))
    assert spaced is not None and spaced.comm == "nginx: worker" and spaced.ticks == 3
    assert parse_process_line("T") is None
    assert parse_process_line("P x 19 (a) S") is None  # malformed: no sample, no crash


def test_rows_split_the_plugin_server_from_kong_and_skip_the_sampler() -> None:
    served = iter([0, 100])
    tally = Tally("example-plugin", lambda: next(served))
    first = [
        "P 1000 " + _stat(19, "example-plugin", 100, 0),
        "P 2000 " + _stat(1, "kong", 50, 0),
        "P 9 " + _stat(88, "sh", 0, 0),
        "T",
    ]
    *_, opening = [tally.feed(line) for line in first]
    assert opening is not None and opening.server_rss_kb == 1000  # memory from the first sample
    assert opening.server_cpu_pct is None  # CPU needs two
    rows = [tally.feed(line) for line in [
        "P 1100 " + _stat(19, "example-plugin", 150, 0),
        "P 2100 " + _stat(1, "kong", 50, 0),
        "P 8 " + _stat(89, "sleep", 0, 0),
        "T",
    ]]  # fmt: skip
    row = rows[-1]
    assert row is not None
    assert (row.server_pids, row.server_rss_kb, row.kong_rss_kb) == ("19", 1100, 2100)
    assert row.server_cpu_pct is not None and row.server_cpu_pct > 0
    assert row.kong_cpu_pct == 0
    assert row.requests == 100


def _rows(rss_kb: list[int], per_second: int = 1000) -> list[Row]:
    return [
        Row(float(t), "19", rss, 1.0, 9000, 1.0, (t + 1) * per_second)
        for t, rss in enumerate(rss_kb)
    ]


def test_a_short_run_gets_its_peak_but_no_growth_or_leak_verdict() -> None:
    summary = summarize(_rows([10_000, 14_000, 18_000]))
    assert summary == resources.Summary(17.6, None, None)
    assert summarize([]) is None


def test_growth_that_goes_on_through_the_second_half_is_a_leak() -> None:
    n = resources.MIN_SAMPLES_FOR_LEAK + 1  # the first sample opens the load
    # 2048 KB more per second at 1000 requests a second: 20 MB per 10,000 requests.
    leaking = summarize(_rows([10_000 + 2048 * t for t in range(n)]))
    assert leaking is not None and leaking.leak is True
    assert leaking.server_rss_growth_per_10k_mb == 20.0
    # Warm-up in the first half, then flat: no leak, growth 0.
    levelled = summarize(_rows([10_000 + 400 * min(t, n // 2) for t in range(n)]))
    assert levelled is not None and levelled.leak is False
    assert levelled.server_rss_growth_per_10k_mb == 0.0


def test_the_sampler_script_runs_in_a_posix_shell() -> None:
    """The loop itself, here against this machine's /proc, once, in plain `sh`."""
    once = resources.SAMPLER_SCRIPT.replace("while :; do ", "").replace("; sleep 1; done", "")
    output = subprocess.run(["sh", "-c", once], capture_output=True, text=True, check=True).stdout
    lines = output.splitlines()
    assert lines[-1] == "T"
    assert any(parse_process_line(line) for line in lines[:-1])


def test_an_idle_gap_is_not_load_and_never_reads_as_a_leak() -> None:
    """Found in the idle scenario: RSS moved while no request came, which read as MB per request."""
    n = resources.MIN_SAMPLES_FOR_LEAK
    burst = _rows([10_000] * 5)
    gap = [Row(5.0 + t, "19", 10_000 + 50 * t, 0.0, 9000, 0.0, 5000) for t in range(2 * n)]
    assert summarize([*burst, *gap]) == resources.Summary(15.6, None, None)
