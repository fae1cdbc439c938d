"""One version's running world: its stack, its log counted live, the plugin probe, Locust.

A scenario drives a `VersionWorld` through its phases; the world owns every process and container
of one Kong version and tears them down in the right order however it is left:

- Locust is started first (`prestart_locust`) and imports itself while the plugin image is built
  and the stack comes up; the first load hands it the proxy URL once Kong is ready;
- Kong's log is followed into `kong.log` from the moment the stack is up and counted as it arrives
  (`LogCounts`), so a phase boundary never reads the whole log again;
- `finish()` takes the stack down (its log saved whole first) and counts the saved log: the
  record the results are made from; Locust writes its reports meanwhile.

Interrupts: Ctrl-C arrives as KeyboardInterrupt wherever the world is; leaving the `with` block
tears the stack down (signals held, see stack.py) and stops every Locust. With `--parallel` the
worlds run in worker threads, which never see signals: the run's `Cancel` is set instead, and a
running load notices it on its own.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import re
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from orchestration import progress, resources
from orchestration.collect import Collector, LogSignals, collect_file
from orchestration.config import RunConfig
from orchestration.contract import (
    EXAMPLE,
    LOOPBACK_OPENER,
    PROBE_TIMEOUT_S,
    Answer,
    PluginContract,
    ask,
)
from orchestration.engine import Engine
from orchestration.errors import Interrupted, StackError
from orchestration.evidence import first_server_trouble, write_plugin_facts
from orchestration.load import HeadlessLocust, LoadResult, LoadShortfall, LocustWorkers
from orchestration.plugins import PluginSource, default_plugin
from orchestration.prepare import Prepared, prepare
from orchestration.stack import Stack, StackSpec
from orchestration.versions import Target, code_is_public

LOGGER = logging.getLogger(__name__)

T = TypeVar("T")

LOG_SETTLE_S = 15.0  # the most to wait for Docker to deliver a phase's last log lines
WARM_UP_PER_WORKER = 10
CRASH_LINES_S = 2.0  # how long a crashed plugin server's own lines may lag its exit line
DEATH_GRACE_S = 2.0  # after a load with failures: how long Docker may take to report Kong's exit
TAP_QUIET_S = 2.0  # kpm-tap writes its totals at most once a second: this long unchanged is all


class Cancel(threading.Event):
    """A run-wide stop flag that worker threads check between stages; it names the signal.

    A `threading.Event`, so a running load (`HeadlessLocust.run`) can watch it too.
    """

    def __init__(self) -> None:
        super().__init__()
        self.signal_number = signal.SIGINT.value

    def set(self, signal_number: int = signal.SIGINT.value) -> None:
        self.signal_number = signal_number
        super().set()

    def raise_if_set(self) -> None:
        if self.is_set():
            raise Interrupted(self.signal_number)


NEVER_CANCELLED = Cancel()


class LogCounts:
    """Kong's log counted as the stack follows it; callers wait until the counts reach a point."""

    def __init__(self, plugin_name: str = EXAMPLE.name) -> None:
        self._collector = Collector(plugin_name)
        self._changed = threading.Condition()

    def feed(self, lines: bytes) -> None:
        """A block of whole log lines (called from the stack's log-following thread)."""
        with self._changed:
            self._collector.feed_block(lines)
            self._changed.notify_all()

    def signals(self) -> LogSignals:
        with self._changed:
            return self._collector.signals()

    def wait_until(self, reached: Callable[[LogSignals], bool], timeout_s: float) -> LogSignals:
        """The counts once `reached` holds for them, or after `timeout_s` as they are then."""
        with self._changed:
            self._changed.wait_for(lambda: reached(self._collector.signals()), timeout_s)
            return self._collector.signals()

    def wait_for_counter(self, value: int, timeout_s: float) -> bool:
        """Whether, within `timeout_s`, the last counter line in the log showed `value`.

        Call it after the plugin answered a request alone (no other request in flight) with
        `value` in its header: that request's counter line is then the last one Kong writes.
        (Its value may also have been seen before, by a server that has since restarted: only
        the last line says the log has caught up.)
        """
        with self._changed:
            return self._changed.wait_for(
                lambda: self._collector.latest_counter() == value, timeout_s
            )


def _tap_counts(signals: LogSignals) -> tuple[int, int, int, int, int]:
    return (
        signals.tap_ran_on,
        signals.tap_instance_starts,
        signals.tap_instance_closes,
        signals.tap_errors,
        signals.tap_events,
    )


