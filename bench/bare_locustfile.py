"""The cheapest Locust load there is, to price locustfiles/hello.py's per-request bookkeeping.

A FastHttpUser requesting `--path` back to back: no request budget, no catch_response, no header
check. Only the run's end is shared with hello.py's design: a greenlet looks at Locust's own stats
every 50 ms and quits at `--requests` (so it may overshoot by a few dozen; the benchmark compares
requests per second, not counts).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gevent
from locust import FastHttpUser, constant, events, task
from locust.env import Environment
from locust.event import EventHook
from locust.runners import WorkerRunner

POLL_S = 0.05


def add_arguments(parser: Any) -> None:
    parser.add_argument("--requests", type=int, default=0, help="quit at this many requests")
    parser.add_argument("--path", default="/hello")


def only_the_master_writes_json(environment: Environment, **_kwargs: Any) -> None:
    if isinstance(environment.runner, WorkerRunner) and environment.parsed_options is not None:
        environment.parsed_options.json_file = None


def quit_at_the_count(environment: Environment, **_kwargs: Any) -> None:
    runner, options = environment.runner, environment.parsed_options
    if runner is None or isinstance(runner, WorkerRunner) or options is None:
        return
    total = int(options.requests)

    def watch() -> None:
        while runner.stats.total.num_requests < total:
            gevent.sleep(POLL_S)
        runner.quit()

    if total:
        gevent.spawn(watch)


class BareUser(FastHttpUser):
    wait_time = constant(0)

    @task
    def get_path(self) -> None:
        self.client.get(self.environment.parsed_options.path)


def listen(hook: EventHook, handler: Callable[..., None]) -> None:
    hook.add_listener(handler)  # type: ignore[no-untyped-call]  # Locust leaves it unannotated


listen(events.init_command_line_parser, add_arguments)
listen(events.init, only_the_master_writes_json)
listen(events.test_start, quit_at_the_count)
