"""What an operator sees of the bus and does to it: counts, per-consumer status, dead letters,
replay. Shapes are the edge's (camelCase keys): ``/api/health``, the CLI and the dashboard show
them as they are."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

from miri.infra.bus import stores
from miri.infra.bus.subscriptions import Subscriptions
from miri.infra.database import Database
from miri.infra.metrics import ShopMetrics

log = logging.getLogger("miri.infra.bus")

GAUGE_INTERVAL = 1.0  # seconds between metric gauge refreshes while the dispatcher runs


class BusViews:
    """Reads and repairs over every consumer's deliveries (not only this process's)."""

    def __init__(
        self,
        db: Database,
        subscriptions: Subscriptions,
        metrics: ShopMetrics | None = None,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.store = stores.for_engine(db.engine)
        self.subscriptions = subscriptions
        self.metrics = metrics
        self._wake = wake  # tells the dispatcher that replayed deliveries are due
        self._gauges_at = 0.0

    async def counts(self) -> dict[str, int]:
        """``{"pending", "deadLetters"}`` over every consumer (cheap: reads the status index)."""
        found = await self.db.read(self.store.counts)
        figures = {"pending": found["PENDING"], "deadLetters": found["DEAD"]}
        self._set_gauges(figures)
        return figures

    async def status(self) -> dict[str, Any]:
        """Totals and per-consumer figures: pending, dead letters, delivered (done)."""
        rows = await self.db.read(self.store.counts_by_consumer)
        consumers: dict[str, dict[str, int]] = {
            name: {"pending": 0, "dead": 0, "done": 0} for name in self.subscriptions.consumers
        }
        key = {"PENDING": "pending", "DEAD": "dead", "DONE": "done"}
        for consumer, status, n in rows:
            consumers.setdefault(consumer, {"pending": 0, "dead": 0, "done": 0})
            consumers[consumer][key[status]] += n
        result = {
            "pending": sum(c["pending"] for c in consumers.values()),
            "deadLetters": sum(c["dead"] for c in consumers.values()),
            "delivered": sum(c["done"] for c in consumers.values()),
            "consumers": dict(sorted(consumers.items())),
        }
        self._set_gauges(result)
        return result

    async def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest dead-lettered deliveries, with the event and the last error."""
        rows = await self.db.read(lambda conn: self.store.dead_letters(conn, limit))
        return [
            {
                "eventId": row["event_id"],
                "type": row["type"],
                "consumer": row["consumer"],
                "attempts": row["attempts"],
                "lastError": row["last_error"],
                "failedAt": row["updated_at"],
                "createdAt": row["created_at"],
                "payload": orjson.loads(row["payload"]),
            }
            for row in rows
        ]

    async def replay(self, event_id: str | None = None) -> int:
        """DEAD → PENDING for one event (every consumer of it) or all; attempts reset."""
        count = await self.db.write(lambda conn: self.store.replay(conn, event_id, time.time()))
        if count and self._wake is not None:
            self._wake()
        return count

    async def refresh_gauges(self) -> None:
        """Bring the pending and dead-letter gauges up to date, at most once a GAUGE_INTERVAL."""
        if self.metrics is None or time.monotonic() - self._gauges_at < GAUGE_INTERVAL:
            return
        self._gauges_at = time.monotonic()
        try:
            await self.counts()
        except Exception as exc:  # noqa: BLE001 - metrics are best effort
            log.debug("bus gauges not refreshed: %s", exc)

    def _set_gauges(self, figures: dict[str, Any]) -> None:
        if self.metrics is not None:
            self.metrics.bus_pending.set(figures["pending"])
            self.metrics.bus_dead.set(figures["deadLetters"])
