"""How the shop builds the waiting room, and what a serving process starts for it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

from redis.asyncio import Redis

from miri.domain.queue.service import LiveStock, QueueService
from miri.infra.clock import Clock
from miri.infra.database import Database
from miri.infra.metrics import ShopMetrics

log = logging.getLogger(__name__)


def build(
    *,
    db: Database,
    redis: Redis,
    clock: Clock,
    live_stock: LiveStock,
    metrics: ShopMetrics,
    rng: random.Random | None = None,
) -> QueueService:
    return QueueService(
        db=db, redis=redis, clock=clock, live_stock=live_stock, metrics=metrics, rng=rng
    )


async def check_before_serving(queue: QueueService) -> None:
    """Put each room's settings back into Redis if Redis lost them (tickets cannot be)."""
    rooms = await queue.restore()
    if rooms:
        log.info("waiting rooms: %d restored from the database", rooms)


class Admissions:
    """The admission runs, started where the scheduled jobs run (one process per shop)."""

    STOP_WITHIN = 5.0  # seconds a stopping run may take to finish before it is cancelled

    def __init__(self, queue: QueueService) -> None:
        self._queue = queue
        self._task: asyncio.Task | None = None
        self._stop = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._stop = asyncio.Event()
            self._task = asyncio.create_task(
                self._queue.run_admissions(self._stop), name="miri-admissions"
            )

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self._stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), self.STOP_WITHIN)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
