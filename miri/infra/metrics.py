"""Prometheus metrics, one registry per shop so tests and workers do not collide.

Under ``miri serve --workers N`` the supervisor gives every worker one ``PROMETHEUS_MULTIPROC_DIR``
inside the data dir (``multiproc_dir``). prometheus-client then keeps each process's values in
memory-mapped files there (it picks this mode when it is imported with the variable set), and a
scrape of any worker adds up every worker's files: a counter never goes backwards whichever
worker answers, and counts of a worker that died and was replaced stay in the sum. Gauges hold
figures every worker reads alike (live stock, the bus backlog): the most recently set one wins.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiproc_dir(data_dir: Path, supervisor_pid: int) -> Path:
    """Where the workers of one ``serve --workers N`` keep their metric files, emptied first (a
    previous run's files would be added to this one's counts)."""
    path = data_dir / "metrics" / str(supervisor_pid)
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


class ShopMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.multiproc: str | None = os.environ.get(MULTIPROC_ENV) or None
        self.requests = Counter(
            "miri_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "miri_http_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.orders_placed = Counter("miri_orders_placed", "Orders accepted", registry=r)
        self.order_items = Counter("miri_order_items", "Order items accepted", registry=r)
        self.sold_out = Counter("miri_sold_out", "Order attempts answered sold out", registry=r)
        self.sold_out_fast = Counter(
            "miri_sold_out_fast", "Sold-out answers served from the in-process mark", registry=r
        )
        self.payments = Counter("miri_payments", "Payment outcomes", ["outcome"], registry=r)
        shared = "mostrecent"  # every worker reads the same figure; with workers, the latest wins
        self.stock = Gauge(
            "miri_stock",
            "Live stock per goods",
            ["goods_id"],
            registry=r,
            multiprocess_mode=shared,
        )
        self.bus_pending = Gauge(
            "miri_bus_pending", "Undelivered bus deliveries", registry=r, multiprocess_mode=shared
        )
        self.bus_dead = Gauge(
            "miri_bus_dead_letters",
            "Dead-lettered deliveries",
            registry=r,
            multiprocess_mode=shared,
        )
        self.queue_tickets = Gauge(
            "miri_queue_tickets",
            "Waiting-room tickets by state",
            ["goods_id", "state"],
            registry=r,
            multiprocess_mode=shared,
        )
        self.queue_admitted = Counter(
            "miri_queue_admitted", "Buyers admitted from a waiting room", ["goods_id"], registry=r
        )
        self.queue_pass_refusals = Counter(
            "miri_queue_pass_refusals",
            "Orders refused for want of a valid queue pass, by reason",
            ["reason"],
            registry=r,
        )
        # The in-flight bound (miri/server/limiter.py), copied in once a second and at each scrape;
        # with workers, the bound and what is in flight are summed over the live ones.
        self.shed = Counter(
            "miri_requests_shed",
            "Requests refused with 503 over the in-flight bound, by path class",
            ["path_class"],
            registry=r,
        )
        self.in_flight_limit = Gauge(
            "miri_in_flight_limit",
            "The in-flight bound now (summed over live workers)",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.in_flight = Gauge(
            "miri_in_flight",
            "Requests in flight by path class",
            ["path_class"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self._http: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def http(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request. The labelled children are looked up once per
        (method, route, status): ``labels()`` costs more than the count itself."""
        key = (method, route, status)
        children = self._http.get(key)
        if children is None:
            children = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(route),
            )
            self._http[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        if self.multiproc is None:
            return generate_latest(self.registry)
        # Every worker's files, this one's included, added up per series.
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=self.multiproc)
        return generate_latest(merged)
