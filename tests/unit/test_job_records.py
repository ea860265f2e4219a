"""Which scheduled runs leave a row in job_runs: every daily run, an interval job's only when it
fails (a stock write-back every second would otherwise add 86,400 rows a day)."""

from datetime import datetime

from miri.infra.scheduler import Jobs


async def test_daily_runs_are_recorded_and_interval_runs_only_when_they_fail():
    recorded: list[tuple[str, str]] = []

    async def record(name: str, started: float, finished: float, outcome: str, detail: str):
        assert started <= finished
        recorded.append((name, outcome))

    async def fine(as_of: datetime | None) -> dict[str, int]:
        return {"done": 1}

    async def broken(as_of: datetime | None) -> None:
        raise RuntimeError("disk on fire")

    jobs = Jobs("UTC", record)
    jobs.daily("shipping", fine, at="06:00", description="daily")
    jobs.every("stock-sync", fine, seconds=1, description="often")
    jobs.every("payment-expiry", broken, seconds=1, description="often, failing")
    for name in ("shipping", "stock-sync", "payment-expiry", "stock-sync"):
        await jobs._scheduled(name)
    assert recorded == [("shipping", "ok"), ("payment-expiry", "failed")]
    assert jobs.last_results["stock-sync"] == {"done": 1}
