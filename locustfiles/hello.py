"""Locust load for the `/hello` route: exactly `--requests` requests, each must show the plugin.

Load logic only; every knob is a flag: `--requests`, `--path`, and Locust's `-u`, `-r`, `--host`.
A response counts as a success only if it is 2xx and carries `--marker-header` (default
`X-Example-Message`, the header our built-in plugins set): without it the request never went
through the plugin and measures nothing. `--marker-header ""` (a user's plugin, which sets no
header of ours): any answer below 500 counts, as the plugin may answer for itself (an auth
plugin's 401, a rate limiter's 429, a redirect); those non-2xx answers are counted apart, under
the entry `PATH [STATUS]`. A failure is then a 5xx (Kong's answer when the plugin call failed, or
the upstream's), a transport error or a time-out.

Exact count: a user claims a slot before each request, so no more than `--requests` are ever sent
(gevent is cooperative, so a plain counter is exact within one process). With `--processes` (or
`--master`/`--worker`) each worker gets a fixed share of the total, decided by its worker index, and
the master stops the run when its aggregated stats reach the total. `--requests 0` means no limit
(the web UI's default: run until stopped).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from typing import Any

import gevent
from locust import FastHttpUser, constant, events, task
from locust.env import Environment
from locust.event import EventHook
from locust.exception import StopUser
from locust.runners import WorkerRunner

MESSAGE_HEADER = "X-Example-Message"

# How often the run checks whether all requests are done: the run ends at most this late.
COMPLETION_POLL_S = 0.01

logger = logging.getLogger(__name__)


class RequestBudget:
    """Request slots for one process: `limit` slots, or unlimited when `limit` is 0."""

    def __init__(self) -> None:
        self.limit = 0
        self.claimed = 0

    def reset(self, limit: int) -> None:
        self.limit = limit
        self.claimed = 0

    def claim(self) -> bool:
        """Take one slot; False once all are taken. No yield inside, so greenlets cannot race."""
        if self.limit and self.claimed >= self.limit:
            return False
        self.claimed += 1
        return True


def share_of(total: int, worker_index: int, worker_count: int) -> int:
    """This worker's part of `total`: the first `total % worker_count` workers send one more."""
    return total // worker_count + (1 if worker_index < total % worker_count else 0)


budget = RequestBudget()
completion_watcher: list[gevent.Greenlet] = []


def add_arguments(parser: Any) -> None:
    parser.add_argument(
        "--requests",
        type=request_count,
        default=0,
        help="Send exactly this many requests in total, then stop (0: no limit)",
    )
    parser.add_argument("--path", default="/hello", help="Path to request (default /hello)")
    parser.add_argument(
        "--marker-header",
        default=MESSAGE_HEADER,
        help=f"Header a response must carry to show the plugin ran (default {MESSAGE_HEADER}; "
        "empty: none)",
    )


def request_count(text: str) -> int:
    count = int(text)
    if count < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (no limit) or positive, got {count}")
    return count


def requested_total(environment: Environment) -> int:
    # The web UI hands custom options back as strings.
    return request_count(str(getattr(environment.parsed_options, "requests", 0) or 0))


def worker_share(environment: Environment, total: int) -> int:
    """A worker's slot count, from its index (assigned by the master) and the expected workers."""
    runner = environment.runner
    assert isinstance(runner, WorkerRunner)
    worker_count = int(getattr(environment.parsed_options, "expect_workers", 0) or 0)
    if not 0 <= runner.worker_index < worker_count:
        # Without a stable index and count the split cannot add up to the total: send nothing
        # rather than too much, and let the master's --run-time end the run.
        logger.error(
            "worker index %s of %s workers: cannot split --requests %s exactly; this worker "
            "sends nothing (use --processes or set --expect-workers to the number of workers)",
            runner.worker_index,
            worker_count,
            total,
        )
        return 0
    return share_of(total, runner.worker_index, worker_count)


def on_init(environment: Environment, **_kwargs: Any) -> None:
    """Only the master (or a local runner) writes the final --json-file.

    Locust forks `--processes` workers with the master's options and drops their CSV and HTML
    options, but not --json-file: a worker would write its own (empty) stats to the same file,
    and could do so after the master.
    """
    options = environment.parsed_options
    if isinstance(environment.runner, WorkerRunner) and options is not None:
        options.json_file = None


def on_test_start(environment: Environment, **_kwargs: Any) -> None:
    total = requested_total(environment)
    if isinstance(environment.runner, WorkerRunner):
        budget.reset(worker_share(environment, total) if total else 0)
        return
    budget.reset(total)
    stop_completion_watcher()
    if total:
        completion_watcher.append(gevent.spawn(end_run_when_complete, environment, total))


def on_test_stop(**_kwargs: Any) -> None:
    stop_completion_watcher()


def stop_completion_watcher() -> None:
    current = gevent.getcurrent()
    while completion_watcher:
        watcher = completion_watcher.pop()
        if watcher is not current:
            watcher.kill(block=False)


def end_run_when_complete(environment: Environment, total: int) -> None:
    """Stop the run once Locust's own stats (what it reports) hold `total` completed requests.

    Runs on the local runner or the master, which sees the workers' aggregated stats.
    """
    runner = environment.runner
    assert runner is not None
    while runner.stats.total.num_requests < total:
        gevent.sleep(COMPLETION_POLL_S)
    completion_watcher.clear()
    options = environment.parsed_options
    if options is not None and options.headless:
        logger.info("all %s requests completed, quitting", total)
        runner.quit()
    else:
        # In the web UI, stop this run but keep the UI up for the next one.
        logger.info("all %s requests completed, stopping the run", total)
        runner.stop()


class HelloUser(FastHttpUser):
    """Requests the route back to back; the response must come through the plugin."""

    wait_time = constant(0)

    @task
    def get_hello(self) -> None:
        if not budget.claim():
            raise StopUser()
        options = self.environment.parsed_options
        path = getattr(options, "path", "/hello")
        marker = getattr(options, "marker_header", MESSAGE_HEADER)
        with self.client.get(path, catch_response=True) as response:
            status = response.status_code or 0
            if marker:  # a built-in: a 2xx with its header, or it did not run
                if not 200 <= status < 300:
                    response.failure(f"status {status}, want 2xx")
                elif not (response.headers or {}).get(marker):
                    response.failure(f"no {marker} header: the plugin did not run")
                else:
                    response.success()
            elif 0 < status < 500:
                response.success()
                if not 200 <= status < 300:  # the plugin's own answer (401, 429, a redirect...)
                    response.request_meta["name"] = answer_name(path, status)
            elif status:
                response.failure(f"status {status}: Kong or the upstream failed")
            # no status: Locust has recorded the transport error or time-out as the failure


def answer_name(path: str, status: int) -> str:
    """The stats entry of the plugin's own non-2xx answers: `/hello [401]` (read back by
    orchestration/evidence.py as what the plugin answered)."""
    return f"{path} [{status}]"


def listen(hook: EventHook, handler: Callable[..., None]) -> None:
    hook.add_listener(handler)  # type: ignore[no-untyped-call]  # Locust leaves it unannotated


listen(events.init_command_line_parser, add_arguments)
listen(events.init, on_init)
listen(events.test_start, on_test_start)
listen(events.test_stop, on_test_stop)
