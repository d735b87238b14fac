"""Prometheus metrics: requests and latencies by route template, collector events accepted
and written (counted as they happen), and the job queue and scoring runs (read from the
database when scraped).

`intently serve --workers N` sets PROMETHEUS_MULTIPROC_DIR before its server processes
start, so each counts into files of its own there and a scrape of any of them sums all
(prometheus_client's multiprocess mode). Separate `serve` processes are scraped each on
its own port. /metrics has no key: keep it off the public internet at the proxy.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger("intently.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Methods outside these are counted as OTHER: a client must not mint label values.
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})

REQUESTS = Counter(
    "intently_http_requests",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "intently_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by route template.",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
COLLECTOR_ACCEPTED = Counter(
    "intently_collector_events_accepted",
    "Website events the collector accepted into its buffer.",
)
COLLECTOR_WRITTEN = Counter(
    "intently_collector_events_written",
    "Website events the collector wrote to the database (new ones, not duplicates).",
)

# (method, route, status) -> the label children: `.labels()` costs a dict build and a lock
# each time, this one lookup.
_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count one answered request and its time."""
    if method not in METHODS:
        method = "OTHER"
    key = (method, route, status)
    pair = _children.get(key)
    if pair is None:
        pair = (REQUESTS.labels(method, route, str(status)), LATENCY.labels(route))
        _children[key] = pair
    pair[0].inc()
    pair[1].observe(seconds)


@lru_cache(maxsize=4)
def _queue(database_url: str) -> Any:
    # Imported at the first scrape, not with this module: the queue brings huey and the
    # PostgreSQL driver, which every process that counts requests would load at start.
    from intently.kit.jobs import make_huey

    return make_huey(database_url)


# Reads the scoring runs' figures: ([(kind, status, count)], {kind: (started, finished)} of
# the newest finished run of each kind). Scoring's repository answers it; the kit knows no
# domain, so the app passes it in.
RunFigures = Callable[
    [Connection], tuple[Sequence[tuple[str, str, int]], dict[str, tuple[int, int | None] | None]]
]


class DatabaseCollector(Collector):
    """Figures read from the database at scrape time, shared by every process."""

    def __init__(self, engine: Engine, database_url: str, run_figures: RunFigures) -> None:
        self.engine = engine
        self.database_url = database_url
        self.run_figures = run_figures

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("intently_database_up", "Whether the database answered.")
        try:
            figures = list(self._figures())
        except Exception as exc:  # a scrape must answer even when the database does not
            log.warning("metrics: database figures unavailable: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from figures

    def _figures(self) -> Iterator[Metric]:
        huey = _queue(self.database_url)
        queued = GaugeMetricFamily("intently_jobs_queued", "Jobs waiting in the queue.")
        queued.add_metric([], huey.pending_count())
        yield queued
        scheduled = GaugeMetricFamily(
            "intently_jobs_scheduled", "Jobs scheduled for later (retries, delays)."
        )
        scheduled.add_metric([], huey.scheduled_count())
        yield scheduled

        count = GaugeMetricFamily(
            "intently_scoring_runs",
            "Scoring runs recorded, by kind and status.",
            labels=["kind", "status"],
        )
        duration = GaugeMetricFamily(
            "intently_scoring_last_run_duration_seconds",
            "How long the newest finished scoring run of each kind took.",
            labels=["kind"],
        )
        finished = GaugeMetricFamily(
            "intently_scoring_last_run_finished_timestamp_seconds",
            "When the newest finished scoring run of each kind ended (Unix time).",
            labels=["kind"],
        )
        with self.engine.connect() as conn:
            rows, last = self.run_figures(conn)
        for kind, status, n in rows:
            count.add_metric([kind, status], n)
        for kind, row in last.items():
            if row is not None and row[1] is not None:
                # Times are microseconds since the epoch.
                duration.add_metric([kind], (row[1] - row[0]) / 1e6)
                finished.add_metric([kind], row[1] / 1e6)
        yield count
        yield duration
        yield finished


def render(engine: Engine, database_url: str, run_figures: RunFigures) -> tuple[bytes, str]:
    """The scrape's body and content type: this process's (or all server processes')
    counters, then the database figures."""
    if os.environ.get(MULTIPROC_ENV):
        shared = CollectorRegistry()
        MultiProcessCollector(shared)
        body = generate_latest(shared)
    else:
        body = generate_latest(REGISTRY)
    db = CollectorRegistry(auto_describe=False)
    db.register(DatabaseCollector(engine, database_url, run_figures))
    return body + generate_latest(db), CONTENT_TYPE_LATEST
