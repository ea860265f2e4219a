"""The Bus: what modules publish through, and what the server starts and stops."""

from __future__ import annotations

import time
from typing import Any

from miri.config import Settings
from miri.domain.events import Event
from miri.infra.bus import stores
from miri.infra.bus.dispatcher import Dispatcher
from miri.infra.bus.owners import adopt, new_worker_id
from miri.infra.bus.pg_wakeup import OutboxListener
from miri.infra.bus.subscriptions import Handler, Subscriptions
from miri.infra.bus.views import BusViews
from miri.infra.database import Database
from miri.infra.metrics import ShopMetrics


class Bus:
    """Transactional outbox + dispatcher (see the package docstring for the guarantees).

    ``views`` holds the operator's side: counts, status, dead letters, replay.
    """

    def __init__(
        self,
        db: Database,
        settings: Settings,
        metrics: ShopMetrics | None = None,
        worker_id: str | None = None,
        *,
        max_in_flight: int = 2048,  # deliveries claimed at once; a batched consumer takes many
        handler_timeout: float = 30.0,
        lease: float = 60.0,
        stop_grace: float = 10.0,
    ) -> None:
        self.db = db
        self.settings = settings
        self.metrics = metrics
        self.worker_id = worker_id or new_worker_id()
        adopt(self.worker_id)
        self._store = stores.for_engine(db.engine)
        self._listener: OutboxListener | None = None
        self._subscriptions = Subscriptions()
        self.views = BusViews(db, self._subscriptions, metrics, wake=self.notify)
        self.dispatcher = Dispatcher(
            db,
            settings,
            self._subscriptions,
            self.worker_id,
            max_in_flight=max_in_flight,
            handler_timeout=handler_timeout,
            lease=lease,
            stop_grace=stop_grace,
            after_tick=self.views.refresh_gauges,
        )

    # -- publishing -----------------------------------------------------------------------------
    def subscribe(self, consumer: str, event_type: type[Event], handler: Handler) -> None:
        """``consumer`` (a module name) handles every ``event_type`` recorded from now on."""
        self._subscriptions.add(consumer, event_type, handler)
        self.notify()  # deliveries already waiting for this consumer are now deliverable

    @property
    def consumers(self) -> list[str]:
        return list(self._subscriptions.consumers)

    def record(self, conn: Any, event: Event) -> None:
        """Write ``event`` to the outbox inside the caller's write job (same transaction)."""
        consumers = self._subscriptions.consumers_of(event.name)
        self._store.insert_event(
            conn, event.event_id, event.name, event.to_json(), consumers, time.time()
        )

    def notify(self) -> None:
        """Wake the dispatcher now (call after the write that recorded events has committed)."""
        self.dispatcher.kick()

    def first_time(self, conn: Any, consumer: str, event_id: str) -> bool:
        """Mark ``event_id`` handled by ``consumer``; False when it already was (a repeat)."""
        return self._store.mark_handled(conn, consumer, event_id, time.time())

    # -- running --------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the dispatcher (the server). Rows left pending by a crash are delivered.

        On PostgreSQL other hosts commit events too: a listener wakes this dispatcher for them.
        """
        self.dispatcher.start()
        url = getattr(self.db, "url", None)
        if self.db.engine == "postgresql" and url:
            self._listener = OutboxListener(url, self.notify)
            self._listener.start()

    async def stop(self) -> None:
        """Let in-flight handlers finish (up to ``stop_grace``), record outcomes, release claims."""
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
        await self.dispatcher.stop()

    async def drain(self, timeout: float = 30.0) -> bool:
        """Deliver until nothing is pending for this bus's consumers; True when that happened.

        Works with or without ``start()``: without it, a dispatcher runs for the duration of the
        call. Rows claimed by other live workers, or waiting out a retry back-off, count as
        pending, so this waits for them too (up to ``timeout``).
        """
        return await self.dispatcher.drain(timeout)