def folder_name(label: str) -> str:
    """A file-system-safe name for a target (image references hold '/' and ':')."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", label)


class PendingLoad:
    """A headless load that has sent its requests; Locust may still be writing its reports."""

    def __init__(self, locust: HeadlessLocust, cancel: Cancel) -> None:
        self._locust = locust
        self._cancel = cancel
        self._outcome: tuple[LoadResult, str | None] | None = None

    @property
    def out_dir(self) -> Path:
        return self._locust.out_dir

    def sent(self) -> tuple[int, int] | None:
        """Locust's (requests, failures) as its last request left them, before its reports are
        written (None when it did not say): enough for a verdict, not for its timings."""
        return self._locust.sent

    def result(self) -> tuple[LoadResult, str | None]:
        """Locust's final stats, and why they fall short of the count asked for (or None)."""
        if self._outcome is None:
            try:
                self._outcome = self._locust.result(cancel=self._cancel), None
            except LoadShortfall as error:  # keep what was measured; the row says it fell short
                self._outcome = error.partial, str(error)
        return self._outcome


@dataclass(frozen=True)
class WorldOptions:
    """What may differ between the worlds of one scenario (the `workers` scenario's)."""

    workers: int | None = None  # None: the run's --workers
    suffix: str = ""  # added to file names, so several worlds share one folder
    prestart_locust: bool = True


ONE_WORLD = WorldOptions()


