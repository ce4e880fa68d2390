"""Prometheus metrics: what each process did, and what the database holds at scrape time.

Counters and histograms are per process, as Prometheus expects: `cronlink run` has every
role in one process and serves them all on `/metrics`; on a fleet each worker or scheduler
serves its own with `--metrics-port`. Gauges of shared state (queue depth, connections by
health) are read from the database when `/metrics` is scraped, so every `cronlink serve`
of a fleet reports the same figures. `docs/metrics.md` lists them.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from itertools import accumulate
from typing import TYPE_CHECKING

import psutil
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import REGISTRY

from cronlink.records.runs import RunState, Tier

if TYPE_CHECKING:
    from collections.abc import Iterator
    from datetime import datetime

    from cronlink.records.runs import Run, Snapshot

# Light runs take milliseconds to seconds; heavy ones up to an hour.
_DURATION_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600,
)  # fmt: skip
_DELAY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300)

FIRING_DELAY = Histogram(
    "cronlink_firing_delay_seconds",
    "From a scheduled instant to its run's first attempt starting, by tier.",
    ["tier"], buckets=_DELAY_BUCKETS,
)  # fmt: skip
EXPIRED_LEASES = Counter(
    "cronlink_expired_leases", "Attempts whose worker stopped heartbeating, by tier.", ["tier"]
)
REFRESHES = Counter(
    "cronlink_refreshes",
    "Token refreshes that reached the provider, by provider and result "
    "(refreshed, grant: the grant was refused, transient, config).",
    ["provider", "result"],
)
POLLS = Counter(
    "cronlink_polls",
    "Trigger polls, by provider and result (ok, failed, paused).",
    ["provider", "result"],
)
EVENTS = Counter("cronlink_events", "New events found by trigger polls, by provider.", ["provider"])
WORKER_MEMORY = Gauge(
    "cronlink_worker_memory_bytes",
    "Resident memory of this worker process and its heavy children, by tier.",
    ["tier"],
)


def attempt_started(run: Run, now: datetime) -> None:
    """A claimed run starts: its firing delay, when it is a scheduled run's first try."""
    if run.attempt == 1 and run.scheduled_for is not None:
        FIRING_DELAY.labels(run.tier.value).observe(
            max(0.0, (now - run.scheduled_for).total_seconds())
        )


class _Attempts:
    """Attempts by job, tier and outcome, and their durations, tallied in plain dicts and
    turned into prometheus-client's families at scrape time. This runs for every attempt
    (tens of thousands a second): a labelled `Counter` and `Histogram` take a lock per
    update and cost three times as much (bench/metrics_cost_bench.py). Attempts end on the
    worker's event loop only, so the dicts need no lock; a scrape from another thread reads
    a copy."""

    def __init__(self) -> None:
        self.ended: dict[tuple[str, str, str], int] = {}
        self.durations: dict[tuple[str, str], list[float]] = {}
        """Per (job, tier): a count per bucket of `_DURATION_BUCKETS` and +Inf, then the sum."""

    def add(self, job: str, tier: str, ended: str, seconds: float | None) -> None:
        key = (job, tier, ended)
        self.ended[key] = self.ended.get(key, 0) + 1
        if seconds is None:
            return
        tally = self.durations.get(key[:2])
        if tally is None:
            tally = self.durations[key[:2]] = [0.0] * (len(_DURATION_BUCKETS) + 2)
        tally[bisect_left(_DURATION_BUCKETS, seconds)] += 1
        tally[-1] += seconds

    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        ended = CounterMetricFamily(
            "cronlink_attempts", "Attempts finished, by job, tier and how they ended "
            "(succeeded, failed, timed_out, cancelled, dead, retrying).",
            labels=["job", "tier", "state"],
        )  # fmt: skip
        for key, count in sorted(dict(self.ended).items()):
            ended.add_metric(list(key), count)
        yield ended
        took = HistogramMetricFamily(
            "cronlink_run_duration_seconds", "How long attempts took, by job and tier.",
            labels=["job", "tier"],
        )  # fmt: skip
        bounds = [*(str(float(b)) for b in _DURATION_BUCKETS), "+Inf"]
        for job, tally in sorted(dict(self.durations).items()):
            cumulative = list(accumulate(tally[:-1]))
            took.add_metric(list(job), list(zip(bounds, cumulative, strict=True)), tally[-1])
        yield took


