"""Terminal plots of one run (plotext): throughput, errors and remaining stock per second, and the
latency histogram of accepted orders."""

from __future__ import annotations

import re
from typing import Any

import plotext as plt

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _figure(width: int, height: int, title: str, xlabel: str, ylabel: str) -> None:
    plt.clear_figure()
    plt.plotsize(width, height)
    plt.theme("clear")
    plt.title(title)
    plt.xlabel(xlabel)
    plt.ylabel(ylabel)


def latency_buckets(hist: Any, buckets: int = 24) -> tuple[list[str], list[int]]:
    """Counts per latency band (log-spaced, in ms) from an HdrHistogram."""
    if hist is None or hist.get_total_count() == 0:
        return [], []
    lo = max(hist.get_min_value(), 1)
    hi = max(hist.get_max_value(), lo + 1)
    ratio = (hi / lo) ** (1 / buckets)
    edges = [lo * ratio**i for i in range(buckets + 1)]
    counts = [0] * buckets
    for item in hist.get_recorded_iterator():
        value = item.value_iterated_to
        i = 0
        while i < buckets - 1 and value > edges[i + 1]:
            i += 1
        counts[i] += item.count_added_in_this_iter_step
    labels = [f"{edges[i + 1] / 1000:.3g}" for i in range(buckets)]
    return labels, counts


def render(run: dict[str, Any], hist: Any, *, width: int = 100, color: bool = True) -> str:
    """The four plots of one run as text."""
    timeline = run.get("timeline") or []
    seconds = [row["t"] for row in timeline]
    parts = []

    _figure(width, 15, "throughput per second", "seconds since opening", "per second")
    if seconds:
        plt.plot(seconds, [row["requests"] for row in timeline], label="requests")
        plt.plot(seconds, [row["accepted"] for row in timeline], label="accepted")
    parts.append(plt.build())

    _figure(width, 10, "errors per second (sold out is not an error)", "seconds", "errors")
    if seconds:
        plt.bar(seconds, [row["error"] for row in timeline])
    parts.append(plt.build())

    samples = run.get("stock_samples") or []
    _figure(width, 12, "remaining stock", "seconds since opening", "units")
    if samples:
        plt.plot([t for t, _ in samples], [s for _, s in samples])
    parts.append(plt.build())

    labels, counts = latency_buckets(hist)
    _figure(width, 15, "latency of accepted orders", "ms (upper edge of band)", "orders")
    if counts:
        plt.bar(labels, counts)
    parts.append(plt.build())

    text = "\n".join(parts)
    return text if color else _ANSI.sub("", text)