class VersionWorld:
    """One version's stack, live log counts, plugin probe and Locust; a context manager."""

    def __init__(
        self,
        target: Target,
        config: RunConfig,
        version_dir: Path,
        cancel: Cancel = NEVER_CANCELLED,
        *,
        options: WorldOptions = ONE_WORLD,
        source: PluginSource | None = None,
        load_turn: Callable[[], None] | None = None,
        engine: Engine | None = None,
        preparation: Callable[[], Prepared] | None = None,
    ) -> None:
        """`load_turn`, when given, returns once this world's first load may start (a pipelined
        matrix: once the previous version's stack is down); it raises `Interrupted` if cancelled.
        `preparation` makes the job ready (prepare.py), on `engine` (None: the default engine)
        unless given; the world calls it once Locust has started importing.
        """
        self.target = target
        self.config = config
        self.version_dir = version_dir
        self.cancel = cancel
        self.source = source or default_plugin()
        self.shown = progress.Line(version_dir.name + options.suffix)  # its live progress line
        self._preparation = preparation or functools.partial(
            prepare,
            target,
            config,
            self.source,
            engine or Engine(),
            cancel.raise_if_set,
            stage=self.shown.stage,
        )
        # Until the plugin's image is built and its dump read (`__enter__`): the example's.
        self.contract: PluginContract = EXAMPLE
        self.workers = options.workers or config.workers
        self.log_path = version_dir / f"kong{options.suffix}.log"
        self.counts = LogCounts(self.contract.log_name)
        self._options = options
        self._load_turn = load_turn
        self._exits = contextlib.ExitStack()
        self._prestarted: HeadlessLocust | None = None
        self._locusts = 0  # started so far: each writes its reports to a folder of its own
        self.stack: Stack | None = None
        self._sampler: resources.Sampler | None = None
        self._requests_before_load: int | None = None
        self.resources: resources.Summary | None = None  # set once the world is finished

    # --- the world's life -----------------------------------------------------------------

    def __enter__(self) -> VersionWorld:
        try:
            self._exits.enter_context(progress.showing(self.shown))
            if self._options.prestart_locust:  # imports itself while the stack comes up
                self._prestarted = self._exits.enter_context(self._new_locust(self.config.requests))
            spec = self._stack_spec()
            self.counts = LogCounts(spec.plugin.log_name)
            write_plugin_facts(self.version_dir, spec.plugin.facts())
            self.cancel.raise_if_set()
            self.shown.stage("starting Kong's containers")
            # The stack saves its whole log on the way down, however and whenever it ends.
            self.stack = self._exits.enter_context(
                Stack(spec, keep=self.config.keep, log_path=self.log_path, on_log=self.counts.feed)
            )
            self._sampler = self._start_sampler(self.stack)
        except BaseException:
            self._exits.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._exits.close()

    @property
    def label(self) -> str:
        return self.target.label

    @property
    def proxy_url(self) -> str:
        return self._stack().proxy_url

    @property
    def admin_url(self) -> str:
        return self._stack().admin_url

    def ready(self) -> LogSignals:
        """Wait for Kong and the plugin, warm every worker up, and return the log's counts then.

        Every worker starts its first instance on its first request: that is start-up, not churn,
        so it must be in the counts before the first phase.
        """
        LOGGER.info("%s: waiting for Kong (at most %.0fs)", self.label, self.config.ready_timeout)
        self.shown.stage("waiting for Kong to answer", self.config.ready_timeout)
        ready_counter = self._stack().wait_ready(
            self.config.ready_timeout, check=self._starting_normally
        )
        warmed_counter = self.warm_up()
        return self.settle_after(max(ready_counter or 0, warmed_counter or 0) or None)

    def _starting_normally(self) -> None:
        """Stop waiting for Kong when the run is cancelled, or when the plugin server already
        exited: a server that dies while Kong starts will not answer however long one waits."""
        self.cancel.raise_if_set()
        if self.counts.signals().plugin_server_exits:
            deadline = time.monotonic() + CRASH_LINES_S  # its lines reach the log a moment later
            while (crash := first_server_trouble(self.log_path, (self.contract.name,))) is None:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            raise StackError(
                f"the plugin server {self.contract.name} exited while Kong {self.label} started, "
                f"so the plugin never ran: {crash or 'see its lines in the log'}"
            )

    def warm_up(self) -> int | None:
        """A few requests per nginx worker, each on a new connection; the highest count seen.

        Ten new connections per worker reach every worker with near certainty (Kong spreads
        connections over workers with reuseport).
        """
        path = self.contract.probe_path("warm-up")
        seen = [self.ask(path).counter for _ in range(WARM_UP_PER_WORKER * self.workers)]
        counters = [counter for counter in seen if counter is not None]
        return max(counters) if counters else None

    def ask(self, path: str) -> Answer:
        return ask(self.proxy_url, path, self.contract)

    def probe(self, purpose: str) -> Answer:
        """One request on the plugin's route, alone: the plugin's own count and config."""
        return self.ask(self.contract.probe_path(purpose))

    def send(
        self, requests: int, *, path: str | None = None, for_s: float | None = None
    ) -> PendingLoad:
        """Send exactly `requests` requests (on the plugin's route, or `path`), or as many as fit
        in `for_s` seconds; return once they are answered. Locust's final stats come from the
        result, later."""
        self.cancel.raise_if_set()
        if self._requests_before_load is None:
            if self._load_turn is not None:  # no other version's stack goes down meanwhile
                self._load_turn()
            self._requests_before_load = self._progress(self.counts.signals())
        locust, self._prestarted = self._prestarted, None  # a Locust serves one load
        if for_s is not None:
            requests = 0
        if locust is None or locust.requests != requests or path is not None or for_s:
            locust = self._exits.enter_context(self._new_locust(requests, path, for_s))
        amount = f"requests for {for_s:.0f}s" if for_s else f"{requests} requests"
        LOGGER.info("%s: sending %s with %d users", self.label, amount, self.config.users)
        own_counts = self.contract.reports_new_calls
        self.shown.load(locust.out_dir, requests, for_s, self.counts.signals, own_counts)
        locust.send(self.proxy_url, cancel=self.cancel, watch=self._kong_alive)
        self.shown.stage("reading Kong's log for the load's last lines")
        self.cancel.raise_if_set()  # a cancelled Locust ends early: that is no measurement
        if locust.sent is not None and locust.sent[1]:  # failures: Kong may have died at the end
            self._kong_alive(grace_s=DEATH_GRACE_S)
        return PendingLoad(locust, self.cancel)

    def _kong_alive(self, grace_s: float = 0.0) -> None:
        """Raise KongDied if Kong's container stopped (within `grace_s`, as Docker tells the
        log follower a moment after the port went dead): the load ends with that cause."""
        deadline = time.monotonic() + grace_s
        while (death := self._stack().death()) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if death is not None:
            raise death

    def send_and_meanwhile(
        self, requests: int, after_fraction: float, action: Callable[[], T]
    ) -> tuple[PendingLoad, T, bool]:
        """Send `requests` requests, and run `action` once about `after_fraction` of them were
        served (the plugin's counter lines say how many), or once the load is over if it ended
        first. Returns the load, what `action` returned, and whether it ran under load. An action
        that raised raises here, after the load; an interrupted load never runs it."""
        start = self.counts.signals().counter_lines
        wanted = start + max(1, int(requests * after_fraction))
        load_over, abandoned = threading.Event(), threading.Event()
        outcome: list[tuple[T, bool]] = []
        failure: list[BaseException] = []

        def act() -> None:
            while not load_over.is_set():
                if (
                    self.counts.wait_until(lambda s: s.counter_lines >= wanted, 0.05).counter_lines
                    >= wanted
                ):
                    break
            if abandoned.is_set():
                return
            under_load = not load_over.is_set()
            try:
                outcome.append((action(), under_load))
            except BaseException as error:  # handed to the caller's thread below
                failure.append(error)

        actor = threading.Thread(target=act, name="kpm-action", daemon=True)
        actor.start()
        try:
            pending = self.send(requests)
        except BaseException:
            abandoned.set()
            raise
        finally:
            load_over.set()
        actor.join(self.config.load_timeout)
        if failure:
            raise failure[0]
        if not outcome:
            raise StackError(f"{self.label}: the action during the load did not finish")
        result, under_load = outcome[0]
        return pending, result, under_load

    def post_config(self, declarative: dict[str, Any]) -> None:
        """Replace Kong's whole configuration (DB-less `POST /config`, as JSON)."""
        body = json.dumps(declarative).encode()
        request = urllib.request.Request(
            f"{self.admin_url}/config",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with LOOPBACK_OPENER.open(request, timeout=PROBE_TIMEOUT_S) as response:
                status = response.status
        except urllib.error.HTTPError as error:
            detail = error.read(500).decode(errors="replace")
            raise StackError(
                f"{self.label}: POST /config answered {error.code}: {detail}"
            ) from None
        except OSError as error:
            raise StackError(f"{self.label}: POST /config failed: {error}") from None
        if status != 201:
            raise StackError(f"{self.label}: POST /config answered {status}, want 201")

    def kill_plugin_server(self) -> int:
        """SIGKILL the plugin server inside the container, as an OOM kill would; how many went.

        One POSIX shell loop over /proc, so it works in Kong's images (which have /bin/sh but
        not always pkill) and in kong-sim's (busybox) alike.
        """
        name = self.contract.process_name[: resources.COMM_LENGTH]
        script = (
            'n=0; for d in /proc/[0-9]*; do read -r c < "$d/comm" 2>/dev/null || continue; '
            f'if [ "$c" = {name} ]; then kill -9 "${{d#/proc/}}" && n=$((n+1)); fi; done; echo $n'
        )
        output = self._stack().exec(["sh", "-c", script])
        try:
            return int(output.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise StackError(f"{self.label}: killing the plugin server said {output!r}") from None

    def settle(self, answer: Answer, counter_lines: Callable[[], int]) -> LogSignals:
        """Wait (bounded) until the log holds everything up to the request `answer` came from.

        The plugin's count in its header says how far its New() count got, and that request was
        the last one: once the log's last counter line shows that count, the lines that matter
        are in. (Kong writes its debug lines, the counter line among them, without the request
        they belong to, so a line cannot be told apart by its request.) With no count to go by:
        until `counter_lines()` counter lines are in, one per request the plugin served.
        """
        if not self.contract.reports_new_calls:
            return self._settle_tap()
        if answer.counter is not None:
            if self.counts.wait_for_counter(answer.counter, LOG_SETTLE_S):
                return self._settle_tap() if self.tap else self.counts.signals()
            missing = f"the plugin's New() count {answer.counter}, which its header reported"
        else:
            wanted = counter_lines()
            reached = self.counts.wait_until(lambda s: s.counter_lines >= wanted, LOG_SETTLE_S)
            if reached.counter_lines >= wanted:
                return reached
            missing = f"{wanted} counter lines (it has {reached.counter_lines})"
        LOGGER.warning(
            "%s: Kong's log did not show the last lines within %.0fs (%s); counting what it holds",
            self.label,
            LOG_SETTLE_S,
            missing,
        )
        return self.counts.signals()

    @property
    def tap(self) -> bool:
        """Whether kpm-tap runs in front of the plugin server: with --tap, always for a plugin that
        reports nothing itself, and on a Kong whose plugin-server code is not public."""
        return (
            self.config.tap
            or not self.contract.reports_new_calls
            or not code_is_public(self.target)
        )

    def _settle_tap(self) -> LogSignals:
        """The counts once kpm-tap's lines are all in: it writes a start or close line as each
        happens and its totals line at most once a second when something changed, so the log
        has caught up once the totals line says anything happened and then nothing changes
        for `TAP_QUIET_S`."""
        deadline = time.monotonic() + LOG_SETTLE_S
        last = _tap_counts(self.counts.wait_until(lambda s: s.tap_events > 0, LOG_SETTLE_S))
        while time.monotonic() < deadline:
            seen = last
            now = self.counts.wait_until(lambda s: _tap_counts(s) != seen, TAP_QUIET_S)  # noqa: B023
            if _tap_counts(now) == last and now.tap_events > 0:
                return now
            last = _tap_counts(now)
        LOGGER.warning(
            "%s: kpm-tap's counts in Kong's log did not settle within %.0fs (%s); counting them "
            "as they are",
            self.label,
            LOG_SETTLE_S,
            "no totals line yet" if not last[-1] else "still changing",
        )
        return self.counts.signals()

    def finish(self) -> LogSignals:
        """Take the stack down now (its log saved whole) and count the saved log: the record."""
        self._stop_sampler()
        self.shown.stage("tearing down the stack")
        self._stack().close(expect_running=True)  # Kong dead by now: KongDied, no verdict
        if not self.log_path.is_file():
            raise StackError(
                f"Kong's log could not be saved to {self.log_path}; see the warning above"
            )
        return collect_file(self.log_path, self.contract.log_name)

    # --- pieces -----------------------------------------------------------------------------

    def _start_sampler(self, stack: Stack) -> resources.Sampler | None:
        """Memory and CPU of the plugin server and Kong, once a second, into resources.csv."""
        path = self.version_dir / f"resources{self._options.suffix}.csv"
        try:
            sampler = resources.Sampler(
                stack.exec_command(), path, self.contract.process_name, self._requests_served
            )
        except OSError as error:
            LOGGER.warning("%s: cannot sample resources: %s", self.label, error)
            return None
        self._exits.callback(self._stop_sampler)
        return sampler

    def _requests_served(self) -> int:
        """Requests the plugin served since the first load began (its counter lines)."""
        if self._requests_before_load is None:
            return 0
        return max(0, self._progress(self.counts.signals()) - self._requests_before_load)

    def _progress(self, signals: LogSignals) -> int:
        """Requests served so far, as the log tells: one counter line each, or for a plugin that
        reports nothing, the requests kpm-tap saw it run on."""
        if self.contract.reports_new_calls:
            return signals.counter_lines
        return signals.tap_ran_on

    def _stop_sampler(self) -> None:
        sampler, self._sampler = self._sampler, None
        if sampler is not None:
            self.resources = resources.summarize(sampler.stop())

    def _stack(self) -> Stack:
        if self.stack is None:
            raise StackError(f"{self.label}: the world is not up (use it in a with block)")
        return self.stack

    def _new_locust(
        self, requests: int, path: str | None = None, for_s: float | None = None
    ) -> HeadlessLocust:
        self._locusts += 1
        suffix = self._options.suffix + ("" if self._locusts == 1 else f"-{self._locusts}")
        out_dir = self.version_dir / f"load{suffix}" if suffix else self.version_dir
        return HeadlessLocust(
            requests=requests,
            users=self.config.users,
            spawn_rate=self.config.spawn_rate,
            out_dir=out_dir,
            timeout_s=for_s or self.config.load_timeout,
            path=path,
            # Known before the dump: a built-in sets the example's header, a user's plugin none.
            marker_header=EXAMPLE.marker_header if self.source.builtin else "",
            workers=locust_workers(self.config),
        )

    def _stack_spec(self) -> StackSpec:
        """The job made ready (images built, dump read), and this world's stack of it."""
        ready = self._preparation()
        self.contract = ready.contract
        return ready.spec(
            self.config,
            workers=self.workers,
            suffix=self._options.suffix,
            env_dir=self.version_dir,
            tap=self.tap,
        )

    def settle_after(self, ready_counter: int | None) -> LogSignals:
        """The log's counts once the last probe's own line is in (before a load).

        The probes went through the plugin, which logged one counter line each with the count
        its header reported (`ready_counter`, the highest); Docker delivers them a moment later.
        """
        if not self.contract.reports_new_calls:
            return self._settle_tap()
        if ready_counter is None:  # the header held no count: any counter line will do
            reached = self.counts.wait_until(lambda s: s.counter_lines >= 1, LOG_SETTLE_S)
            in_time = reached.counter_lines > 0
        else:
            in_time = self.counts.wait_for_counter(ready_counter, LOG_SETTLE_S)
        before = self._settle_tap() if self.tap else self.counts.signals()
        if not in_time:
            LOGGER.warning(
                "Kong's log showed no counter line for the readiness request within %.0fs; "
                "counting the log as it is (%d lines)",
                LOG_SETTLE_S,
                before.lines,
            )
        return before


def locust_workers(config: RunConfig) -> LocustWorkers | None:
    """Locust's distributed mode as the run asks for it (--locust-workers, --locust-remote-
    workers); None: one Locust process, as before."""
    bind, port = config.locust_master_bind, config.locust_master_port
    if config.locust_workers:
        return LocustWorkers(config.locust_workers, local=True, bind_host=bind, port=port)
    if config.locust_remote_workers:
        return LocustWorkers(
            config.locust_remote_workers,
            local=False,
            bind_host=bind,
            port=port,
            wait_s=config.load_timeout,
        )
    return None