ATTEMPTS = _Attempts()
REGISTRY.register(ATTEMPTS)


def attempt_finished(run: Run, state: RunState, duration_ms: int | None) -> None:
    """An attempt was recorded; one that will be tried again counts as `retrying`."""
    ended = "retrying" if state is RunState.QUEUED else state.value
    ATTEMPTS.add(
        run.job, run.tier.value, ended, None if duration_ms is None else duration_ms / 1000
    )


def watch_worker_memory(tier: Tier) -> None:
    """Report this process's memory, heavy children included, under `tier` at scrape time."""
    me = psutil.Process(os.getpid())

    def resident() -> float:
        total = me.memory_info().rss
        for child in me.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                continue  # it ended between the listing and the reading
        return float(total)

    WORKER_MEMORY.labels(tier.value).set_function(resident)


def serve_process_metrics(host: str, port: int) -> None:
    """This process's metrics on `http://host:port/metrics` (a worker or scheduler of a
    fleet, which has no `cronlink serve` of its own); a thread, gone with the process."""
    start_http_server(port, addr=host)


def exposition(snapshot: Snapshot) -> bytes:
    """The text of `/metrics`: this process's metrics, then the database's gauges."""
    shared = CollectorRegistry(auto_describe=False)
    shared.register(_Shared(snapshot))
    return generate_latest(REGISTRY) + generate_latest(shared)


class _Shared:
    """The database's state as gauges, read once per scrape (`Store.snapshot`)."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        depth = GaugeMetricFamily(
            "cronlink_queue_depth", "Queued runs that are due, by tier.", labels=["tier"]
        )
        oldest = GaugeMetricFamily(
            "cronlink_oldest_queued_age_seconds",
            "How long the oldest due queued run has waited, by tier (0: none waiting).",
            labels=["tier"],
        )
        running = GaugeMetricFamily(
            "cronlink_runs_running", "Runs being executed, by tier.", labels=["tier"]
        )
        for tier in Tier:
            queue = self.snapshot.queues.get(tier)
            depth.add_metric([tier.value], queue.due if queue else 0)
            oldest.add_metric([tier.value], queue.oldest_age if queue else 0.0)
            running.add_metric([tier.value], queue.running if queue else 0)
        yield from (depth, oldest, running)
        health = GaugeMetricFamily(
            "cronlink_connections", "Connections by state and health.", labels=["state", "health"]
        )
        for (state, healthy), count in sorted(self.snapshot.connections.items()):
            health.add_metric([state, healthy], count)
        yield health
        yield from _models(self.snapshot)


def _models(snapshot: Snapshot) -> Iterator[CounterMetricFamily]:
    """Chat models' calls by every process, from the store's running totals."""
    tokens = CounterMetricFamily(
        "cronlink_ai_tokens", "Tokens chat models billed, by model and kind (input, output).",
        labels=["model", "kind"],
    )  # fmt: skip
    cost = CounterMetricFamily(
        "cronlink_ai_cost_usd", "What calls to chat models cost at their declared prices "
        "(US dollars), by model.", labels=["model"],
    )  # fmt: skip
    calls = CounterMetricFamily(
        "cronlink_ai_calls", "Calls to chat models, by model and outcome (answered, failed).",
        labels=["model", "outcome"],
    )  # fmt: skip
    for spent in snapshot.models:
        tokens.add_metric([spent.model, "input"], spent.input_tokens)
        tokens.add_metric([spent.model, "output"], spent.output_tokens)
        cost.add_metric([spent.model], spent.cost_usd)
        calls.add_metric([spent.model, "answered"], spent.calls - spent.failed)
        calls.add_metric([spent.model, "failed"], spent.failed)
    yield from (tokens, cost, calls)
