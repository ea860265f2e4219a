"""Named jobs: run on a schedule by APScheduler in the server, or on demand from the CLI.

Each job is an async function of an optional ``as_of`` time, so an operator can run the daily
shipping run "as if" at another moment, and tests can drive it with an injected clock.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

log = logging.getLogger(__name__)
JobFn = Callable[[datetime | None], Awaitable[Any]]


@dataclass
class Job:
    name: str
    fn: JobFn
    trigger: BaseTrigger
    description: str

    @property
    def schedule(self) -> str:
        return str(self.trigger)

    def next_run(self, now: datetime | None = None) -> datetime | None:
        return self.trigger.get_next_fire_time(None, now or datetime.now(UTC))


class Jobs:
    def __init__(self, timezone: str) -> None:
        self.timezone = timezone
        self._jobs: dict[str, Job] = {}
        self._scheduler: AsyncIOScheduler | None = None
        self.last_results: dict[str, Any] = {}

    def daily(self, name: str, fn: JobFn, *, hour: int, description: str) -> None:
        self._jobs[name] = Job(
            name, fn, CronTrigger(hour=hour, timezone=self.timezone), description
        )

    def every(self, name: str, fn: JobFn, *, seconds: float, description: str) -> None:
        self._jobs[name] = Job(name, fn, IntervalTrigger(seconds=seconds), description)

    def list(self) -> list[Job]:
        return list(self._jobs.values())

    def names(self) -> list[str]:
        return list(self._jobs)

    async def run(self, name: str, as_of: datetime | None = None) -> Any:
        job = self._jobs.get(name)
        if job is None:
            raise KeyError(f"no job named {name!r}; jobs: {', '.join(self._jobs)}")
        result = await job.fn(as_of)
        self.last_results[name] = result
        return result

    async def _scheduled(self, name: str) -> None:
        try:
            result = await self.run(name)
            log.info("job %s: %s", name, result)
        except Exception:  # noqa: BLE001 - a failing run must not stop the schedule
            log.exception("job %s failed", name)

    def start(self) -> None:
        scheduler = AsyncIOScheduler(timezone=self.timezone)
        for job in self._jobs.values():
            scheduler.add_job(
                self._scheduled,
                job.trigger,
                args=[job.name],
                id=job.name,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=3600,
            )
        scheduler.start()
        self._scheduler = scheduler

    async def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
