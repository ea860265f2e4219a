"""Named jobs: run on a schedule by APScheduler in the server, or on demand from the CLI.

Each job is an async function of an optional ``as_of`` time, so an operator can run the daily
shipping run "as if" at another moment, and tests can drive it with an injected clock. Every
daily run is recorded (``job_runs``: which job, on which host, when, how it ended), which is how
an operator sees that a shop served by several hosts ran its daily runs once; the frequent
interval jobs are recorded only when a run fails (every run would add 86,400 rows a day).
"""

from __future__ import annotations

import json
import logging
import time
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
# (name, started_at, finished_at, outcome "ok"/"failed", detail) -> stored
RunRecorder = Callable[[str, float, float, str, str], Awaitable[None]]


def time_of_day(text: str) -> tuple[int, int, int]:
    """``HH:MM`` or ``HH:MM:SS`` as (hour, minute, second); ValueError when it is neither."""
    parts = text.strip().split(":")
    if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts):
        raise ValueError(f"not a time of day (HH:MM or HH:MM:SS): {text!r}")
    hour, minute, second = (int(p) for p in [*parts, "0"][:3])
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"not a time of day (HH:MM or HH:MM:SS): {text!r}")
    return hour, minute, second


@dataclass
class Job:
    name: str
    fn: JobFn
    trigger: BaseTrigger
    description: str
    recorded: bool = True  # every run goes to job_runs, not only the failed ones

    @property
    def schedule(self) -> str:
        return str(self.trigger)

    def next_run(self, now: datetime | None = None) -> datetime | None:
        return self.trigger.get_next_fire_time(None, now or datetime.now(UTC))


class Jobs:
    def __init__(self, timezone: str, record: RunRecorder | None = None) -> None:
        self.timezone = timezone
        self._record = record
        self._jobs: dict[str, Job] = {}
        self._scheduler: AsyncIOScheduler | None = None
        self.last_results: dict[str, Any] = {}

    def daily(self, name: str, fn: JobFn, *, at: str, description: str) -> None:
        """Once a day at ``at`` (``HH:MM[:SS]``) in the shop's time zone."""
        hour, minute, second = time_of_day(at)
        trigger = CronTrigger(hour=hour, minute=minute, second=second, timezone=self.timezone)
        self._jobs[name] = Job(name, fn, trigger, description)

    def every(self, name: str, fn: JobFn, *, seconds: float, description: str) -> None:
        trigger = IntervalTrigger(seconds=seconds)
        self._jobs[name] = Job(name, fn, trigger, description, recorded=False)

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
        started = time.time()
        try:
            result = await self.run(name)
            log.info("job %s: %s", name, result)
            outcome, detail = "ok", json.dumps(result, default=str)
        except Exception as exc:  # noqa: BLE001 - a failing run must not stop the schedule
            log.exception("job %s failed", name)
            outcome, detail = "failed", f"{exc.__class__.__name__}: {exc}"
        if self._record is not None and (self._jobs[name].recorded or outcome == "failed"):
            try:
                await self._record(name, started, time.time(), outcome, detail)
            except Exception as exc:  # noqa: BLE001 - the run happened; only its record is lost
                log.warning("job %s ran but its run was not recorded: %s", name, exc)

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
